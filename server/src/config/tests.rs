//! The configuration's behaviour: defaults, precedence, both file formats,
//! errors that name the key, and that no token reaches `Debug` output.

use std::{path::Path, time::Duration};

use super::*;

fn load(text: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let env: Vec<(String, String)> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    Config::from_toml(
        text,
        Path::new("/srv/nano/config.toml"),
        |var| env.iter().find(|(k, _)| k == var).map(|(_, v)| v.clone()),
        &Overrides::default(),
    )
}

#[test]
fn defaults_and_relative_nodes_path() {
    let config = load(r#"server_uid = "s""#, &[]).unwrap();
    assert_eq!(config.port, 3017);
    assert_eq!(config.host, "127.0.0.1");
    assert_eq!(config.nodes_path, Path::new("/srv/nano/nodes"));
    let relative = Config::from_toml(
        "server_uid = \"s\"",
        Path::new("config.toml"),
        |_| None,
        &Overrides::default(),
    )
    .unwrap();
    assert!(relative.nodes_path.is_absolute(), "{}", relative.nodes_path.display());
    assert!(relative.nodes_path.ends_with("nodes"));
    assert_eq!(config.identity.server_name, "s");
    assert!(config.auto_watch);
    assert_eq!(config.watch_debounce, Duration::from_millis(500));
}

#[test]
fn environment_overrides_file() {
    let config = load(
        "server_uid = \"s\"\nport = 1\ndomain = \"d\"",
        &[
            ("PORT", "4000"),
            ("DOMAIN", "env.d"),
            ("SERVER_DISPLAY_NAME", "Env Name"),
        ],
    )
    .unwrap();
    assert_eq!(config.port, 4000);
    assert_eq!(config.identity.domain, "env.d");
    assert_eq!(config.identity.server_name, "Env Name");
}

#[test]
fn debug_output_never_shows_the_token() {
    let config = load(
        "server_uid = \"s\"\nauth_token = \"hunter2-secret\"",
        &[("NANOCORE_TOKEN", "core-secret")],
    )
    .unwrap();
    let shown = format!("{config:?}");
    assert!(!shown.contains("hunter2") && !shown.contains("core-secret"), "{shown}");
    assert!(shown.contains("auth_token: Some(<redacted>)"), "{shown}");
    assert!(shown.contains("token: Some(<redacted>)"), "{shown}");
}

#[test]
fn isolation_and_node_limits_are_read() {
    let config = load("server_uid = \"s\"", &[]).unwrap();
    assert_eq!(config.isolation, Isolation::Process);
    let config = load(
        "server_uid = \"s\"\nisolation = \"in-process\"\n[nodes.gpu]\nmax_concurrent = 1",
        &[],
    )
    .unwrap();
    assert_eq!(config.isolation, Isolation::InProcess);
    assert_eq!(config.admission.node_concurrency.get("gpu"), Some(&1));
    let err = load("server_uid = \"s\"\n[nodes.gpu]\nmax_concurrent = 0", &[])
        .unwrap_err()
        .to_string();
    assert!(err.contains("nodes.gpu.max_concurrent"), "{err}");
    assert!(load("server_uid = \"s\"\nisolation = \"threads\"", &[]).is_err());
}

#[test]
fn limits_have_defaults_and_the_token_comes_from_env_first() {
    let config = load("server_uid = \"s\"", &[]).unwrap();
    assert!(config.limits.auth_token.is_none());
    assert_eq!(config.limits.max_message_bytes, 16 * 1024 * 1024);
    assert_eq!(config.limits.max_request_bytes, 16 * 1024 * 1024);
    assert!(config.admission.max_queued_executions > 0 && config.limits.max_connections > 0);
    let config = load(
        "server_uid = \"s\"\nauth_token = \"file\"",
        &[("NANO_SERVER_TOKEN", "env")],
    )
    .unwrap();
    assert_eq!(config.limits.auth_token.as_ref().map(Secret::expose), Some("env"));
}

#[test]
fn an_empty_token_never_turns_authentication_off() {
    // In the file: refused, naming the key and the way to run without one.
    for token in ["", "  "] {
        let err = load(&format!("server_uid = \"s\"\nauth_token = \"{token}\""), &[])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("`auth_token`") && err.contains("leave the key out"),
            "{err}"
        );
    }
    // In the environment: ignored with a warning, never over the file's.
    let config = load(
        "server_uid = \"s\"\nauth_token = \"file\"",
        &[("NANO_SERVER_TOKEN", "")],
    )
    .unwrap();
    assert_eq!(config.limits.auth_token.as_ref().map(Secret::expose), Some("file"));
    assert!(
        config
            .notes
            .iter()
            .any(|n| matches!(n, LoadNote::Warning(m) if m.contains("NANO_SERVER_TOKEN is set but empty"))),
        "{:?}",
        config.notes
    );
    let config = load("server_uid = \"s\"", &[("NANO_SERVER_TOKEN", "")]).unwrap();
    assert!(config.limits.auth_token.is_none());
    assert!(matches!(&config.notes[..], [LoadNote::Warning(m)] if m.contains("authentication stays off")));
}

#[test]
fn errors_name_the_key() {
    let err = load("port = \"x\"\nserver_uid = \"s\"", &[]).unwrap_err().to_string();
    assert!(err.contains("`port`"), "{err}");
    let err = load("server_uid = \"s\"\nprot = 1", &[]).unwrap_err().to_string();
    assert!(err.contains("`prot`"), "{err}");
    let err = load("port = 1", &[]).unwrap_err().to_string();
    assert!(err.contains("`server_uid`"), "{err}");
    let err = load("server_uid = \"s\"", &[("PORT", "http")]).unwrap_err().to_string();
    assert!(err.contains("PORT"), "{err}");
    for err in [
        load("server_uid = ", &[]).unwrap_err().to_string(),
        load("server_uid = \"s\"\nmax_concurrent_executions = 0", &[])
            .unwrap_err()
            .to_string(),
    ] {
        assert!(!err.contains('\n'), "one line: {err}");
    }
}

fn load_json(text: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let env: Vec<(String, String)> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    Config::from_json(
        text,
        Path::new("/srv/py/nanoserver.json"),
        |var| env.iter().find(|(k, _)| k == var).map(|(_, v)| v.clone()),
        &Overrides::default(),
    )
}

#[test]
fn nanoserver_json_reads_the_sdk_keys() {
    let config = load_json(
        r#"{"domain": "d", "serverDisplayName": "Py", "serverUid": "py-1", "serverPackageId": "pkg",
            "language": "python", "nodesPath": "my_nodes", "autoWatch": false, "watchDebounceTime": 250,
            "port": 4100}"#,
        &[],
    )
    .unwrap();
    assert_eq!(config.identity.domain, "d");
    assert_eq!(config.identity.server_name, "Py");
    assert_eq!(config.identity.server_uid, "py-1");
    assert_eq!(config.identity.server_package_id, "pkg");
    assert_eq!(config.nodes_path, Path::new("/srv/py/my_nodes"));
    assert!(!config.auto_watch);
    assert_eq!(config.watch_debounce, Duration::from_millis(250));
    assert_eq!(config.port, 4100);
    // `"language": "python"` is served as is: node.py files run in Python workers.
    assert!(config.notes.is_empty(), "{:?}", config.notes);
    assert_eq!(config.python.project_root, Path::new("/srv/py"));
    // The environment still wins over the file.
    let config = load_json(
        r#"{"serverUid": "py-1", "port": 4100}"#,
        &[("SERVER_UID", "env"), ("PORT", "1")],
    )
    .unwrap();
    assert_eq!((config.identity.server_uid.as_str(), config.port), ("env", 1));
}

#[test]
fn nanoserver_json_honours_own_keys_and_warns_about_unknown_ones() {
    let config = load_json(
        r#"{"serverUid": "s", "auth_token": "t", "isolation": "in-process", "nodes": {"gpu": {"max_concurrent": 1}},
            "pythonVersion": "3.11", "entry": "main.py"}"#,
        &[],
    )
    .unwrap();
    assert_eq!(config.limits.auth_token.as_ref().map(Secret::expose), Some("t"));
    assert_eq!(config.isolation, Isolation::InProcess);
    assert_eq!(config.admission.node_concurrency.get("gpu"), Some(&1));
    let warnings: Vec<&String> = config
        .notes
        .iter()
        .filter_map(|n| match n {
            LoadNote::Warning(m) => Some(m),
            LoadNote::Info(_) => None,
        })
        .collect();
    assert_eq!(warnings.len(), 1, "one warning for all: {warnings:?}");
    assert!(
        warnings[0].contains("`pythonVersion`") && warnings[0].contains("`entry`"),
        "{}",
        warnings[0]
    );
    assert!(warnings[0].contains("nanoserver.json"), "{}", warnings[0]);
}

#[test]
fn nanoserver_json_errors_name_the_key_as_written() {
    let err = load_json(r#"{"serverUid": "s", "server_uid": "t"}"#, &[])
        .unwrap_err()
        .to_string();
    assert!(err.contains("`serverUid`") && err.contains("`server_uid`"), "{err}");
    let err = load_json(r#"{"serverUid": "s", "autoWatch": "yes"}"#, &[])
        .unwrap_err()
        .to_string();
    assert!(err.contains("key `autoWatch`") && err.contains("invalid type"), "{err}");
    let err = load_json(
        r#"{"serverUid": "s", "nodes": {"gpu": {"max_concurrent": "one"}}}"#,
        &[],
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("nodes.gpu.max_concurrent"), "{err}");
    let err = load_json(r#"{"domain": "d"}"#, &[]).unwrap_err().to_string();
    assert!(err.contains("`serverUid`"), "{err}");
    let err = load_json("{\n  \"serverUid\": \"s\",\n}", &[]).unwrap_err().to_string();
    assert!(err.contains("nanoserver.json: line 3"), "{err}");
    let err = load_json("[1]", &[]).unwrap_err().to_string();
    assert!(err.contains("JSON object"), "{err}");
    for err in [
        load_json("{", &[]).unwrap_err().to_string(),
        load_json(r#"{"serverUid": 5}"#, &[]).unwrap_err().to_string(),
    ] {
        assert!(!err.contains('\n') && err.contains("/srv/py/nanoserver.json"), "{err}");
    }
}

#[test]
fn the_file_keys_are_the_structs() {
    let keys = file::file_config_keys();
    for key in [
        "server_uid",
        "auth_token",
        "isolation",
        "nodes",
        "libraries",
        "build_sources",
    ] {
        assert!(keys.contains(&key), "{key} in {keys:?}");
    }
    assert!(keys.len() >= 36, "{keys:?}");
    assert!(is_json(Path::new("x/nanoserver.JSON")) && !is_json(Path::new("config.toml")));
}

#[test]
fn the_pages_are_served_unless_turned_off() {
    assert!(load("server_uid = \"s\"", &[]).unwrap().ui);
    assert!(!load("server_uid = \"s\"\nui = false", &[]).unwrap().ui);
}

#[test]
fn nanocore_endpoint_is_an_alias_and_the_full_name_wins() {
    let endpoint = |env: &[(&str, &str)]| load("server_uid = \"s\"", env).unwrap().identity.nanocore_http_endpoint;
    assert_eq!(endpoint(&[("NANOCORE_ENDPOINT", "http://old")]), "http://old");
    assert_eq!(
        endpoint(&[
            ("NANOCORE_ENDPOINT", "http://old"),
            ("NANOCORE_HTTP_ENDPOINT", "http://new")
        ]),
        "http://new"
    );
    assert_eq!(endpoint(&[]), "");
}

#[test]
fn the_log_filter_falls_back_to_the_sdk_level_names() {
    let filter =
        |env: &[(&str, &str)]| env::log_filter(|var| env.iter().find(|(k, _)| *k == var).map(|(_, v)| v.to_string()));
    assert_eq!(filter(&[]), None);
    assert_eq!(
        filter(&[("RUST_LOG", "nano_server=debug"), ("LOG_LEVEL", "error")]).as_deref(),
        Some("nano_server=debug")
    );
    assert_eq!(
        filter(&[("RUST_LOG", ""), ("LOG_LEVEL", "WARNING")]).as_deref(),
        Some("warn")
    );
    assert_eq!(
        filter(&[("LOG_LEVEL", "debug"), ("NANOSDK_LOG_LEVEL", "CRITICAL")]).as_deref(),
        Some("error")
    );
    assert_eq!(
        filter(&[("LOG_LEVEL", "debug"), ("NANOCORE_LOG_LEVEL", "Info")]).as_deref(),
        Some("info")
    );
    assert_eq!(filter(&[("LOG_LEVEL", "success")]).as_deref(), Some("info"));
    assert_eq!(filter(&[("LOG_LEVEL", "loud")]).as_deref(), Some("info"));
}

mod properties {
    use std::path::Path;

    use proptest::prelude::*;

    use super::super::*;

    proptest! {
        /// Whatever the file holds, loading never panics, and an error is one
        /// line naming the file.
        #[test]
        fn any_config_text_gives_a_config_or_a_one_line_error(text in "(?s).{0,200}") {
            match Config::from_toml(&text, Path::new("/etc/nano/config.toml"), |_| None, &Overrides::default()) {
                Ok(config) => prop_assert!(config.nodes_path.is_absolute()),
                Err(err) => {
                    let message = err.to_string();
                    prop_assert!(!message.contains('\n'), "{}", message);
                    prop_assert!(message.contains("/etc/nano/config.toml"), "{}", message);
                }
            }
        }

        /// Known keys with values of the wrong type are named in the error.
        #[test]
        fn a_wrongly_typed_known_key_is_named(
            key in prop_oneof![Just("port"), Just("auto_watch"), Just("watch_debounce_time"), Just("max_concurrent_executions"), Just("host")],
            value in prop_oneof![Just("\"text\""), Just("[1, 2]"), Just("{ a = 1 }"), Just("1.5"), Just("true")],
        ) {
            let text = format!("server_uid = \"s\"\n{key} = {value}\n");
            if let Err(err) = Config::from_toml(&text, Path::new("c.toml"), |_| None, &Overrides::default()) {
                let message = err.to_string();
                prop_assert!(message.contains(&format!("`{key}`")), "{}", message);
            }
        }

        /// The same for `nanoserver.json`, with SDK keys among the values.
        #[test]
        fn any_json_object_gives_a_config_or_a_one_line_error(
            entries in proptest::collection::vec((
                prop_oneof![Just("serverUid".to_owned()), Just("server_uid".to_owned()), Just("autoWatch".to_owned()), Just("port".to_owned()), Just("nodes".to_owned()), "[a-z_]{1,8}"],
                prop_oneof![Just("\"s\""), Just("1"), Just("true"), Just("null"), Just("{}"), Just("[1]"), Just("{\"x\": {\"max_concurrent\": 2}}")],
            ), 0..6),
        ) {
            let body: Vec<String> = entries.iter().map(|(k, v)| format!("\"{k}\": {v}")).collect();
            let text = format!("{{{}}}", body.join(", "));
            match Config::from_json(&text, Path::new("/p/nanoserver.json"), |_| None, &Overrides::default()) {
                Ok(config) => prop_assert!(config.nodes_path.is_absolute()),
                Err(err) => {
                    let message = err.to_string();
                    prop_assert!(!message.contains('\n'), "{}", message);
                    prop_assert!(message.contains("/p/nanoserver.json"), "{}", message);
                }
            }
        }
    }
}

/// docs/configuration.md's key table names every key the file accepts
/// (as `` `key` `` in a row's first cell), so the reference cannot fall
/// behind the code.
#[test]
fn docs_table_lists_every_key() {
    let docs = include_str!("../../../docs/configuration.md");
    let first_cells: Vec<&str> = docs
        .lines()
        .filter_map(|line| line.strip_prefix("| "))
        .filter_map(|row| row.split(" | ").next())
        .collect();
    let missing: Vec<&str> = super::file::file_config_keys()
        .iter()
        .copied()
        .filter(|key| {
            let quoted = format!("`{key}`");
            let section = format!("[{key}.");
            !first_cells
                .iter()
                .any(|cell| cell.contains(&quoted) || cell.contains(&section))
        })
        .collect();
    assert!(missing.is_empty(), "docs/configuration.md does not list: {missing:?}");
}

/// A config file at /srv/p/config.toml with `text` after its server_uid.
fn config_at_srv_p(text: &str) -> Result<Config, ConfigError> {
    Config::from_toml(
        &format!("server_uid = \"s\"\n{text}"),
        Path::new("/srv/p/config.toml"),
        |_| None,
        &Overrides::default(),
    )
}

#[test]
fn python_interpreter_is_a_path_from_the_file_or_a_name_on_path() {
    let config = |text: &str| config_at_srv_p(text).unwrap();
    assert_eq!(config("").python.interpreter, None);
    assert_eq!(
        config("[python]\ninterpreter = \"venv/bin/python\"").python.interpreter,
        Some(PathBuf::from("/srv/p/venv/bin/python"))
    );
    assert_eq!(
        config("[python]\ninterpreter = \"python3.12\"").python.interpreter,
        Some(PathBuf::from("python3.12"))
    );
}

#[test]
fn python_workers_default_to_one_and_zero_or_too_many_are_refused() {
    let config = config_at_srv_p;
    assert_eq!(config("").unwrap().python.workers, 1);
    assert_eq!(config("[python]\nworkers = 4").unwrap().python.workers, 4);
    for refused in ["0", "65"] {
        let err = config(&format!("[python]\nworkers = {refused}"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("python.workers") && err.contains("from 1 to 64"), "{err}");
    }
}

#[test]
fn python_group_defaults_to_pack_and_an_unknown_mode_is_refused() {
    use crate::execution::PythonGroup;
    let config = config_at_srv_p;
    assert_eq!(config("").unwrap().python.group, PythonGroup::Pack);
    assert_eq!(
        config("[python]\ngroup = \"project\"").unwrap().python.group,
        PythonGroup::Project
    );
    assert_eq!(
        config("[python]\ngroup = \"pack\"").unwrap().python.group,
        PythonGroup::Pack
    );
    let err = config("[python]\ngroup = \"everything\"").unwrap_err().to_string();
    assert!(err.contains("group") && err.contains("library"), "{err}");
}
