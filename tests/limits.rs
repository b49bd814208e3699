//! Limits and access: the bearer token, the bounded wait queue, the
//! WebSocket message size and connection limits. Over a limit, the caller is
//! refused clearly and the server keeps serving everyone else.

mod support;

use serde_json::json;
use support::{Client, NodesDir, Server, final_status, request};
use tokio_tungstenite::tungstenite::{Message, protocol::frame::coding::CloseCode};

#[tokio::test]
async fn the_token_guards_everything_but_the_health_probes() {
    let nodes = NodesDir::examples();
    let server = Server::start_with(&nodes, "auth_token = \"s3cret-token\"");
    let http = reqwest::Client::new();
    let execute = |token: Option<&str>| {
        let mut call = http
            .post(server.http("/nodes/simple-text/execute"))
            .body(r#"{"inputs": {"text": "x"}}"#);
        if let Some(token) = token {
            call = call.header("authorization", format!("Bearer {token}"));
        }
        call.send()
    };
    for token in [None, Some("wrong"), Some("s3cret-toke"), Some("s3cret-token-and-more")] {
        let response = execute(token).await.unwrap();
        assert_eq!(response.status(), 401, "{token:?}");
        assert_eq!(response.headers()["www-authenticate"], "Bearer");
    }
    for path in ["/", "/nodes", "/metrics", "/openapi.json", "/nodes/simple-text"] {
        assert_eq!(
            http.get(server.http(path)).send().await.unwrap().status(),
            401,
            "{path}"
        );
    }
    for path in ["/healthz", "/readyz"] {
        assert_eq!(
            http.get(server.http(path)).send().await.unwrap().status(),
            200,
            "{path}"
        );
    }
    assert_eq!(Client::try_connect(&server, &[]).await.err(), Some(401));
    assert_eq!(
        Client::try_connect(&server, &[("authorization", "Bearer nope")])
            .await
            .err(),
        Some(401)
    );

    // With the token everything works, and nothing ran before.
    let response = execute(Some("s3cret-token")).await.unwrap();
    assert_eq!(response.status(), 200);
    let metrics = http
        .get(server.http("/metrics"))
        .bearer_auth("s3cret-token")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(r#"nano_executions_total{node="simple-text",outcome="complete"} 1"#),
        "exactly the authorised execution ran:\n{metrics}"
    );
    let mut client = Client::try_connect(&server, &[("authorization", "Bearer s3cret-token")])
        .await
        .expect("connects with the token");
    let statuses = client.execute("simple-text", json!({"text": "ok"}), json!({})).await;
    assert_eq!(final_status(&statuses)["type"], "complete");
}

#[tokio::test]
async fn a_full_wait_queue_refuses_new_executions_at_once() {
    let nodes = NodesDir::examples().with_plugin("test", "test_plugin");
    let server = Server::start_with(&nodes, "max_concurrent_executions = 1\nmax_queued_executions = 1");
    let mut client = Client::connect(&server).await;
    let slow = |instance: &str| request(instance, json!(1), "test-stubborn", json!({}), json!({"ms": 1500}));
    client.send(&slow("running")).await;
    assert_eq!(client.next_status("running", &json!(1)).await["type"], "running");
    client.send(&slow("waiting")).await;
    client.send(&slow("refused")).await;
    let refused = client.next_status("refused", &json!(1)).await;
    assert_eq!(refused["type"], "error");
    assert!(refused["message"].as_str().unwrap().contains("busy"), "{refused}");

    let response = reqwest::Client::new()
        .post(server.http("/nodes/simple-text/execute"))
        .body(r#"{"inputs": {"text": "x"}}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 503);

    // The admitted ones finish; then there is room again.
    for instance in ["running", "waiting"] {
        let statuses = client.statuses_until_final(instance, &json!(1)).await;
        assert_eq!(final_status(&statuses)["type"], "complete", "{instance}");
    }
    let statuses = client.execute("simple-text", json!({"text": "room"}), json!({})).await;
    assert_eq!(final_status(&statuses)["type"], "complete");
}

#[tokio::test]
async fn an_oversized_websocket_message_closes_with_1009() {
    let server = Server::start_with(&NodesDir::examples(), "max_message_bytes = 4096");
    let mut client = Client::connect(&server).await;
    client
        .send_text(&format!(r#"{{"type": "{}"}}"#, "x".repeat(8000)))
        .await;
    loop {
        match client.next_message().await {
            Some(Message::Close(Some(frame))) => {
                assert_eq!(frame.code, CloseCode::Size);
                break;
            }
            Some(Message::Close(None)) | None => panic!("closed without code 1009"),
            Some(_) => continue,
        }
    }
    server.wait_for_log("message too big; closing with 1009");
    // Everyone else is fine.
    let mut other = Client::connect(&server).await;
    let statuses = other.execute("simple-text", json!({"text": "fine"}), json!({})).await;
    assert_eq!(final_status(&statuses)["type"], "complete");
}

#[tokio::test]
async fn websocket_connections_beyond_the_limit_are_refused() {
    let server = Server::start_with(&NodesDir::examples(), "max_connections = 2");
    let first = Client::connect(&server).await;
    let mut second = Client::connect(&server).await;
    assert_eq!(Client::try_connect(&server, &[]).await.err(), Some(503));
    server.wait_for_log("refused a WebSocket: too many open");
    let statuses = second.execute("simple-text", json!({"text": "still"}), json!({})).await;
    assert_eq!(final_status(&statuses)["type"], "complete");
    // A place frees up when a client leaves.
    drop(first);
    support::eventually("a freed connection slot", || async {
        Client::try_connect(&server, &[]).await.is_ok()
    })
    .await;
}

/// `POST /nodes/simple-text/execute` with `body`: the status code and the JSON answer.
async fn execute_over_http(server: &Server, body: String) -> (u16, serde_json::Value) {
    let response = reqwest::Client::new()
        .post(server.http("/nodes/simple-text/execute"))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

#[tokio::test]
async fn deep_nesting_and_large_inputs_neither_crash_nor_stall_the_server() {
    let server = Server::start(&NodesDir::examples());
    let deep = format!("{}1{}", "[".repeat(100_000), "]".repeat(100_000));

    // HTTP: the caller's mistake, so 400 saying why, not a crash or a 500.
    let (code, body) = execute_over_http(&server, format!(r#"{{"inputs": {{"text": {deep}}}}}"#)).await;
    assert_eq!(code, 400);
    assert!(
        body["message"].as_str().unwrap().contains("recursion limit exceeded"),
        "{body}"
    );

    // WebSocket: each request drowned in nesting is refused before anything
    // runs (its only status is the error saying why); the connection carries on.
    let mut client = Client::connect(&server).await;
    for n in 0..20 {
        client
            .send_text(&format!(
                r#"{{"type": "request_execution", "instanceId": "deep-{n}", "payload": {{"nodeId": 1, "nodeUid": "simple-text", "inputs": {{"text": {deep}}}}}}}"#
            ))
            .await;
    }
    for n in 0..20 {
        let statuses = client.statuses_until_final(&format!("deep-{n}"), &json!(1)).await;
        assert_eq!(statuses.len(), 1, "no `running` before the error: {statuses:?}");
        let last = final_status(&statuses);
        assert_eq!(last["type"], "error");
        assert!(
            last["message"].as_str().unwrap().contains("recursion limit exceeded"),
            "{last}"
        );
    }
    // A number beyond f64's range is valid JSON (found by the fuzzer): the
    // caller gets an error saying so, over both transports.
    client
        .send_text(r#"{"type": "request_execution", "instanceId": "huge", "payload": {"nodeId": 1, "nodeUid": "simple-text", "inputs": {"text": 23e33333}}}"#)
        .await;
    let statuses = client.statuses_until_final("huge", &json!(1)).await;
    assert_eq!(statuses.len(), 1, "no `running` before the error: {statuses:?}");
    let last = final_status(&statuses);
    assert_eq!(last["type"], "error");
    assert!(
        last["message"].as_str().unwrap().contains("number out of range"),
        "{last}"
    );
    let (code, body) = execute_over_http(&server, r#"{"inputs": {"text": 23e33333}}"#.to_owned()).await;
    assert_eq!(code, 400);
    assert!(
        body["message"].as_str().unwrap().contains("number out of range"),
        "{body}"
    );

    // A large but legal input (8 MiB, under the 16 MiB message limit) is
    // processed in full.
    let big: String = "abc".repeat(3 << 20).chars().take(8 << 20).collect();
    let statuses = client
        .execute("simple-text", json!({"text": big}), json!({"uppercase": true}))
        .await;
    let text = final_status(&statuses)["outputs"]["text"][0]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(text.len(), 8 << 20);
    assert!(text.starts_with("ABCABC"), "{}", &text[..40]);
    assert!(text.bytes().all(|b| b.is_ascii_uppercase()));
}
