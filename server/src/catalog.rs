//! What a library, or a configuration's nodes folder, would serve, loaded
//! as the server loads them but without serving: the `inspect` and `nodes`
//! commands.

use std::{collections::HashSet, path::Path, process::ExitCode, sync::Arc};

use crate::{
    config::{Config, Isolation, Overrides},
    execution::{Backend, InProcess},
    loader::NodeInfo,
    reconcile::Reconciler,
    registry::NodeRegistry,
};

/// A backend for a command, with the runtime its workers need (kept alive
/// as long as the backend; dropping it ends the workers).
fn command_backend(
    isolation: Isolation,
    settings: impl FnOnce() -> crate::execution::ProcessSettings,
) -> Result<(Arc<dyn Backend>, Option<tokio::runtime::Runtime>), String> {
    match isolation {
        Isolation::InProcess => Ok((
            Arc::new(InProcess::new(1, &settings().root, None).map_err(|e| e.to_string())?),
            None,
        )),
        #[cfg(unix)]
        Isolation::Process => {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            let services = crate::nanocore::Services::disabled();
            let backend = crate::execution::ProcessBackend::new(settings(), runtime.handle().clone(), services);
            Ok((Arc::new(backend), Some(runtime)))
        }
        #[cfg(not(unix))]
        Isolation::Process => Err(crate::execution::PROCESS_ISOLATION_UNSUPPORTED.to_owned()),
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
            let (backend, runtime) = command_backend(isolation, || crate::execution::ProcessSettings::defaults(root))?;
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
                println!(
                    "abi:       nano-plugin-abi {} (this server: {})",
                    loaded.abi_version,
                    nano_plugin_abi::ABI_VERSION
                );
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
    let (backend, _runtime) = match command_backend(config.isolation, || crate::serve::process_settings(&config)) {
        Ok(backend) => backend,
        Err(err) => {
            eprintln!("nano-server nodes: {err}");
            return ExitCode::FAILURE;
        }
    };
    let registry = NodeRegistry::new();
    let mut reconciler = Reconciler::new(backend, registry.clone(), config.nodes_path.clone())
        .allow_insecure_permissions(config.allow_insecure_permissions);
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
