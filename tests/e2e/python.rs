//! Python SDK nodes (`node.py`, issue 21): served beside native ones by the
//! same server, each library in a supervised Python worker, over the same
//! WebSocket; hot-swapped on edits; refused, not fatal, without an
//! interpreter.

use serde_json::{Value, json};

use crate::support::{Client, NodesDir, Server, definition_version, final_status, uids};

mod faults;
mod groups;
mod shared;
mod workers;

/// Whether `python3` is on PATH; the tests that need it say so and pass
/// without it (CI has it).
fn python3() -> bool {
    let found = std::process::Command::new("python3")
        .arg("--version")
        .output()
        .is_ok_and(|out| out.status.success());
    if !found {
        eprintln!("skipped: no python3 on PATH");
    }
    found
}

/// `GET /libraries`: what is served and what is refused.
async fn libraries(server: &Server) -> Value {
    reqwest::get(server.http("/libraries"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// A node.py registering `uid` at `version` whose `execute` is `body`.
fn node_py(uid: &str, version: &str, body: &str) -> String {
    format!(
        "import asyncio, os\n\
         from nanograph_sdk import NanoSDK\n\
         node = NanoSDK.register_node({{'uid': '{uid}', 'name': '{uid}', 'category': 'Test', 'version': '{version}',\n\
         \x20   'description': 'a test node', 'inputs': [], 'outputs': [], 'parameters': []}})\n\
         {body}\n\
         node['execute'] = execute\n"
    )
}

const ASYNC_PROGRESS: &str = "async def execute(ctx):
    await ctx.context['send_status']({'type': 'running', 'message': 'half way', 'progress': {'step': 1, 'total': 2}})
    return {'echo': ctx.inputs.get('text'), 'ratio': 0.5, 'nested': {'list': [1, None, 'ü']}}";

const SYNC_SUM: &str = "def execute(ctx):
    return {'sum': [ctx.inputs['a'][0] + ctx.inputs['b'][0]]}";

const RAISES: &str = "async def execute(ctx):
    raise ValueError('the input is wrong: ' + str(ctx.inputs.get('why')))";

const EXITS: &str = "def execute(ctx):
    if ctx.inputs.get('exit'):
        os._exit(1)
    return {'pid': [os.getpid()]}";

const OWN_COMPLETE: &str = "async def execute(ctx):
    await ctx.context['send_status']({'type': 'complete', 'message': 'done my way', 'outputs': {'mine': [True]}})
    return {'ignored': [True]}";

fn python_nodes() -> NodesDir {
    NodesDir::examples()
        .with_file(
            "py/progress/node.py",
            node_py("py-progress", "1.0.0", ASYNC_PROGRESS).as_bytes(),
        )
        .with_file("py/sum/node.py", node_py("py-sum", "1.0.0", SYNC_SUM).as_bytes())
        .with_file("py/raises/node.py", node_py("py-raises", "1.0.0", RAISES).as_bytes())
        .with_file("py/exits/node.py", node_py("py-exits", "1.0.0", EXITS).as_bytes())
        .with_file("py/own/node.py", node_py("py-own", "1.0.0", OWN_COMPLETE).as_bytes())
}

#[tokio::test]
async fn python_and_native_nodes_are_served_together_over_one_websocket() {
    if !python3() {
        return;
    }
    let nodes = python_nodes();
    let server = Server::start(&nodes);
    assert_eq!(
        uids(&server.status_document().await),
        [
            "complex-math",
            "progress-steps",
            "py-exits",
            "py-own",
            "py-progress",
            "py-raises",
            "py-sum",
            "simple-text"
        ]
    );
    let mut client = Client::connect(&server).await;

    // async def, a progress status, then complete with the outputs as returned.
    let statuses = client.execute("py-progress", json!({"text": ["hi"]}), json!({})).await;
    let kinds: Vec<&Value> = statuses.iter().map(|s| &s["type"]).collect();
    assert_eq!(kinds, ["running", "running", "complete"], "{statuses:?}");
    assert_eq!(statuses[1]["message"], "half way");
    assert_eq!(statuses[1]["progress"], json!({"step": 1, "total": 2}));
    let done = final_status(&statuses);
    assert_eq!(done["message"], "Execution finished.");
    assert_eq!(
        done["outputs"],
        json!({"echo": ["hi"], "ratio": 0.5, "nested": {"list": [1, null, "ü"]}})
    );

    // A plain def.
    let statuses = client.execute("py-sum", json!({"a": [2], "b": [40]}), json!({})).await;
    assert_eq!(final_status(&statuses)["outputs"], json!({"sum": [42]}), "{statuses:?}");

    // A node that ends with its own complete status: its message and outputs.
    let statuses = client.execute("py-own", json!({}), json!({})).await;
    let done = final_status(&statuses);
    assert_eq!(done["message"], "done my way", "{statuses:?}");
    assert_eq!(done["outputs"], json!({"mine": [true]}));

    // An exception: an error with str(exc).
    let statuses = client
        .execute("py-raises", json!({"why": "too short"}), json!({}))
        .await;
    let error = final_status(&statuses);
    assert_eq!(error["type"], "error");
    assert_eq!(error["message"], "the input is wrong: too short");

    // The native node, on the same connection.
    let statuses = client
        .execute("simple-text", json!({"text": ["hello"]}), json!({}))
        .await;
    assert_eq!(final_status(&statuses)["type"], "complete", "{statuses:?}");
}

#[tokio::test]
async fn a_python_node_that_exits_fails_only_its_execution_and_its_worker_restarts() {
    if !python3() {
        return;
    }
    let nodes = python_nodes();
    // One worker per file: only this file's worker goes (in a group, the
    // group's would; see python::groups).
    let server = Server::builder(&nodes).config("[python]\ngroup = \"library\"").start();
    let mut client = Client::connect(&server).await;
    let before = client.execute("py-exits", json!({}), json!({})).await;
    let pid = final_status(&before)["outputs"]["pid"][0].clone();
    assert!(pid.is_u64(), "{before:?}");

    let statuses = client.execute("py-exits", json!({"exit": [true]}), json!({})).await;
    let error = final_status(&statuses);
    assert_eq!(error["type"], "error");
    let message = error["message"].as_str().unwrap();
    assert!(
        message.starts_with("node crashed") && message.contains("exits/node.py") && message.contains("code 1"),
        "{message}"
    );

    // The native node and the other Python nodes did not notice.
    let native = client
        .execute("simple-text", json!({"text": ["still here"]}), json!({}))
        .await;
    assert_eq!(final_status(&native)["type"], "complete", "{native:?}");
    let sum = client.execute("py-sum", json!({"a": [1], "b": [1]}), json!({})).await;
    assert_eq!(final_status(&sum)["outputs"], json!({"sum": [2]}));

    // The crashed library serves again, from a new worker.
    let after = client.execute("py-exits", json!({}), json!({})).await;
    let new_pid = &final_status(&after)["outputs"]["pid"][0];
    assert!(new_pid.is_u64() && *new_pid != pid, "{after:?}");
    server.wait_for_log("worker restarted");
}

#[tokio::test]
async fn an_edit_goes_live_and_a_syntax_error_keeps_the_old_version_serving() {
    if !python3() {
        return;
    }
    let body = |answer: &str| {
        format!(
            "HELPER = open(os.path.join(os.path.dirname(__file__), 'helper.py')).read().strip()\n\
             def execute(ctx):\n    return {{'answer': ['{answer}'], 'helper': [HELPER]}}"
        )
    };
    let nodes = NodesDir::examples()
        .with_file("py/edit/node.py", node_py("py-edit", "1.0.0", &body("one")).as_bytes())
        .with_file("py/edit/helper.py", b"# first\n");
    let server = Server::builder(&nodes).config("watch_debounce_time = 100").start();
    let mut client = Client::connect(&server).await;
    let outputs = |statuses: &[Value]| final_status(statuses)["outputs"].clone();
    let first = client.execute("py-edit", json!({}), json!({})).await;
    assert_eq!(outputs(&first), json!({"answer": ["one"], "helper": ["# first"]}));

    // An edit of node.py: the new version is announced and answers.
    let file = nodes.path().join("py/edit/node.py");
    std::fs::write(&file, node_py("py-edit", "2.0.0", &body("two"))).unwrap();
    loop {
        let update = client.next_update().await;
        if definition_version(&update, "py-edit").as_deref() == Some("2.0.0") {
            break;
        }
    }
    let second = client.execute("py-edit", json!({}), json!({})).await;
    assert_eq!(outputs(&second), json!({"answer": ["two"], "helper": ["# first"]}));

    // An edit of a module beside it reloads the library too.
    std::fs::write(nodes.path().join("py/edit/helper.py"), "# second\n").unwrap();
    server.wait_for_log("swapped");
    client.next_update().await;
    let third = client.execute("py-edit", json!({}), json!({})).await;
    assert_eq!(outputs(&third), json!({"answer": ["two"], "helper": ["# second"]}));

    // A syntax error: refused with where, and the served version keeps serving.
    std::fs::write(&file, "def execute(ctx)\n    return {}\n").unwrap();
    let refused = server.wait_for_log("edit/node.py:1)");
    assert!(
        refused.contains("SyntaxError: ") && refused.contains("the previous version keeps serving"),
        "{refused}"
    );
    let fourth = client.execute("py-edit", json!({}), json!({})).await;
    assert_eq!(outputs(&fourth), json!({"answer": ["two"], "helper": ["# second"]}));
}

#[tokio::test]
async fn without_a_python_interpreter_native_nodes_serve_and_python_libraries_are_refused() {
    let nodes = NodesDir::examples().with_file("py/sum/node.py", node_py("py-sum", "1.0.0", SYNC_SUM).as_bytes());
    let server = Server::builder(&nodes).env("PATH", "/nonexistent").start();
    assert_eq!(
        uids(&server.status_document().await),
        ["complex-math", "progress-steps", "simple-text"]
    );
    let looked = server.wait_for_log("no Python interpreter found");
    assert!(looked.contains("python3 on PATH"), "{looked}");

    let libraries = libraries(&server).await;
    let refused = libraries["refused"].as_array().unwrap();
    assert_eq!(refused.len(), 1, "{libraries}");
    assert!(
        refused[0]["path"].as_str().unwrap().ends_with("py/sum/node.py"),
        "{libraries}"
    );
    let reason = refused[0]["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("no Python interpreter found (looked for ") && reason.contains(".venv/bin/python"),
        "{reason}"
    );

    let mut client = Client::connect(&server).await;
    let statuses = client
        .execute("simple-text", json!({"text": ["hello"]}), json!({}))
        .await;
    assert_eq!(final_status(&statuses)["type"], "complete", "{statuses:?}");
}

#[tokio::test]
async fn a_library_that_no_longer_imports_is_refused_when_its_worker_restarts() {
    if !python3() {
        return;
    }
    let body = "exec(open(os.path.join(os.path.dirname(__file__), 'helper.py')).read())
def execute(ctx):
    if ctx.inputs.get('exit'):
        os._exit(1)
    return {'answer': [answer()]}";
    let nodes = NodesDir::examples()
        .with_file("py/crashy/node.py", node_py("py-crashy", "1.0.0", body).as_bytes())
        .with_file("py/crashy/helper.py", b"def answer():\n    return 42\n");
    let server = Server::builder(&nodes).config("watch_debounce_time = 100").start();
    let mut client = Client::connect(&server).await;
    let ok = client.execute("py-crashy", json!({}), json!({})).await;
    assert_eq!(final_status(&ok)["outputs"], json!({"answer": [42]}));

    // The helper breaks: the new version is refused, the running one serves on.
    std::fs::write(nodes.path().join("py/crashy/helper.py"), "def answer(:\n").unwrap();
    server.wait_for_log("the previous version keeps serving");
    let still = client.execute("py-crashy", json!({}), json!({})).await;
    assert_eq!(final_status(&still)["outputs"], json!({"answer": [42]}));

    // Its worker dies: the replacement no longer imports, so the library is
    // refused and its node withdrawn; the others serve on.
    let crashed = client.execute("py-crashy", json!({"exit": [true]}), json!({})).await;
    assert_eq!(final_status(&crashed)["type"], "error");
    let update = client.next_update().await;
    assert_eq!(
        crate::support::definition_uids(&update),
        ["complex-math", "progress-steps", "simple-text"]
    );
    let libraries = libraries(&server).await;
    let reason = libraries["refused"][0]["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("a replacement worker refused it: SyntaxError"),
        "{libraries}"
    );
    let native = client.execute("simple-text", json!({"text": ["up"]}), json!({})).await;
    assert_eq!(final_status(&native)["type"], "complete");
}

#[tokio::test]
async fn python_libraries_run_in_workers_even_with_in_process_isolation() {
    if !python3() || std::env::var("NANO_TEST_ISOLATION").is_ok_and(|mode| mode == "process") {
        return;
    }
    let nodes = NodesDir::examples().with_file("py/sum/node.py", node_py("py-sum", "1.0.0", SYNC_SUM).as_bytes());
    let server = Server::builder(&nodes).config("isolation = \"in-process\"").start();
    server.wait_for_log("Python libraries (node.py) run in worker processes even with isolation = \"in-process\"");
    let mut client = Client::connect(&server).await;
    let sum = client.execute("py-sum", json!({"a": [20], "b": [22]}), json!({})).await;
    assert_eq!(final_status(&sum)["outputs"], json!({"sum": [42]}));
    let native = client.execute("simple-text", json!({"text": ["hi"]}), json!({})).await;
    assert_eq!(final_status(&native)["type"], "complete");
}

#[tokio::test]
async fn python_nodes_reach_nanocore_through_the_servers_host_services() {
    if !python3() {
        return;
    }
    let token = "standin-secret";
    let nanocore = nanocore_standin::StandIn::start(token);
    let source =
        std::fs::read(crate::support::workspace_root().join("tests/python/edge/nodes/assets/node.py")).unwrap();
    let env = "def execute(ctx):
    return {name: [os.environ.get(name)] for name in ('NANOCORE_TOKEN', 'NANO_SERVER_TOKEN', 'PYTHONUNBUFFERED')}";
    // Host calls outside any execution: in `init`, before the worker is
    // ready, answered for the library's worker.
    let at_init = "from nanograph_sdk import upload_asset, asset_exists
FROM_INIT = {}
async def init(node):
    uploaded = await upload_asset(b'made in init', {'type': 'text'})
    FROM_INIT['hash'] = uploaded['hash']
    FROM_INIT['exists'] = await asset_exists(uploaded['hash'])
async def execute(ctx):
    return {'hash': [FROM_INIT['hash']], 'exists': [FROM_INIT['exists']]}";
    let nodes = NodesDir::examples()
        .with_file("py/assets/node.py", &source)
        .with_file("py/env/node.py", node_py("py-env", "1.0.0", env).as_bytes())
        .with_file("py/init/node.py", node_py("py-init", "1.0.0", at_init).as_bytes());
    let server = Server::builder(&nodes)
        .env("NANOCORE_HTTP_ENDPOINT", &nanocore.url())
        .env("NANOCORE_TOKEN", token)
        .env("NANO_SERVER_TOKEN", "")
        .start();
    // The tokens stay in the server.
    let mut client = Client::connect(&server).await;
    let env = client.execute("py-env", json!({}), json!({})).await;
    assert_eq!(
        final_status(&env)["outputs"],
        json!({"NANOCORE_TOKEN": [null], "NANO_SERVER_TOKEN": [null], "PYTHONUNBUFFERED": ["1"]})
    );
    let response = reqwest::Client::new()
        .post(server.http("/nodes/py-assets/execute"))
        .json(&json!({"inputs": {}}))
        .send()
        .await
        .unwrap();
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], "complete", "{body}\n{}", server.logs());
    let outputs = &body["outputs"];
    // Uploaded through the server (the token never entered the worker),
    // small in one call and 1 MiB in base64 chunks, and read back.
    let small = outputs["small"][0].as_str().unwrap();
    let stored = nanocore.get(small).expect("uploaded to NanoCore");
    assert_eq!(&stored.bytes[..], b"hello asset");
    assert_eq!(outputs["buffer"], json!(["hello asset"]));
    assert_eq!(outputs["big_ok"], json!([true]));
    assert_eq!(outputs["exists"], json!([true, false]));
    let missing = outputs["missing"][0].as_str().unwrap();
    assert!(
        missing.contains("not found") || missing.contains("NotFound"),
        "{missing}"
    );
    let calls = nanocore.wait_resource_calls(2, std::time::Duration::from_secs(10));
    assert_eq!(calls.len(), 2, "{calls:?}");

    let from_init = client.execute("py-init", json!({}), json!({})).await;
    let outputs = &final_status(&from_init)["outputs"];
    assert_eq!(outputs["exists"], json!([true]), "{from_init:?}");
    let stored = nanocore
        .get(outputs["hash"][0].as_str().unwrap())
        .expect("uploaded from init");
    assert_eq!(&stored.bytes[..], b"made in init");
}

#[tokio::test]
async fn a_python_node_past_the_timeout_is_aborted_and_its_worker_keeps_serving() {
    if !python3() {
        return;
    }
    let body = "async def execute(ctx):
    await asyncio.sleep(ctx.inputs.get('seconds', [0])[0])
    return {'pid': [os.getpid()]}";
    let nodes = NodesDir::empty().with_file("py/sleepy/node.py", node_py("py-sleepy", "1.0.0", body).as_bytes());
    let server = Server::builder(&nodes).config("execution_timeout_ms = 500").start();
    let mut client = Client::connect(&server).await;
    let first = client.execute("py-sleepy", json!({}), json!({})).await;
    let pid = final_status(&first)["outputs"]["pid"].clone();

    let slow = client.execute("py-sleepy", json!({"seconds": [30]}), json!({})).await;
    let error = final_status(&slow);
    assert_eq!(error["type"], "error");
    assert_eq!(error["message"], "Execution timed out after 500 ms");

    // The abort reached the node (its async execute was cancelled and the
    // worker said so): nothing stays stuck, and the same worker answers next.
    crate::support::eventually("the aborted execution is no longer stuck", || async {
        let report: Value = reqwest::get(server.http("/server"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        report["executions"]["stuck"] == 0
    })
    .await;
    let next = client.execute("py-sleepy", json!({}), json!({})).await;
    assert_eq!(final_status(&next)["outputs"]["pid"], pid, "{next:?}");
    assert!(!server.logs().contains("ignored its abort"), "{}", server.logs());
}

#[tokio::test]
async fn the_configured_interpreter_is_used_even_when_path_has_none() {
    if !python3() {
        return;
    }
    let output = std::process::Command::new("python3")
        .args(["-c", "import sys; print(sys.executable)"])
        .output()
        .unwrap();
    let executable = String::from_utf8(output.stdout).unwrap().trim().to_owned();
    let nodes = NodesDir::empty().with_file("py/sum/node.py", node_py("py-sum", "1.0.0", SYNC_SUM).as_bytes());
    let server = Server::builder(&nodes)
        .env("PATH", "/nonexistent")
        .config(&format!("[python]\ninterpreter = {}", json!(executable)))
        .start();
    let mut client = Client::connect(&server).await;
    let sum = client.execute("py-sum", json!({"a": [1], "b": [2]}), json!({})).await;
    assert_eq!(final_status(&sum)["outputs"], json!({"sum": [3]}), "{}", server.logs());
}

#[tokio::test]
async fn a_garbled_frame_from_a_python_worker_ends_that_worker_not_the_server() {
    if !python3() {
        return;
    }
    // Node code can reach the channel (fd 3): what it writes there is a
    // frame like any other, checked like any other.
    let body = "def execute(ctx):
    if ctx.inputs.get('garble'):
        os.write(3, b'\\x00\\x00\\x00\\x02{}')
        import time
        time.sleep(5)
    return {'pid': [os.getpid()]}";
    let nodes = NodesDir::examples().with_file("py/garble/node.py", node_py("py-garble", "1.0.0", body).as_bytes());
    let server = Server::start(&nodes);
    let mut client = Client::connect(&server).await;
    let statuses = client.execute("py-garble", json!({"garble": [true]}), json!({})).await;
    let message = final_status(&statuses)["message"].as_str().unwrap().to_owned();
    assert!(
        message.starts_with("node crashed") && message.contains("protocol violation"),
        "{message}"
    );
    server.wait_for_log("protocol violation by the worker");
    let again = client.execute("py-garble", json!({}), json!({})).await;
    assert_eq!(final_status(&again)["type"], "complete", "{again:?}");
    let native = client.execute("simple-text", json!({"text": ["ok"]}), json!({})).await;
    assert_eq!(final_status(&native)["type"], "complete");
}

#[test]
fn inspect_and_nodes_load_python_libraries_as_the_server_does() {
    if !python3() {
        return;
    }
    let nodes = NodesDir::empty()
        .with_file("py/sum/node.py", node_py("py-sum", "1.0.0", SYNC_SUM).as_bytes())
        .with_file("py/bad/node.py", b"def execute(ctx)\n");
    let run = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_nano-server"))
            .args(args)
            .current_dir(nodes.path())
            .output()
            .unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let (code, shown) = run(&["inspect", "py/sum/node.py", "--isolation", "in-process"]);
    assert_eq!(code, Some(0), "{shown}");
    assert!(
        shown.contains("runtime:   python 3.") && shown.contains("py-sum"),
        "{shown}"
    );
    let (code, shown) = run(&["inspect", "py/bad/node.py"]);
    assert_eq!(code, Some(1), "{shown}");
    assert!(
        shown.contains("SyntaxError: ") && shown.contains("bad/node.py:1)"),
        "{shown}"
    );

    std::fs::write(
        nodes.path().join("config.toml"),
        "server_uid = \"s\"\nnodes_path = \".\"\n",
    )
    .unwrap();
    let (code, listed) = run(&["nodes", "--config", "config.toml"]);
    assert_eq!(code, Some(0), "{listed}");
    assert!(listed.contains("1 node(s)") && listed.contains("py-sum"), "{listed}");
    assert!(listed.contains("refused") && listed.contains("SyntaxError"), "{listed}");
}
