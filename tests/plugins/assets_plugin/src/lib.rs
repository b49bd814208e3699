//! `test-assets`: calls every asset operation on its input asset and
//! reports what each answered.

use std::io::Read;

use nano_plugin_abi::{
    prelude::*,
    serde_json::json,
    services::{AssetFilter, Upload},
};

pub struct AllAssetCalls;

impl Node for AllAssetCalls {
    fn definition(&self) -> NodeDefinition {
        NodeDefinition::new("test-assets", "All Asset Calls")
            .category("Test")
            .input(Port::new("asset", "asset"))
            .output(Port::new("report", "object"))
    }

    fn execute(&self, ctx: &Context) -> NodeResult {
        let hash: String = ctx.input("asset")?;
        let assets = ctx.assets();
        let dir = std::env::temp_dir().join(format!("test-assets-{}-{}", std::process::id(), ctx.instance_id()));
        std::fs::create_dir_all(&dir).map_err(NodeError::new)?;
        let file = dir.join("copy.bin");
        let downloaded = assets.download_to(&hash, &file)?;
        let uploaded = assets.upload_file(&file, &Upload::new().kind("blob").meta(json!({"copy": true})))?;
        let mut streamed = Vec::new();
        let mut reader = assets.open(&hash)?;
        let size = reader.size();
        reader.read_to_end(&mut streamed).map_err(NodeError::new)?;
        let unknown = format!("sha256:{}", "f".repeat(64));
        let listed = assets.list(&AssetFilter {
            kind: None,
            hash: Some(hash.clone()),
        })?;
        let report = json!({
            "downloaded": downloaded,
            "uploaded": uploaded.hash,
            "uploadedName": uploaded.name,
            "alreadyExists": uploaded.already_exists,
            "streamed": streamed.len(),
            "size": size,
            "resolved": assets.resolve(&hash)? == streamed,
            "exists": assets.exists(&hash)?,
            "unknownExists": assets.exists(&unknown)?,
            "listed": listed.iter().map(|a| a.hash.clone()).collect::<Vec<_>>(),
            "presigned": assets.presigned_url(&hash)?.url,
            "downloadUrl": assets.download_url(&hash)?,
        });
        let _ = std::fs::remove_dir_all(&dir);
        Ok(Outputs::new().with("report", report))
    }
}

nano_plugin_abi::export_nodes![AllAssetCalls];
