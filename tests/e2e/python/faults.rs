//! What native workers survive, Python workers survive too: a segfault in C
//! code (`ctypes.string_at(0)`), a node past `worker_memory_limit_mb`; and a
//! node folder's own `.venv` (as `nano-server build` makes it from a
//! `requirements.txt`) gives that node pack its interpreter.

use serde_json::json;

use super::{node_py, python3};
use crate::support::{Client, NodesDir, Server, final_status};

/// `grow` keeps 400 MiB resident (written, not just reserved) until the
/// limit ends its worker, or gives up after 30 s.
const FAULTS: &str = "import ctypes, time
def execute(ctx):
    if ctx.inputs.get('segfault'):
        ctypes.string_at(0)
    if ctx.inputs.get('grow'):
        hog = [b'x' * (1 << 20) + bytes([i % 256]) for i in range(400)]
        time.sleep(30)
        return {'grew': [len(hog)]}
    return {'pid': [os.getpid()]}";

#[tokio::test]
async fn a_segfault_or_a_memory_hog_in_a_python_node_costs_only_its_own_execution() {
    if !python3() {
        return;
    }
    let nodes = NodesDir::examples().with_file("py/faults/node.py", node_py("py-faults", "1.0.0", FAULTS).as_bytes());
    let server = Server::builder(&nodes).config("worker_memory_limit_mb = 256").start();
    let mut client = Client::connect(&server).await;
    for (inputs, says) in [
        (json!({"segfault": [true]}), "SIGSEGV"),
        (json!({"grow": [true]}), "memory"),
    ] {
        let statuses = client.execute("py-faults", inputs.clone(), json!({})).await;
        let error = final_status(&statuses);
        assert_eq!(error["type"], "error", "{inputs}: {statuses:?}");
        let message = error["message"].as_str().unwrap();
        assert!(
            message.starts_with("node crashed") && message.contains(says),
            "{inputs}: {message}"
        );
        // The native node did not notice, and the library serves again.
        let native = client
            .execute("simple-text", json!({"text": ["fine"]}), json!({}))
            .await;
        assert_eq!(final_status(&native)["type"], "complete", "{native:?}");
        let again = client.execute("py-faults", json!({}), json!({})).await;
        assert!(final_status(&again)["outputs"]["pid"][0].is_u64(), "{again:?}");
    }
}

#[tokio::test]
async fn a_node_folder_with_its_own_venv_runs_on_that_interpreter() {
    if !python3() {
        return;
    }
    const WHERE: &str = "import sys
def execute(ctx):
    return {'prefix': [sys.prefix], 'executable': [sys.executable]}";
    let nodes = NodesDir::empty()
        .with_file("pack/own/node.py", node_py("py-own-venv", "1.0.0", WHERE).as_bytes())
        .with_file("pack/plain/node.py", node_py("py-plain", "1.0.0", WHERE).as_bytes());
    let venv = nodes.path().join("pack/own/.venv");
    let made = std::process::Command::new("python3")
        .args(["-m", "venv", "--without-pip"])
        .arg(&venv)
        .status()
        .unwrap();
    assert!(made.success());
    let server = Server::start(&nodes);
    let mut client = Client::connect(&server).await;
    let own = client.execute("py-own-venv", json!({}), json!({})).await;
    let prefix = final_status(&own)["outputs"]["prefix"][0].as_str().unwrap().to_owned();
    assert_eq!(
        std::fs::canonicalize(&prefix).unwrap(),
        std::fs::canonicalize(&venv).unwrap(),
        "{own:?}"
    );
    // The other folder has none: python3 from PATH, not that .venv.
    let plain = client.execute("py-plain", json!({}), json!({})).await;
    let prefix = final_status(&plain)["outputs"]["prefix"][0]
        .as_str()
        .unwrap()
        .to_owned();
    assert_ne!(
        std::fs::canonicalize(&prefix).unwrap(),
        std::fs::canonicalize(&venv).unwrap()
    );
}

#[tokio::test]
async fn build_gives_a_node_folder_that_declares_dependencies_its_own_venv() {
    if !python3() {
        return;
    }
    const WHERE: &str = "import sys
def execute(ctx):
    return {'prefix': [sys.prefix]}";
    // An empty requirements.txt: what `build` does is the same with real
    // packages, without reaching PyPI from a test.
    let nodes = NodesDir::empty()
        .with_file("pack/deps/node.py", node_py("py-deps", "1.0.0", WHERE).as_bytes())
        .with_file("pack/deps/requirements.txt", b"# nothing needed yet\n")
        .with_file("pack/none/node.py", node_py("py-none", "1.0.0", WHERE).as_bytes());
    let mut build = std::process::Command::new(env!("CARGO_BIN_EXE_nano-server"));
    build.arg("build").arg(nodes.path());
    let (code, stdout, stderr) = crate::support::run_server_to_exit(&mut build);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("1 of 1 Python node folder(s) prepared"), "{stdout}");
    let venv = nodes.path().join("pack/deps/.venv");
    assert!(venv.join("bin/python").is_file(), "{stdout}");
    assert!(!nodes.path().join("pack/none/.venv").exists());

    let server = Server::start(&nodes);
    let mut client = Client::connect(&server).await;
    let deps = client.execute("py-deps", json!({}), json!({})).await;
    let prefix = final_status(&deps)["outputs"]["prefix"][0].as_str().unwrap().to_owned();
    assert_eq!(
        std::fs::canonicalize(prefix).unwrap(),
        std::fs::canonicalize(&venv).unwrap(),
        "{deps:?}"
    );
}

/// Busy in every way a live Python worker can be, for 5 heartbeats each.
const BUSY: &str = "import time
def spin(seconds):
    end = time.monotonic() + seconds
    n = 0
    while time.monotonic() < end:
        n += 1
    return n
def sync_spin(ctx):
    return {'spun': [spin(2.0) > 0], 'pid': [os.getpid()]}
async def execute(ctx):
    if ctx.inputs.get('sync'):
        return await asyncio.get_running_loop().run_in_executor(None, sync_spin, ctx)
    if ctx.inputs.get('block_loop'):
        time.sleep(2.0)
        spin(2.0)
    return {'spun': [True], 'pid': [os.getpid()]}";

#[tokio::test]
async fn a_busy_python_worker_keeps_its_heartbeat_and_a_stopped_one_is_replaced() {
    if !python3() {
        return;
    }
    let nodes = NodesDir::examples().with_file("py/busy/node.py", node_py("py-busy", "1.0.0", BUSY).as_bytes());
    let server = Server::builder(&nodes).config("worker_heartbeat_ms = 400").start();
    let mut client = Client::connect(&server).await;
    // Spinning in a thread, blocking the event loop with a sleep and then
    // with pure-Python work: the reader thread still answers every ping
    // (the GIL is handed over every 5 ms), so nothing is taken for a stall.
    let mut pids = Vec::new();
    for inputs in [json!({"sync": [true]}), json!({"block_loop": [true]})] {
        let statuses = client.execute("py-busy", inputs.clone(), json!({})).await;
        let done = final_status(&statuses);
        assert_eq!(done["type"], "complete", "{inputs}: {statuses:?}");
        pids.push(done["outputs"]["pid"][0].as_u64().unwrap());
    }
    assert_eq!(pids[0], pids[1], "the same worker ran both");
    let stalls = r#"nano_worker_restarts_total{library="py/busy/node.py",reason="stalled"}"#;
    assert_eq!(server.metric(stalls).await, 0.0);

    // Stopped, it misses its pings: replaced, its execution told why.
    let pid = pids[0] as libc::pid_t;
    assert_eq!(unsafe { libc::kill(pid, libc::SIGSTOP) }, 0);
    let statuses = client.execute("py-busy", json!({}), json!({})).await;
    let error = final_status(&statuses);
    assert_eq!(error["type"], "error", "{statuses:?}");
    let message = error["message"].as_str().unwrap();
    assert!(
        message.starts_with("node stalled: the worker for py/busy/node.py stopped answering for"),
        "{message}"
    );
    let again = client.execute("py-busy", json!({}), json!({})).await;
    let pid_again = final_status(&again)["outputs"]["pid"][0].as_u64().unwrap();
    assert_ne!(pid_again, pids[0], "a new worker serves");
    assert_eq!(server.metric(stalls).await, 1.0);
}
