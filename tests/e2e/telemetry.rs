//! What the server tells log collectors and tracing backends: JSON log
//! lines, and OpenTelemetry spans exported over OTLP/HTTP to a collector
//! (a real HTTP server in the test, speaking OTLP's JSON encoding).

use std::{
    sync::{Arc, Condvar, Mutex},
    time::Duration,
};

use axum::{Router, body::Bytes, extract::State, routing::post};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::{NodesDir, Server, lib_name, plugin};

/// Execute `uid` over HTTP with `body`, optionally continuing `traceparent`.
async fn execute(server: &Server, uid: &str, body: Value, traceparent: Option<&str>) -> (StatusCode, Value) {
    let mut request = reqwest::Client::new()
        .post(server.http(&format!("/nodes/{uid}/execute")))
        .json(&body);
    if let Some(traceparent) = traceparent {
        request = request.header("traceparent", traceparent);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    (status, response.json().await.unwrap())
}

#[tokio::test]
async fn with_json_logs_every_line_is_an_object_and_an_executions_lines_carry_its_instance() {
    let server = Server::builder(&NodesDir::examples())
        .config("log_format = \"json\"")
        .rust_log("info,nano_server=debug")
        .start();
    let (status, _) = execute(
        &server,
        "complex-math",
        json!({"inputs": {"a": 1, "b": 0}, "parameters": {"operation": "divide"}, "instanceId": "json-logs-1"}),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    server.wait_for_log("json-logs-1");
    let logs = server.logs();
    let lines: Vec<Value> = logs
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}")))
        .collect();
    assert!(lines.len() > 5, "{logs}");
    for line in &lines {
        for key in ["timestamp", "level", "target", "message"] {
            assert!(line.get(key).is_some(), "no {key} in {line}");
        }
    }
    let failed = lines
        .iter()
        .find(|line| line["message"] == "execution failed")
        .unwrap_or_else(|| panic!("no `execution failed` line in {logs}"));
    assert_eq!(failed["span"]["instanceId"], "json-logs-1", "{failed}");
    assert_eq!(failed["span"]["node"], "complex-math", "{failed}");
}

/// A stand-in OpenTelemetry collector: accepts OTLP/JSON on `/v1/traces`.
struct Collector {
    port: u16,
    received: Arc<(Mutex<Vec<Value>>, Condvar)>,
    _thread: std::thread::JoinHandle<()>,
}

impl Collector {
    fn start() -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let received: Arc<(Mutex<Vec<Value>>, Condvar)> = Arc::default();
        let state = Arc::clone(&received);
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                let app = Router::new().route("/v1/traces", post(traces)).with_state(state);
                axum::serve(listener, app).await.unwrap();
            });
        });
        Self {
            port,
            received,
            _thread: thread,
        }
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Waits (up to 30 s) for an exported span matching `pred`.
    fn wait_span(&self, pred: impl Fn(&Value) -> bool) -> Value {
        let (spans, arrived) = &*self.received;
        let guard = spans.lock().unwrap();
        let (guard, _) = arrived
            .wait_timeout_while(guard, Duration::from_secs(30), |spans| !spans.iter().any(&pred))
            .unwrap();
        guard
            .iter()
            .find(|span| pred(span))
            .cloned()
            .unwrap_or_else(|| panic!("no such span among {:#?}", *guard))
    }
}

async fn traces(State(state): State<Arc<(Mutex<Vec<Value>>, Condvar)>>, body: Bytes) -> &'static str {
    let request: Value = serde_json::from_slice(&body).expect("OTLP/JSON");
    let mut spans = Vec::new();
    for resource in request["resourceSpans"].as_array().into_iter().flatten() {
        for scope in resource["scopeSpans"].as_array().into_iter().flatten() {
            for span in scope["spans"].as_array().into_iter().flatten() {
                let mut span = span.clone();
                span["resource"] = resource["resource"].clone();
                spans.push(span);
            }
        }
    }
    let (all, arrived) = &*state;
    all.lock().unwrap().extend(spans);
    arrived.notify_all();
    "{}"
}

/// The string value of attribute `key` of an OTLP/JSON span.
fn attribute(span: &Value, key: &str) -> Option<String> {
    span["attributes"]
        .as_array()?
        .iter()
        .find(|a| a["key"] == key)
        .map(|a| {
            let value = &a["value"];
            value["stringValue"]
                .as_str()
                .map(str::to_owned)
                .unwrap_or_else(|| value.to_string())
        })
}

fn start_traced(nodes: &NodesDir, endpoint: &str) -> Server {
    Server::builder(nodes)
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
        .env("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")
        .env("OTEL_BSP_SCHEDULE_DELAY", "100")
        .env("OTEL_SERVICE_NAME", "nano-test")
        .start()
}

#[tokio::test]
async fn an_execution_is_a_span_continuing_the_callers_trace() {
    let collector = Collector::start();
    let server = start_traced(&NodesDir::examples(), &collector.endpoint());
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let parent_id = "00f067aa0ba902b7";
    let (status, _) = execute(
        &server,
        "simple-text",
        json!({"inputs": {"text": ["hi"]}, "instanceId": "traced-1", "nodeId": 7}),
        Some(&format!("00-{trace_id}-{parent_id}-01")),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let span = collector
        .wait_span(|span| span["name"] == "execution" && attribute(span, "instanceId").as_deref() == Some("traced-1"));
    assert_eq!(attribute(&span, "node").as_deref(), Some("simple-text"), "{span}");
    assert_eq!(attribute(&span, "nodeId").as_deref(), Some("7"), "{span}");
    assert_eq!(attribute(&span, "transport").as_deref(), Some("http"), "{span}");
    assert_eq!(attribute(&span, "outcome").as_deref(), Some("complete"), "{span}");
    assert!(attribute(&span, "queue_wait_ms").is_some(), "{span}");
    assert!(attribute(&span, "duration_ms").is_some(), "{span}");
    assert_eq!(
        span["traceId"].as_str().map(str::to_lowercase).as_deref(),
        Some(trace_id),
        "{span}"
    );
    assert_eq!(
        span["parentSpanId"].as_str().map(str::to_lowercase).as_deref(),
        Some(parent_id),
        "{span}"
    );
    let service = span["resource"]["attributes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["key"] == "service.name")
        .map(|a| a["value"]["stringValue"].clone());
    assert_eq!(service, Some(json!("nano-test")));
    // Library loads are spans too.
    collector.wait_span(|span| {
        span["name"] == "library_load"
            && attribute(span, "library").is_some_and(|l| l.ends_with("libsimple_text_node.so"))
    });
}

#[tokio::test]
async fn a_hot_swap_is_a_library_swap_span_inside_its_reconcile_pass() {
    let collector = Collector::start();
    let swap = format!("swap/{}", lib_name("swap"));
    let nodes = NodesDir::examples().with_file(&swap, &std::fs::read(plugin("swap_v1")).unwrap());
    let server = Server::builder(&nodes)
        .config("watch_debounce_time = 20")
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", &collector.endpoint())
        .env("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")
        .env("OTEL_BSP_SCHEDULE_DELAY", "100")
        .start();
    let is_swap_library = |span: &Value| attribute(span, "library").is_some_and(|l| l.ends_with(&swap));
    collector.wait_span(|span| span["name"] == "library_load" && is_swap_library(span));
    std::fs::write(nodes.path().join(&swap), std::fs::read(plugin("swap_v2")).unwrap()).unwrap();
    let span = collector.wait_span(|span| span["name"] == "library_swap" && is_swap_library(span));
    // Inside the reconcile pass that found the change, and timed.
    let parent = span["parentSpanId"].as_str().unwrap_or_default().to_owned();
    assert!(!parent.is_empty(), "{span}");
    let pass = collector.wait_span(|s| s["spanId"].as_str() == Some(parent.as_str()));
    assert_eq!(pass["name"], "reconcile", "{pass}");
    assert_eq!(pass["traceId"], span["traceId"]);
    let nanos = |s: &Value, key: &str| s[key].as_str().and_then(|n| n.parse::<u64>().ok()).unwrap();
    assert!(
        nanos(&span, "endTimeUnixNano") > nanos(&span, "startTimeUnixNano"),
        "{span}"
    );
    drop(server);
}

#[tokio::test]
async fn with_the_collector_down_the_server_serves_as_usual() {
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let server = start_traced(&NodesDir::examples(), &format!("http://127.0.0.1:{closed}"));
    for i in 0..20 {
        let (status, body) = execute(
            &server,
            "complex-math",
            json!({"inputs": {"a": i, "b": 2}, "parameters": {"operation": "multiply"}}),
            None,
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["outputs"]["result"], json!([i * 2]));
    }
    server.wait_for_log("cannot export OpenTelemetry traces");
    // Rate-limited: one warning, however many exports failed.
    assert_eq!(server.logs().matches("cannot export OpenTelemetry traces").count(), 1);
}

#[tokio::test]
async fn the_sdks_log_level_variables_apply_when_rust_log_is_unset() {
    let nodes = NodesDir::examples();
    let config = tempfile::tempdir().unwrap();
    std::fs::write(config.path().join("config.toml"), "server_uid = \"levels\"\n").unwrap();
    let start = |env: &[(&str, &str)]| {
        let mut command = crate::support::server_command(&config.path().join("config.toml"));
        command
            .env_remove("RUST_LOG")
            .args(["--port", "0", "--nodes-path"])
            .arg(nodes.path());
        for (name, value) in env {
            command.env(name, value);
        }
        Server::from_command(command)
    };
    // `LOG_LEVEL=DEBUG`, in the SDK's spelling: debug lines appear.
    let server = start(&[("LOG_LEVEL", "DEBUG")]);
    let (status, _) = execute(
        &server,
        "complex-math",
        json!({"inputs": {"a": 1, "b": 0}, "parameters": {"operation": "divide"}}),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    server.wait_for_log("execution failed");
    drop(server);
    // NANOSDK_LOG_LEVEL comes first: WARNING hides the info lines.
    let mut server = start(&[("NANOSDK_LOG_LEVEL", "WARNING"), ("LOG_LEVEL", "DEBUG")]);
    let (status, _) = execute(&server, "simple-text", json!({"inputs": {"text": ["x"]}}), None).await;
    assert_eq!(status, StatusCode::OK);
    server.terminate();
    assert_eq!(server.wait_exit(), 0);
    let logs = server.logs();
    assert!(!logs.contains("INFO") && !logs.contains("DEBUG"), "{logs}");
}

#[tokio::test]
async fn with_json_logs_what_a_worker_writes_to_stderr_is_a_json_line_naming_its_library() {
    // test_plugin's shutdown hook writes to stderr; in process isolation
    // that is the worker's stderr, which the server forwards.
    let nodes = NodesDir::examples().with_plugin("test", "test_plugin");
    let mut server = Server::builder(&nodes)
        .config("log_format = \"json\"")
        .isolated()
        .start();
    server.terminate();
    assert_eq!(server.wait_exit(), 0);
    let logs = server.logs();
    let lines: Vec<Value> = logs
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}")))
        .collect();
    let forwarded = lines
        .iter()
        .find(|line| line["message"] == "test-echo: shutdown hook ran")
        .unwrap_or_else(|| panic!("the worker's line is not in {logs}"));
    assert_eq!(forwarded["library"], "test/libtest_plugin.so", "{forwarded}");
    assert_eq!(forwarded["stream"], "stderr", "{forwarded}");
}
