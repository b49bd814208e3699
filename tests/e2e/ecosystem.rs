//! A drop-in for SDK projects: nano-server reads the SDKs' `nanoserver.json`
//! and environment names, serves its Python nodes, prints
//! shell completions and a man page, and `new` says what comes next.

use std::{
    io::{Read, Write},
    net::TcpListener,
    path::Path,
    process::Command,
};

use serde_json::{Value, json};

use crate::support::{NodesDir, Server, run_server_to_exit, server_command, server_command_bare, uids, workspace_root};

/// The benchmark peer's `nanoserver.json`: a real Python SDK project's file.
fn peer_nanoserver_json() -> Value {
    let text = std::fs::read_to_string(workspace_root().join("bench/peer/nanoserver.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// A project laid out as the SDK's: `nanoserver.json` beside `nodes/`, here
/// holding the three example libraries.
fn sdk_project(nanoserver_json: &Value) -> NodesDir {
    let project = NodesDir::empty()
        .with_plugin("nodes/processing/simple_text_node", "simple_text_node")
        .with_plugin("nodes/processing/complex_math_node", "complex_math_node")
        .with_plugin("nodes/utility/progress_node", "progress_node");
    std::fs::write(
        project.path().join("nanoserver.json"),
        serde_json::to_string_pretty(nanoserver_json).unwrap(),
    )
    .unwrap();
    project
}

/// `nano-server --config nanoserver.json --port 0`, run in `project`.
fn start_with_json(project: &NodesDir) -> Server {
    let mut command = server_command(Path::new("nanoserver.json"));
    command.current_dir(project.path()).arg("--port").arg("0");
    Server::from_command(command)
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn nano(args: &[&str], cwd: &Path) -> (i32, String, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_nano-server"));
    command.args(args).current_dir(cwd).env("RUST_BACKTRACE", "0");
    for var in ["PORT", "SERVER_UID", "NANO_SERVER_TOKEN"] {
        command.env_remove(var);
    }
    run_server_to_exit(&mut command)
}

#[tokio::test]
async fn an_sdk_project_is_served_under_the_identity_of_its_nanoserver_json() {
    let peer = peer_nanoserver_json();
    assert_eq!(peer["autoWatch"], false, "the test relies on the peer's file");
    let project = sdk_project(&peer);
    let server = start_with_json(&project);

    let status = server.status_document().await;
    assert_eq!(status["serverUid"], peer["serverUid"]);
    assert_eq!(status["serverDisplayName"], peer["serverDisplayName"]);
    assert_eq!(status["serverPackageId"], peer["serverPackageId"]);
    assert_eq!(status["domain"], peer["domain"]);
    assert_eq!(uids(&status), ["complex-math", "progress-steps", "simple-text"]);
    let logs = server.logs();
    assert!(
        !logs.contains("`language`"),
        "`language` is served as is, without a word:\n{logs}"
    );
    assert!(
        !logs.contains("watching for library changes"),
        "autoWatch is false:\n{logs}"
    );
    assert!(
        !logs.contains("unknown key"),
        "every key of the peer's file is known:\n{logs}"
    );
}

#[tokio::test]
async fn nanoserver_json_honours_nano_server_keys_and_warns_once_about_unknown_ones() {
    let mut file = peer_nanoserver_json();
    file["auth_token"] = json!("sdk-project-secret");
    file["entryPoint"] = json!("main.py");
    file["pythonVersion"] = json!("3.11");
    let project = sdk_project(&file);
    let server = start_with_json(&project);

    let warning = server.wait_for_log("ignoring unknown key(s)");
    assert!(warning.contains("WARN"), "{warning}");
    assert!(
        warning.contains("`entryPoint`") && warning.contains("`pythonVersion`"),
        "{warning}"
    );
    assert!(warning.contains("nanoserver.json"), "{warning}");
    assert_eq!(server.logs().matches("unknown key").count(), 1, "{}", server.logs());

    let client = reqwest::Client::new();
    let anonymous = client.get(server.http("/")).send().await.unwrap();
    assert_eq!(anonymous.status(), 401, "the file's auth_token is enforced");
    let status: Value = client
        .get(server.http("/"))
        .bearer_auth("sdk-project-secret")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(status["serverUid"], "nano-python-peer");
}

#[tokio::test]
async fn without_config_a_nanoserver_json_in_the_current_folder_is_used_after_config_toml() {
    let port = free_port();
    let mut file = peer_nanoserver_json();
    file["port"] = json!(port);
    let project = sdk_project(&file);
    let mut command = server_command_bare();
    command.current_dir(project.path());
    let server = Server::from_command(command);
    assert_eq!(server.port, port, "the file's port");
    assert_eq!(server.status_document().await["serverUid"], "nano-python-peer");
    drop(server);

    // config.toml stays the first choice.
    std::fs::write(
        project.path().join("config.toml"),
        "server_uid = \"toml-first\"\nnodes_path = \"nodes\"\n",
    )
    .unwrap();
    let mut command = server_command_bare();
    command.current_dir(project.path()).arg("--port").arg("0");
    let server = Server::from_command(command);
    assert_eq!(server.status_document().await["serverUid"], "toml-first");
}

#[test]
fn a_key_in_both_spellings_or_of_the_wrong_type_is_one_line_naming_it() {
    let project = NodesDir::empty();
    let file = project.path().join("nanoserver.json");
    for (text, expected) in [
        (
            r#"{"serverUid": "a", "server_uid": "b"}"#,
            &["`serverUid`", "`server_uid`"][..],
        ),
        (
            r#"{"serverUid": "a", "autoWatch": "yes"}"#,
            &["`autoWatch`", "invalid type"][..],
        ),
        (r#"{"serverDisplayName": "no uid"}"#, &["`serverUid`"][..]),
        ("{\n  \"serverUid\": \"a\",\n}", &["line 3"][..]),
    ] {
        std::fs::write(&file, text).unwrap();
        let (code, stdout, stderr) = run_server_to_exit(&mut server_command(&file));
        assert_eq!(code, 2, "{text}: {stderr}");
        assert!(!stdout.contains("[NANOSERVER_READY]"));
        assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
        assert!(stderr.contains("nanoserver.json"), "names the file: {stderr}");
        for needle in expected {
            assert!(stderr.contains(needle), "{needle} in {stderr}");
        }
    }
}

#[tokio::test]
async fn nanocore_endpoint_is_an_alias_of_nanocore_http_endpoint() {
    let nodes = NodesDir::empty().with_plugin("processing/simple_text_node", "simple_text_node");
    let server = Server::builder(&nodes)
        .env("NANOCORE_ENDPOINT", "http://127.0.0.1:9")
        .start();
    assert_eq!(
        server.status_document().await["nanocoreHttpEndpoint"],
        "http://127.0.0.1:9"
    );
    let server = Server::builder(&nodes)
        .env("NANOCORE_ENDPOINT", "http://127.0.0.1:9")
        .env("NANOCORE_HTTP_ENDPOINT", "http://127.0.0.1:10")
        .start();
    assert_eq!(
        server.status_document().await["nanocoreHttpEndpoint"],
        "http://127.0.0.1:10",
        "the full name wins"
    );
}

#[tokio::test]
async fn the_benchmark_peers_python_sdk_project_is_served_as_is() {
    let peer = workspace_root().join("bench/peer");
    let mut project = NodesDir::empty()
        .with_file("nanoserver.json", &std::fs::read(peer.join("nanoserver.json")).unwrap())
        .with_file("compat.py", &std::fs::read(peer.join("compat.py")).unwrap());
    for node in [
        "processing/simple_text_node",
        "processing/complex_math_node",
        "utility/progress_node",
    ] {
        let source = std::fs::read(peer.join("nodes").join(node).join("node.py")).unwrap();
        project = project.with_file(&format!("nodes/{node}/node.py"), &source);
    }
    let server = start_with_json(&project);
    let served = uids(&server.status_document().await);
    assert_eq!(
        served,
        ["complex-math", "progress-steps", "simple-text"],
        "{}",
        server.logs()
    );
    assert!(!server.logs().contains("WARN"), "{}", server.logs());
}

#[test]
fn completion_scripts_and_the_man_page_come_from_the_cli_without_the_worker() {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    // How each shell's script offers a subcommand.
    for (shell, offer) in [("bash", "nano__server,{}"), ("zsh", "({})"), ("fish", "-a \"{}\"")] {
        let (code, script, stderr) = nano(&["completions", shell], here);
        assert_eq!(code, 0, "{shell}: {stderr}");
        assert!(script.contains("nano-server"), "{shell}: {script}");
        let offers = |name: &str| script.contains(&offer.replace("{}", name));
        for name in ["new", "build", "inspect", "nodes", "completions", "man"] {
            assert!(offers(name), "{shell} offers {name}: {script}");
        }
        assert!(!offers("worker"), "{shell} must not offer the worker: {script}");
    }

    let (code, page, stderr) = nano(&["man"], here);
    assert_eq!(code, 0, "{stderr}");
    assert!(page.starts_with(".TH") || page.starts_with(".ie"), "{page}");
    assert!(page.contains(".TH nano-server 1"), "{page}");
    for name in ["new", "build", "inspect", "nodes", "completions", "man"] {
        assert!(page.contains(&format!("nano\\-server\\-{name}(1)")), "{name} in {page}");
    }
    assert!(!page.contains("nano\\-server\\-worker"), "{page}");
    assert!(page.contains("nanoserver.json"), "the --config help: {page}");
}

#[test]
fn new_without_a_running_server_prints_the_build_command() {
    let project = NodesDir::empty();
    let (code, stdout, stderr) = nano(&["new", "loud_words", "--category", "Text"], project.path());
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("created nodes/text/loud_words/Cargo.toml"), "{stdout}");
    assert!(
        stdout.contains("next: edit nodes/text/loud_words/src/lib.rs"),
        "{stdout}"
    );
    assert!(stdout.contains("`nano-server build nodes/text/loud_words`"), "{stdout}");
    let library = format!(
        "nodes/text/loud_words/{}loud_words{}",
        std::env::consts::DLL_PREFIX,
        std::env::consts::DLL_SUFFIX
    );
    assert!(stdout.contains(&library), "where the library lands: {stdout}");
    assert!(stdout.contains("`loud-words`"), "the node uid: {stdout}");
}

#[test]
fn new_beside_a_server_that_builds_sources_says_saving_is_enough() {
    // Stands in for a running server: answers `GET /` with a status
    // document of the config's uid.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            let mut request = Vec::new();
            let mut byte = [0u8; 1];
            while !request.ends_with(b"\r\n\r\n") && stream.read(&mut byte).unwrap_or(0) == 1 {
                request.push(byte[0]);
            }
            let body = json!({"message": "Nano node server is running", "serverUid": "live-project", "nodeUIDs": []})
                .to_string();
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    let project = NodesDir::empty();
    let config = |extra: &str| {
        std::fs::write(
            project.path().join("config.toml"),
            format!("server_uid = \"live-project\"\nport = {port}\nnodes_path = \"nodes\"\n{extra}"),
        )
        .unwrap();
    };
    config("build_sources = true\n");
    let (code, stdout, stderr) = nano(&["new", "saved_words", "--category", "Text"], project.path());
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("created nodes/text/saved_words/Cargo.toml"), "{stdout}");
    assert!(
        stdout.contains(&format!("the server on http://127.0.0.1:{port}")) && stdout.contains("on every save"),
        "{stdout}"
    );
    assert!(!stdout.contains("nano-server build"), "{stdout}");

    // Without build_sources the same server would not build it.
    config("build_sources = false\n");
    let (code, stdout, _) = nano(&["new", "unsaved_words", "--category", "Text"], project.path());
    assert_eq!(code, 0);
    assert!(
        stdout.contains("`nano-server build nodes/text/unsaved_words`"),
        "{stdout}"
    );
}
