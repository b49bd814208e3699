//! A `.py` module under `nodes_path` outside every node folder is shared
//! code any Python library may import: a change to it reloads every Python
//! library (and no native one).

use serde_json::{Value, json};

use super::{node_py, python3};
use crate::support::{Client, NodesDir, Server, final_status};

#[tokio::test]
async fn an_edit_of_a_shared_module_reloads_every_python_library() {
    if !python3() {
        return;
    }
    // Each node imports shared/words.py at import time, by path.
    let body = "import importlib.util
_spec = importlib.util.spec_from_file_location(
    'words', os.path.join(os.path.dirname(__file__), '..', '..', 'shared', 'words.py'))
words = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(words)
def execute(ctx):
    return {'greeting': [words.GREETING], 'pid': [os.getpid()]}";
    let nodes = NodesDir::examples()
        .with_file("py/a/node.py", node_py("py-a", "1.0.0", body).as_bytes())
        .with_file("py/b/node.py", node_py("py-b", "1.0.0", body).as_bytes())
        .with_file("shared/words.py", b"GREETING = 'hello'\n");
    // One library per file, so "every Python library" is two.
    let server = Server::builder(&nodes)
        .config("watch_debounce_time = 100\n[python]\ngroup = \"library\"")
        .start();
    let mut client = Client::connect(&server).await;
    let greeting = |statuses: &[Value]| final_status(statuses)["outputs"]["greeting"][0].clone();
    for uid in ["py-a", "py-b"] {
        let statuses = client.execute(uid, json!({}), json!({})).await;
        assert_eq!(greeting(&statuses), "hello", "{uid}: {statuses:?}");
    }

    std::fs::write(nodes.path().join("shared/words.py"), "GREETING = 'bonjour'\n").unwrap();
    server.wait_for_log_count("swapped", 2);
    for uid in ["py-a", "py-b"] {
        let statuses = client.execute(uid, json!({}), json!({})).await;
        assert_eq!(greeting(&statuses), "bonjour", "{uid}: {statuses:?}");
    }
    // The native libraries were not reloaded (same pass as the Python ones).
    assert!(
        !server
            .logs()
            .lines()
            .any(|l| l.contains("swapped") && l.contains(".so")),
        "{}",
        server.logs()
    );
}
