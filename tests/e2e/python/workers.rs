//! `[python] workers = N`: N worker processes per Python library, each
//! execution going to the least-loaded one, so CPU-bound nodes of one
//! library run in parallel; each worker crashes and restarts on its own.

use std::path::Path;

use serde_json::{Value, json};

use super::{node_py, python3};
use crate::support::{Client, NodesDir, Server, definition_version, eventually, final_status, request};

/// Each execution leaves a file named after its worker's pid in `dir`,
/// then spins (CPU-bound, holding the GIL) until two pid files are there:
/// two executions meet only if two processes run them at once (in one
/// process they would write one file). With `hold`, it then waits for a
/// `go` file; with `hog`, it first fills 300 MiB. Every wait gives up after 30 s (`met` false). `inits`: the
/// pids its process ran the library's `init` in.
const MEET: &str = "import time
INITS = []
async def init(node):
    INITS.append(os.getpid())
def pid_files(folder):
    return sorted(name for name in os.listdir(folder) if name.isdigit())
def execute(ctx):
    folder = ctx.inputs['dir'][0]
    pid = os.getpid()
    open(os.path.join(folder, str(pid)), 'w').close()
    deadline = time.monotonic() + 30
    met = False
    while time.monotonic() < deadline:
        if len(pid_files(folder)) >= 2:
            met = True
            break
    hog = b'x' * (300 << 20) if ctx.inputs.get('hog', [False])[0] else b''
    while ctx.inputs.get('hold', [False])[0] and time.monotonic() < deadline:
        if os.path.exists(os.path.join(folder, 'go')):
            break
        time.sleep(0.01)
    return {'pid': [pid], 'met': [met], 'pids': [pid_files(folder)], 'inits': [INITS], 'hog': [len(hog)]}";

fn meet_nodes() -> NodesDir {
    NodesDir::examples().with_file("py/meet/node.py", node_py("py-meet", "1.0.0", MEET).as_bytes())
}

/// Starts two `py-meet` executions at once over one WebSocket; their final
/// statuses, in the order sent.
async fn meet_twice(client: &mut Client, dir: &Path, hold: bool, between: impl AsyncFnOnce()) -> [Value; 2] {
    let inputs = json!({"dir": [dir.display().to_string()], "hold": [hold]});
    let instances = ["meet-a", "meet-b"];
    for instance in instances {
        client
            .send(&request(instance, json!(1), "py-meet", inputs.clone(), json!({})))
            .await;
    }
    between().await;
    let mut finals = Vec::new();
    for instance in instances {
        let statuses = client.statuses_until_final(instance, &json!(1)).await;
        finals.push(final_status(&statuses).clone());
    }
    finals.try_into().unwrap()
}

fn pid_of(status: &Value) -> u64 {
    status["outputs"]["pid"][0]
        .as_u64()
        .unwrap_or_else(|| panic!("no pid: {status:?}"))
}

/// Both executions ran at once, each in its own process, which ran the
/// library's `init` once.
fn assert_met_in_two_processes(finals: &[Value; 2]) {
    for status in finals {
        assert_eq!(status["type"], "complete", "{finals:?}");
        assert_eq!(status["outputs"]["met"], json!([true]), "{finals:?}");
        assert_eq!(status["outputs"]["inits"], json!([[pid_of(status)]]), "{finals:?}");
    }
    assert_ne!(pid_of(&finals[0]), pid_of(&finals[1]), "{finals:?}");
}

#[tokio::test]
async fn with_two_workers_two_cpu_bound_executions_run_at_the_same_time() {
    if !python3() {
        return;
    }
    let nodes = meet_nodes();
    let server = Server::builder(&nodes).config("[python]\nworkers = 2").start();
    let mut client = Client::connect(&server).await;
    let dir = tempfile::tempdir().unwrap();
    let finals = meet_twice(&mut client, dir.path(), false, async || {}).await;
    assert_met_in_two_processes(&finals);
}

#[tokio::test]
async fn with_two_workers_a_killed_worker_fails_only_its_execution_and_comes_back() {
    if !python3() {
        return;
    }
    let nodes = meet_nodes();
    let server = Server::builder(&nodes).config("[python]\nworkers = 2").start();
    let mut client = Client::connect(&server).await;
    let dir = tempfile::tempdir().unwrap();
    let pid_files = || -> Vec<u32> {
        std::fs::read_dir(dir.path())
            .unwrap()
            .filter_map(|entry| entry.unwrap().file_name().to_str()?.parse().ok())
            .collect()
    };
    let mut killed = 0;
    let finals = meet_twice(&mut client, dir.path(), true, async || {
        eventually("both executions started, in two workers", || {
            std::future::ready(pid_files().len() == 2)
        })
        .await;
        killed = pid_files()[0];
        // SAFETY: kill(2) on a pid of our own worker.
        assert_eq!(unsafe { libc::kill(killed as i32, libc::SIGKILL) }, 0);
        std::fs::write(dir.path().join("go"), "").unwrap();
    })
    .await;
    let (dead, alive): (Vec<&Value>, Vec<&Value>) = finals.iter().partition(|status| status["type"] == "error");
    assert_eq!((dead.len(), alive.len()), (1, 1), "{finals:?}");
    let message = dead[0]["message"].as_str().unwrap();
    assert!(
        message.starts_with("node crashed") && message.contains("SIGKILL"),
        "{message}"
    );
    let survivor = pid_of(alive[0]);
    assert_ne!(survivor, u64::from(killed));
    assert_eq!(alive[0]["outputs"]["met"], json!([true]), "{finals:?}");

    // The killed worker's slot gets a new worker; the survivor serves on.
    server.wait_for_log("worker restarted");
    let again = tempfile::tempdir().unwrap();
    let finals = meet_twice(&mut client, again.path(), false, async || {}).await;
    assert_met_in_two_processes(&finals);
    let pids = [pid_of(&finals[0]), pid_of(&finals[1])];
    assert!(pids.contains(&survivor), "{pids:?} {survivor}");
    assert!(!pids.contains(&u64::from(killed)), "{pids:?} {killed}");
}

#[tokio::test]
async fn with_two_workers_an_edit_starts_two_new_workers_and_the_old_ones_drain() {
    if !python3() {
        return;
    }
    let nodes = meet_nodes();
    let server = Server::builder(&nodes)
        .config("watch_debounce_time = 100\n[python]\nworkers = 2")
        .start();
    let mut client = Client::connect(&server).await;
    let dir = tempfile::tempdir().unwrap();
    let old = meet_twice(&mut client, dir.path(), false, async || {}).await;
    assert_met_in_two_processes(&old);
    let old_pids = [pid_of(&old[0]), pid_of(&old[1])];

    std::fs::write(nodes.path().join("py/meet/node.py"), node_py("py-meet", "2.0.0", MEET)).unwrap();
    loop {
        let update = client.next_update().await;
        if definition_version(&update, "py-meet").as_deref() == Some("2.0.0") {
            break;
        }
    }
    let again = tempfile::tempdir().unwrap();
    let new = meet_twice(&mut client, again.path(), false, async || {}).await;
    assert_met_in_two_processes(&new);
    for pid in [pid_of(&new[0]), pid_of(&new[1])] {
        assert!(
            !old_pids.contains(&pid),
            "{pid} served the old version too: {old_pids:?}"
        );
    }
    // Both old workers had nothing in flight: they ran their shutdown hooks and exited.
    for pid in old_pids {
        eventually(&format!("old worker {pid} exited"), || {
            std::future::ready(!Path::new(&format!("/proc/{pid}")).exists())
        })
        .await;
    }
}

#[tokio::test]
async fn with_two_workers_the_memory_limit_ends_only_the_worker_past_it() {
    if !python3() {
        return;
    }
    let nodes = meet_nodes();
    let server = Server::builder(&nodes)
        .config("worker_memory_limit_mb = 150\n[python]\nworkers = 2")
        .start();
    let mut client = Client::connect(&server).await;
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().display().to_string();
    for (instance, hog) in [("hog", true), ("lean", false)] {
        let inputs = json!({"dir": [folder], "hold": [true], "hog": [hog]});
        client
            .send(&request(instance, json!(1), "py-meet", inputs, json!({})))
            .await;
    }
    let hog = client.statuses_until_final("hog", &json!(1)).await;
    let message = final_status(&hog)["message"].as_str().unwrap_or_default().to_owned();
    assert!(message.contains("exceeded worker_memory_limit_mb"), "{hog:?}");
    std::fs::write(dir.path().join("go"), "").unwrap();
    let lean = client.statuses_until_final("lean", &json!(1)).await;
    let lean = final_status(&lean);
    assert_eq!(lean["type"], "complete", "{lean:?}");
    assert_eq!(lean["outputs"]["met"], json!([true]), "{lean:?}");
    let survivor = pid_of(lean);
    assert!(
        Path::new(&format!("/proc/{survivor}")).exists(),
        "the lean worker was ended too"
    );
}
