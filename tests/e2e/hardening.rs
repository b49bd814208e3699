//! Overloaded and hostile clients: the server bounds what it holds for
//! them, cuts off the ones that do not play along, and keeps serving
//! everyone else. Scenarios are the hardening issue's, scaled down.

use std::{
    collections::HashMap,
    io::{Read, Write},
    net::TcpStream,
    os::unix::fs::PermissionsExt,
    time::{Duration, Instant},
};

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::{Message, protocol::frame::coding::CloseCode};

use crate::support::{Client, NodesDir, Server, eventually, final_status, lib_name, plugin, request, uids};

/// What a raw reader saw of a connection's final statuses, by instance.
type Finals = HashMap<String, Vec<Value>>;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_is_refused_at_once_and_memory_stays_bounded() {
    let server = Server::builder(&NodesDir::examples_and_test_plugin())
        .config("max_concurrent_executions = 2\nmax_queued_executions = 16")
        .start();
    // Warm up, then measure from here.
    let mut polite = Client::connect(&server).await;
    let statuses = polite.execute("simple-text", json!({"text": "warm"}), json!({})).await;
    assert_eq!(final_status(&statuses)["type"], "complete");
    // Growth from here: the peak of start-up (library copies on their way
    // to workers) is not this test's business.
    server.reset_peak_rss();
    let before_kib = server.rss_kib();

    // 32 KiB requests to a 10 ms node, with small answers: what piles up
    // is the requests.
    const FLOOD: usize = 4000;
    let padding = "a".repeat(32 << 10);
    let (mut write, mut read) = Client::connect(&server).await.into_inner().split();
    let reader = tokio::spawn(async move {
        let mut finals = Finals::new();
        let mut seen = 0;
        while seen < FLOOD {
            let message = read.next().await;
            // The server's keep-alive ping (every 25 s) comes when the flood
            // runs long on a loaded machine; tungstenite answers it.
            if let Some(Ok(Message::Ping(_) | Message::Pong(_))) = message {
                continue;
            }
            let Some(Ok(Message::Text(text))) = message else {
                panic!("the flooding client's connection stays open: {message:?}");
            };
            // Read as a client that keeps up would: without parsing 32 KiB answers.
            let text = text.as_str();
            let instance = text
                .split(r#""instanceId":""#)
                .nth(1)
                .and_then(|rest| rest.split('"').next())
                .unwrap()
                .to_owned();
            let kind = if text.contains(r#""type":"complete""#) {
                json!({"type": "complete"})
            } else if text.contains(r#""type":"error""#) {
                let frame: Value = serde_json::from_str(text).unwrap();
                frame["payload"]["status"].clone()
            } else {
                continue;
            };
            finals.entry(instance).or_default().push(kind);
            seen += 1;
        }
        finals
    });
    for i in 0..FLOOD {
        let inputs = json!({"padding": padding});
        let frame = request(
            &format!("flood-{i}"),
            json!(1),
            "test-stubborn",
            inputs,
            json!({"ms": 10}),
        );
        write.send(Message::Text(frame.to_string().into())).await.unwrap();
    }
    // Meanwhile the server answers another client at once: a complete or a
    // clear busy for each execution, never silence.
    for n in 0..10 {
        let statuses = polite
            .execute("simple-text", json!({"text": format!("polite {n}")}), json!({}))
            .await;
        let last = final_status(&statuses);
        assert!(
            last["type"] == "complete" || last["message"].as_str().unwrap().contains("busy"),
            "{last}"
        );
    }
    let finals = tokio::time::timeout(crate::support::PATIENCE, reader)
        .await
        .unwrap()
        .unwrap();

    // Every request got exactly one final status: complete, or refused as busy.
    assert_eq!(finals.len(), FLOOD);
    let mut complete = 0;
    let mut busy = 0;
    for (instance, statuses) in &finals {
        assert_eq!(statuses.len(), 1, "{instance}: {statuses:?}");
        match statuses[0]["type"].as_str() {
            Some("complete") => complete += 1,
            _ if statuses[0]["message"].as_str().unwrap().contains("busy") => busy += 1,
            _ => panic!("{instance}: {:?}", statuses[0]),
        }
    }
    assert!(busy > 0, "a flood beyond max_concurrent + max_queued is refused");
    assert!(complete > 0);
    // 4000 × 32 KiB = 125 MiB offered; the server held at most 18 of them.
    let grown_mib = server.peak_rss_kib().saturating_sub(before_kib) / 1024;
    assert!(grown_mib < 48, "peak RSS grew by {grown_mib} MiB");
    assert_eq!(server.metric("nano_executions_queued").await, 0.0);
    // And afterwards everything is served again.
    let statuses = polite.execute("simple-text", json!({"text": "after"}), json!({})).await;
    assert_eq!(final_status(&statuses)["type"], "complete");
}

#[tokio::test]
async fn the_bytes_of_waiting_requests_are_bounded_too() {
    let server = Server::builder(&NodesDir::examples_and_test_plugin())
        .config("max_concurrent_executions = 1\nmax_queued_executions = 100\nmax_queued_bytes = 100000")
        .start();
    let mut client = Client::connect(&server).await;
    let padding = "p".repeat(40_000);
    // One runs; two wait (80 kB); a third would make 120 kB waiting.
    for i in 0..4 {
        client
            .send(&request(
                &format!("big-{i}"),
                json!(1),
                "test-stubborn",
                json!({"padding": padding}),
                json!({"ms": 300}),
            ))
            .await;
    }
    let refused = client.next_status("big-3", &json!(1)).await;
    assert_eq!(refused["type"], "error");
    let message = refused["message"].as_str().unwrap();
    assert!(
        message.contains("busy") && message.contains("max_queued_bytes"),
        "{message}"
    );
    for i in 0..3 {
        let statuses = client.statuses_until_final(&format!("big-{i}"), &json!(1)).await;
        assert_eq!(final_status(&statuses)["type"], "complete", "{i}");
    }
}

#[tokio::test]
async fn a_node_at_its_limit_does_not_hold_back_the_others() {
    let server = Server::builder(&NodesDir::examples_and_test_plugin())
        .config("max_concurrent_executions = 4\nmax_queued_executions = 100\n[nodes.test-stubborn]\nmax_concurrent = 2")
        .start();
    // Saturate the slow node: 12 executions of 600 ms, 2 at a time.
    let mut slow = Client::connect(&server).await;
    const SLOW: usize = 12;
    for i in 0..SLOW {
        slow.send(&request(
            &format!("slow-{i}"),
            json!(1),
            "test-stubborn",
            json!({}),
            json!({"ms": 600}),
        ))
        .await;
    }
    // The slow node is busy (its queue full of waiting work) while another
    // node is asked for again and again.
    let _ = slow.next_status("slow-0", &json!(1)).await;
    let mut quick = Client::connect(&server).await;
    let mut latencies = Vec::new();
    for n in 0..200 {
        let started = Instant::now();
        let statuses = quick
            .execute("simple-text", json!({"text": format!("q{n}")}), json!({}))
            .await;
        latencies.push(started.elapsed());
        assert_eq!(final_status(&statuses)["type"], "complete");
    }
    latencies.sort();
    let p99 = latencies[latencies.len() * 99 / 100];
    assert!(
        p99 < Duration::from_millis(50),
        "simple-text p99 {p99:?} while test-stubborn is saturated"
    );

    // The slow node never ran more than 2 at once, and each of its
    // executions completed once. (Statuses of one connection arrive in the
    // order the server sent them.)
    let mut running = 0;
    let mut most = 0;
    let mut done = 0;
    while done < SLOW {
        let frame = slow.recv().await;
        let status = &frame["payload"]["status"];
        if status["message"] == "Starting execution..." {
            running += 1;
            most = most.max(running);
        } else if status["type"] == "complete" {
            running -= 1;
            done += 1;
        } else {
            assert_eq!(status["type"], "running", "{frame}");
        }
    }
    assert!(most <= 2, "{most} ran at once");
    assert_eq!(
        server
            .metric(r#"nano_executions_total{node="test-stubborn",outcome="complete"}"#)
            .await,
        SLOW as f64
    );
}

#[tokio::test]
async fn unknown_uids_never_become_metric_labels() {
    let server = Server::start(&NodesDir::examples());
    let before = reqwest::get(server.http("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let mut client = Client::connect(&server).await;
    for i in 0..300 {
        client
            .send(&request(
                &format!("ghost-{i}"),
                json!(1),
                &format!("ghost-node-{i}"),
                json!({}),
                json!({}),
            ))
            .await;
    }
    for i in 0..300 {
        let status = client.next_status(&format!("ghost-{i}"), &json!(1)).await;
        assert_eq!(status["type"], "error");
    }
    let http = reqwest::Client::new();
    for i in 0..100 {
        let response = http
            .post(server.http(&format!("/nodes/ghost-http-{i}/execute")))
            .body("{}")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 404);
    }
    let after = reqwest::get(server.http("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!after.contains("ghost"), "an unknown uid became a label:\n{after}");
    assert_eq!(
        server
            .metric(r#"nano_executions_total{node="_unknown",outcome="unknown_node"}"#)
            .await,
        300.0
    );
    assert!(
        after.len() < before.len() + 2048,
        "{} -> {} bytes",
        before.len(),
        after.len()
    );
}

#[tokio::test]
async fn a_websocket_client_that_does_not_read_is_cut_off() {
    let server = Server::builder(&NodesDir::examples_and_test_plugin())
        .config("max_outbox_bytes = 65536\nclient_stall_ms = 1000")
        .start();
    // Growth from here: the peak of start-up (library copies on their way
    // to workers) is not this test's business.
    server.reset_peak_rss();
    let before_kib = server.rss_kib();
    // 100,000 statuses of 1 KiB: 100 MiB the client never reads.
    let mut deaf = Client::connect(&server).await;
    deaf.send(&request(
        "deaf",
        json!(1),
        "test-chatty",
        json!({}),
        json!({"count": 100000, "size": 1024}),
    ))
    .await;
    server.wait_for_log("client is not reading its messages");
    // Its execution is aborted, and its connection closed.
    eventually("the deaf client's execution is aborted", || async {
        server
            .metric(r#"nano_executions_total{node="test-chatty",outcome="aborted"}"#)
            .await
            == 1.0
    })
    .await;
    server.wait_for_log("WebSocket client disconnected");
    let grown_mib = server.peak_rss_kib().saturating_sub(before_kib) / 1024;
    assert!(grown_mib < 32, "peak RSS grew by {grown_mib} MiB");
    // Everyone else is served.
    let mut other = Client::connect(&server).await;
    let statuses = other.execute("simple-text", json!({"text": "fine"}), json!({})).await;
    assert_eq!(final_status(&statuses)["type"], "complete");
    // What reached the deaf client's socket ends, with the policy close if
    // it got through before the connection was dropped.
    let mut ws = deaf.into_inner();
    loop {
        match tokio::time::timeout(crate::support::PATIENCE, ws.next())
            .await
            .expect("the connection ends")
        {
            Some(Ok(Message::Close(Some(frame)))) => {
                assert_eq!(frame.code, CloseCode::Policy);
                break;
            }
            Some(Ok(Message::Close(None))) | Some(Err(_)) | None => break,
            Some(Ok(_)) => continue,
        }
    }
}

#[tokio::test]
async fn an_event_stream_client_that_does_not_read_is_cut_off() {
    let server = Server::builder(&NodesDir::examples_and_test_plugin())
        .config("max_outbox_bytes = 65536\nclient_stall_ms = 1000")
        .start();
    // Growth from here: the peak of start-up (library copies on their way
    // to workers) is not this test's business.
    server.reset_peak_rss();
    let before_kib = server.rss_kib();
    let response = reqwest::Client::new()
        .post(server.http("/nodes/test-chatty/execute"))
        .header("accept", "text/event-stream")
        .body(r#"{"parameters": {"count": 100000, "size": 1024}}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    server.wait_for_log("event-stream client is not reading its events");
    eventually("the execution is aborted", || async {
        server
            .metric(r#"nano_executions_total{node="test-chatty",outcome="aborted"}"#)
            .await
            == 1.0
    })
    .await;
    let grown_mib = server.peak_rss_kib().saturating_sub(before_kib) / 1024;
    assert!(grown_mib < 32, "peak RSS grew by {grown_mib} MiB");
    let mut other = Client::connect(&server).await;
    let statuses = other.execute("simple-text", json!({"text": "fine"}), json!({})).await;
    assert_eq!(final_status(&statuses)["type"], "complete");
    // The stream ends (the connection is dropped) rather than hanging.
    let mut body = response.bytes_stream();
    tokio::time::timeout(crate::support::PATIENCE, async {
        while let Some(Ok(_)) = body.next().await {}
    })
    .await
    .expect("the event stream ends");
}

/// Whether the server closed `tcp` (reads reach EOF or an error) within the patience.
fn closed_by_server(tcp: &mut TcpStream) -> bool {
    tcp.set_read_timeout(Some(crate::support::PATIENCE)).unwrap();
    let mut buf = [0u8; 4096];
    loop {
        match tcp.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(err) if err.kind() == std::io::ErrorKind::WouldBlock || err.kind() == std::io::ErrorKind::TimedOut => {
                return false;
            }
            Err(_) => return true,
        }
    }
}

#[tokio::test]
async fn connections_are_capped_and_slow_or_idle_ones_are_closed() {
    let server = Server::builder(&NodesDir::examples_and_test_plugin())
        .config("max_http_connections = 20\nheader_read_timeout_ms = 1000\nidle_timeout_ms = 1500")
        .start();
    let address = format!("127.0.0.1:{}", server.port);
    server.wait_for_log("max_http_connections=20");

    // 20 connections that never send a request fill the cap…
    let mut silent: Vec<TcpStream> = (0..20).map(|_| TcpStream::connect(&address).unwrap()).collect();
    // (…once the server has accepted them all: a request on a 21st gets no answer.)
    let mut refused = TcpStream::connect(&address).unwrap();
    refused
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .unwrap();
    assert!(closed_by_server(&mut refused), "the 21st connection is closed at once");
    server.wait_for_log("max_http_connections are open");
    // …and are closed once the header-read timeout passes, as is a
    // slowloris sending half a header.
    let mut slowloris = None;
    for tcp in &mut silent {
        assert!(
            closed_by_server(tcp),
            "a silent connection is closed after header_read_timeout"
        );
        if slowloris.is_none() {
            let mut tcp = TcpStream::connect(&address).unwrap();
            tcp.write_all(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n").unwrap();
            slowloris = Some(tcp);
        }
    }
    assert!(closed_by_server(slowloris.as_mut().unwrap()), "slowloris is closed");

    // An idle keep-alive connection is closed after the idle timeout…
    let mut idle = TcpStream::connect(&address).unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .unwrap();
    let mut answer = [0u8; 12];
    idle.read_exact(&mut answer).unwrap();
    assert_eq!(&answer, b"HTTP/1.1 200");
    assert!(closed_by_server(&mut idle), "an idle keep-alive connection is closed");
    // …but never a request still running (2.5 s, past both timeouts).
    let response = reqwest::Client::new()
        .post(server.http("/nodes/test-stubborn/execute"))
        .body(r#"{"parameters": {"ms": 2500}}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);

    // Upgraded WebSockets count against the cap, and are not closed as
    // idle. They may hold half of it (the rest is kept for requests): 10.
    let mut sockets = Vec::new();
    for _ in 0..10 {
        sockets.push(Client::connect(&server).await);
    }
    assert_eq!(
        Client::try_connect(&server, &[]).await.err(),
        Some(503),
        "an 11th WebSocket"
    );
    let _silent: Vec<TcpStream> = (0..10).map(|_| TcpStream::connect(&address).unwrap()).collect();
    let mut over = TcpStream::connect(&address).unwrap();
    over.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .unwrap();
    assert!(
        closed_by_server(&mut over),
        "beyond the cap while 10 WebSockets and 10 other connections are open"
    );
    // Past both timeouts, the sockets still work.
    let statuses = sockets[0]
        .execute("test-stubborn", json!({}), json!({"ms": 2000}))
        .await;
    assert_eq!(final_status(&statuses)["type"], "complete");
    drop(sockets);
    eventually("connections are accepted again", || async {
        reqwest::get(server.http("/healthz"))
            .await
            .is_ok_and(|r| r.status() == 200)
    })
    .await;
}

#[tokio::test]
async fn cross_site_requests_are_refused() {
    let server = Server::builder(&NodesDir::examples())
        .config(r#"allowed_origins = ["http://app.example:8080"]"#)
        .start();
    let http = reqwest::Client::new();
    let execute = |origin: Option<String>| {
        let mut call = http
            .post(server.http("/nodes/simple-text/execute"))
            .body(r#"{"inputs": {"text": "x"}}"#);
        if let Some(origin) = origin {
            call = call.header("origin", origin);
        }
        call.send()
    };
    // A page on another site: refused, and nothing ran.
    for origin in ["http://evil.example", "null", "http://127.0.0.1:1"] {
        let response = execute(Some(origin.to_owned())).await.unwrap();
        assert_eq!(response.status(), 403, "{origin}");
        let body: Value = response.json().await.unwrap();
        assert!(body["message"].as_str().unwrap().contains("cross-site"), "{body}");
    }
    assert_eq!(
        server
            .metric(r#"nano_executions_total{node="simple-text",outcome="complete"}"#)
            .await,
        0.0
    );
    // The server's own origin, an allowed one, and no origin at all (not a browser).
    for origin in [
        Some(format!("http://127.0.0.1:{}", server.port)),
        Some("http://app.example:8080".to_owned()),
        None,
    ] {
        assert_eq!(execute(origin.clone()).await.unwrap().status(), 200, "{origin:?}");
    }
    // The WebSocket too.
    assert_eq!(
        Client::try_connect(&server, &[("origin", "http://evil.example")])
            .await
            .err(),
        Some(403)
    );
    let own = format!("http://127.0.0.1:{}", server.port);
    assert!(Client::try_connect(&server, &[("origin", own.as_str())]).await.is_ok());
    // DNS rebinding: the server listens on loopback, so a request naming
    // another host is refused, even a GET.
    let response = http
        .get(server.http("/"))
        .header("host", "evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    let response = http
        .get(server.http("/"))
        .header("host", format!("localhost:{}", server.port))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn a_library_refused_for_its_permissions_serves_once_they_are_fixed() {
    let nodes = NodesDir::empty();
    let lib = nodes.path().join("text").join(lib_name("simple_text_node"));
    std::fs::create_dir_all(lib.parent().unwrap()).unwrap();
    std::fs::copy(plugin("simple_text_node"), &lib).unwrap();
    std::fs::set_permissions(&lib, std::fs::Permissions::from_mode(0o666)).unwrap();
    let server = Server::start(&nodes);
    let refusal = server.wait_for_log("insecure permissions");
    assert!(refusal.contains("chmod go-w"), "{refusal}");
    assert!(uids(&server.status_document().await).is_empty());
    // What the message says to do is enough.
    std::fs::set_permissions(&lib, std::fs::Permissions::from_mode(0o644)).unwrap();
    server.wait_for_log(&format!("loaded {}", lib.display()));
    assert_eq!(uids(&server.status_document().await), ["simple-text"]);
}

#[tokio::test]
async fn tokens_stay_out_of_the_log_and_refusals_are_counted_not_flooded() {
    let token = "s3cret-token-xyzzy";
    let server = Server::builder(&NodesDir::examples())
        .config(&format!("auth_token = \"{token}\""))
        .rust_log("debug")
        .start();
    let http = reqwest::Client::new();
    for _ in 0..200 {
        let response = http
            .get(server.http("/nodes"))
            .bearer_auth("wrong")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 401);
    }
    let response = http.get(server.http("/nodes")).bearer_auth(token).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let logs = server.logs();
    assert!(!logs.contains(token), "the token is in the log");
    let lines = logs
        .lines()
        .filter(|l| l.contains("without the right bearer token"))
        .count();
    assert!((1..=5).contains(&lines), "{lines} log lines for 200 refusals");
}

#[tokio::test]
async fn readyz_says_not_ready_while_every_slot_is_held_by_a_node_past_its_timeout() {
    let server = Server::builder(&NodesDir::examples_and_test_plugin())
        .config("max_concurrent_executions = 2\nexecution_timeout_ms = 200")
        .start();
    let readyz = || async { reqwest::get(server.http("/readyz")).await.unwrap() };
    assert_eq!(readyz().await.status(), 200);
    let mut client = Client::connect(&server).await;
    for i in 0..2 {
        let statuses = client.execute("test-hang", json!({}), json!({})).await;
        let last = final_status(&statuses);
        assert!(last["message"].as_str().unwrap().contains("timed out"), "{i}: {last}");
    }
    let response = readyz().await;
    assert_eq!(response.status(), 503);
    let body: Value = response.json().await.unwrap();
    assert!(body["reason"].as_str().unwrap().contains("ignored its abort"), "{body}");
    // Alive, though.
    assert_eq!(reqwest::get(server.http("/healthz")).await.unwrap().status(), 200);
}

#[tokio::test]
async fn closing_a_websocket_aborts_its_executions() {
    let server = Server::start(&NodesDir::examples());
    let mut client = Client::connect(&server).await;
    client.start_steps("gone", json!(1), 100, 50).await;
    while client.next_status("gone", &json!(1)).await["message"] == "Starting execution..." {}
    drop(client);
    let line = server.wait_for_log("WebSocket client disconnected");
    assert!(line.contains("aborted=1"), "{line}");
    eventually("the execution is counted as aborted", || async {
        server
            .metric(r#"nano_executions_total{node="progress-steps",outcome="aborted"}"#)
            .await
            == 1.0
    })
    .await;
    assert_eq!(server.metric("nano_executions_in_flight").await, 0.0);
}

#[tokio::test]
async fn sigint_drains_like_sigterm() {
    let mut server = Server::builder(&NodesDir::examples())
        .config("shutdown_grace_ms = 300")
        .start();
    let mut client = Client::connect(&server).await;
    client.start_steps("long", json!(1), 200, 50).await;
    let _ = client.next_status("long", &json!(1)).await;
    client
        .send(&request(
            "short",
            json!(2),
            "simple-text",
            json!({"text": "done first"}),
            json!({}),
        ))
        .await;
    let statuses = client.statuses_until_final("short", &json!(2)).await;
    assert_eq!(final_status(&statuses)["type"], "complete");

    server.interrupt();
    let statuses = client.statuses_until_final("long", &json!(1)).await;
    assert_eq!(
        final_status(&statuses),
        &json!({"type": "error", "message": "Execution aborted: the server is shutting down"})
    );
    assert_eq!(client.close_code().await, CloseCode::Away);
    assert_eq!(server.wait_exit(), 0);
    assert!(server.logs().contains("shutdown signal received"), "{}", server.logs());
}

#[tokio::test]
async fn sighup_drains_like_sigterm() {
    let nodes = NodesDir::examples();
    let mut server = Server::start(&nodes);
    let mut client = Client::connect(&server).await;
    client.start_steps("long", json!(1), 20, 50).await;
    client.until_progress("long", &json!(1)).await;

    server.hangup();
    let line = server.wait_for_log("shutdown signal received");
    assert!(line.contains("SIGHUP"), "{line}");
    server.wait_for_log("shutting down: draining");
    // The run in flight finishes; then the client is told the server went away.
    let statuses = client.statuses_until_final("long", &json!(1)).await;
    assert_eq!(final_status(&statuses)["type"], "complete", "{statuses:?}");
    assert_eq!(client.close_code().await, CloseCode::Away);
    assert_eq!(server.wait_exit(), 0);
    assert!(
        server
            .logs()
            .contains("1 execution(s) finished during the drain, 0 aborted"),
        "{}",
        server.logs()
    );
}
