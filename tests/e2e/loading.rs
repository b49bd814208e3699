//! Which libraries are served: broken, foreign, disabled and duplicate
//! libraries never stop the server from serving the rest.

use serde_json::json;

use crate::support::{
    Client, NodesDir, Server, abi_0_1_0_plugin, final_status, foreign_abi_plugin, lib_name, plugin, uids,
};

#[tokio::test]
async fn bad_libraries_are_refused_with_a_reason_and_the_rest_serve() {
    let simple = std::fs::read(plugin("simple_text_node")).unwrap();
    let nodes = NodesDir::examples()
        .with_plugin("broken/not_a_plugin", "not_a_plugin")
        .with_plugin("broken/init_panic", "init_panic_plugin")
        .with_file(
            &format!("broken/truncated/{}", lib_name("truncated")),
            &simple[..simple.len() / 3],
        )
        .with_file(&format!("broken/empty/{}", lib_name("empty")), b"")
        .with_file(&format!("broken/text/{}", lib_name("text")), b"this is not a library\n")
        .with_file(
            &format!("broken/foreign/{}", lib_name("foreign")),
            &std::fs::read(foreign_abi_plugin()).unwrap(),
        );
    let mut server = Server::start(&nodes);

    assert_eq!(
        uids(&server.status_document().await),
        ["complex-math", "progress-steps", "simple-text"]
    );
    let refused = |dir: &str| server.wait_for_log(&format!("refused {}", nodes.path().join(dir).display()));
    assert!(refused("broken/not_a_plugin").contains("exports no root module"));
    assert!(refused("broken/init_panic").contains("deliberate panic while building the definition"));
    assert!(refused("broken/truncated").contains("not a loadable library"));
    assert!(refused("broken/empty").contains("not a loadable library"));
    assert!(refused("broken/text").contains("not a loadable library"));
    let foreign = refused("broken/foreign");
    assert!(
        foreign.contains(&format!(
            "built against nano-plugin-abi 0.2.0, this server has {}",
            nano_plugin_abi::ABI_VERSION
        )),
        "{foreign}"
    );
    assert!(foreign.contains("layout check failed"), "{foreign}");
    assert!(
        server
            .wait_for_log("serving 3 node(s) from 3 libraries")
            .contains("refused=6")
    );

    let mut client = Client::connect(&server).await;
    let statuses = client.execute("simple-text", json!({"text": "ok"}), json!({})).await;
    assert_eq!(final_status(&statuses)["type"], "complete");
    assert!(server.is_running());
}

#[tokio::test]
async fn disabled_libraries_are_skipped() {
    let bytes = std::fs::read(plugin("progress_node")).unwrap();
    let nodes = NodesDir::empty()
        .with_plugin("processing/simple_text_node", "simple_text_node")
        .with_file(&format!("utility/a/disabled.{}", lib_name("progress_node")), &bytes)
        .with_file(&format!("utility/b/{}", lib_name("progress_node.disabled")), &bytes);
    let server = Server::start(&nodes);
    assert_eq!(uids(&server.status_document().await), ["simple-text"]);
}

#[tokio::test]
async fn a_duplicate_uid_is_served_once_from_the_first_path() {
    let nodes = NodesDir::empty()
        .with_plugin("b_second/simple_text_node", "simple_text_node")
        .with_plugin("a_first/simple_text_node", "simple_text_node");
    let server = Server::start(&nodes);
    assert_eq!(uids(&server.status_document().await), ["simple-text"]);
    let warning = server.wait_for_log("two libraries export node `simple-text`");
    assert!(
        warning.contains(&format!("served_from={}", nodes.path().join("a_first").display())),
        "{warning}"
    );
    assert!(
        warning.contains(&format!("ignored={}", nodes.path().join("b_second").display())),
        "{warning}"
    );
}

#[tokio::test]
async fn libraries_run_from_private_copies_so_the_file_can_be_overwritten() {
    let nodes = NodesDir::examples();
    let server = Server::start(&nodes);
    let installed = nodes
        .path()
        .join("processing/simple_text_node")
        .join(lib_name("simple_text_node"));
    std::fs::write(&installed, b"garbage written over the library").unwrap();
    let mut client = Client::connect(&server).await;
    let statuses = client
        .execute("simple-text", json!({"text": "safe"}), json!({"uppercase": true}))
        .await;
    assert_eq!(final_status(&statuses)["outputs"]["text"], json!(["SAFE"]));
}

#[tokio::test]
async fn one_library_may_export_several_nodes() {
    let server = Server::start(&NodesDir::empty().with_plugin("test", "test_plugin"));
    assert_eq!(
        uids(&server.status_document().await),
        ["test-chatty", "test-echo", "test-hang", "test-panic", "test-stubborn"]
    );
}

#[tokio::test]
async fn an_empty_nodes_folder_serves_nothing_but_starts() {
    let server = Server::start(&NodesDir::empty());
    let doc = server.status_document().await;
    assert_eq!(doc["loadedNodes"], 0);
    let client = Client::connect(&server).await;
    assert_eq!(client.handshake["payload"]["nodeDefinitions"], json!([]));
}

#[tokio::test]
async fn the_template_plugin_is_a_working_node() {
    let server = Server::start(&NodesDir::empty().with_plugin("examples/template", "node-template"));
    let mut client = Client::connect(&server).await;
    let statuses = client
        .execute("template-node", json!({"text": ["a bb ccc"]}), json!({"min_length": 2}))
        .await;
    let outputs = &final_status(&statuses)["outputs"];
    assert_eq!(outputs["words"], json!(["bb", "ccc"]));
    assert_eq!(outputs["count"], json!([2]));
}

#[tokio::test]
async fn a_plugin_built_against_the_first_abi_still_loads_and_runs() {
    // nano-plugin-abi 0.1.1 appended `shutdown` to the root module; a
    // library built against 0.1.0 lacks it and must keep working.
    let nodes = NodesDir::examples().with_file(
        &format!("test/old/{}", lib_name("old")),
        &std::fs::read(abi_0_1_0_plugin()).unwrap(),
    );
    let server = Server::start(&nodes);
    assert_eq!(
        uids(&server.status_document().await),
        ["abi-0-1-0-node", "complex-math", "progress-steps", "simple-text"]
    );
    let mut client = Client::connect(&server).await;
    let statuses = client.execute("abi-0-1-0-node", json!({}), json!({})).await;
    assert!(
        statuses.contains(&json!({"type": "running", "message": "old ABI, new server"})),
        "host callbacks reach the old plugin: {statuses:?}"
    );
    let last = final_status(&statuses);
    assert_eq!(last["outputs"]["abi"], json!(["0.1.0"]), "{last}");
    assert_eq!(last["outputs"]["aborted"], json!([false]), "{last}");
}
