//! Host services as a node sees them, run against the `testing` store: the
//! plugin side of the host wire, end to end in memory.

use std::io::Read;

use nano_plugin_abi::{
    prelude::*,
    services::CHUNK_BYTES,
    testing::{self, AssetStore},
};
use serde_json::json;

/// Runs `f` as a node against `store`.
fn with_ctx(store: &AssetStore, f: impl Fn(&Context) -> NodeResult + Send + Sync + 'static) -> NodeResult {
    struct Probe<F>(F);
    impl<F: Fn(&Context) -> NodeResult + Send + Sync + 'static> Node for Probe<F> {
        fn definition(&self) -> NodeDefinition {
            NodeDefinition::new("probe", "Probe")
        }
        fn execute(&self, ctx: &Context) -> NodeResult {
            (self.0)(ctx)
        }
    }
    testing::run_with(&Probe(f), json!({}), json!({}), store).result
}

#[test]
fn a_reader_streams_a_large_asset_in_chunks_and_files_go_both_ways() {
    let store = AssetStore::new();
    let content: Vec<u8> = (0..(3 * CHUNK_BYTES + 17)).map(|i| (i % 251) as u8).collect();
    let hash = store.put(content.clone(), "blob");
    let dir = std::env::temp_dir().join(format!("nano-abi-services-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let out = with_ctx(&store, {
        let (hash, dir) = (hash.clone(), dir.clone());
        move |ctx| {
            let mut reader = ctx.assets().open(&hash)?;
            let mut read = Vec::new();
            reader.read_to_end(&mut read).map_err(NodeError::new)?;
            let size = ctx.assets().download_to(&hash, dir.join("copy.bin"))?;
            let uploaded = ctx
                .assets()
                .upload_file(dir.join("copy.bin"), &Upload::new().kind("blob"))?;
            Ok(Outputs::new()
                .with("read", read.len())
                .with("size", size)
                .with("same", read == ctx.assets().resolve(&hash)?)
                .with("again", ctx.assets().upload(&read, &Upload::new())?.hash == hash)
                .with("uploaded", uploaded))
        }
    })
    .unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(out.get("read"), Some(&json!([content.len()])));
    assert_eq!(out.get("size"), Some(&json!([content.len()])));
    assert_eq!(out.get("same"), Some(&json!([true])));
    assert_eq!(out.get("again"), Some(&json!([true])));
    let uploaded: AssetInfo = serde_json::from_value(out.get("uploaded").unwrap()[0].clone()).unwrap();
    assert_eq!(uploaded.hash, hash);
    assert!(uploaded.already_exists);
    assert_eq!(uploaded.name.as_deref(), Some("copy.bin"));
}

#[test]
fn hashes_are_checked_before_any_call_and_errors_read_well() {
    let store = AssetStore::new();
    let err = with_ctx(&store, |ctx| {
        ctx.assets()
            .exists("sha256:abc")
            .map(|_| Outputs::new())
            .map_err(Into::into)
    })
    .unwrap_err();
    assert!(err.message().starts_with("not an asset id"), "{err}");
    let unknown = format!("sha256:{}", "ab".repeat(32));
    let err = with_ctx(&store, move |ctx| {
        ctx.assets()
            .resolve(&unknown)
            .map(|_| Outputs::new())
            .map_err(Into::into)
    })
    .unwrap_err();
    assert_eq!(err.message(), format!("asset not found: sha256:{}", "ab".repeat(32)));
}

#[test]
fn resources_are_allocated_and_freed() {
    let store = AssetStore::new();
    let probe = store.clone();
    with_ctx(&store, move |ctx| {
        let id = ctx.resources().allocate(&Resource {
            kind: "gpu".into(),
            name: "model".into(),
            vram_usage: 1 << 30,
            ..Resource::default()
        })?;
        assert_eq!(probe.resources().len(), 1);
        ctx.resources().free(&id)?;
        Ok(Outputs::new())
    })
    .unwrap();
    assert!(store.resources().is_empty());
}
