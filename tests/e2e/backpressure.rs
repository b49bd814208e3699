//! Backpressure (issue 22): a client that reads slower than it sends is
//! slowed, not cut off; progress is coalesced for a client behind; only a
//! client that reads nothing for `client_stall_ms` is cut off (that one is
//! in `hardening`: `a_websocket_client_that_does_not_read_is_cut_off`).

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use crate::support::{Client, NodesDir, PATIENCE, Server, is_final, request};

/// Sends `count` test-echo requests of 32 KiB on one WebSocket as fast as
/// TCP lets it, while reading every frame with `pause` after each one;
/// returns how many final statuses each execution got, and the frames'
/// close code if the server closed the connection.
async fn pipeline(server: &Server, count: usize, pause: Duration) -> (Vec<u32>, Vec<String>, Option<u16>) {
    let (mut to_server, mut from_server) = Client::connect(server).await.into_inner().split();
    let value = "x".repeat(32 << 10);
    let sending = tokio::spawn(async move {
        for i in 0..count {
            let frame = request(
                &format!("p{i}"),
                json!(i),
                "test-echo",
                json!({"value": value}),
                json!({}),
            );
            if to_server.feed(Message::text(frame.to_string())).await.is_err() {
                return to_server;
            }
        }
        let _ = to_server.flush().await;
        to_server
    });
    let mut finals = vec![0u32; count];
    let mut errors = Vec::new();
    let mut done = 0;
    let mut close = None;
    while done < count {
        let frame = tokio::time::timeout(PATIENCE, from_server.next())
            .await
            .expect("frames keep coming");
        let text = match frame {
            Some(Ok(Message::Text(text))) => text,
            Some(Ok(Message::Close(frame))) => {
                close = frame.map(|f| u16::from(f.code));
                break;
            }
            Some(Ok(_)) => continue,
            Some(Err(_)) | None => break,
        };
        let frame: Value = serde_json::from_str(&text).unwrap();
        if frame["type"] != "node_status" || !is_final(&frame["payload"]["status"]) {
            continue;
        }
        let i = frame["payload"]["nodeId"].as_u64().unwrap() as usize;
        finals[i] += 1;
        let status = &frame["payload"]["status"];
        if status["type"] == "error" {
            errors.push(status["message"].as_str().unwrap_or_default().to_owned());
        }
        done += 1;
        if !pause.is_zero() {
            tokio::time::sleep(pause).await;
        }
    }
    let _ = sending.await;
    (finals, errors, close)
}

#[tokio::test]
async fn a_pipelining_client_reading_concurrently_gets_every_answer_and_no_1008() {
    let server = Server::start(&NodesDir::examples_and_test_plugin());
    server.reset_peak_rss();
    let before_kib = server.rss_kib();
    const COUNT: usize = 20_000;
    let (finals, errors, close) = pipeline(&server, COUNT, Duration::ZERO).await;
    assert_eq!(close, None, "the server closed the connection");
    let unanswered = finals.iter().filter(|n| **n == 0).count();
    let twice = finals.iter().filter(|n| **n > 1).count();
    assert_eq!((unanswered, twice), (0, 0), "every request is answered exactly once");
    // Answered means complete, or refused as busy (a full queue), never
    // dropped for being slow.
    assert!(
        errors.iter().all(|e| e.starts_with("the server is busy")),
        "{:?}",
        &errors[..errors.len().min(3)]
    );
    let grown_mib = server.peak_rss_kib().saturating_sub(before_kib) / 1024;
    eprintln!(
        "{COUNT} pipelined requests of 32 KiB: {} busy, peak RSS grew by {grown_mib} MiB",
        errors.len()
    );
    assert!(grown_mib < 128, "peak RSS grew by {grown_mib} MiB");
    assert!(!server.logs().contains("not reading its messages"));
}

#[tokio::test]
async fn a_slow_reader_gets_every_answer() {
    // About 300 messages a second against requests sent as fast as possible:
    // the server stops reading its requests and waits for it.
    let server = Server::builder(&NodesDir::examples_and_test_plugin())
        .config("max_outbox_bytes = 1048576")
        .start();
    const COUNT: usize = 3_000;
    let (finals, errors, close) = pipeline(&server, COUNT, Duration::from_micros(3_300)).await;
    assert_eq!(close, None, "the server closed the connection");
    assert!(finals.iter().all(|n| *n == 1), "every request is answered exactly once");
    assert!(errors.is_empty(), "{:?}", &errors[..errors.len().min(3)]);
    assert!(!server.logs().contains("not reading its messages"));
}

#[tokio::test]
async fn a_slow_event_stream_reader_gets_coalesced_progress_and_its_final_status() {
    let server = Server::builder(&NodesDir::examples_and_test_plugin())
        .config("max_outbox_bytes = 65536")
        .start();
    const COUNT: u64 = 20_000;
    let response = reqwest::Client::new()
        .post(server.http("/nodes/test-chatty/execute"))
        .header("accept", "text/event-stream")
        .body(format!(r#"{{"parameters": {{"count": {COUNT}, "size": 1024}}}}"#))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    // Read slowly: a pause per chunk the network hands over.
    let mut body = response.bytes_stream();
    let mut text = String::new();
    while let Some(chunk) = tokio::time::timeout(PATIENCE, body.next())
        .await
        .expect("events keep coming")
    {
        text.push_str(std::str::from_utf8(&chunk.unwrap()).unwrap());
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let events: Vec<&str> = text.lines().filter_map(|line| line.strip_prefix("event: ")).collect();
    let progress = events.iter().filter(|e| **e == "running").count();
    eprintln!("{COUNT} progress statuses reached a slow reader as {progress} events");
    assert_eq!(events.first(), Some(&"running"), "the first status goes first");
    assert_eq!(
        events.last(),
        Some(&"complete"),
        "{:?}",
        &events[events.len().saturating_sub(3)..]
    );
    assert_eq!(events.iter().filter(|e| **e == "complete").count(), 1);
    assert!(
        (2..=COUNT as usize).contains(&progress),
        "progress arrives, coalesced: {progress}"
    );
    assert!(
        progress < COUNT as usize,
        "a slow reader got every progress status: nothing was coalesced"
    );
    assert!(!server.logs().contains("not reading its events"));
}
