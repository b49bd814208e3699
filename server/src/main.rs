//! The `nano-server` binary: parses the command line and wires the parts.

use std::{
    collections::HashSet,
    io::{IsTerminal, Write},
    path::PathBuf,
    process::ExitCode,
    time::Instant,
};

use anyhow::Context as _;
use clap::Parser;
use nano_server::{
    build,
    config::{Config, Overrides},
    execution::{Backend, Executor, InProcess},
    http,
    reconcile::Reconciler,
    registry::NodeRegistry,
    state::{Limits, ServerState},
    watcher,
};
use tracing_subscriber::EnvFilter;

/// glibc malloc was 14% of the server's CPU under load (perf); mimalloc keeps
/// per-thread free lists. Plugins keep their own allocator: everything that
/// crosses the ABI carries the vtable of the side that allocated it.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Serves compiled node plugins over the Nano protocol.
///
/// Without a subcommand, serves the nodes of the configuration.
#[derive(Debug, Parser)]
#[command(version, about, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Subcommand>,
    /// The configuration file.
    #[arg(long, short, default_value = "config.toml")]
    config: PathBuf,
    /// Address to listen on (overrides `host`).
    #[arg(long)]
    host: Option<String>,
    /// Port to listen on (overrides `port` and $PORT); 0 picks a free one.
    #[arg(long)]
    port: Option<u16>,
    /// Folder scanned for node libraries (overrides `nodes_path`).
    #[arg(long)]
    nodes_path: Option<PathBuf>,
}

#[derive(Debug, clap::Subcommand)]
enum Subcommand {
    /// Creates a node crate from the plugin template.
    New {
        /// Crate name, e.g. `word_count` (the node uid becomes `word-count`).
        name: String,
        /// Category shown in the orchestrator.
        #[arg(long, default_value = "Custom")]
        category: String,
        /// Folder to create [default: nodes/<category>/<name>].
        #[arg(long)]
        path: Option<PathBuf>,
        /// The nano-plugin-abi crate to depend on [default: found from the path].
        #[arg(long)]
        abi_path: Option<PathBuf>,
    },
    /// Builds every node crate under a folder and installs each library in
    /// its crate's folder, where the server finds it.
    Build {
        /// Folder to search for node crates.
        #[arg(default_value = "nodes")]
        dir: PathBuf,
        /// Build with optimisations.
        #[arg(long)]
        release: bool,
    },
    /// Loads one library as the server would and shows its nodes, or why it
    /// would be refused (exit code 1).
    Inspect {
        /// The library file.
        library: PathBuf,
        /// Print the node definitions as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Lists what the server would serve from a configuration, without listening.
    Nodes {
        /// The configuration file.
        #[arg(long, short, default_value = "config.toml")]
        config: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Some(Subcommand::New {
            name,
            category,
            path,
            abi_path,
        }) => return new_node(&name, &category, path, abi_path.as_deref()),
        Some(Subcommand::Build { dir, release }) => return build_nodes(&dir, release),
        Some(Subcommand::Inspect { library, json }) => return inspect(&library, json),
        Some(Subcommand::Nodes { config }) => return list_nodes(&config),
        None => {}
    }
    let overrides = Overrides {
        host: cli.host,
        port: cli.port,
        nodes_path: cli.nodes_path,
    };
    let config = match Config::load(&cli.config, &overrides) {
        Ok(config) => config,
        Err(err) => {
            eprintln!("nano-server: {err}");
            return ExitCode::from(2);
        }
    };
    init_logging();

    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("nano-server: cannot start the runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!("{err:#}");
            eprintln!("nano-server: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging() {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")))
        .init();
}

fn new_node(name: &str, category: &str, path: Option<PathBuf>, abi: Option<&std::path::Path>) -> ExitCode {
    if let Some(why) = nano_server::scaffold::invalid_name(name) {
        eprintln!("nano-server new: `{name}` is not a valid crate name: {why}");
        return ExitCode::from(2);
    }
    let dir = path.unwrap_or_else(|| PathBuf::from("nodes").join(category.to_lowercase()).join(name));
    match nano_server::scaffold::create(name, category, &dir, abi) {
        Ok(files) => {
            for file in files {
                println!("created {}", file.display());
            }
            println!("next: edit {}/src/lib.rs, then `nano-server build`", dir.display());
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("nano-server new: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn build_nodes(dir: &std::path::Path, release: bool) -> ExitCode {
    let crates = match build::find_node_crates(dir) {
        Ok(crates) => crates,
        Err(err) => {
            eprintln!("nano-server build: {err:#}");
            return ExitCode::FAILURE;
        }
    };
    if crates.is_empty() {
        eprintln!(
            "nano-server build: no node crate (a Cargo.toml with a cdylib) under {}",
            dir.display()
        );
        return ExitCode::FAILURE;
    }
    let options = build::BuildOptions {
        release,
        target_dir: build::shared_target_dir(dir),
        capture: false,
    };
    let mut failed = 0;
    for node in &crates {
        match build::build_and_install(node, &options) {
            Ok(installed) => println!("built {} -> {}", node.name, installed.display()),
            Err(err) => {
                eprintln!("nano-server build: {err:#}");
                failed += 1;
            }
        }
    }
    println!("{} of {} node crate(s) built", crates.len() - failed, crates.len());
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn inspect(library: &std::path::Path, json: bool) -> ExitCode {
    let loaded = std::fs::read(library)
        .map_err(|e| format!("cannot read the file: {e}"))
        .and_then(|bytes| {
            let backend = InProcess::new(1).map_err(|e| e.to_string())?;
            backend.load(library, &bytes).map_err(|e| e.to_string())
        });
    match loaded {
        Ok(loaded) => {
            if json {
                let definitions: Vec<&serde_json::Value> = loaded.nodes.iter().map(|n| &n.definition).collect();
                println!("{}", serde_json::to_string_pretty(&definitions).unwrap_or_default());
            } else {
                println!("library: {}", library.display());
                println!(
                    "abi:     nano-plugin-abi {} (this server: {})",
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

fn print_node_table<'a>(rows: impl Iterator<Item = (&'a nano_server::loader::NodeInfo, Option<&'a std::path::Path>)>) {
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

fn list_nodes(config_path: &std::path::Path) -> ExitCode {
    let config = match Config::load(config_path, &Overrides::default()) {
        Ok(config) => config,
        Err(err) => {
            eprintln!("nano-server: {err}");
            return ExitCode::from(2);
        }
    };
    let backend: std::sync::Arc<dyn Backend> = match InProcess::new(1) {
        Ok(backend) => std::sync::Arc::new(backend),
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
    println!("{} node(s) from {}:", snapshot.uids.len(), config.nodes_path.display());
    print_node_table(snapshot.uids.iter().filter_map(|uid| {
        let handle = snapshot.get(uid)?;
        Some((handle.info(), Some(handle.library.path.as_path())))
    }));
    for (path, reason) in &report.refused {
        println!("refused {}: {reason}", path.display());
    }
    ExitCode::SUCCESS
}

async fn serve(config: Config) -> anyhow::Result<()> {
    // Before anything is measured (the initial load sets gauges).
    let metrics = nano_server::metrics::install();
    // Histogram samples are only folded into buckets on upkeep (or a
    // scrape): without it, a server nobody scrapes would hoard them.
    tokio::spawn(async move {
        let mut every = tokio::time::interval(std::time::Duration::from_secs(5));
        loop {
            every.tick().await;
            metrics.run_upkeep();
        }
    });
    let backend = InProcess::new(config.max_concurrent_executions)
        .context("cannot create the folder for private library copies")?;
    let registry = NodeRegistry::new();
    let mut reconciler = Reconciler::new(
        std::sync::Arc::new(backend),
        registry.clone(),
        config.nodes_path.clone(),
    )
    .allow_insecure_permissions(config.allow_insecure_permissions);
    let builder = if config.build_sources {
        let builder = build::SourceBuilder::start(config.nodes_path.clone(), BUILD_RELEASE)
            .context("cannot start the source builder")?;
        builder.build_stale(BUILD_RELEASE);
        Some(builder)
    } else {
        None
    };
    load_all(&mut reconciler, &registry, &config)?;
    // Dropping the watcher (or the reconciler, when not watching) at the end
    // of `serve` removes the private copies.
    let insecure_root = nano_server::loader::check_permissions(&config.nodes_path, &config.nodes_path).err();
    let _watcher = if config.auto_watch && insecure_root.is_some() && !config.allow_insecure_permissions {
        tracing::error!(
            "not watching {}: {}",
            config.nodes_path.display(),
            insecure_root.map(|e| e.to_string()).unwrap_or_default()
        );
        drop(reconciler);
        None
    } else if config.auto_watch {
        Some(watcher::watch(reconciler, config.watch_debounce, builder).context("cannot watch nodes_path")?)
    } else {
        drop(reconciler);
        None
    };

    let executor = std::sync::Arc::new(Executor::new(
        config.max_concurrent_executions,
        config.max_queued_executions,
        config.execution_timeout,
    ));
    let limits = Limits {
        auth_token: config.auth_token.as_deref().map(Into::into),
        max_message_bytes: config.max_message_bytes,
        max_connections: config.max_connections,
        max_request_bytes: config.max_request_bytes,
    };
    let state = ServerState::new(config.identity.clone(), registry, executor, limits);
    let address = config.listen_address();
    let listener = tokio::net::TcpListener::bind(&address)
        .await
        .with_context(|| format!("cannot listen on {address}"))?;
    let local = listener.local_addr()?;
    tracing::info!(%local, "listening");
    {
        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, "nano-server listening on http://{local}")?;
        writeln!(stdout, "[NANOSERVER_READY]")?;
        stdout.flush()?;
    }
    // Statuses are small frames written one by one: without TCP_NODELAY,
    // Nagle's algorithm holds each behind the client's delayed ACK (~40 ms).
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp: &mut tokio::net::TcpStream| {
        if let Err(err) = tcp.set_nodelay(true) {
            tracing::debug!(%err, "cannot set TCP_NODELAY");
        }
    });
    axum::serve(listener, http::router(state.clone()))
        .with_graceful_shutdown(drain_on_signal(state, config.shutdown_grace))
        .await?;
    tracing::info!("stopped");
    Ok(())
}

/// Loads every library under `nodes_path` and logs what is served.
fn load_all(reconciler: &mut Reconciler, registry: &NodeRegistry, config: &Config) -> anyhow::Result<()> {
    let started = Instant::now();
    let root = &config.nodes_path;
    let report = reconciler
        .reconcile(&HashSet::new())
        .with_context(|| format!("cannot scan nodes_path {}", root.display()))?;
    let snapshot = registry.snapshot();
    tracing::info!(
        nodes_path = %root.display(),
        libraries = report.loaded.len(),
        refused = report.refused.len(),
        nodes = ?snapshot.uids,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "serving {} node(s) from {} librar{}",
        snapshot.uids.len(),
        snapshot.libraries,
        if snapshot.libraries == 1 { "y" } else { "ies" },
    );
    Ok(())
}

/// Node sources are built with the profile the server was built with.
const BUILD_RELEASE: bool = !cfg!(debug_assertions);

/// How long the plugins' shutdown hooks may take, all together.
const SHUTDOWN_HOOKS_BUDGET: std::time::Duration = std::time::Duration::from_secs(2);

/// Resolves when the server should stop. After a signal: `/readyz` answers
/// 503 and new executions are refused; in-flight executions may finish for
/// `shutdown_grace`; the rest are aborted with an error status; WebSockets
/// get their last statuses and a close frame; then every loaded library's
/// shutdown hook runs.
async fn drain_on_signal(state: ServerState, grace: std::time::Duration) {
    shutdown_signal().await;
    state.begin_shutdown();
    let in_flight = state.executor.active_count();
    tracing::info!(
        in_flight,
        grace_ms = grace.as_millis() as u64,
        "shutting down: draining"
    );
    let deadline = Instant::now() + grace;
    while state.executor.active_count() > 0 && Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let aborted = state
        .executor
        .abort_all("Execution aborted: the server is shutting down")
        .len();
    state.close_websockets();
    let closing = Instant::now() + std::time::Duration::from_secs(2);
    while state.open_websockets() > 0 && Instant::now() < closing {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let registry = state.registry.clone();
    let hooks = tokio::task::spawn_blocking(move || registry.run_shutdown_hooks(SHUTDOWN_HOOKS_BUDGET))
        .await
        .unwrap_or_default();
    tracing::info!(
        finished = in_flight.saturating_sub(aborted),
        aborted,
        stuck_workers = state.executor.stuck_count(),
        hooks_ran = hooks.ran,
        hooks_failed = hooks.failed,
        hooks_unfinished = hooks.unfinished,
        without_hook = hooks.without_hook,
        "shutdown: {} execution(s) finished during the drain, {aborted} aborted",
        in_flight.saturating_sub(aborted)
    );
    // A backstop: connections that do not close must not keep the process up.
    std::thread::spawn(|| {
        std::thread::sleep(std::time::Duration::from_secs(3));
        tracing::info!("stopped (connections still open were dropped)");
        std::process::exit(0);
    });
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutdown signal received");
}
