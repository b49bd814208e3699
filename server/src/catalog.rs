//! What a library, or a configuration's nodes folder, would serve, loaded
//! as the server loads them but without serving: the `inspect` and `nodes`
//! commands.

use std::{collections::HashSet, path::Path, process::ExitCode, sync::Arc};

use crate::{
    config::{Config, Isolation, Overrides},
    execution::{Backend, InProcess, Languages, ProcessSettings, PythonSettings, is_python_library},
    loader::NodeInfo,
    reconcile::Reconciler,
    registry::NodeRegistry,
};

/// A backend for a command, with the runtime its workers need (kept alive
/// as long as the backend; dropping it ends the workers). Python libraries
/// go to Python workers, as in the server.
fn command_backend(
    isolation: Isolation,
    settings: impl FnOnce() -> ProcessSettings,
    python: PythonSettings,
) -> Result<(Arc<dyn Backend>, Option<tokio::runtime::Runtime>), String> {
    let settings = settings();
    #[cfg(unix)]
    {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        let handle = runtime.handle().clone();
        let services = crate::nanocore::Services::disabled;
        let native: Arc<dyn Backend> = match isolation {
            Isolation::InProcess => Arc::new(InProcess::new(1, &settings.root, None).map_err(|e| e.to_string())?),
            Isolation::Process => Arc::new(crate::execution::ProcessBackend::new(
                settings.clone(),
                handle.clone(),
                services(),
            )),
        };
        let python = crate::execution::ProcessBackend::python(settings, python, handle, services());
        Ok((
            Arc::new(Languages {
                native,
                python: Some(Arc::new(python)),
            }),
            Some(runtime),
        ))
    }
    #[cfg(not(unix))]
    {
        let _ = python;
        match isolation {
            Isolation::InProcess => Ok((
                Arc::new(Languages {
                    native: Arc::new(InProcess::new(1, &settings.root, None).map_err(|e| e.to_string())?),
                    python: None,
                }),
                None,
            )),
            Isolation::Process => Err(crate::execution::PROCESS_ISOLATION_UNSUPPORTED.to_owned()),
        }
    }
}

/// `nano-server inspect`: loads one library as the server would (in a
/// worker process unless `isolation` says otherwise) and shows its nodes,
/// or why it would be refused (exit code 1).
pub fn inspect(library: &Path, json: bool, isolation: Isolation) -> ExitCode {
    let root = library.parent().unwrap_or(Path::new(".")).to_owned();
    let loaded = std::fs::read(library)
        .map_err(|e| format!("cannot read the file: {e}"))
        .and_then(|bytes| {
            let python = PythonSettings {
                project_root: crate::config::absolute(Path::new(".")),
                interpreter: None,
                workers: 1,
            };
            let (backend, runtime) = command_backend(isolation, || ProcessSettings::defaults(root), python)?;
            let loaded = backend.load(library, &bytes).map_err(|e| e.to_string());
            drop(runtime);
            loaded
        });
    match loaded {
        Ok(loaded) => {
            if json {
                let definitions: Vec<&serde_json::Value> = loaded.nodes.iter().map(|n| &n.definition).collect();
                println!("{}", serde_json::to_string_pretty(&definitions).unwrap_or_default());
            } else {
                println!("library:   {}", library.display());
                println!("isolation: {}", isolation.as_str());
                if is_python_library(library) {
                    println!("runtime:   {}", loaded.abi_version);
                } else {
                    println!(
                        "abi:       nano-plugin-abi {} (this server: {})",
                        loaded.abi_version,
                        nano_plugin_abi::ABI_VERSION
                    );
                }
                println!("nodes:");
                print_node_table(loaded.nodes.iter().map(|n| (n, None)));
            }
            ExitCode::SUCCESS
        }
        Err(reason) => {
            println!("refused {}: {reason}", library.display());
            ExitCode::FAILURE
        }
    }
}

fn print_node_table<'a>(rows: impl Iterator<Item = (&'a NodeInfo, Option<&'a Path>)>) {
    let text = |v: &serde_json::Value, key: &str| v[key].as_str().unwrap_or("").to_owned();
    let rows: Vec<[String; 4]> = rows
        .map(|(node, path)| {
            [
                node.uid.clone(),
                text(&node.definition, "name"),
                node.version.clone(),
                path.map(|p| p.display().to_string()).unwrap_or_default(),
            ]
        })
        .collect();
    let header = ["UID", "NAME", "VERSION", "LIBRARY"];
    let width = |i: usize| {
        rows.iter()
            .map(|r| r[i].len())
            .chain([header[i].len()])
            .max()
            .unwrap_or(0)
    };
    let widths = [width(0), width(1), width(2)];
    let line = |r: [&str; 4]| {
        let text = format!(
            "  {:w0$}  {:w1$}  {:w2$}  {}",
            r[0],
            r[1],
            r[2],
            r[3],
            w0 = widths[0],
            w1 = widths[1],
            w2 = widths[2]
        );
        println!("{}", text.trim_end());
    };
    line(header);
    for r in &rows {
        line([&r[0], &r[1], &r[2], &r[3]]);
    }
}

/// `nano-server nodes`: what the server would serve from a configuration.
pub fn list_nodes(config_path: &Path, isolation: Option<Isolation>) -> ExitCode {
    let overrides = Overrides {
        isolation,
        ..Overrides::default()
    };
    let config = match Config::load(config_path, &overrides) {
        Ok(config) => config,
        Err(err) => {
            eprintln!("nano-server: {err}");
            return ExitCode::from(2);
        }
    };
    let python = PythonSettings {
        project_root: config.python.project_root.clone(),
        interpreter: config.python.interpreter.clone(),
        // Loading a library to list its nodes needs one worker.
        workers: 1,
    };
    let (backend, _runtime) =
        match command_backend(config.isolation, || crate::serve::process_settings(&config), python) {
            Ok(backend) => backend,
            Err(err) => {
                eprintln!("nano-server nodes: {err}");
                return ExitCode::FAILURE;
            }
        };
    let registry = NodeRegistry::new();
    let mut reconciler = Reconciler::new(backend, registry.clone(), config.nodes_path.clone())
        .allow_insecure_permissions(config.allow_insecure_permissions)
        .python_group(config.python.group, config.python.interpreter.is_some());
    let report = match reconciler.reconcile(&HashSet::new()) {
        Ok(report) => report,
        Err(err) => {
            eprintln!("nano-server nodes: cannot scan {}: {err}", config.nodes_path.display());
            return ExitCode::FAILURE;
        }
    };
    let snapshot = registry.snapshot();
    println!(
        "{} node(s) from {} (isolation: {}):",
        snapshot.uids.len(),
        config.nodes_path.display(),
        config.isolation.as_str()
    );
    print_node_table(snapshot.uids.iter().filter_map(|uid| {
        let handle = snapshot.get(uid)?;
        Some((handle.info(), Some(handle.library.path.as_path())))
    }));
    for (path, reason) in &report.refused {
        println!("refused {}: {reason}", path.display());
    }
    ExitCode::SUCCESS
}
