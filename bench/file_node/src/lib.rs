//! `bench-asset-file`: with `op = "download"`, downloads input `asset` into
//! `path`; with `op = "upload"`, uploads the file at `path` as an asset.

use nano_plugin_abi::{prelude::*, services::Upload};

pub struct AssetFile;

impl Node for AssetFile {
    fn definition(&self) -> NodeDefinition {
        NodeDefinition::new("bench-asset-file", "Asset File")
            .category("Bench")
            .input(Port::new("asset", "asset").optional())
            .parameter(Parameter::text("op", "download"))
            .parameter(Parameter::text("path", ""))
            .output(Port::new("result", "string"))
    }

    fn execute(&self, ctx: &Context) -> NodeResult {
        let op: String = ctx.param("op")?;
        let path: String = ctx.param("path")?;
        match op.as_str() {
            "download" => {
                let hash: String = ctx.input("asset")?;
                let size = ctx.assets().download_to(&hash, &path)?;
                Ok(Outputs::new().with("result", size.to_string()))
            }
            "upload" => {
                let asset = ctx.assets().upload_file(&path, &Upload::new().kind("blob"))?;
                Ok(Outputs::new().with("result", asset.hash))
            }
            other => Err(NodeError::new(format!("unknown op {other}"))),
        }
    }
}

nano_plugin_abi::export_nodes![AssetFile];
