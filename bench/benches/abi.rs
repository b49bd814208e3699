//! ABI micro-benchmark: one execute of `simple-text` through the library
//! loaded the way nano-server loads it (private copy, abi_stable checks,
//! `extern "C"` call with JSON text and host callbacks), against the same
//! node code called as a plain Rust function (`testing::execute_json`: the
//! same JSON in and out, no boundary). The difference is the ABI's cost.
//!
//! Run: cargo bench -p nano-bench --bench abi   (after building the plugin:
//! cargo build --release -p simple_text_node)

use std::path::PathBuf;

use abi_stable::{sabi_trait::TD_Opaque, sabi_types::RRef, std_types::RStr};
use criterion::{Criterion, criterion_group, criterion_main};
use nano_plugin_abi::{
    Node,
    ffi::{ExecuteCall, HostCallbacks, HostCallbacks_TO},
    testing,
};
use nano_server::loader::Loader;
use simple_text_node::SimpleText;

const INPUTS: &str = r#"{"text":["text number 12345"]}"#;
const PARAMETERS: &str = r#"[{"name":"uppercase","value":true}]"#;
const EXPECTED: &str = r#"{"text":["TEXT NUMBER 12345"]}"#;

/// What the server hands a running node: statuses go nowhere here.
struct Host;

impl HostCallbacks for Host {
    fn send_status(&self, _status: RStr<'_>) {}

    fn is_aborted(&self) -> bool {
        false
    }
}

fn library_path() -> PathBuf {
    // Where `bench/run.sh` built it: CARGO_TARGET_DIR, like cargo.
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"),
        PathBuf::from,
    );
    let release = target.join("release");
    release.join(format!(
        "{}simple_text_node{}",
        std::env::consts::DLL_PREFIX,
        std::env::consts::DLL_SUFFIX
    ))
}

fn abi(c: &mut Criterion) {
    let path = library_path();
    let loader = Loader::new().expect("a private folder for library copies");
    let loaded = std::fs::read(&path)
        .map_err(|e| e.to_string())
        .and_then(|bytes| loader.load_bytes(&path, &bytes).map_err(|e| e.to_string()))
        .unwrap_or_else(|e| {
            panic!(
                "loading {}: {e} (cargo build --release -p simple_text_node)",
                path.display()
            )
        });
    let host = Host;
    let call = || {
        let call = ExecuteCall {
            node_index: 0,
            instance_id: "bench-instance".into(),
            inputs: INPUTS.into(),
            parameters: PARAMETERS.into(),
            graph_node: "null".into(),
        };
        (loaded.module.execute())(call, HostCallbacks_TO::from_ptr(RRef::new(&host), TD_Opaque))
            .into_result()
            .map(String::from)
            .map_err(String::from)
    };
    assert_eq!(call().as_deref(), Ok(EXPECTED));

    let node = SimpleText;
    let definition = node.definition();
    let direct = || testing::execute_json(&node, &definition, INPUTS, PARAMETERS);
    assert_eq!(direct().map_err(|e| e.to_string()).as_deref(), Ok(EXPECTED));

    let mut group = c.benchmark_group("abi");
    group.bench_function("loaded", |b| b.iter(|| std::hint::black_box(call())));
    group.bench_function("direct", |b| b.iter(|| std::hint::black_box(direct())));
    group.finish();
}

criterion_group!(benches, abi);
criterion_main!(benches);
