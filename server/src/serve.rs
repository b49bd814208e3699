//! Serving: load the nodes, bind, serve both transports on one port, and
//! drain on SIGINT, SIGTERM or SIGHUP.

use std::{collections::HashSet, io::Write, sync::Arc, time::Instant};

use anyhow::Context as _;

use crate::{
    build,
    config::{self, Config, Isolation, SwapStrategy},
    execution::{AdmissionLimits, Backend, Executor, InProcess, Languages, ProcessSettings},
    nanocore::Services,
    reconcile::Reconciler,
    registry::NodeRegistry,
    state::{Limits, ServerState, Setup},
    transport::{self, ConnectionLimits},
    watcher,
};

/// Serves the nodes of `config` until a signal, then drains (see
/// [`drain_on_signal`]).
pub async fn serve(config: Config) -> anyhow::Result<()> {
    // Before anything is measured (the initial load sets gauges).
    let metrics = crate::metrics::install();
    // Histogram samples are only folded into buckets on upkeep (or a
    // scrape): without it, a server nobody scrapes would hoard them.
    tokio::spawn(async move {
        let mut every = tokio::time::interval(std::time::Duration::from_secs(5));
        loop {
            every.tick().await;
            metrics.run_upkeep();
        }
    });
    let registry = NodeRegistry::new();
    let services = Arc::new(Services::new(
        &config.identity.nanocore_http_endpoint,
        config.nanocore.token.as_ref().map(|token| token.expose().to_owned()),
        &config.identity.server_uid,
    ));
    let backend = backend(&config, &registry, &services)?;
    tracing::info!(isolation = config.isolation.as_str(), "plugin isolation");
    let mut reconciler = Reconciler::new(backend, registry.clone(), config.nodes_path.clone())
        .allow_insecure_permissions(config.allow_insecure_permissions)
        .python_group(config.python.group, config.python.interpreter.is_some());
    let builder = if config.build_sources {
        let builder = build::SourceBuilder::start(config.nodes_path.clone(), BUILD_RELEASE)
            .context("cannot start the source builder")?;
        builder.build_stale(BUILD_RELEASE);
        Some(builder)
    } else {
        None
    };
    // Loading may wait on worker processes, which this runtime supervises.
    tokio::task::block_in_place(|| load_all(&mut reconciler, &registry, &config))?;
    let insecure_root = crate::loader::check_permissions(&config.nodes_path, &config.nodes_path).err();
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

    let served = registry.clone();
    let executor = Arc::new(Executor::new(
        admission_limits(&config.admission),
        config.admission.execution_timeout,
        Box::new(move |uid| served.snapshot().get(uid).map(|node| node.target.clone())),
    ));
    let connection_limits = ConnectionLimits::resolve(
        config.limits.max_http_connections,
        config.limits.header_read_timeout,
        config.limits.idle_timeout,
    );
    let address = config.listen_address();
    let listener = tokio::net::TcpListener::bind(&address)
        .await
        .with_context(|| format!("cannot listen on {address}"))?;
    let local = listener.local_addr()?;
    if config.limits.auth_token.is_none() && !local.ip().is_loopback() {
        tracing::warn!(
            %local,
            "authentication is off on an address that is not loopback: whoever reaches it can run every node; \
             set auth_token (or NANO_SERVER_TOKEN)"
        );
    }
    // Bound to loopback only: requests naming another host are refused
    // (DNS rebinding).
    let limits = Limits::new(
        &config.limits,
        local.ip().is_loopback(),
        connection_limits.max_connections,
    );
    let setup = Setup {
        started: std::time::SystemTime::now(),
        isolation: config.isolation,
        nodes_path: config.nodes_path.clone(),
        ui: config.ui,
        services: Arc::clone(&services),
    };
    let state = ServerState::new(config.identity.clone(), registry, executor, limits, setup);
    tracing::info!(
        %local,
        max_http_connections = connection_limits.max_connections,
        header_read_timeout_ms = connection_limits.header_read_timeout.as_millis() as u64,
        idle_timeout_ms = connection_limits.idle_timeout.as_millis() as u64,
        "listening"
    );
    // Listening for the signals before saying ready: a signal sent the
    // moment we are ready drains instead of killing the process.
    let stop = shutdown_signal();
    {
        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, "nano-server listening on http://{local}")?;
        writeln!(stdout, "[NANOSERVER_READY]")?;
        stdout.flush()?;
    }
    transport::accept_connections(
        listener,
        transport::router(state.clone()),
        connection_limits,
        drain_on_signal(stop, state, config.shutdown_grace, services),
    )
    .await?;
    tracing::info!("stopped");
    Ok(())
}

/// The backend `config.isolation` asks for, for compiled libraries; Python
/// `node.py` libraries always run in worker processes. A library that
/// fails for good in a worker is withdrawn from `registry`.
pub(crate) fn backend(
    config: &Config,
    registry: &NodeRegistry,
    services: &Arc<Services>,
) -> anyhow::Result<Arc<dyn Backend>> {
    let runtime = tokio::runtime::Handle::current();
    let native: Arc<dyn Backend> = match config.isolation {
        Isolation::InProcess => Arc::new(
            InProcess::new(
                config.admission.max_concurrent_executions,
                &config.nodes_path,
                Some((Arc::clone(services), runtime.clone())),
            )
            .context("cannot create the folder for private library copies")?,
        ),
        Isolation::Process => process_backend(config, registry, services, runtime.clone())?,
    };
    Ok(Arc::new(Languages {
        native,
        python: python_backend(config, registry, services, runtime),
    }))
}

/// The process backend; a library that fails for good is withdrawn.
#[cfg(unix)]
fn process_backend(
    config: &Config,
    registry: &NodeRegistry,
    services: &Arc<Services>,
    runtime: tokio::runtime::Handle,
) -> anyhow::Result<Arc<dyn Backend>> {
    let backend = crate::execution::ProcessBackend::new(process_settings(config), runtime, Arc::clone(services));
    let registry = registry.clone();
    backend.on_failed(Box::new(move |runtime, reason| registry.withdraw(runtime, reason)));
    Ok(Arc::new(backend))
}

/// Refused at start: the process backend needs Unix.
#[cfg(not(unix))]
fn process_backend(
    _config: &Config,
    _registry: &NodeRegistry,
    _services: &Arc<Services>,
    _runtime: tokio::runtime::Handle,
) -> anyhow::Result<Arc<dyn Backend>> {
    anyhow::bail!(crate::execution::PROCESS_ISOLATION_UNSUPPORTED)
}

/// The backend of Python workers (`None` without Unix); a library that
/// fails for good is withdrawn.
#[cfg(unix)]
fn python_backend(
    config: &Config,
    registry: &NodeRegistry,
    services: &Arc<Services>,
    runtime: tokio::runtime::Handle,
) -> Option<Arc<dyn Backend>> {
    let python = crate::execution::PythonSettings {
        project_root: config.python.project_root.clone(),
        interpreter: config.python.interpreter.clone(),
        workers: config.python.workers,
    };
    let backend =
        crate::execution::ProcessBackend::python(process_settings(config), python, runtime, Arc::clone(services));
    let registry = registry.clone();
    backend.on_failed(Box::new(move |runtime, reason| registry.withdraw(runtime, reason)));
    Some(Arc::new(backend))
}

#[cfg(not(unix))]
fn python_backend(
    _config: &Config,
    _registry: &NodeRegistry,
    _services: &Arc<Services>,
    _runtime: tokio::runtime::Handle,
) -> Option<Arc<dyn Backend>> {
    None
}

/// The process backend's settings: the process section, with the root and
/// the threads per worker.
pub(crate) fn process_settings(config: &Config) -> ProcessSettings {
    let process = &config.process;
    ProcessSettings {
        root: config.nodes_path.clone(),
        threads: config.admission.max_concurrent_executions,
        start_timeout: process.worker_start_timeout,
        abort_grace: process.abort_grace,
        drain: process.worker_drain,
        memory_limit_bytes: process.worker_memory_limit_mb.map(|mb| mb << 20),
        restart_initial: process.worker_restart_initial,
        restart_max: process.worker_restart_max,
        restart_wait: process.worker_restart_wait,
        heartbeat: process.worker_heartbeat,
        restart_reset: process.worker_restart_reset,
        stop_first: process.swap_strategy == SwapStrategy::StopFirst,
        stop_first_libraries: process.stop_first_libraries.clone(),
    }
}

/// The executor's admission limits: the admission section under the
/// executor's names.
fn admission_limits(admission: &config::Admission) -> AdmissionLimits {
    AdmissionLimits {
        max_concurrent: admission.max_concurrent_executions,
        max_queued: admission.max_queued_executions,
        max_queued_bytes: admission.max_queued_bytes,
        per_node: admission.node_concurrency.clone(),
    }
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
    let python = registry
        .libraries()
        .iter()
        .map(|(library, _)| library.path.clone())
        .chain(registry.refusals().into_iter().map(|refusal| refusal.path))
        .filter(|path| crate::execution::is_python_library(path))
        .count();
    if python > 0 && config.isolation == Isolation::InProcess {
        tracing::info!(
            python_libraries = python,
            "Python libraries (node.py) run in worker processes even with isolation = \"in-process\""
        );
    }
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
async fn drain_on_signal(
    stop: impl std::future::Future<Output = ()>,
    state: ServerState,
    grace: std::time::Duration,
    services: Arc<Services>,
) {
    stop.await;
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
    // After the hooks, which may free their own: what nodes left allocated
    // at NanoCore is freed for them.
    services.end_all().await;
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

/// Resolves on SIGINT, SIGTERM or SIGHUP (a closed terminal, or a
/// supervisor that stops with it: left to its default, SIGHUP would end the
/// process with no drain). The handlers are installed when this is called,
/// not when it is first polled.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    let (interrupt, terminate, hangup) = {
        use tokio::signal::unix::{SignalKind, signal};
        (
            signal(SignalKind::interrupt()).ok(),
            signal(SignalKind::terminate()).ok(),
            signal(SignalKind::hangup()).ok(),
        )
    };
    async move {
        #[cfg(unix)]
        {
            let wait = |signal: Option<tokio::signal::unix::Signal>| async move {
                match signal {
                    Some(mut signal) => {
                        signal.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            let name = tokio::select! {
                () = wait(interrupt) => "SIGINT",
                () = wait(terminate) => "SIGTERM",
                () = wait(hangup) => "SIGHUP",
            };
            tracing::info!(signal = name, "shutdown signal received");
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
            tracing::info!("shutdown signal received");
        }
    }
}
