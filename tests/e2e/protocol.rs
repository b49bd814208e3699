//! The Nano protocol as an orchestrator sees it: `GET /`, the handshake,
//! executions and their statuses, stop, and bad input.

use serde_json::{Value, json};

use crate::support::{Client, NodesDir, Server, final_status, request};

fn examples_and_test_nodes() -> NodesDir {
    NodesDir::examples().with_plugin("test/test_plugin", "test_plugin")
}

#[tokio::test]
async fn get_root_describes_the_server_and_its_nodes() {
    let server = Server::start(&NodesDir::examples());
    let doc = server.status_document().await;
    assert_eq!(doc["message"], "Nano node server is running");
    assert_eq!(doc["domain"], "test.nanograph");
    assert_eq!(doc["serverName"], "Test Server");
    assert_eq!(doc["serverDisplayName"], "Test Server");
    assert_eq!(doc["serverUid"], "test-server");
    assert_eq!(doc["serverPackageId"], "test-package");
    assert_eq!(doc["nanocoreHttpEndpoint"], "");
    assert_eq!(doc["loadedNodes"], 3);
    let mut uids: Vec<&str> = doc["nodeUIDs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    uids.sort();
    assert_eq!(uids, ["complex-math", "progress-steps", "simple-text"]);
}

#[tokio::test]
async fn handshake_carries_identity_and_every_definition() {
    let server = Server::start(&NodesDir::examples());
    let client = Client::connect(&server).await;
    let h = &client.handshake;
    assert_eq!(h["serverUid"], "test-server");
    assert_eq!(h["serverPackageId"], "test-package");
    let p = &h["payload"];
    assert_eq!(p["domain"], "test.nanograph");
    assert_eq!(p["name"], "Test Server");
    assert_eq!(p["serverDisplayName"], "Test Server");
    assert_eq!(p["serverUid"], "test-server");
    assert_eq!(p["serverPackageId"], "test-package");
    assert_eq!(p["nanocoreHttpEndpoint"], "");
    let defs = p["nodeDefinitions"].as_array().unwrap();
    assert_eq!(defs.len(), 3);
    let text = defs.iter().find(|d| d["uid"] == "simple-text").unwrap();
    assert_eq!(text["type"], "server");
    assert_eq!(text["category"], "Processing");
    assert_eq!(text["inputs"][0]["name"], "text");
    assert_eq!(text["parameters"][0]["name"], "uppercase");
    assert_eq!(text["parameters"][0]["default"], false);
    let math = defs.iter().find(|d| d["uid"] == "complex-math").unwrap();
    let options: Vec<&Value> = math["parameters"][0]["options"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| &o["value"])
        .collect();
    assert_eq!(options, ["add", "subtract", "multiply", "divide", "power"]);
}

#[tokio::test]
async fn unknown_definition_fields_round_trip_to_the_orchestrator() {
    let server = Server::start(&examples_and_test_nodes());
    let client = Client::connect(&server).await;
    let defs = client.handshake["payload"]["nodeDefinitions"].as_array().unwrap();
    let echo = defs.iter().find(|d| d["uid"] == "test-echo").unwrap();
    assert_eq!(echo["x-custom"], json!({"nested": {"kept": true}}));
    assert_eq!(echo["width"], 321);
    assert_eq!(echo["inputs"][0]["sizeHint"], "large");
    assert_eq!(echo["inputs"][0]["x-port-extra"], json!([1, 2]));
    assert_eq!(echo["parameters"][0]["x-param-extra"], true);
}

#[tokio::test]
async fn simple_text_accepts_list_and_bare_inputs() {
    let server = Server::start(&NodesDir::examples());
    let mut client = Client::connect(&server).await;

    let statuses = client
        .execute("simple-text", json!({"text": ["hello"]}), json!({}))
        .await;
    assert_eq!(
        statuses[0],
        json!({"type": "running", "message": "Starting execution..."})
    );
    assert_eq!(
        final_status(&statuses),
        &json!({"type": "complete", "message": "Execution finished.", "outputs": {"text": ["hello"]}})
    );

    let statuses = client
        .execute("simple-text", json!({"text": "hello"}), json!({"uppercase": true}))
        .await;
    assert_eq!(final_status(&statuses)["outputs"], json!({"text": ["HELLO"]}));
}

#[tokio::test]
async fn simple_text_rejects_a_non_string() {
    let server = Server::start(&NodesDir::examples());
    let mut client = Client::connect(&server).await;
    let statuses = client.execute("simple-text", json!({"text": [42]}), json!({})).await;
    let last = final_status(&statuses);
    assert_eq!(last["type"], "error");
    assert!(last["message"].as_str().unwrap().contains("input 'text'"), "{last}");
}

#[tokio::test]
async fn complex_math_computes_and_reports_errors() {
    let server = Server::start(&NodesDir::examples());
    let mut client = Client::connect(&server).await;
    for (a, b, op, expected) in [
        (json!(40), json!(2), "add", json!([42])),
        (json!(40), json!(2), "subtract", json!([38])),
        (json!(6), json!(7), "multiply", json!([42])),
        (json!(7), json!(2), "divide", json!([3.5])),
        (json!(2), json!(10), "power", json!([1024])),
    ] {
        let statuses = client
            .execute("complex-math", json!({"a": [a], "b": [b]}), json!({"operation": op}))
            .await;
        assert_eq!(final_status(&statuses)["outputs"]["result"], expected, "{op}");
    }
    // The default operation is add.
    let statuses = client.execute("complex-math", json!({"a": 1, "b": 2}), json!({})).await;
    assert_eq!(final_status(&statuses)["outputs"]["result"], json!([3]));

    let statuses = client
        .execute(
            "complex-math",
            json!({"a": [1], "b": [0]}),
            json!({"operation": "divide"}),
        )
        .await;
    let last = final_status(&statuses);
    assert_eq!(last["type"], "error");
    assert!(last["message"].as_str().unwrap().contains("division by zero"), "{last}");

    let statuses = client
        .execute("complex-math", json!({"a": ["x"], "b": [1]}), json!({}))
        .await;
    let last = final_status(&statuses);
    assert_eq!(last["type"], "error");
    assert!(last["message"].as_str().unwrap().contains("input 'a'"), "{last}");
}

#[tokio::test]
async fn progress_steps_reports_progress_in_order() {
    let server = Server::start(&NodesDir::examples());
    let mut client = Client::connect(&server).await;
    let statuses = client
        .execute("progress-steps", json!({}), json!({"steps": 3, "delay_ms": 10}))
        .await;
    assert_eq!(statuses.len(), 5, "{statuses:?}");
    assert_eq!(statuses[0]["message"], "Starting execution...");
    for (step, status) in (1..=3).zip(&statuses[1..4]) {
        assert_eq!(status["type"], "running");
        assert_eq!(status["progress"], json!({"step": step, "total": 3}));
    }
    assert_eq!(
        statuses[4],
        json!({"type": "complete", "message": "Execution finished.", "outputs": {"result": ["done"]}})
    );
}

#[tokio::test]
async fn unknown_node_gets_an_error_naming_its_uid() {
    let server = Server::start(&NodesDir::examples());
    let mut client = Client::connect(&server).await;
    let statuses = client.execute("no-such-node", json!({}), json!({})).await;
    assert_eq!(statuses.len(), 1);
    assert_eq!(statuses[0]["type"], "error");
    assert!(statuses[0]["message"].as_str().unwrap().contains("no-such-node"));
}

#[tokio::test]
async fn stop_acks_at_once_and_no_complete_follows() {
    let server = Server::start(&NodesDir::examples());
    let mut client = Client::connect(&server).await;
    let node = json!(7);
    client.start_steps("wf-stop", node.clone(), 200, 50).await;
    // Wait until it is really running: its first progress report.
    client.until_progress("wf-stop", &node).await;
    client
        .send(&json!({"type": "stop_workflow_instance", "serverUid": "orchestrator", "instanceId": "wf-stop"}))
        .await;
    let ack = client.recv_where(|f| f["type"] == "ack_stop_workflow").await;
    assert_eq!(ack["instanceId"], "wf-stop");
    assert_eq!(ack["serverUid"], "test-server");
    assert_eq!(ack["payload"]["success"], true);
    assert!(
        ack["payload"]["message"]
            .as_str()
            .unwrap()
            .contains("Aborted 1 active node(s)"),
        "{ack}"
    );

    // The execution ends with an error, never a complete.
    let mut after = Vec::new();
    loop {
        let status = client.next_status("wf-stop", &node).await;
        let done = crate::support::is_final(&status);
        after.push(status);
        if done {
            break;
        }
    }
    assert_eq!(
        after.last().unwrap(),
        &json!({"type": "error", "message": "Execution aborted"})
    );
    // A later execution round-trips with nothing more about the stopped one.
    let statuses = client.execute("simple-text", json!({"text": "x"}), json!({})).await;
    assert_eq!(final_status(&statuses)["type"], "complete");
    assert!(
        client.backlog().iter().all(|f| f["instanceId"] != "wf-stop"),
        "late frames for the stopped execution: {:?}",
        client.backlog()
    );
}

#[tokio::test]
async fn a_node_that_ignores_abort_never_completes_after_stop() {
    let server = Server::start(&examples_and_test_nodes());
    let mut client = Client::connect(&server).await;
    let node = json!(1);
    client
        .send(&request(
            "wf-stubborn",
            node.clone(),
            "test-stubborn",
            json!({}),
            json!({"ms": 1500}),
        ))
        .await;
    let status = client.next_status("wf-stubborn", &node).await;
    assert_eq!(status["message"], "Starting execution...");
    let status = client.next_status("wf-stubborn", &node).await;
    assert_eq!(status["message"], "working, not listening");
    client
        .send(&json!({"type": "stop_workflow_instance", "instanceId": "wf-stubborn"}))
        .await;
    // The ack comes while the node is still asleep: before any later status.
    let next = client
        .recv_where(|f| f["type"] == "ack_stop_workflow" || f["instanceId"] == "wf-stubborn")
        .await;
    assert_eq!(next["type"], "ack_stop_workflow", "{next}");
    assert!(next["payload"]["message"].as_str().unwrap().contains("Aborted 1"));
    // What the node sends or returns after the stop is dropped.
    let last = client.next_status("wf-stubborn", &node).await;
    assert_eq!(last, json!({"type": "error", "message": "Execution aborted"}));
}

#[tokio::test]
async fn stop_of_an_idle_instance_acks_zero() {
    let server = Server::start(&NodesDir::examples());
    let mut client = Client::connect(&server).await;
    client
        .send(&json!({"type": "stop_workflow_instance", "instanceId": "nothing-here"}))
        .await;
    let ack = client.recv_where(|f| f["type"] == "ack_stop_workflow").await;
    assert!(
        ack["payload"]["message"]
            .as_str()
            .unwrap()
            .contains("Aborted 0 active node(s)")
    );
}

#[tokio::test]
async fn sixty_four_concurrent_executions_on_one_connection_are_matched() {
    let server = Server::start(&NodesDir::examples());
    let mut client = Client::connect(&server).await;
    for i in 0..64 {
        let instance = format!("wf-{}", i % 4);
        let frame = if i % 2 == 0 {
            request(
                &instance,
                json!(i),
                "simple-text",
                json!({"text": [format!("text {i}")]}),
                json!({"uppercase": true}),
            )
        } else {
            request(
                &instance,
                json!(i),
                "complex-math",
                json!({"a": [i], "b": [1000]}),
                json!({"operation": "add"}),
            )
        };
        client.send(&frame).await;
    }
    for i in 0..64 {
        let instance = format!("wf-{}", i % 4);
        let statuses = client.statuses_until_final(&instance, &json!(i)).await;
        assert_eq!(statuses[0]["message"], "Starting execution...");
        let outputs = &final_status(&statuses)["outputs"];
        if i % 2 == 0 {
            assert_eq!(outputs["text"], json!([format!("TEXT {i}")]));
        } else {
            assert_eq!(outputs["result"], json!([i + 1000]));
        }
    }
}

#[tokio::test]
async fn executions_on_one_connection_run_concurrently() {
    let server = Server::builder(&NodesDir::examples())
        .config("max_concurrent_executions = 8")
        .start();
    let mut client = Client::connect(&server).await;
    for i in 0..6 {
        client.start_steps("wf-par", json!(i), 2, 300).await;
    }
    // Run one after another, the first would complete before the last
    // reports its first step; run concurrently, every first step comes first.
    let mut first_steps = 0;
    while first_steps < 6 {
        let frame = client.recv_where(|f| f["type"] == "node_status").await;
        let status = &frame["payload"]["status"];
        assert_ne!(status["type"], "complete", "completed before all had started: {frame}");
        if status["progress"]["step"] == 1 {
            first_steps += 1;
        }
    }
}

#[tokio::test]
async fn two_clients_only_see_their_own_statuses() {
    let server = Server::start(&NodesDir::examples());
    let mut alice = Client::connect(&server).await;
    let mut bob = Client::connect(&server).await;
    alice.start_steps("alice-wf", json!(1), 3, 20).await;
    bob.send(&request(
        "bob-wf",
        json!(1),
        "simple-text",
        json!({"text": "bob"}),
        json!({}),
    ))
    .await;
    let bob_statuses = bob.statuses_until_final("bob-wf", &json!(1)).await;
    let alice_statuses = alice.statuses_until_final("alice-wf", &json!(1)).await;
    assert_eq!(final_status(&bob_statuses)["outputs"]["text"], json!(["bob"]));
    assert_eq!(final_status(&alice_statuses)["outputs"]["result"], json!(["done"]));
    // One more round trip each, then nothing foreign may have arrived.
    bob.execute("simple-text", json!({"text": "again"}), json!({})).await;
    alice.execute("simple-text", json!({"text": "again"}), json!({})).await;
    assert!(
        bob.backlog().iter().all(|f| f["instanceId"] != "alice-wf"),
        "{:?}",
        bob.backlog()
    );
    assert!(
        alice.backlog().iter().all(|f| f["instanceId"] != "bob-wf"),
        "{:?}",
        alice.backlog()
    );
}

#[tokio::test]
async fn malformed_frames_are_ignored_and_the_connection_carries_on() {
    let server = Server::start(&NodesDir::examples());
    let mut client = Client::connect(&server).await;
    // Keep one execution in flight across the burst.
    client.start_steps("wf-long", json!(1), 3, 50).await;
    for bad in [
        "not json at all",
        "",
        "{",
        "[1, 2, 3]",
        "42",
        "{}",
        r#"{"type": 12}"#,
        r#"{"type": "dance"}"#,
        r#"{"type": "request_execution"}"#,
        r#"{"type": "request_execution", "instanceId": "x"}"#,
        r#"{"type": "request_execution", "instanceId": "x", "payload": {"nodeUid": "simple-text"}}"#,
        r#"{"type": "request_execution", "instanceId": "x", "payload": {"nodeId": 1}}"#,
        r#"{"type": "request_execution", "instanceId": "x", "payload": "oops"}"#,
        r#"{"type": "stop_workflow_instance"}"#,
        &format!("{}1{}", "[".repeat(10_000), "]".repeat(10_000)),
    ] {
        client.send_text(bad).await;
    }
    client.send_binary(vec![0, 159, 146, 150]).await;

    let statuses = client
        .execute("simple-text", json!({"text": "still here"}), json!({}))
        .await;
    assert_eq!(final_status(&statuses)["outputs"]["text"], json!(["still here"]));
    let long = client.statuses_until_final("wf-long", &json!(1)).await;
    assert_eq!(final_status(&long)["type"], "complete");
    assert!(
        client.backlog().iter().all(|f| f["instanceId"] == "wf-long"),
        "malformed frames got replies: {:?}",
        client.backlog()
    );
    server.wait_for_log("ignored a malformed frame");
    server.wait_for_log("ignored a binary frame");
}

#[tokio::test]
async fn wrongly_shaped_requests_get_an_error_saying_why() {
    let server = Server::start(&NodesDir::examples());
    let mut client = Client::connect(&server).await;
    let mut frame = request("wf-shape", json!("node-a"), "simple-text", json!({}), json!({}));
    frame["payload"]["inputs"] = json!(["not", "an", "object"]);
    client.send(&frame).await;
    let status = client.next_status("wf-shape", &json!("node-a")).await;
    assert_eq!(status["type"], "error");
    assert!(status["message"].as_str().unwrap().contains("inputs"), "{status}");

    let mut frame = request("wf-shape", json!(2), "simple-text", json!({"text": "x"}), json!({}));
    frame["payload"]["graphNode"]["parameters"] = json!({"uppercase": true});
    client.send(&frame).await;
    let status = client.next_status("wf-shape", &json!(2)).await;
    assert!(status["message"].as_str().unwrap().contains("parameters"), "{status}");
}

#[tokio::test]
async fn a_panicking_node_reports_an_error_and_the_server_keeps_serving() {
    let mut server = Server::start(&examples_and_test_nodes());
    let mut client = Client::connect(&server).await;
    for _ in 0..3 {
        let statuses = client.execute("test-panic", json!({}), json!({})).await;
        let last = final_status(&statuses);
        assert_eq!(last["type"], "error");
        assert_eq!(last["message"], "node panicked: deliberate test panic");
    }
    let statuses = client.execute("simple-text", json!({"text": "alive"}), json!({})).await;
    assert_eq!(final_status(&statuses)["outputs"]["text"], json!(["alive"]));
    assert_eq!(server.status_document().await["loadedNodes"], 8);
    assert!(server.is_running());
}

#[tokio::test]
async fn the_node_sees_parameters_graph_node_and_instance() {
    let server = Server::start(&examples_and_test_nodes());
    let mut client = Client::connect(&server).await;
    client
        .send(&request(
            "wf-echo",
            json!(33),
            "test-echo",
            json!({"value": [1, 2]}),
            json!({"label": "hi"}),
        ))
        .await;
    let statuses = client.statuses_until_final("wf-echo", &json!(33)).await;
    assert_eq!(statuses[1], json!({"type": "running", "message": "echoing"}));
    let outputs = &final_status(&statuses)["outputs"];
    assert_eq!(outputs["inputs"], json!([{"value": [1, 2]}]));
    assert_eq!(outputs["label"], json!(["hi"]));
    assert_eq!(outputs["instance"], json!(["wf-echo"]));
    assert_eq!(outputs["graphNodeId"], json!([33]));

    // Without the parameter, the definition's default applies.
    let statuses = client.execute("test-echo", json!({}), json!({})).await;
    assert_eq!(final_status(&statuses)["outputs"]["label"], json!(["fallback"]));
}
