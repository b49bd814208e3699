//! Who may make the server run code: libraries and folders writable by
//! others are refused (like sshd's StrictModes), and links out of the nodes
//! folder are not followed.

#![cfg(unix)]

use std::os::unix::fs::{PermissionsExt, symlink};

use crate::support::{NodesDir, Server, lib_name, plugin, uids};

fn chmod(path: &std::path::Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[tokio::test]
async fn libraries_or_folders_writable_by_others_are_refused() {
    let nodes = NodesDir::examples();
    let group_writable = nodes
        .path()
        .join("processing/simple_text_node")
        .join(lib_name("simple_text_node"));
    chmod(&group_writable, 0o664);
    let open_folder = nodes.path().join("utility/progress_node");
    chmod(&open_folder, 0o777);

    let server = Server::start(&nodes);
    assert_eq!(uids(&server.status_document().await), ["complex-math"]);
    let line = server.wait_for_log(&format!("refused {}", group_writable.display()));
    assert!(
        line.contains("writable by its group (mode 664)") && line.contains("chmod go-w"),
        "{line}"
    );
    let line = server.wait_for_log(&format!(
        "refused {}",
        open_folder.join(lib_name("progress_node")).display()
    ));
    assert!(
        line.contains(&format!("{} is writable by its group", open_folder.display())),
        "{line}"
    );
    drop(server);

    let server = Server::builder(&nodes)
        .config("allow_insecure_permissions = true")
        .start();
    assert_eq!(
        uids(&server.status_document().await),
        ["complex-math", "progress-steps", "simple-text"]
    );
}

#[tokio::test]
async fn links_are_followed_inside_the_nodes_folder_only() {
    let outside = tempfile::tempdir().unwrap();
    let foreign = outside.path().join(lib_name("complex_math_node"));
    std::fs::copy(plugin("complex_math_node"), &foreign).unwrap();

    let nodes = NodesDir::empty().with_file(
        &format!("store/{}", lib_name("simple_text_node.disabled")),
        &std::fs::read(plugin("simple_text_node")).unwrap(),
    );
    std::fs::create_dir_all(nodes.path().join("processing")).unwrap();
    // Inside: followed.
    symlink(
        nodes.path().join("store").join(lib_name("simple_text_node.disabled")),
        nodes.path().join("processing").join(lib_name("simple_text_node")),
    )
    .unwrap();
    // Outside, as a file and as a folder: not followed.
    symlink(&foreign, nodes.path().join(lib_name("escape"))).unwrap();
    symlink(outside.path(), nodes.path().join("escape_dir")).unwrap();
    // A loop: harmless.
    symlink(nodes.path(), nodes.path().join("store/loop")).unwrap();

    let server = Server::start(&nodes);
    assert_eq!(uids(&server.status_document().await), ["simple-text"]);
    let line = server.wait_for_log(&format!(
        "not following {}",
        nodes.path().join(lib_name("escape")).display()
    ));
    assert!(line.contains("outside nodes_path"), "{line}");
    server.wait_for_log(&format!("not following {}", nodes.path().join("escape_dir").display()));
}
