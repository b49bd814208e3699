//! Hot swap: the served set follows the nodes folder while the server runs,
//! and no execution is lost or answered by a version that was never live.

use std::{
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
};

use serde_json::{Value, json};

use crate::support::{
    Client, NodesDir, Server, definition_uids, definition_version, eventually, final_status, lib_name, plugin, request,
};

const V1: &str = "1.0.0";
const V2: &str = "2.0.0";

fn swap_bytes(version: &str) -> Vec<u8> {
    std::fs::read(plugin(if version == V1 { "swap_v1" } else { "swap_v2" })).unwrap()
}

fn installed(nodes: &NodesDir) -> PathBuf {
    nodes.path().join("test/swap").join(lib_name("swap"))
}

/// Starts a server with version `initial` of the swap library installed.
fn start(initial: &str, debounce_ms: u64) -> (NodesDir, Server) {
    start_configured(initial, &format!("watch_debounce_time = {debounce_ms}"))
}

/// Likewise, with `config` added to the server's configuration.
fn start_configured(initial: &str, config: &str) -> (NodesDir, Server) {
    let nodes = NodesDir::examples().with_file(&format!("test/swap/{}", lib_name("swap")), &swap_bytes(initial));
    let server = Server::builder(&nodes).config(config).start();
    (nodes, server)
}

/// Starts a `swap-node` execution sleeping `ms` and waits until it runs.
async fn start_running(client: &mut Client, instance: &str, ms: u64) {
    client
        .send(&request(instance, json!(1), "swap-node", json!({}), json!({"ms": ms})))
        .await;
    assert_eq!(client.next_status(instance, &json!(1)).await["type"], "running");
}

/// The three ways a library gets replaced in practice.
fn replace(path: &Path, bytes: &[u8], how: usize) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    match how % 3 {
        // `cp` over it: truncate and write in place.
        0 => std::fs::write(path, bytes).unwrap(),
        // An atomic rename onto it.
        1 => {
            let staging = path.with_extension("tmp-staging");
            std::fs::write(&staging, bytes).unwrap();
            std::fs::rename(&staging, path).unwrap();
        }
        // A build writing it in several steps.
        _ => {
            use std::io::Write;
            let mut file = std::fs::File::create(path).unwrap();
            for chunk in bytes.chunks(bytes.len() / 4 + 1) {
                file.write_all(chunk).unwrap();
                file.flush().unwrap();
            }
        }
    }
}

/// Adds another library: the next update must be the one it causes.
async fn add_sentinel_and_expect_its_update(nodes: &NodesDir, client: &mut Client) {
    let sentinel = nodes.path().join("sentinel").join(lib_name("test_plugin"));
    replace(&sentinel, &std::fs::read(plugin("test_plugin")).unwrap(), 1);
    let next = client.next_update().await;
    assert!(
        definition_uids(&next).contains(&"test-echo".to_owned()),
        "the next update is the sentinel's: {next}"
    );
}

async fn run_swap_node(client: &mut Client, ms: u64) -> Value {
    let statuses = client.execute("swap-node", json!({}), json!({"ms": ms})).await;
    final_status(&statuses).clone()
}

#[tokio::test]
async fn an_added_library_is_announced_and_served() {
    let nodes = NodesDir::examples();
    let server = Server::builder(&nodes).config("watch_debounce_time = 100").start();
    let mut client = Client::connect(&server).await;
    assert!(!definition_uids(&client.handshake).contains(&"swap-node".to_owned()));

    replace(&installed(&nodes), &swap_bytes(V1), 1);
    let update = client.next_update().await;
    assert_eq!(update["serverUid"], "test-server");
    assert_eq!(
        definition_uids(&update),
        [
            "complex-math",
            "progress-steps",
            "simple-text",
            "swap-node",
            "swap-only-v1"
        ]
    );
    assert_eq!(run_swap_node(&mut client, 0).await["outputs"]["version"], json!([V1]));
    assert_eq!(server.status_document().await["loadedNodes"], 5);
}

#[tokio::test]
async fn a_new_version_serves_new_executions_while_running_ones_finish_on_the_old() {
    let (nodes, server) = start(V1, 100);
    let mut client = Client::connect(&server).await;
    // A long execution on v1, really started before the swap.
    start_running(&mut client, "wf-long", 1500).await;

    replace(&installed(&nodes), &swap_bytes(V2), 0);
    let update = client.next_update().await;
    assert_eq!(definition_version(&update, "swap-node").as_deref(), Some(V2));
    let uids = definition_uids(&update);
    assert!(uids.contains(&"swap-only-v2".to_owned()), "new node appears: {uids:?}");
    assert!(
        !uids.contains(&"swap-only-v1".to_owned()),
        "old node disappears: {uids:?}"
    );

    assert_eq!(run_swap_node(&mut client, 0).await["outputs"]["version"], json!([V2]));
    let gone = client.execute("swap-only-v1", json!({}), json!({})).await;
    assert_eq!(final_status(&gone)["type"], "error");
    let long = client.statuses_until_final("wf-long", &json!(1)).await;
    assert_eq!(
        final_status(&long)["outputs"]["version"],
        json!([V1]),
        "finished on the version it started on"
    );
    server.wait_for_log("swapped");
}

/// Starts v1 with one slot for `swap-node`, runs a long execution in it and
/// queues a second one behind it (admitted, not begun).
async fn one_running_one_queued() -> (NodesDir, Server, Client) {
    let (nodes, server) = start_configured(V1, "watch_debounce_time = 100\n[nodes.swap-node]\nmax_concurrent = 1");
    let mut client = Client::connect(&server).await;
    // Long enough to outlast the swap below even on a loaded machine.
    start_running(&mut client, "wf-long", 6000).await;
    client
        .send(&request(
            "wf-queued",
            json!(2),
            "swap-node",
            json!({}),
            json!({"ms": 0}),
        ))
        .await;
    eventually("the second execution to be queued", || async {
        server.metric("nano_executions_queued").await == 1.0
    })
    .await;
    (nodes, server, client)
}

#[tokio::test]
async fn an_execution_queued_across_a_swap_runs_on_the_new_version() {
    let (nodes, server, mut client) = one_running_one_queued().await;
    replace(&installed(&nodes), &swap_bytes(V2), 1);
    let update = client.next_update().await;
    assert_eq!(definition_version(&update, "swap-node").as_deref(), Some(V2));
    assert!(
        !client
            .backlog()
            .iter()
            .any(|frame| frame["instanceId"] == "wf-long" && crate::support::is_final(&frame["payload"]["status"])),
        "the long execution outlasted the swap (else this test proves nothing)"
    );

    let long = client.statuses_until_final("wf-long", &json!(1)).await;
    assert_eq!(final_status(&long)["outputs"]["version"], json!([V1]));
    // It began after the swap: the version served then runs it, not the
    // one retired while it waited (whose worker is gone in process mode).
    let queued = client.statuses_until_final("wf-queued", &json!(2)).await;
    assert_eq!(final_status(&queued)["type"], "complete", "{queued:?}");
    assert_eq!(final_status(&queued)["outputs"]["version"], json!([V2]));
    assert_eq!(server.metric("nano_executions_queued").await, 0.0);
}

#[tokio::test]
async fn an_execution_queued_when_its_library_is_removed_gets_a_clear_error() {
    let (nodes, server, mut client) = one_running_one_queued().await;
    std::fs::remove_file(installed(&nodes)).unwrap();
    let update = client.next_update().await;
    assert!(!definition_uids(&update).contains(&"swap-node".to_owned()));

    let long = client.statuses_until_final("wf-long", &json!(1)).await;
    assert_eq!(final_status(&long)["outputs"]["version"], json!([V1]));
    let queued = client.statuses_until_final("wf-queued", &json!(2)).await;
    assert_eq!(queued.len(), 1, "it never ran: {queued:?}");
    assert_eq!(queued[0]["type"], "error");
    let message = queued[0]["message"].as_str().unwrap();
    assert!(
        message.contains("swap-node") && message.contains("no longer served"),
        "{message}"
    );
    // The server serves on.
    assert_eq!(server.status_document().await["loadedNodes"], 3);
}

#[tokio::test]
async fn twenty_replacements_under_continuous_load_lose_nothing() {
    let (nodes, server) = start(V1, 100);
    let mut observer = Client::connect(&server).await;
    let stop = Arc::new(AtomicBool::new(false));
    let mut workers = Vec::new();
    for _ in 0..4 {
        let mut client = Client::connect(&server).await;
        let stop = Arc::clone(&stop);
        workers.push(tokio::spawn(async move {
            let mut versions = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                versions.push(run_swap_node(&mut client, 2).await);
            }
            versions
        }));
    }

    let path = installed(&nodes);
    for i in 0..20 {
        let version = if i % 2 == 0 { V2 } else { V1 };
        replace(&path, &swap_bytes(version), i);
        let update = observer.next_update().await;
        assert_eq!(
            definition_version(&update, "swap-node").as_deref(),
            Some(version),
            "swap {i}"
        );
    }
    stop.store(true, Ordering::SeqCst);

    let mut total = 0;
    for worker in workers {
        for status in worker.await.unwrap() {
            assert_eq!(status["type"], "complete", "no execution fails: {status}");
            let version = &status["outputs"]["version"][0];
            assert!(version == V1 || version == V2, "answered by a live version: {status}");
            total += 1;
        }
    }
    assert!(total >= 20, "load ran throughout ({total} executions)");
    assert_eq!(run_swap_node(&mut observer, 0).await["outputs"]["version"], json!([V1]));
    // Each swap is logged just after its definitions go out.
    server.wait_for_log_count("swapped", 20);
    assert_eq!(server.logs().matches("swapped").count(), 20);
}

#[tokio::test]
async fn a_removed_or_disabled_library_is_no_longer_served() {
    let (nodes, server) = start(V1, 100);
    let mut client = Client::connect(&server).await;

    let path = installed(&nodes);
    let disabled = path.with_file_name(format!("disabled.{}", lib_name("swap")));
    std::fs::rename(&path, &disabled).unwrap();
    let update = client.next_update().await;
    assert_eq!(
        definition_uids(&update),
        ["complex-math", "progress-steps", "simple-text"]
    );
    let statuses = client.execute("swap-node", json!({}), json!({})).await;
    assert_eq!(statuses.len(), 1);
    assert!(statuses[0]["message"].as_str().unwrap().contains("swap-node"));

    std::fs::rename(&disabled, &path).unwrap();
    assert!(definition_uids(&client.next_update().await).contains(&"swap-node".to_owned()));
    std::fs::remove_file(&path).unwrap();
    assert!(!definition_uids(&client.next_update().await).contains(&"swap-node".to_owned()));
    assert_eq!(server.status_document().await["loadedNodes"], 3);
}

#[tokio::test]
async fn a_broken_replacement_keeps_the_old_version_serving() {
    let (nodes, server) = start(V1, 100);
    let mut client = Client::connect(&server).await;
    let path = installed(&nodes);
    let v2 = swap_bytes(V2);

    for (i, broken) in [b"not a library at all".to_vec(), v2[..v2.len() / 2].to_vec()]
        .iter()
        .enumerate()
    {
        replace(&path, broken, i);
        server.wait_for_log_count("the previous version keeps serving", i + 1);
        let line = server.wait_for_log(&format!("refused {}", path.display()));
        assert!(line.contains("keeps serving"), "{line}");
        assert_eq!(run_swap_node(&mut client, 0).await["outputs"]["version"], json!([V1]));
    }

    // The next change to the file is tried again.
    replace(&path, &v2, 1);
    assert_eq!(
        definition_version(&client.next_update().await, "swap-node").as_deref(),
        Some(V2)
    );
    assert_eq!(run_swap_node(&mut client, 0).await["outputs"]["version"], json!([V2]));
}

#[tokio::test]
async fn changes_within_one_debounce_window_reload_once() {
    let (nodes, server) = start(V1, 500);
    let mut client = Client::connect(&server).await;
    let path = installed(&nodes);
    replace(&path, &swap_bytes(V2), 0);
    replace(&path, &swap_bytes(V1), 1);
    replace(&path, &swap_bytes(V2), 2);
    let update = client.next_update().await;
    assert_eq!(definition_version(&update, "swap-node").as_deref(), Some(V2));

    // A sentinel change: the next update must be its, not a second reload.
    add_sentinel_and_expect_its_update(&nodes, &mut client).await;
    assert_eq!(server.logs().matches("swapped").count(), 1);
}

#[tokio::test]
async fn rewriting_identical_content_sends_no_update() {
    let (nodes, server) = start(V1, 100);
    let mut client = Client::connect(&server).await;
    let path = installed(&nodes);
    replace(&path, &swap_bytes(V1), 0);
    server.wait_for_log("unchanged content");

    add_sentinel_and_expect_its_update(&nodes, &mut client).await;
    assert!(!server.logs().contains("swapped"));
    // Looked at once: the server's own reads of the file are not changes.
    assert_eq!(
        server.logs().matches("unchanged content").count(),
        1,
        "{}",
        server.logs()
    );
}

#[tokio::test]
async fn without_auto_watch_the_set_is_fixed_at_start() {
    let nodes = NodesDir::examples();
    let server = Server::builder(&nodes).config("auto_watch = false").start();
    assert!(!server.logs().contains("watching for library changes"));
    let with_watch = Server::start(&NodesDir::examples());
    with_watch.wait_for_log("watching for library changes");
}
