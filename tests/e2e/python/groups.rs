//! `[python] group`: which `node.py` files share one worker process. In a
//! group, one interpreter serves every member; a crash fails only its own
//! execution and the worker comes back with all the group's nodes; an edit
//! of one member reloads the group; a member that fails to import leaves
//! the others serving.

use serde_json::{Value, json};

use super::{libraries, node_py, python3};
use crate::support::{Client, NodesDir, Server, final_status, uids};

/// Answers its process id and a `version` word; exits when asked.
fn pid_node(word: &str) -> String {
    format!(
        "def execute(ctx):
    if ctx.inputs.get('exit'):
        os._exit(1)
    return {{'pid': [os.getpid()], 'word': ['{word}']}}"
    )
}

async fn run(client: &mut Client, uid: &str, inputs: Value) -> Value {
    let statuses = client.execute(uid, inputs, json!({})).await;
    final_status(&statuses).clone()
}

fn pid(done: &Value) -> u64 {
    done["outputs"]["pid"][0]
        .as_u64()
        .unwrap_or_else(|| panic!("no pid: {done:?}"))
}

#[tokio::test]
async fn a_project_group_serves_every_node_py_from_one_worker_and_reloads_together() {
    if !python3() {
        return;
    }
    let nodes = NodesDir::examples()
        .with_file("py/a/node.py", node_py("py-a", "1.0.0", &pid_node("one")).as_bytes())
        .with_file("py/b/node.py", node_py("py-b", "1.0.0", &pid_node("one")).as_bytes())
        .with_file("py/bad/node.py", b"def broken(:\n");
    let server = Server::builder(&nodes)
        .config("watch_debounce_time = 100\n[python]\ngroup = \"project\"")
        .start();

    // The member that does not import is left out, and said so; the rest
    // of its group and the native nodes serve.
    let served = uids(&server.status_document().await);
    assert!(
        served.contains(&"py-a".to_owned()) && served.contains(&"py-b".to_owned()),
        "{served:?}"
    );
    assert!(served.contains(&"simple-text".to_owned()), "{served:?}");
    let logs = server.wait_for_log("the rest of its group serves");
    assert!(logs.contains("bad/node.py") && logs.contains("SyntaxError"), "{logs}");
    // ... and listed as a refused file, where /ui shows refusals.
    let refused_files = || async { libraries(&server).await["refused"].as_array().unwrap().clone() };
    let refused = refused_files().await;
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert!(
        refused[0]["path"].as_str().unwrap().ends_with("py/bad/node.py"),
        "{refused:?}"
    );
    assert!(
        refused[0]["reason"].as_str().unwrap().contains("SyntaxError"),
        "{refused:?}"
    );

    // One interpreter for the whole group.
    let mut client = Client::connect(&server).await;
    let a = run(&mut client, "py-a", json!({})).await;
    let b = run(&mut client, "py-b", json!({})).await;
    assert_eq!(pid(&a), pid(&b), "{a:?} {b:?}");
    let first = pid(&a);

    // A crash fails only its own execution; the worker comes back with
    // every node of the group.
    let crashed = run(&mut client, "py-a", json!({"exit": [true]})).await;
    assert_eq!(crashed["type"], "error", "{crashed:?}");
    assert!(
        crashed["message"].as_str().unwrap().starts_with("node crashed"),
        "{crashed:?}"
    );
    // Each try is a new execution; those sent before the worker is back
    // fail with a clear error, which is what a client sees meanwhile.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let restarted = loop {
        let b = run(&mut client, "py-b", json!({})).await;
        if b["type"] == "complete" {
            break pid(&b);
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the group's worker never came back: {b:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    assert_ne!(restarted, first);
    assert_eq!(pid(&run(&mut client, "py-a", json!({})).await), restarted);

    // An edit of one member reloads the group: both nodes answer from one
    // new worker, the edited one with its new code.
    std::fs::write(
        nodes.path().join("py/b/node.py"),
        node_py("py-b", "1.0.1", &pid_node("two")),
    )
    .unwrap();
    server.wait_for_log("swapped");
    let b = run(&mut client, "py-b", json!({})).await;
    assert_eq!(b["outputs"]["word"], json!(["two"]), "{b:?}");
    let a = run(&mut client, "py-a", json!({})).await;
    assert_eq!(a["outputs"]["word"], json!(["one"]), "{a:?}");
    assert_eq!(pid(&a), pid(&b));
    assert_ne!(pid(&b), restarted);

    // Fixing the broken member reloads the group with it: served, and no
    // longer refused.
    std::fs::write(
        nodes.path().join("py/bad/node.py"),
        node_py("py-fixed", "1.0.0", &pid_node("fixed")),
    )
    .unwrap();
    server.wait_for_log_count("swapped", 2);
    let fixed = run(&mut client, "py-fixed", json!({})).await;
    assert_eq!(fixed["outputs"]["word"], json!(["fixed"]), "{fixed:?}");
    assert!(refused_files().await.is_empty());
}

#[tokio::test]
async fn a_pack_is_the_nearest_folder_declaring_dependencies() {
    if !python3() {
        return;
    }
    let nodes = NodesDir::examples()
        .with_file("vision/requirements.txt", b"")
        .with_file(
            "vision/detect/node.py",
            node_py("py-detect", "1.0.0", &pid_node("d")).as_bytes(),
        )
        .with_file(
            "vision/track/node.py",
            node_py("py-track", "1.0.0", &pid_node("t")).as_bytes(),
        )
        .with_file(
            "text/upper/node.py",
            node_py("py-upper", "1.0.0", &pid_node("u")).as_bytes(),
        )
        .with_file(
            "text/lower/node.py",
            node_py("py-lower", "1.0.0", &pid_node("l")).as_bytes(),
        );
    let server = Server::builder(&nodes).config("[python]\ngroup = \"pack\"").start();
    let mut client = Client::connect(&server).await;
    let mut pids = Vec::new();
    for uid in ["py-detect", "py-track", "py-upper", "py-lower"] {
        let done = run(&mut client, uid, json!({})).await;
        assert_eq!(done["type"], "complete", "{uid}: {done:?}");
        pids.push(pid(&done));
    }
    // vision/ is a pack (it declares dependencies); the text nodes are in
    // no pack, so they share the root's.
    assert_eq!(pids[0], pids[1], "{pids:?}");
    assert_eq!(pids[2], pids[3], "{pids:?}");
    assert_ne!(pids[0], pids[2], "{pids:?}");
}

#[tokio::test]
async fn by_default_node_py_files_in_no_pack_share_one_worker_and_library_mode_splits_them() {
    if !python3() {
        return;
    }
    let nodes = NodesDir::examples()
        .with_file("py/a/node.py", node_py("py-a", "1.0.0", &pid_node("a")).as_bytes())
        .with_file("py/b/node.py", node_py("py-b", "1.0.0", &pid_node("b")).as_bytes());
    // The default, `pack`: no folder declares dependencies, so one pack.
    let server = Server::start(&nodes);
    let mut client = Client::connect(&server).await;
    let a = run(&mut client, "py-a", json!({})).await;
    let b = run(&mut client, "py-b", json!({})).await;
    assert_eq!(pid(&a), pid(&b), "{a:?} {b:?}");
    drop(client);
    drop(server);
    // `library`: one worker per file.
    let server = Server::builder(&nodes).config("[python]\ngroup = \"library\"").start();
    let mut client = Client::connect(&server).await;
    let a = run(&mut client, "py-a", json!({})).await;
    let b = run(&mut client, "py-b", json!({})).await;
    assert_ne!(pid(&a), pid(&b), "{a:?} {b:?}");
}
