//! `asset-digest`: the SHA-256 and size of an asset, computed as it
//! streams in, so the asset never sits in memory whole.

use std::io::Read;

use nano_plugin_abi::{prelude::*, services::CHUNK_BYTES};
use sha2::{Digest, Sha256};

/// Bytes read between two progress statuses: a status per 1 MiB chunk
/// would flood the caller on a large asset.
const PROGRESS_EVERY: u64 = 4 << 20;

pub struct AssetDigest;

impl Node for AssetDigest {
    fn definition(&self) -> NodeDefinition {
        NodeDefinition::new("asset-digest", "Asset Digest")
            .category("Utility")
            .version("1.0.0")
            .description("Streams an asset and returns its SHA-256 and size")
            .input(Port::new("asset", "asset").description("Asset to digest"))
            .output(Port::new("sha256", "string").description("SHA-256 of the content, hex"))
            .output(Port::new("size", "number").description("Size of the content in bytes"))
    }

    fn execute(&self, ctx: &Context) -> NodeResult {
        let hash: String = ctx.input("asset")?;
        ctx.check_aborted()?;
        let mut reader = ctx.assets().open(&hash)?;
        let total = reader.size().unwrap_or(0);
        let mut hasher = Sha256::new();
        let mut chunk = vec![0; CHUNK_BYTES];
        let (mut read, mut reported) = (0u64, 0u64);
        loop {
            ctx.check_aborted()?;
            let n = match reader.read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => n,
                // The reader fails with `Interrupted` once aborted: not a retry.
                Err(_) if ctx.is_aborted() => return Err(NodeError::aborted()),
                Err(e) => return Err(NodeError::new(format!("cannot read {hash}: {e}"))),
            };
            hasher.update(&chunk[..n]);
            read += n as u64;
            if read - reported >= PROGRESS_EVERY {
                ctx.progress(read, total);
                reported = read;
            }
        }
        // Done: when NanoCore did not say the size, what was read is the total.
        ctx.progress(read, if total == 0 { read } else { total });
        Ok(Outputs::new()
            .with("sha256", format!("{:x}", hasher.finalize()))
            .with("size", read))
    }
}

nano_plugin_abi::export_nodes![AssetDigest];

#[cfg(test)]
mod tests {
    use super::*;
    use nano_plugin_abi::{
        serde_json::json,
        testing::{self, AssetStore},
    };

    #[test]
    fn digests_a_large_asset_as_it_streams() {
        let content: Vec<u8> = (0..5 << 20).map(|i: u32| (i % 251) as u8).collect();
        let store = AssetStore::new();
        let hash = store.put(content.clone(), "blob");
        let run = testing::run_with(&AssetDigest, json!({"asset": [&hash]}), json!({}), &store);
        let out = run.outputs().unwrap();
        let expected = format!("{:x}", Sha256::digest(&content));
        assert_eq!(out.get("sha256"), Some(&json!([expected])));
        assert_eq!(hash, format!("sha256:{expected}"));
        assert_eq!(out.get("size"), Some(&json!([5 << 20])));
        let progress: Vec<_> = run.statuses.iter().map(|s| s["progress"].clone()).collect();
        assert_eq!(
            progress,
            [
                json!({"step": 4 << 20, "total": 5 << 20}),
                json!({"step": 5 << 20, "total": 5 << 20})
            ]
        );
    }

    #[test]
    fn an_empty_asset_has_the_empty_digest() {
        let store = AssetStore::new();
        let hash = store.put(Vec::new(), "blob");
        let run = testing::run_with(&AssetDigest, json!({"asset": hash}), json!({}), &store);
        let out = run.outputs().unwrap();
        let empty = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        assert_eq!(out.get("sha256"), Some(&json!([empty])));
        assert_eq!(out.get("size"), Some(&json!([0])));
    }

    #[test]
    fn an_unknown_asset_is_not_found() {
        let unknown = format!("sha256:{}", "0".repeat(64));
        let run = testing::run_with(&AssetDigest, json!({"asset": unknown}), json!({}), &AssetStore::new());
        let err = run.result.unwrap_err();
        assert!(err.message().contains("not found"), "{err}");
    }

    #[test]
    fn stops_when_aborted() {
        let run = testing::run_aborted(&AssetDigest, json!({"asset": "sha256:x"}), json!({}));
        assert_eq!(run.result.unwrap_err().message(), "Execution aborted");
        assert!(run.statuses.is_empty());
    }
}
