//! Writing a node: `new` → `build` → served; `inspect`, `nodes`; and with
//! `build_sources`, editing a node's source changes what it answers while
//! the server runs, and a broken edit keeps the old version serving.

use std::{path::Path, process::Command};

use serde_json::json;

use crate::support::{
    BUILD_PATIENCE, Client, NodesDir, Server, final_status, foreign_abi_plugin, plugin, run_server_to_exit,
};

fn nano(args: &[&str], cwd: &Path) -> (i32, String, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_nano-server"));
    command.args(args).current_dir(cwd).env("RUST_BACKTRACE", "0");
    run_server_to_exit(&mut command)
}

/// Scaffolds crate `name` into `nodes/text/<name>`. Tests use distinct
/// names: node crates share one build folder.
fn scaffold(nodes: &NodesDir, name: &str) -> std::path::PathBuf {
    let dir = nodes.path().join("text").join(name);
    let (code, stdout, stderr) = nano(
        &["new", name, "--category", "Text", "--path", dir.to_str().unwrap()],
        nodes.path(),
    );
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("created"), "{stdout}");
    dir
}

#[tokio::test]
async fn a_new_node_builds_and_is_served() {
    let nodes = NodesDir::empty();
    let dir = scaffold(&nodes, "word_shout");
    let lib = std::fs::read_to_string(dir.join("src/lib.rs")).unwrap();
    assert!(lib.contains(r#"NodeDefinition::new("word-shout", "Word Shout")"#));
    assert!(lib.contains(r#".category("Text")"#));

    let (code, stdout, stderr) = nano(&["build", nodes.path().to_str().unwrap()], nodes.path());
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("1 of 1 node crate(s) built"), "{stdout}");

    let server = Server::start(&nodes);
    let response = reqwest::Client::new()
        .post(server.http("/nodes/word-shout/execute"))
        .body(r#"{"inputs": {"text": "hello big world"}, "parameters": {"min_length": 4}}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["outputs"], json!({"words": ["hello", "world"], "count": [2]}));
    let client = Client::connect(&server).await;
    assert_eq!(client.handshake["payload"]["nodeDefinitions"][0]["category"], "Text");
}

#[test]
fn new_refuses_bad_names_and_existing_folders() {
    let nodes = NodesDir::empty();
    for (name, why) in [
        ("1node", "start with"),
        ("my node", "not allowed"),
        ("fn", "keyword"),
        ("a/b", "not allowed"),
    ] {
        let (code, _, stderr) = nano(&["new", name, "--path", "somewhere"], nodes.path());
        assert_eq!(code, 2, "{name}: {stderr}");
        assert!(
            stderr.contains("not a valid crate name") && stderr.contains(why),
            "{name}: {stderr}"
        );
    }
    assert!(!nodes.path().join("somewhere").exists());

    std::fs::create_dir_all(nodes.path().join("taken")).unwrap();
    std::fs::write(nodes.path().join("taken/keep.txt"), "mine").unwrap();
    let (code, _, stderr) = nano(&["new", "fine_name", "--path", "taken"], nodes.path());
    assert_eq!(code, 1);
    assert!(stderr.contains("refusing to overwrite"), "{stderr}");
    assert_eq!(
        std::fs::read_to_string(nodes.path().join("taken/keep.txt")).unwrap(),
        "mine"
    );
}

#[test]
fn inspect_shows_nodes_or_why_a_library_is_refused() {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    let (code, stdout, _) = nano(&["inspect", plugin("test_plugin").to_str().unwrap()], here);
    assert_eq!(code, 0, "{stdout}");
    assert!(
        stdout.contains(&format!("nano-plugin-abi {}", nano_plugin_abi::ABI_VERSION)),
        "{stdout}"
    );
    for uid in ["test-panic", "test-echo", "test-stubborn", "test-hang"] {
        assert!(stdout.contains(uid), "{uid} in {stdout}");
    }
    let (code, stdout, _) = nano(
        &["inspect", "--json", plugin("simple_text_node").to_str().unwrap()],
        here,
    );
    assert_eq!(code, 0);
    let definitions: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(definitions[0]["uid"], "simple-text");

    let (code, stdout, _) = nano(&["inspect", plugin("not_a_plugin").to_str().unwrap()], here);
    assert_eq!(code, 1);
    assert!(stdout.contains("not a nano-server plugin"), "{stdout}");
    let (code, stdout, _) = nano(&["inspect", foreign_abi_plugin().to_str().unwrap()], here);
    assert_eq!(code, 1);
    assert!(
        stdout.contains(&format!(
            "built against nano-plugin-abi 0.2.0, this server has {}",
            nano_plugin_abi::ABI_VERSION
        )),
        "{stdout}"
    );
}

#[test]
fn nodes_lists_what_a_config_would_serve() {
    let nodes = NodesDir::examples().with_plugin("broken", "not_a_plugin");
    let config = nodes.path().join("config.toml");
    std::fs::write(&config, "server_uid = \"list\"\nnodes_path = \".\"\n").unwrap();
    let (code, stdout, stderr) = nano(&["nodes", "--config", config.to_str().unwrap()], nodes.path());
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("3 node(s)"), "{stdout}");
    for row in [
        "simple-text",
        "Simple Text",
        "1.0.0",
        "libsimple_text_node",
        "complex-math",
        "progress-steps",
    ] {
        assert!(stdout.contains(row), "{row} in {stdout}");
    }
    assert!(
        stdout.contains("refused") && stdout.contains("not_a_plugin"),
        "{stdout}"
    );

    std::fs::write(&config, "server_uid = \"list\"\nbogus = 1\n").unwrap();
    let (code, _, stderr) = nano(&["nodes", "--config", config.to_str().unwrap()], nodes.path());
    assert_eq!(code, 2);
    assert!(stderr.contains("`bogus`"), "{stderr}");
}

#[tokio::test]
async fn with_build_sources_an_edit_is_live_and_a_broken_edit_keeps_the_old_version() {
    // Laid out and started as the README does: relative paths from the
    // project folder.
    let project = NodesDir::empty();
    std::fs::write(
        project.path().join("config.toml"),
        "server_uid = \"authoring\"\nnodes_path = \"nodes\"\nbuild_sources = true\nwatch_debounce_time = 200\n",
    )
    .unwrap();
    let (code, _, stderr) = nano(&["new", "live_words", "--category", "Text"], project.path());
    assert_eq!(code, 0, "{stderr}");
    let dir = project.path().join("nodes/text/live_words");
    // Not built yet: the server builds it at start.
    let server = Server::in_project(project.path());
    server.wait_for_log_within("built live_words from source", BUILD_PATIENCE);
    let mut client = Client::connect(&server).await;
    let count = |statuses: &[serde_json::Value]| final_status(statuses)["outputs"]["count"].clone();
    let statuses = client.execute("live-words", json!({"text": "a b c"}), json!({})).await;
    assert_eq!(count(&statuses), json!([3]));

    let source = dir.join("src/lib.rs");
    let original = std::fs::read_to_string(&source).unwrap();
    let edited = original.replace(r#".with("count", words.len())"#, r#".with("count", words.len() * 100)"#);
    assert_ne!(edited, original, "the template still has the line this test edits");
    std::fs::write(&source, &edited).unwrap();
    server.wait_for_log_within("swapped", BUILD_PATIENCE);
    let statuses = client.execute("live-words", json!({"text": "a b c"}), json!({})).await;
    assert_eq!(count(&statuses), json!([300]));

    // A crate created while the server runs is built and served too.
    let (code, _, stderr) = nano(&["new", "late_words", "--category", "Text"], project.path());
    assert_eq!(code, 0, "{stderr}");
    server.wait_for_log_within("built late_words from source", BUILD_PATIENCE);
    client
        .recv_where(|f| f["type"] == "definitions_update" && f.to_string().contains("\"late-words\""))
        .await;
    // Built once at start and once per edit: compiling reads the sources,
    // which must not count as a change.
    assert_eq!(
        server.logs().matches("built live_words from source").count(),
        2,
        "{}",
        server.logs()
    );

    std::fs::write(&source, format!("{edited}\nfn broken( {{\n")).unwrap();
    let failure = server.wait_for_log_within("build of live_words failed", BUILD_PATIENCE);
    assert!(failure.contains("previous version keeps serving"), "{failure}");
    server.wait_for_log("unclosed delimiter"); // the compiler's own message reaches the log
    let statuses = client.execute("live-words", json!({"text": "a b c"}), json!({})).await;
    assert_eq!(count(&statuses), json!([300]));
}

#[tokio::test]
async fn new_python_writes_an_sdk_node_that_a_watching_server_serves_at_once() {
    if !Command::new("python3")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        eprintln!("skipped: no python3 on PATH");
        return;
    }
    let nodes = NodesDir::examples();
    let server = Server::builder(&nodes)
        .config("auto_watch = true\nwatch_debounce_time = 200")
        .start();
    let mut client = Client::connect(&server).await;
    let dir = nodes.path().join("text").join("py_words");
    let (code, stdout, stderr) = nano(
        &[
            "new",
            "--python",
            "py_words",
            "--category",
            "Text",
            "--path",
            dir.to_str().unwrap(),
        ],
        nodes.path(),
    );
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("created") && stdout.contains("node.py"), "{stdout}");
    assert!(stdout.contains("serves node `py-words` in a Python worker"), "{stdout}");
    // Nothing to build: the watcher sees the file and the node is live.
    loop {
        let update = client.next_update().await;
        if crate::support::definition_uids(&update).contains(&"py-words".to_owned()) {
            break;
        }
    }
    let statuses = client
        .execute(
            "py-words",
            json!({"text": ["hello big world"]}),
            json!({"min_length": 4}),
        )
        .await;
    let last = final_status(&statuses);
    assert_eq!(last["type"], "complete", "{statuses:?}");
    assert_eq!(last["outputs"], json!({"words": ["hello", "world"], "count": [2]}));

    // Refuses to overwrite, and names the problem.
    let (code, _, stderr) = nano(
        &["new", "--python", "py_words", "--path", dir.to_str().unwrap()],
        nodes.path(),
    );
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("refusing to overwrite"), "{stderr}");
}
