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
/// Executions handed ahead to a worker process, without a slot, to start
/// there in the slot of one that returns (see `execution::admission`).
pub const HANDED_AHEAD: &str = "nano_executions_handed_ahead_total";
/// Executions handed ahead that their worker gave back unstarted (aborted,
/// drained, or the worker ended): they wait for a slot in the server again.
pub const GIVEN_BACK: &str = "nano_executions_given_back_total";
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
    describe_counter!(
        HANDED_AHEAD,
        "Executions handed ahead to a worker process, to start there when a slot of their node frees"
    );
    describe_counter!(
        GIVEN_BACK,
        "Executions handed ahead that their worker gave back unstarted"
    );
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
    pub handed_ahead: ::metrics::Counter,
    pub given_back: ::metrics::Counter,
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
            handed_ahead: counter!(HANDED_AHEAD),
            given_back: counter!(GIVEN_BACK),
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

/// One sample of a counter or gauge, read back from the text exposition.
#[derive(Debug, Clone, PartialEq, serde::Serialize, utoipa::ToSchema)]
pub struct Sample {
    pub name: String,
    pub labels: std::collections::BTreeMap<String, String>,
    pub value: f64,
}

/// The counters and gauges of a rendered exposition (histograms and
/// summaries are left out): what the operator page shows, without a second
/// set of counters beside the metrics.
pub fn samples(rendered: &str) -> Vec<Sample> {
    let mut histograms = std::collections::HashSet::new();
    let mut samples = Vec::new();
    for line in rendered.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            if let Some((name, "histogram" | "summary")) = rest.split_once(' ') {
                histograms.insert(name.to_owned());
            }
            continue;
        }
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        if let Some(sample) = parse_sample(line)
            && !histograms.iter().any(|h| sample.name.starts_with(h.as_str()))
        {
            samples.push(sample);
        }
    }
    samples
}

/// `name{label="value",…} 12` (label values with `\"`, `\\` and `\n` escapes).
fn parse_sample(line: &str) -> Option<Sample> {
    let name_end = line.find(['{', ' '])?;
    let name = line[..name_end].to_owned();
    let mut labels = std::collections::BTreeMap::new();
    let mut rest = &line[name_end..];
    if let Some(inner) = rest.strip_prefix('{') {
        let mut chars = inner.char_indices();
        let mut key = String::new();
        loop {
            let (at, c) = chars.next()?;
            match c {
                '}' => {
                    rest = &inner[at + 1..];
                    break;
                }
                ',' | ' ' => {}
                '=' => {
                    if chars.next()?.1 != '"' {
                        return None;
                    }
                    let mut value = String::new();
                    loop {
                        match chars.next()?.1 {
                            '"' => break,
                            '\\' => match chars.next()?.1 {
                                'n' => value.push('\n'),
                                other => value.push(other),
                            },
                            other => value.push(other),
                        }
                    }
                    labels.insert(std::mem::take(&mut key), value);
                }
                other => key.push(other),
            }
        }
    }
    let value = rest.split_whitespace().next()?.parse().ok()?;
    Some(Sample { name, labels, value })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_and_gauges_are_read_back_and_histograms_left_out() {
        let text = "# TYPE nano_workers gauge\nnano_workers 2\n\
            # TYPE nano_worker_restarts_total counter\n\
            nano_worker_restarts_total{library=\"a/lib \\\"x\\\".so\",reason=\"crashed\"} 3\n\
            # TYPE nano_execution_duration_seconds histogram\n\
            nano_execution_duration_seconds_bucket{node=\"n\",le=\"0.5\"} 1\n\
            nano_execution_duration_seconds_sum{node=\"n\"} 0.1\n\
            nano_execution_duration_seconds_count{node=\"n\"} 1\n";
        let samples = samples(text);
        assert_eq!(samples.len(), 2, "{samples:?}");
        assert_eq!(samples[0].name, "nano_workers");
        assert_eq!(samples[0].value, 2.0);
        assert_eq!(samples[1].labels["library"], "a/lib \"x\".so");
        assert_eq!(samples[1].labels["reason"], "crashed");
        assert_eq!(samples[1].value, 3.0);
    }
}
