//! Shared by the end-to-end tests: builds the real plugins, starts the real
//! `nano-server` binary on a free port, and talks to it over real sockets.

mod browser;
mod plugins;
mod server;
mod ws;

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use serde_json::Value;

pub use browser::Browser;
pub use plugins::{NodesDir, abi_0_1_0_plugin, fault_plugin, foreign_abi_plugin, lib_name, plugin};
pub use server::{Server, run_server_to_exit, server_command, server_command_bare};
pub use ws::{Client, request};

/// How long any single awaited event may take before the test fails.
/// Generous: it only bounds how long a failing test hangs, and builds of
/// node crates under a fully parallel test run on 2 cores take a while.
pub const PATIENCE: Duration = Duration::from_secs(120);

/// For waits that include a cargo build of a node crate: on a fresh machine
/// the first one compiles the plugin's dependencies.
pub const BUILD_PATIENCE: Duration = Duration::from_secs(600);

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_owned()
}

/// The isolation mode the end-to-end tests run the server in:
/// `NANO_TEST_ISOLATION=in-process` runs the whole suite in-process (CI
/// runs it both ways); otherwise the default, `process`.
fn isolation_override() -> Option<String> {
    std::env::var("NANO_TEST_ISOLATION")
        .ok()
        .filter(|mode| !mode.is_empty())
}

/// Whether the suite runs in process isolation (the default).
pub fn process_isolation() -> bool {
    isolation_override().is_none_or(|mode| mode == "process")
}

/// The node uids a status document (`GET /`) lists, sorted.
pub fn uids(doc: &Value) -> Vec<String> {
    let mut uids: Vec<String> = doc["nodeUIDs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    uids.sort();
    uids
}

/// The server's reqwest is built with rustls and no provider of its own
/// (it uses ring), and features are shared with the tests' reqwest: every
/// client in a test process needs the provider installed first. Every test
/// starts a server before it makes a request, so [`Server`] does it.
fn install_tls_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Field `field` (e.g. `VmRSS:`) of `/proc/<pid>/status`, in KiB; 0 when
/// the process is gone.
fn proc_status_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix(field))
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|kib| kib.parse().ok())
        })
        .unwrap_or(0)
}

/// Polls `condition` until it holds (or fails the test after PATIENCE).
/// For state that is only visible by asking, e.g. a metric.
pub async fn eventually<F, Fut>(what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = std::time::Instant::now() + PATIENCE;
    while !condition().await {
        assert!(std::time::Instant::now() < deadline, "never happened: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

pub fn is_final(status: &Value) -> bool {
    status["type"] == "complete" || status["type"] == "error"
}

/// The final status of a list of statuses.
pub fn final_status(statuses: &[Value]) -> &Value {
    let last = statuses.last().expect("at least one status");
    assert!(is_final(last), "last status is final: {statuses:?}");
    last
}

/// The uids of a handshake or definitions_update, sorted.
pub fn definition_uids(frame: &Value) -> Vec<String> {
    let mut uids: Vec<String> = frame["payload"]["nodeDefinitions"]
        .as_array()
        .expect("nodeDefinitions")
        .iter()
        .map(|d| d["uid"].as_str().unwrap().to_owned())
        .collect();
    uids.sort();
    uids
}

/// The version of node `uid` in a handshake or definitions_update.
pub fn definition_version(frame: &Value, uid: &str) -> Option<String> {
    frame["payload"]["nodeDefinitions"]
        .as_array()?
        .iter()
        .find(|d| d["uid"] == uid)
        .map(|d| d["version"].as_str().unwrap_or_default().to_owned())
}
