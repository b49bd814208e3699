//! Prometheus metrics: the names in one place, the recorder, `/metrics`.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Executions by `node` uid and `outcome` (complete, error, aborted, timeout,
/// busy, unknown_node, internal). Only uids that are or were served become
/// labels; every unknown uid is counted under [`UNKNOWN_NODE_LABEL`].
pub const EXECUTIONS: &str = "nano_executions_total";
/// The `node` label of executions naming a uid nobody serves: a client must
/// not be able to grow the metrics with made-up uids.
pub const UNKNOWN_NODE_LABEL: &str = "_unknown";

/// Execution duration in seconds, by `node`, from admission to the final status.
pub const EXECUTION_SECONDS: &str = "nano_execution_duration_seconds";
/// Nodes running on a worker right now.
pub const IN_FLIGHT: &str = "nano_executions_in_flight";
/// Nodes still running on a worker after their execution ended (timed out
/// or aborted, and the node did not return): lost workers holding a slot.
pub const STUCK: &str = "nano_executions_stuck";
/// Executions admitted and waiting for a slot (in their node's lane).
pub const QUEUED: &str = "nano_executions_queued";
/// Time an execution waited for a free slot (`max_concurrent_executions`).
pub const QUEUE_WAIT_SECONDS: &str = "nano_execution_queue_wait_seconds";
/// Node uids served now.
pub const NODES_LOADED: &str = "nano_nodes_loaded";
/// Libraries serving at least one node now.
pub const LIBRARIES_LOADED: &str = "nano_libraries_loaded";
/// Libraries loaded (first load of a path).
pub const LIBRARY_LOADS: &str = "nano_library_loads_total";
/// Libraries replaced by a new version.
pub const LIBRARY_SWAPS: &str = "nano_library_swaps_total";
/// Libraries refused (not a plugin, truncated, ABI mismatch, init panic).
pub const LIBRARY_FAILURES: &str = "nano_library_load_failures_total";
/// Worker processes alive now (process isolation).
pub const WORKERS: &str = "nano_workers";
/// Worker restarts by `library` (relative to nodes_path) and `reason`
/// (crashed, memory, hung).
pub const WORKER_RESTARTS: &str = "nano_worker_restarts_total";
/// Resident memory of a library's worker, by `library`.
pub const WORKER_RSS: &str = "nano_worker_rss_bytes";
/// WebSocket connections open now.
pub const WS_CONNECTIONS: &str = "nano_websocket_connections";
/// HTTP requests by `route` and `status`.
pub const HTTP_REQUESTS: &str = "nano_http_requests_total";

/// Installs the process-wide recorder once; returns the handle `/metrics` renders.
pub fn install() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let buckets = [0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0, 120.0];
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".to_owned()), &buckets)
                .expect("bucket list is not empty")
                .build_recorder();
            let handle = recorder.handle();
            // A second recorder (tests linking the library twice) is harmless.
            let _ = ::metrics::set_global_recorder(recorder);
            describe();
            handle
        })
        .clone()
}

fn describe() {
    use ::metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_counter!(EXECUTIONS, "Executions by node uid and outcome");
    describe_histogram!(EXECUTION_SECONDS, "Execution duration in seconds, by node uid");
    describe_gauge!(IN_FLIGHT, "Nodes running on a worker now");
    describe_gauge!(
        STUCK,
        "Nodes still running after their execution ended (aborted or timed out)"
    );
    describe_gauge!(QUEUED, "Executions admitted and waiting for a slot");
    describe_histogram!(QUEUE_WAIT_SECONDS, "Seconds an execution waited for a free slot");
    describe_gauge!(NODES_LOADED, "Node uids served now");
    describe_gauge!(LIBRARIES_LOADED, "Libraries serving at least one node now");
    describe_counter!(LIBRARY_LOADS, "Libraries loaded for a new path");
    describe_counter!(LIBRARY_SWAPS, "Libraries replaced by a new version");
    describe_counter!(LIBRARY_FAILURES, "Libraries refused");
    describe_gauge!(WORKERS, "Worker processes alive now");
    describe_counter!(WORKER_RESTARTS, "Worker restarts by library and reason");
    describe_gauge!(WORKER_RSS, "Resident memory of a library's worker process, in bytes");
    describe_gauge!(WS_CONNECTIONS, "WebSocket connections open now");
    describe_counter!(HTTP_REQUESTS, "HTTP requests by route and status");
}

pub use ::metrics::{counter, gauge, histogram};

/// The metrics every execution records, looked up once: a lookup hashes
/// the key and searches the registry, which showed in the profiles.
pub struct Hot {
    pub queue_wait: ::metrics::Histogram,
    pub in_flight: ::metrics::Gauge,
    /// Executions admitted and waiting for a slot.
    pub queued: ::metrics::Gauge,
    /// `nano_http_requests_total{route="/nodes/{uid}/execute", status="200"}`.
    pub http_execute_ok: ::metrics::Counter,
}

/// The [`Hot`] handles (installing the recorder first if need be).
pub fn hot() -> &'static Hot {
    static HOT: OnceLock<Hot> = OnceLock::new();
    HOT.get_or_init(|| {
        install();
        Hot {
            queue_wait: histogram!(QUEUE_WAIT_SECONDS),
            in_flight: gauge!(IN_FLIGHT),
            queued: gauge!(QUEUED),
            http_execute_ok: counter!(HTTP_REQUESTS, "route" => "/nodes/{uid}/execute", "status" => "200"),
        }
    })
}

/// One node's execution metrics, looked up on its first execution.
pub struct NodeMetrics {
    pub duration: ::metrics::Histogram,
    pub complete: ::metrics::Counter,
}

impl NodeMetrics {
    pub fn new(uid: &str) -> Self {
        hot();
        Self {
            duration: histogram!(EXECUTION_SECONDS, "node" => uid.to_owned()),
            complete: counter!(EXECUTIONS, "node" => uid.to_owned(), "outcome" => "complete"),
        }
    }
}
