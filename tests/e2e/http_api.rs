//! The plain HTTP API: every route, every error code, streaming, stop across
//! transports, metrics, readiness during shutdown, and the OpenAPI document.

use futures_util::StreamExt;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::{Client, NodesDir, PATIENCE, Server, eventually, final_status};

async fn post(server: &Server, path: &str, body: &str) -> (StatusCode, Value) {
    let response = reqwest::Client::new()
        .post(server.http(path))
        .header("content-type", "application/json")
        .body(body.to_owned())
        .send()
        .await
        .unwrap();
    let status = response.status();
    (status, response.json().await.unwrap())
}

async fn get(server: &Server, path: &str) -> (StatusCode, Value) {
    let response = reqwest::get(server.http(path)).await.unwrap();
    (response.status(), response.json().await.unwrap())
}

/// Stops `instance` over HTTP until an execution of it was aborted (it may
/// not have been admitted yet at the first call).
async fn stop_until_aborted(server: &Server, instance: &str) {
    eventually(&format!("an execution of {instance} to abort"), || async {
        let (status, body) = post(server, &format!("/instances/{instance}/stop"), "").await;
        assert_eq!(status, StatusCode::OK);
        body["aborted"].as_u64().unwrap() > 0
    })
    .await;
}

/// Reads server-sent events from a streaming response: (event, data).
struct Events {
    stream: std::pin::Pin<Box<dyn futures_util::Stream<Item = reqwest::Result<bytes::Bytes>> + Send>>,
    buffer: String,
}

impl Events {
    async fn open(server: &Server, uid: &str, body: Value) -> Self {
        let response = reqwest::Client::new()
            .post(server.http(&format!("/nodes/{uid}/execute")))
            .header("accept", "text/event-stream")
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert!(
            response.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/event-stream")
        );
        Self {
            stream: Box::pin(response.bytes_stream()),
            buffer: String::new(),
        }
    }

    /// A streamed run of `progress-steps` (see `Client::start_steps`).
    async fn steps(server: &Server, instance: &str, steps: u32, delay_ms: u32) -> Self {
        let body = json!({"parameters": {"steps": steps, "delay_ms": delay_ms}, "instanceId": instance});
        Self::open(server, "progress-steps", body).await
    }

    /// Reads up to the first progress report: the run is under way.
    async fn until_progress(&mut self) {
        while self.next().await.unwrap().1["status"].get("progress").is_none() {}
    }

    /// The next event, or None when the stream ended.
    async fn next(&mut self) -> Option<(String, Value)> {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let mut event = String::new();
                let mut data = String::new();
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("event: ") {
                        event = v.to_owned();
                    } else if let Some(v) = line.strip_prefix("data: ") {
                        data.push_str(v);
                    }
                }
                if data.is_empty() {
                    continue; // keep-alive comment
                }
                return Some((event, serde_json::from_str(&data).unwrap()));
            }
            let chunk = tokio::time::timeout(PATIENCE, self.stream.next())
                .await
                .expect("an event in time")?;
            self.buffer.push_str(std::str::from_utf8(&chunk.unwrap()).unwrap());
        }
    }
}

#[tokio::test]
async fn nodes_are_listed_and_fetched_by_uid() {
    let server = Server::start(&NodesDir::examples());
    let (status, list) = get(&server, "/nodes").await;
    assert_eq!(status, StatusCode::OK);
    let mut uids: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["uid"].as_str().unwrap())
        .collect();
    uids.sort();
    assert_eq!(uids, ["complex-math", "progress-steps", "simple-text"]);

    let (status, one) = get(&server, "/nodes/simple-text").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(one["uid"], "simple-text");
    assert_eq!(one["parameters"][0]["name"], "uppercase");

    let (status, error) = get(&server, "/nodes/no-such-node").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(error["status"], "error");
    assert!(error["message"].as_str().unwrap().contains("no-such-node"));
}

#[tokio::test]
async fn execute_returns_outputs_with_either_parameter_shape() {
    let server = Server::start(&NodesDir::examples());
    let (status, body) = post(
        &server,
        "/nodes/simple-text/execute",
        r#"{"inputs": {"text": ["hello"]}, "parameters": {"uppercase": true}, "instanceId": "my-run", "nodeId": 4}"#,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["status"], "complete");
    assert_eq!(body["outputs"], json!({"text": ["HELLO"]}));
    assert_eq!(body["instanceId"], "my-run");
    assert!(body["durationMs"].as_f64().unwrap() >= 0.0);

    let (status, body) = post(
        &server,
        "/nodes/complex-math/execute",
        r#"{"inputs": {"a": 2, "b": 3}, "parameters": [{"name": "operation", "value": "multiply"}]}"#,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["outputs"]["result"], json!([6]));
    assert!(
        body["instanceId"].as_str().unwrap().starts_with("http-"),
        "generated: {body}"
    );
}

#[tokio::test]
async fn every_failure_has_its_own_status_code() {
    let nodes = NodesDir::examples().with_plugin("test", "test_plugin");
    let server = Server::builder(&nodes)
        .config("max_request_bytes = 4096\nexecution_timeout_ms = 300")
        .start();
    let cases: &[(&str, &str, StatusCode, &str)] = &[
        (
            "/nodes/simple-text/execute",
            "{not json",
            StatusCode::BAD_REQUEST,
            "not valid JSON",
        ),
        (
            "/nodes/simple-text/execute",
            "[1]",
            StatusCode::BAD_REQUEST,
            "JSON object",
        ),
        (
            "/nodes/simple-text/execute",
            r#"{"inputs": "x"}"#,
            StatusCode::BAD_REQUEST,
            "`inputs`",
        ),
        (
            "/nodes/simple-text/execute",
            r#"{"parameters": 5}"#,
            StatusCode::BAD_REQUEST,
            "`parameters`",
        ),
        (
            "/nodes/simple-text/execute",
            r#"{"nodeId": [1]}"#,
            StatusCode::BAD_REQUEST,
            "`nodeId`",
        ),
        (
            "/nodes/simple-text/execute",
            r#"{"inputz": {}}"#,
            StatusCode::BAD_REQUEST,
            "unknown field `inputz`",
        ),
        (
            "/nodes/no-such-node/execute",
            "{}",
            StatusCode::NOT_FOUND,
            "no-such-node",
        ),
        (
            "/nodes/complex-math/execute",
            r#"{"inputs": {"a": 1, "b": 0}, "parameters": {"operation": "divide"}}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            "division by zero",
        ),
        (
            "/nodes/test-panic/execute",
            "{}",
            StatusCode::UNPROCESSABLE_ENTITY,
            "node panicked",
        ),
        (
            "/nodes/test-stubborn/execute",
            r#"{"parameters": {"ms": 3000}}"#,
            StatusCode::GATEWAY_TIMEOUT,
            "timed out after 300 ms",
        ),
    ];
    for (path, body, expected, needle) in cases {
        let (status, answer) = post(&server, path, body).await;
        assert_eq!(status, *expected, "{path} {body}: {answer}");
        assert_eq!(answer["status"], "error");
        assert!(
            answer["message"].as_str().unwrap().contains(needle),
            "{path} {body}: {answer}"
        );
    }

    let oversized = format!(r#"{{"inputs": {{"text": "{}"}}}}"#, "x".repeat(5000));
    let (status, answer) = post(&server, "/nodes/simple-text/execute", &oversized).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(answer["message"].as_str().unwrap().contains("max_request_bytes"));

    let (status, answer) = get(&server, "/no/such/route").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(answer["message"].as_str().unwrap().contains("no route"));

    // None of that hurt the server.
    let (status, _) = post(&server, "/nodes/simple-text/execute", r#"{"inputs": {"text": "ok"}}"#).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn an_aborted_execution_answers_409() {
    let server = Server::start(&NodesDir::examples());
    let call = post(
        &server,
        "/nodes/progress-steps/execute",
        r#"{"parameters": {"steps": 500, "delay_ms": 20}, "instanceId": "to-stop"}"#,
    );
    let stop = stop_until_aborted(&server, "to-stop");
    let ((status, body), ()) = tokio::join!(call, stop);
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(body["message"], "Execution aborted");
}

#[tokio::test]
async fn progress_streams_as_server_sent_events_in_order() {
    let server = Server::start(&NodesDir::examples());
    let mut events = Events::steps(&server, "sse", 3, 10).await;
    let mut seen = Vec::new();
    while let Some(event) = events.next().await {
        seen.push(event);
    }
    assert_eq!(seen.len(), 5, "{seen:?}");
    assert_eq!(seen[0].0, "running");
    assert_eq!(seen[0].1["status"]["message"], "Starting execution...");
    assert_eq!(seen[0].1["instanceId"], "sse");
    for (step, (event, data)) in (1..=3).zip(&seen[1..4]) {
        assert_eq!(event, "running");
        assert_eq!(data["status"]["progress"], json!({"step": step, "total": 3}));
    }
    assert_eq!(seen[4].0, "complete");
    assert_eq!(seen[4].1["status"]["outputs"], json!({"result": ["done"]}));
}

#[tokio::test]
async fn http_stop_aborts_a_websocket_execution() {
    let server = Server::start(&NodesDir::examples());
    let mut client = Client::connect(&server).await;
    client.start_steps("ws-run", json!(1), 500, 20).await;
    client.until_progress("ws-run", &json!(1)).await;
    let (status, body) = post(&server, "/instances/ws-run/stop", "").await;
    assert_eq!((status, body), (StatusCode::OK, json!({"aborted": 1})));
    let statuses = client.statuses_until_final("ws-run", &json!(1)).await;
    assert_eq!(final_status(&statuses)["message"], "Execution aborted");
}

#[tokio::test]
async fn websocket_stop_aborts_an_http_execution() {
    let server = Server::start(&NodesDir::examples());
    let mut events = Events::steps(&server, "http-run", 500, 20).await;
    events.until_progress().await;
    let mut client = Client::connect(&server).await;
    client
        .send(&json!({"type": "stop_workflow_instance", "instanceId": "http-run"}))
        .await;
    let ack = client.recv_where(|f| f["type"] == "ack_stop_workflow").await;
    assert!(ack["payload"]["message"].as_str().unwrap().contains("Aborted 1"));
    let mut last = None;
    while let Some(event) = events.next().await {
        last = Some(event);
    }
    let (event, data) = last.unwrap();
    assert_eq!(event, "error");
    assert_eq!(data["status"]["message"], "Execution aborted");
}

// Multi-threaded: `wait_for_log` blocks its thread, and the client's
// connection task must run meanwhile to close the socket.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_leaves_the_stream_aborts_its_execution() {
    let server = Server::start(&NodesDir::examples());
    let mut events = Events::steps(&server, "leaver", 500, 20).await;
    events.until_progress().await;
    drop(events);
    server.wait_for_log("HTTP client went away; execution aborted");
    // The execution really ended: its slot and its outcome are accounted.
    let aborted = r#"nano_executions_total{node="progress-steps",outcome="aborted"}"#;
    eventually("the execution to end as aborted", || async {
        server.metric(aborted).await >= 1.0
    })
    .await;
    let (_, body) = post(&server, "/instances/leaver/stop", "").await;
    assert_eq!(body["aborted"], 0, "nothing of it is left running");
}

#[tokio::test]
async fn metrics_count_exactly_the_executions_made() {
    let server = Server::start(&NodesDir::examples());
    let complete = r#"nano_executions_total{node="simple-text",outcome="complete"}"#;
    let errors = r#"nano_executions_total{node="complex-math",outcome="error"}"#;
    let before = (server.metric(complete).await, server.metric(errors).await);
    for _ in 0..3 {
        post(&server, "/nodes/simple-text/execute", r#"{"inputs": {"text": "x"}}"#).await;
    }
    let mut client = Client::connect(&server).await;
    for _ in 0..2 {
        client.execute("simple-text", json!({"text": "y"}), json!({})).await;
    }
    client
        .execute("complex-math", json!({"a": 1, "b": 0}), json!({"operation": "divide"}))
        .await;
    assert_eq!(server.metric(complete).await - before.0, 5.0);
    assert_eq!(server.metric(errors).await - before.1, 1.0);
    assert_eq!(server.metric("nano_nodes_loaded").await, 3.0);
    assert_eq!(server.metric("nano_libraries_loaded").await, 3.0);
    assert_eq!(server.metric("nano_websocket_connections").await, 1.0);
    assert_eq!(server.metric("nano_executions_in_flight").await, 0.0);
    assert!(
        server
            .metric(r#"nano_http_requests_total{route="/nodes/{uid}/execute",status="200"}"#)
            .await
            >= 3.0
    );
    assert!(
        server
            .metric(r#"nano_execution_duration_seconds_count{node="simple-text"}"#)
            .await
            >= 5.0
    );
}

#[tokio::test]
async fn health_and_readiness_and_the_flip_during_shutdown() {
    let mut server = Server::start(&NodesDir::examples());
    let (status, body) = get(&server, "/healthz").await;
    assert_eq!((status, body), (StatusCode::OK, json!({"status": "ok"})));
    let (status, body) = get(&server, "/readyz").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["nodes"], 3);

    // An execution in flight keeps the server draining after the signal.
    let mut client = Client::connect(&server).await;
    client.start_steps("drain", json!(1), 20, 50).await;
    client.until_progress("drain", &json!(1)).await;
    server.terminate();
    eventually("readyz to flip", || async {
        get(&server, "/readyz").await.0 == StatusCode::SERVICE_UNAVAILABLE
    })
    .await;
    assert_eq!(get(&server, "/readyz").await.1["reason"], "shutting down");
    assert_eq!(get(&server, "/healthz").await.0, StatusCode::OK);
    let (status, _) = post(&server, "/nodes/simple-text/execute", r#"{"inputs": {"text": "late"}}"#).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    // The accepted execution still completes, then the server exits cleanly.
    let statuses = client.statuses_until_final("drain", &json!(1)).await;
    assert_eq!(final_status(&statuses)["type"], "complete");
    drop(client);
    assert_eq!(server.wait_exit(), 0);
}

#[tokio::test]
async fn readiness_needs_a_node() {
    let server = Server::start(&NodesDir::empty());
    let (status, body) = get(&server, "/readyz").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["reason"], "no node is served");
}

#[tokio::test]
async fn the_openapi_document_covers_every_route() {
    let server = Server::start(&NodesDir::examples());
    let (status, doc) = get(&server, "/openapi.json").await;
    assert_eq!(status, StatusCode::OK);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let paths = doc["paths"].as_object().unwrap();
    // Every route of the server (the README's list) is documented…
    for (method, path) in [
        ("get", "/"),
        ("get", "/nodes"),
        ("get", "/nodes/{uid}"),
        ("post", "/nodes/{uid}/execute"),
        ("post", "/instances/{instance_id}/stop"),
        ("get", "/healthz"),
        ("get", "/readyz"),
        ("get", "/metrics"),
        ("get", "/openapi.json"),
        ("get", "/events/definitions"),
        ("get", "/libraries"),
        ("get", "/server"),
        ("post", "/assets"),
        ("get", "/assets/{hash}/presigned"),
    ] {
        assert!(
            paths.get(path).and_then(|p| p.get(method)).is_some(),
            "{method} {path} documented"
        );
    }
    assert_eq!(
        paths.len(),
        14,
        "no undocumented extras: {:?}",
        paths.keys().collect::<Vec<_>>()
    );
    // …and every documented operation is served (not the router's 404).
    let http = reqwest::Client::new();
    for (path, operations) in paths {
        let concrete = path
            .replace("{uid}", "simple-text")
            .replace("{instance_id}", "nobody")
            .replace("{hash}", "sha256:0");
        for method in operations.as_object().unwrap().keys() {
            let method = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let response = http
                .request(method.clone(), server.http(&concrete))
                .send()
                .await
                .unwrap();
            let status = response.status();
            // An event stream does not end: its answer is enough.
            if response
                .headers()
                .get("content-type")
                .is_some_and(|v| v == "text/event-stream")
            {
                assert_eq!(status, StatusCode::OK, "{method} {concrete}");
                continue;
            }
            let body = response.text().await.unwrap();
            assert!(
                !body.contains("no route for"),
                "{method} {concrete} is served: {status} {body}"
            );
        }
    }
}

#[tokio::test]
async fn an_execution_can_be_followed_through_the_logs() {
    let server = Server::builder(&NodesDir::examples())
        .rust_log("info,nano_server=debug,tower_http=debug")
        .start();
    let (status, _) = post(
        &server,
        "/nodes/complex-math/execute",
        r#"{"inputs": {"a": 1, "b": 0}, "parameters": {"operation": "divide"}, "instanceId": "follow-me-42"}"#,
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let line = server.wait_for_log("execution failed");
    assert!(line.contains("follow-me-42"), "{line}");
    let line = server.wait_for_log("response");
    assert!(line.contains("instance=follow-me-42"), "{line}");
}
