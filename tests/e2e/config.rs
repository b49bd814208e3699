//! Starting the binary: a bad configuration is one clear line and exit
//! code 2, never a panic; flags and `--help` / `--version` work.

use std::path::Path;

use crate::support::{run_server_to_exit, server_command};

fn start_with_config(text: &str) -> (i32, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(&config, text).unwrap();
    run_server_to_exit(&mut server_command(&config))
}

fn assert_config_error(text: &str, expected: &[&str]) {
    let (code, stdout, stderr) = start_with_config(text);
    assert_eq!(code, 2, "exit code; stderr: {stderr}");
    assert!(!stdout.contains("[NANOSERVER_READY]"));
    assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(stderr.contains("config.toml"), "names the file: {stderr}");
    for needle in expected {
        assert!(stderr.contains(needle), "{needle:?} missing from: {stderr}");
    }
}

#[test]
fn a_missing_required_key_is_named() {
    assert_config_error("domain = \"d\"\n", &["`server_uid`"]);
}

#[test]
fn a_wrong_type_is_named() {
    assert_config_error("server_uid = \"s\"\nport = \"eighty\"\n", &["`port`", "invalid type"]);
    assert_config_error("server_uid = \"s\"\nauto_watch = 1\n", &["`auto_watch`"]);
}

#[test]
fn an_unknown_key_is_named() {
    assert_config_error("server_uid = \"s\"\nprot = 3017\n", &["`prot`", "unknown field"]);
}

#[test]
fn an_empty_auth_token_is_refused_naming_the_key() {
    assert_config_error(
        "server_uid = \"s\"\nauth_token = \"\"\n",
        &["`auth_token`", "leave the key out"],
    );
}

#[test]
fn a_syntax_error_gives_the_line() {
    assert_config_error("server_uid = \"s\"\nport = \n", &["line 2"]);
}

#[test]
fn a_missing_file_is_named() {
    let (code, _, stderr) = run_server_to_exit(&mut server_command(Path::new("/nonexistent/config.toml")));
    assert_eq!(code, 2);
    assert!(stderr.contains("/nonexistent/config.toml"), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
}

#[test]
fn an_invalid_port_variable_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(&config, "server_uid = \"s\"\n").unwrap();
    let (code, _, stderr) = run_server_to_exit(server_command(&config).env("PORT", "http"));
    assert_eq!(code, 2);
    assert!(stderr.contains("PORT"), "{stderr}");
}

#[test]
fn help_and_version_work() {
    let (code, stdout, _) =
        run_server_to_exit(std::process::Command::new(env!("CARGO_BIN_EXE_nano-server")).arg("--help"));
    assert_eq!(code, 0);
    for flag in ["--config", "--host", "--port", "--nodes-path"] {
        assert!(stdout.contains(flag), "{flag} in --help");
    }
    let (code, stdout, _) =
        run_server_to_exit(std::process::Command::new(env!("CARGO_BIN_EXE_nano-server")).arg("--version"));
    assert_eq!(code, 0);
    assert!(stdout.contains(env!("CARGO_PKG_VERSION")));
}

#[test]
fn a_missing_nodes_folder_is_a_clear_error() {
    let (code, _, stderr) = start_with_config("server_uid = \"s\"\nport = 0\nnodes_path = \"does-not-exist\"\n");
    assert_eq!(code, 1);
    assert!(stderr.contains("cannot scan nodes_path"), "{stderr}");
    assert!(stderr.contains("does-not-exist"), "{stderr}");
}
