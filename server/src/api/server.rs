//! The server's state for operators (the `/ui/server` page, scripts):
//! `GET /libraries` (what is loaded from where, what was refused and why)
//! and `GET /server` (identity, uptime, isolation, executions, workers, the
//! last failures and the counters of `/metrics`).

use std::{collections::BTreeMap, path::Path, time::SystemTime};

use axum::{Json, extract::State};
use serde::Serialize;
use serde_json::Value;

use crate::{
    failures::{FailureRecord, unix_ms},
    metrics::{self, Sample},
    state::ServerState,
};

/// A library served now.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct LibraryEntry {
    /// Its file, relative to `nodes_path`.
    path: String,
    /// The nano-plugin-abi version it was built against; for a Python
    /// library, the interpreter that runs it ("python 3.11.7 (/usr/bin/python3)").
    abi_version: String,
    /// The uids it serves.
    nodes: Vec<String>,
    /// Uids it exports that another library (sorting first) serves.
    shadowed: Vec<String>,
    /// When this version was loaded (ms since the Unix epoch).
    loaded_at_ms: u64,
    /// How long loading it took.
    load_ms: f64,
    /// How often a new version replaced the one at this path.
    swaps: u64,
    /// Whether it can run executions now (its worker is up or restarting).
    up: bool,
    /// Process isolation: its worker's resident memory.
    worker_rss_bytes: Option<f64>,
    /// Process isolation: how often its worker was restarted, by reason.
    worker_restarts: BTreeMap<String, f64>,
}

/// A library file that is not served.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RefusedEntry {
    /// Its file, relative to `nodes_path`.
    path: String,
    /// Why, in the words of the log.
    reason: String,
    /// When (ms since the Unix epoch).
    at_ms: u64,
    /// An earlier version from the same file keeps serving.
    previous_serving: bool,
}

/// What `GET /libraries` answers.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct Libraries {
    libraries: Vec<LibraryEntry>,
    refused: Vec<RefusedEntry>,
}

/// Executions now.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Executions {
    /// Accepted and without a final status yet (running or waiting).
    active: usize,
    /// Running on a worker.
    running: f64,
    /// Waiting for a slot.
    queued: f64,
    /// Ended (aborted, timed out) while the node still runs.
    stuck: usize,
}

/// What `GET /server` answers.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ServerReport {
    server_uid: String,
    server_name: String,
    domain: String,
    /// nano-server's version.
    version: &'static str,
    /// `process` or `in-process`.
    isolation: &'static str,
    started_at_ms: u64,
    uptime_seconds: f64,
    /// Whether NANOCORE_HTTP_ENDPOINT is set (assets can be uploaded and shown).
    nanocore: bool,
    /// Node uids served.
    nodes: usize,
    libraries: Vec<LibraryEntry>,
    refused: Vec<RefusedEntry>,
    executions: Executions,
    /// Worker processes alive (process isolation; absent in-process).
    workers: Option<f64>,
    /// The last 50 failed executions, newest first.
    failures: Vec<FailureRecord>,
    /// Every counter and gauge of `/metrics`.
    metrics: Vec<Sample>,
}

/// The libraries served, and the files refused with why.
#[utoipa::path(get, path = "/libraries", tag = "server",
    responses((status = 200, description = "Libraries served (ABI version, load time, swaps) and files refused", body = Libraries)))]
pub(crate) async fn libraries(State(state): State<ServerState>) -> Json<Libraries> {
    let samples = metrics::samples(&state.metrics.render());
    Json(libraries_report(&state, &samples))
}

/// The server at a glance: identity, uptime, isolation, libraries,
/// executions, workers, the last 50 failures and the metrics' counters.
#[utoipa::path(get, path = "/server", tag = "server",
    responses((status = 200, description = "The server's state", body = ServerReport)))]
pub(crate) async fn server_report(State(state): State<ServerState>) -> Json<ServerReport> {
    let samples = metrics::samples(&state.metrics.render());
    let Libraries { libraries, refused } = libraries_report(&state, &samples);
    let gauge = |name: &str| {
        samples
            .iter()
            .find(|s| s.name == name && s.labels.is_empty())
            .map(|s| s.value)
    };
    let setup = &state.setup;
    Json(ServerReport {
        server_uid: state.identity.server_uid.clone(),
        server_name: state.identity.server_name.clone(),
        domain: state.identity.domain.clone(),
        version: env!("CARGO_PKG_VERSION"),
        isolation: setup.isolation.as_str(),
        started_at_ms: unix_ms(setup.started),
        uptime_seconds: SystemTime::now()
            .duration_since(setup.started)
            .unwrap_or_default()
            .as_secs_f64(),
        nanocore: !state.identity.nanocore_http_endpoint.trim().is_empty(),
        nodes: state.registry.snapshot().uids.len(),
        libraries,
        refused,
        executions: Executions {
            active: state.executor.active_count(),
            running: gauge(metrics::IN_FLIGHT).unwrap_or(0.0),
            queued: gauge(metrics::QUEUED).unwrap_or(0.0),
            stuck: state.executor.stuck_count(),
        },
        workers: gauge(metrics::WORKERS),
        failures: state.executor.recent_failures(),
        metrics: samples,
    })
}

/// `GET /libraries`'s answer, also sent by `GET /events/definitions`.
pub(super) fn libraries_report(state: &ServerState, samples: &[Sample]) -> Libraries {
    let root = &state.setup.nodes_path;
    let snapshot = state.registry.snapshot();
    let libraries = state
        .registry
        .libraries()
        .into_iter()
        .map(|(library, swaps)| {
            let path = relative(root, &library.path);
            let (nodes, shadowed) = library.nodes.iter().map(|node| node.uid.clone()).partition(|uid| {
                snapshot
                    .get(uid)
                    .is_some_and(|served| served.library.path == library.path)
            });
            let worker_restarts = samples
                .iter()
                .filter(|s| s.name == metrics::WORKER_RESTARTS && s.labels.get("library") == Some(&path))
                .map(|s| (s.labels.get("reason").cloned().unwrap_or_default(), s.value))
                .collect();
            let worker_rss_bytes = samples
                .iter()
                .find(|s| s.name == metrics::WORKER_RSS && s.labels.get("library") == Some(&path))
                .map(|s| s.value);
            LibraryEntry {
                abi_version: library.abi_version.clone(),
                nodes,
                shadowed,
                loaded_at_ms: unix_ms(library.loaded_at),
                load_ms: library.load_duration.as_secs_f64() * 1000.0,
                swaps,
                up: library.runtime.is_up(),
                worker_rss_bytes,
                worker_restarts,
                path,
            }
        })
        .collect();
    let refused = state
        .registry
        .refusals()
        .into_iter()
        .map(|refusal| RefusedEntry {
            path: relative(root, &refusal.path),
            reason: refusal.reason,
            at_ms: unix_ms(refusal.at),
            previous_serving: refusal.previous_serving,
        })
        .collect();
    Libraries { libraries, refused }
}

/// `path` relative to `root` (as the metrics' `library` label has it).
fn relative(root: &Path, path: &Path) -> String {
    path.strip_prefix(root).unwrap_or(path).display().to_string()
}

/// As JSON text, for the event stream.
pub(super) fn libraries_json(state: &ServerState) -> String {
    let samples = metrics::samples(&state.metrics.render());
    serde_json::to_string(&libraries_report(state, &samples)).unwrap_or_else(|_| Value::Null.to_string())
}
