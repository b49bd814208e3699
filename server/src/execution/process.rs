//! The process backend: every library version runs in a worker process of
//! its own (the server's binary, `nano-server worker`), so a node that
//! crashes, hangs or leaks takes down only that worker, never the server.
//!
//! Per library version a supervisor keeps one current worker taking new
//! executions: it restarts a crashed one with exponential backoff, replaces
//! one whose node ignored an abort for `abort_grace_ms` (the old one drains,
//! bounded by `worker_drain_ms`), ends one past `worker_memory_limit_mb`,
//! and gives up on a library whose worker dies while loading three times in
//! a row. The server never maps plugin code.

use std::{
    collections::{HashMap, VecDeque},
    io,
    os::{fd::AsRawFd, unix::process::ExitStatusExt},
    path::{Path, PathBuf},
    process::{ExitStatus, Stdio},
    sync::{
        Arc, Mutex, Weak,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use serde_bytes::ByteBuf;
use tokio::{
    io::AsyncBufReadExt,
    net::unix::OwnedReadHalf,
    process::{Child, Command},
    runtime::Handle,
    sync::{Notify, mpsc},
};
use tokio_util::codec::{FramedRead, FramedWrite, LengthDelimitedCodec};

use super::{
    ABORTED, Backend, Execution, Failure, HookOutcome, Job, LibraryRuntime, Loaded, Running,
    settings::ProcessSettings,
    wire::{self, ExecuteFrame, FromWorker, ToWorker},
};
use crate::{
    loader::{LoadError, parse_definitions},
    lock, metrics,
    nanocore::{Owner, Services},
};

/// Called with a library's runtime when it failed for good (its worker
/// died while loading three times in a row): its nodes stop being served.
pub type OnFailed = Box<dyn Fn(&Arc<dyn LibraryRuntime>) + Send + Sync>;

/// The process [`Backend`].
pub struct ProcessBackend {
    settings: Arc<ProcessSettings>,
    runtime: Handle,
    services: Arc<Services>,
    on_failed: Arc<Mutex<Option<OnFailed>>>,
    /// The last version loaded per path: a stop-first swap stops it first.
    latest: Mutex<HashMap<PathBuf, Weak<ProcessLibrary>>>,
}

impl ProcessBackend {
    pub fn new(settings: ProcessSettings, runtime: Handle, services: Arc<Services>) -> Self {
        Self {
            settings: Arc::new(settings),
            runtime,
            services,
            on_failed: Arc::default(),
            latest: Mutex::default(),
        }
    }

    /// What to do with a library that failed for good.
    pub fn on_failed(&self, hook: OnFailed) {
        *lock(&self.on_failed) = Some(hook);
    }
}

impl Backend for ProcessBackend {
    fn load(&self, path: &Path, bytes: &[u8]) -> Result<Loaded, LoadError> {
        let label: Arc<str> = path
            .strip_prefix(&self.settings.root)
            .unwrap_or(path)
            .display()
            .to_string()
            .into();
        let library = Arc::new_cyclic(|me| ProcessLibrary {
            me: me.clone(),
            path: path.to_owned(),
            label,
            bytes: Arc::new(bytes.to_vec()),
            settings: Arc::clone(&self.settings),
            runtime: self.runtime.clone(),
            services: Arc::clone(&self.services),
            on_failed: Arc::clone(&self.on_failed),
            state: Mutex::new(LibraryState {
                backoff: self.settings.restart_initial,
                ..LibraryState::default()
            }),
        });
        let stop_first = self.settings.stop_first || self.settings.stop_first_libraries.contains(&*library.label);
        let previous = lock(&self.latest).get(path).and_then(Weak::upgrade);
        let stopped = match previous {
            Some(old) if stop_first && old.stop_for_swap() => Some(old),
            _ => None,
        };
        let (sender, result) = std::sync::mpsc::channel();
        let starting = Arc::clone(&library);
        self.runtime.spawn(async move {
            let _ = sender.send(starting.start_first().await);
        });
        let loaded = result
            .recv()
            .map_err(|_| LoadError::Worker("the worker supervisor stopped".to_owned()))
            .and_then(|started| {
                let (abi_version, definitions) = started?;
                Ok((abi_version, parse_definitions(&definitions)?))
            });
        match loaded {
            Ok((abi_version, nodes)) => {
                // A stopped old version stays paused until the registry
                // serves this one and retires it: then what waited for it
                // is redirected here.
                lock(&self.latest).insert(path.to_owned(), Arc::downgrade(&library));
                Ok(Loaded {
                    abi_version,
                    nodes,
                    runtime: library,
                })
            }
            Err(err) => {
                // The old version keeps serving: it gets a worker again.
                if let Some(old) = stopped {
                    old.resume();
                }
                Err(err)
            }
        }
    }
}

/// Why a worker could not be started with its library loaded.
enum StartError {
    /// The library was refused (the worker's reason).
    Refused(String),
    /// The worker died while starting or loading (signal or exit code).
    Crashed(String),
    /// It could not be spawned, was from another build, or was too slow.
    Failed(String),
}

/// One library version and its workers.
struct ProcessLibrary {
    me: Weak<ProcessLibrary>,
    path: PathBuf,
    /// The path relative to `nodes_path`: the `library` of logs and metrics.
    label: Arc<str>,
    /// Kept to start replacement workers with the same version.
    bytes: Arc<Vec<u8>>,
    settings: Arc<ProcessSettings>,
    runtime: Handle,
    /// NanoCore's services, which its workers' host calls reach.
    services: Arc<Services>,
    on_failed: Arc<Mutex<Option<OnFailed>>>,
    state: Mutex<LibraryState>,
}

#[derive(Default)]
struct LibraryState {
    /// The worker taking new executions (none while restarting).
    current: Option<Arc<Worker>>,
    /// Executions that arrived while no worker was up, by execution id.
    waiting: HashMap<u64, Job>,
    order: VecDeque<u64>,
    restarting: bool,
    /// Workers died while loading, in a row.
    load_crashes: u32,
    failed: Option<String>,
    retired: bool,
    backoff: Duration,
    up_since: Option<Instant>,
    /// Stopped for a stop-first swap: executions wait for the new version.
    paused: bool,
}

impl LibraryState {
    /// The executions that waited for a worker, in arrival order.
    fn take_waiting(&mut self) -> Vec<Job> {
        let mut waiting = std::mem::take(&mut self.waiting);
        std::mem::take(&mut self.order)
            .into_iter()
            .filter_map(|id| waiting.remove(&id))
            .collect()
    }
}

impl ProcessLibrary {
    fn arc(&self) -> Arc<ProcessLibrary> {
        self.me.upgrade().expect("a library is alive while its methods run")
    }

    /// Stop-first swap: stops taking executions (they wait for the new
    /// version), lets the running ones finish (at most `worker_drain_ms`)
    /// and waits until the worker ran its shutdown hook and exited. False
    /// when there was no worker to stop.
    fn stop_for_swap(&self) -> bool {
        let worker = {
            let mut state = lock(&self.state);
            if state.retired || state.failed.is_some() {
                return false;
            }
            state.paused = true;
            state.current.take()
        };
        let Some(worker) = worker else { return true };
        tracing::info!(library = %self.label, pid = worker.pid, "stop-first swap: stopping the old worker before starting the new one");
        worker.drain(&self.settings, &self.runtime);
        let deadline = Instant::now() + self.settings.drain + Duration::from_secs(3);
        while !worker.exited.load(Ordering::SeqCst) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        true
    }

    /// Stop-first swap failed (the new version was refused): this version
    /// gets a worker again.
    fn resume(&self) {
        {
            let mut state = lock(&self.state);
            state.paused = false;
            state.restarting = true;
        }
        self.runtime.spawn(restart(self.arc(), Duration::ZERO));
    }

    /// The first worker: up to three tries if it dies while loading.
    async fn start_first(self: Arc<Self>) -> Result<(String, String), LoadError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.start_worker().await {
                Ok((worker, io, loaded)) => {
                    self.install(worker, io);
                    return Ok(loaded);
                }
                Err(StartError::Crashed(cause)) if attempt < 3 => {
                    tracing::warn!(library = %self.label, attempt, "worker died while loading ({cause}); trying again");
                }
                Err(StartError::Crashed(cause)) => return Err(LoadError::Crashed(cause)),
                Err(StartError::Refused(reason)) => return Err(LoadError::InWorker(reason)),
                Err(StartError::Failed(reason)) => return Err(LoadError::Worker(reason)),
            }
        }
    }

    /// Makes `worker` the current one and supervises it.
    fn install(&self, worker: Arc<Worker>, io: WorkerIo) {
        let waiting = {
            let mut state = lock(&self.state);
            state.current = Some(Arc::clone(&worker));
            state.restarting = false;
            state.load_crashes = 0;
            state.up_since = Some(Instant::now());
            state.take_waiting()
        };
        self.runtime.spawn(supervise(self.arc(), Arc::clone(&worker), io));
        for job in waiting {
            worker.run(job);
        }
    }

    /// Spawns a worker, shakes hands and has it load the library.
    async fn start_worker(&self) -> Result<(Arc<Worker>, WorkerIo, (String, String)), StartError> {
        let failed = |what: &str, err: io::Error| StartError::Failed(format!("{what}: {err}"));
        let (ours, theirs) = std::os::unix::net::UnixStream::pair().map_err(|e| failed("socketpair", e))?;
        let exe = if cfg!(target_os = "linux") {
            PathBuf::from("/proc/self/exe")
        } else {
            std::env::current_exe().map_err(|e| failed("finding the server's binary", e))?
        };
        let mut command = Command::new(exe);
        command
            .arg0("nano-server")
            .arg("worker")
            .arg("--threads")
            .arg(self.settings.threads.to_string())
            .arg("--library")
            .arg(&*self.label)
            .env_remove("NANO_SERVER_TOKEN")
            .env_remove("NANOCORE_TOKEN")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let fd = theirs.as_raw_fd();
        let parent = std::process::id();
        // SAFETY: between fork and exec only async-signal-safe calls (dup2,
        // fcntl, prctl, getppid, _exit) run.
        unsafe {
            command.pre_exec(move || {
                if fd == wire::CHANNEL_FD {
                    let flags = libc::fcntl(fd, libc::F_GETFD);
                    libc::fcntl(fd, libc::F_SETFD, flags & !libc::FD_CLOEXEC);
                } else if libc::dup2(fd, wire::CHANNEL_FD) < 0 {
                    return Err(io::Error::last_os_error());
                }
                #[cfg(target_os = "linux")]
                {
                    // A SIGKILLed server leaves no worker behind.
                    if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                        return Err(io::Error::last_os_error());
                    }
                    if libc::getppid() as u32 != parent {
                        libc::_exit(1);
                    }
                }
                let _ = parent;
                Ok(())
            });
        }
        let mut child = command.spawn().map_err(|e| failed("starting a worker process", e))?;
        drop(theirs);
        let pid = child.id().unwrap_or(0);
        forward_output(&self.label, pid, child.stdout.take(), child.stderr.take());
        ours.set_nonblocking(true).map_err(|e| failed("socket", e))?;
        let stream = tokio::net::UnixStream::from_std(ours).map_err(|e| failed("socket", e))?;
        let (reader, writer) = stream.into_split();
        let mut frames = FramedRead::new(reader, wire::codec(wire::MAX_FROM_WORKER));
        let to_worker = spawn_writer(FramedWrite::new(writer, wire::codec(wire::MAX_TO_WORKER)));

        let deadline = tokio::time::Instant::now() + self.settings.start_timeout;
        let _ = to_worker.send(ToWorker::Hello {
            build_id: wire::BUILD_ID.to_owned(),
        });
        let _ = to_worker.send(ToWorker::Load {
            path: self.path.display().to_string(),
            bytes: self.bytes.as_ref().clone(),
        });
        // `Err(Ok(()))`: the channel closed, so the process is ending.
        let timeout_ms = self.settings.start_timeout.as_millis();
        let outcome: Result<(String, String), Result<(), String>> = async {
            match expect(&mut frames, deadline, "answer the handshake", timeout_ms).await? {
                FromWorker::Hello { build_id } if build_id == wire::BUILD_ID => {}
                FromWorker::Hello { build_id } => {
                    return Err(Err(format!("the worker is from another build ({build_id})")));
                }
                other => return Err(Err(format!("the worker answered the handshake with {other:?}"))),
            }
            match expect(&mut frames, deadline, "report its definitions", timeout_ms).await? {
                FromWorker::Loaded(Ok(loaded)) => Ok(loaded),
                FromWorker::Loaded(Err(reason)) => Err(Err(format!("refused:{reason}"))),
                other => Err(Err(format!("the worker answered the load with {other:?}"))),
            }
        }
        .await;
        match outcome {
            Ok(loaded) => {
                let worker = Arc::new(Worker {
                    pid,
                    version: self.services.version_id(),
                    host_calls: AtomicBool::new(false),
                    library: self.me.clone(),
                    to_worker,
                    inflight: Mutex::new(HashMap::new()),
                    ending: Mutex::new(None),
                    kill: Notify::new(),
                    draining: AtomicBool::new(false),
                    exited: AtomicBool::new(false),
                    shutdown_reply: Mutex::new(None),
                });
                metrics::gauge!(metrics::WORKERS).increment(1.0);
                Ok((worker, WorkerIo { child, frames }, loaded))
            }
            Err(Ok(())) => {
                let status = tokio::time::timeout(Duration::from_secs(5), child.wait()).await;
                remove_private_dir(pid);
                let cause = match status {
                    Ok(Ok(status)) => short_cause(status),
                    _ => "unknown cause".to_owned(),
                };
                Err(StartError::Crashed(cause))
            }
            Err(Err(reason)) => {
                let _ = child.start_kill();
                let _ = child.wait().await;
                remove_private_dir(pid);
                match reason.strip_prefix("refused:") {
                    Some(reason) => Err(StartError::Refused(reason.to_owned())),
                    None => Err(StartError::Failed(reason)),
                }
            }
        }
    }

    /// A worker ended. If it was the current one and died (rather than
    /// being ended on purpose), a restart is scheduled with backoff.
    fn worker_exited(&self, worker: &Arc<Worker>, crashed: bool, reason: &str) {
        let mut state = lock(&self.state);
        let was_current = state.current.as_ref().is_some_and(|w| Arc::ptr_eq(w, worker));
        if !was_current {
            return;
        }
        state.current = None;
        if state.retired || state.failed.is_some() || !crashed {
            return;
        }
        metrics::counter!(metrics::WORKER_RESTARTS, "library" => self.label.to_string(), "reason" => reason.to_owned())
            .increment(1);
        if state
            .up_since
            .is_some_and(|up| up.elapsed() >= self.settings.restart_reset)
        {
            state.backoff = self.settings.restart_initial;
        }
        let delay = state.backoff;
        state.backoff = (state.backoff * 2).min(self.settings.restart_max);
        state.restarting = true;
        drop(state);
        tracing::warn!(library = %self.label, delay_ms = delay.as_millis() as u64, "restarting the worker after a crash");
        self.runtime.spawn(restart(self.arc(), delay));
    }

    /// Gives up on the library: its nodes stop being served.
    fn fail(&self, reason: String) {
        let waiting = {
            let mut state = lock(&self.state);
            state.failed = Some(reason.clone());
            state.restarting = false;
            state.order.clear();
            std::mem::take(&mut state.waiting)
        };
        tracing::error!(
            library = %self.label,
            "{} failed: its worker died while loading 3 times in a row ({reason}); its nodes are no longer served until the file changes",
            self.label
        );
        metrics::counter!(metrics::LIBRARY_FAILURES).increment(1);
        for job in waiting.into_values() {
            job.execution.reject(
                Failure::Crashed,
                format!("node crashed: {} failed ({reason})", self.label),
            );
        }
        let runtime: Arc<dyn LibraryRuntime> = self.arc();
        if let Some(hook) = lock(&self.on_failed).as_ref() {
            hook(&runtime);
        }
    }

    /// An execution that waited for a restart too long.
    fn expire(&self, id: u64) {
        let job = {
            let mut state = lock(&self.state);
            state.order.retain(|waiting| *waiting != id);
            state.waiting.remove(&id)
        };
        if let Some(job) = job {
            job.execution.reject(
                Failure::Crashed,
                format!(
                    "node crashed: the worker for {} is restarting after a crash; try again later",
                    self.label
                ),
            );
        }
    }

    /// The current worker lost a node that ignored its abort: new
    /// executions go to a fresh worker at once, the old one drains.
    fn replace(&self, old: &Arc<Worker>) {
        let mut state = lock(&self.state);
        if state.current.as_ref().is_some_and(|w| Arc::ptr_eq(w, old)) {
            state.current = None;
            if !state.retired && state.failed.is_none() {
                state.restarting = true;
                metrics::counter!(metrics::WORKER_RESTARTS, "library" => self.label.to_string(), "reason" => "hung")
                    .increment(1);
                self.runtime.spawn(restart(self.arc(), Duration::ZERO));
            }
        }
        drop(state);
        old.drain(&self.settings, &self.runtime);
    }
}

/// Starts a replacement worker after `delay`; gives up after three deaths
/// while loading in a row.
async fn restart(library: Arc<ProcessLibrary>, mut delay: Duration) {
    loop {
        tokio::time::sleep(delay).await;
        if lock(&library.state).retired {
            return;
        }
        match library.start_worker().await {
            Ok((worker, io, _)) => {
                if lock(&library.state).retired {
                    worker.end(None);
                    return;
                }
                tracing::info!(library = %library.label, pid = worker.pid, "worker restarted");
                library.install(worker, io);
                return;
            }
            Err(StartError::Crashed(cause) | StartError::Failed(cause)) => {
                let mut state = lock(&library.state);
                state.load_crashes += 1;
                if state.load_crashes >= 3 {
                    drop(state);
                    library.fail(cause);
                    return;
                }
                delay = state.backoff;
                state.backoff = (state.backoff * 2).min(library.settings.restart_max);
                tracing::warn!(library = %library.label, "replacement worker failed ({cause}); trying again");
            }
            Err(StartError::Refused(reason)) => {
                library.fail(reason);
                return;
            }
        }
    }
}

impl LibraryRuntime for ProcessLibrary {
    fn execute(&self, job: Job) {
        let mut state = lock(&self.state);
        if state.retired {
            // Replaced or removed after this job was admitted for it.
            drop(state);
            job.redirect(self);
            return;
        }
        if let Some(reason) = &state.failed {
            let message = format!("node crashed: {} failed ({reason})", self.label);
            drop(state);
            job.execution.reject(Failure::Crashed, message);
            return;
        }
        if let Some(worker) = state.current.clone() {
            drop(state);
            worker.run(job);
            return;
        }
        // Restarting: wait for the new worker, for a while.
        let id = job.execution.id();
        state.waiting.insert(id, job);
        state.order.push_back(id);
        drop(state);
        let library = self.arc();
        let wait = self.settings.restart_wait;
        self.runtime.spawn(async move {
            tokio::time::sleep(wait).await;
            library.expire(id);
        });
    }

    fn shutdown_hook(&self) -> HookOutcome {
        let worker = {
            let mut state = lock(&self.state);
            state.retired = true;
            state.current.take()
        };
        let worker = worker?;
        let (reply, answer) = std::sync::mpsc::channel();
        *lock(&worker.shutdown_reply) = Some(reply);
        if !worker.request_shutdown() {
            return Some(Err("the worker is gone".to_owned()));
        }
        match answer.recv_timeout(Duration::from_secs(2)) {
            Ok(outcome) => outcome,
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => Some(Err(format!(
                "{}: the worker exited before reporting its shutdown hook",
                self.label
            ))),
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                worker.end(Some(("its shutdown hook did not finish in time".to_owned(), false)));
                Some(Err(format!("{}: the shutdown hook did not finish in time", self.label)))
            }
        }
    }

    fn retire(&self) -> bool {
        let (worker, waiting) = {
            let mut state = lock(&self.state);
            state.retired = true;
            (state.current.take(), state.take_waiting())
        };
        // What waited for a restart or a stop-first swap goes to the
        // version served now (the registry serves it before retiring this).
        for job in waiting {
            job.redirect(self);
        }
        if let Some(worker) = worker {
            // Its executions finish on this version; then its shutdown hook
            // runs in the worker, which exits.
            worker.drain(&self.settings, &self.runtime);
        }
        false
    }

    fn is_up(&self) -> bool {
        let state = lock(&self.state);
        state.current.is_some() || ((state.restarting || state.paused) && state.failed.is_none())
    }
}

/// A worker's process and the frames it sends, owned by its supervisor.
struct WorkerIo {
    child: Child,
    frames: FramedRead<OwnedReadHalf, LengthDelimitedCodec>,
}

/// One worker process, as the server sees it.
struct Worker {
    pid: u32,
    /// Its id for NanoCore's services: what it allocated is freed when it ends.
    version: u64,
    /// Whether it made a host call (its executions' streams must be released).
    host_calls: AtomicBool,
    library: Weak<ProcessLibrary>,
    to_worker: mpsc::UnboundedSender<ToWorker>,
    /// Executions handed to it and not answered, by id. `running` is taken
    /// when the execution ends without the node (it hung past its abort).
    inflight: Mutex<HashMap<u64, InFlight>>,
    /// Why the server is ending it, and whether that counts as a crash.
    ending: Mutex<Option<(String, bool)>>,
    kill: Notify,
    /// Takes no new executions; ends when its last one does.
    draining: AtomicBool,
    exited: AtomicBool,
    shutdown_reply: Mutex<Option<std::sync::mpsc::Sender<HookOutcome>>>,
}

struct InFlight {
    execution: Arc<Execution>,
    running: Option<Running>,
}

impl Worker {
    /// Hands an execution to the worker (statuses and the result come back
    /// through its supervisor).
    fn run(self: &Arc<Self>, job: Job) {
        let Job {
            node_index,
            request,
            execution,
        } = job;
        let Some(running) = execution.begin() else { return };
        let id = execution.id();
        lock(&self.inflight).insert(
            id,
            InFlight {
                execution: Arc::clone(&execution),
                running: Some(running),
            },
        );
        if self.exited.load(Ordering::SeqCst) {
            // It died meanwhile and its supervisor may have missed this one.
            self.fail_inflight("node crashed: its worker had just exited".to_owned());
            return;
        }
        let worker = Arc::downgrade(self);
        execution.on_abort(Box::new(move || {
            if let Some(worker) = worker.upgrade() {
                worker.abort(id);
            }
        }));
        let _ = self.to_worker.send(ToWorker::Execute(ExecuteFrame {
            id,
            node_index,
            instance_id: request.instance_id,
            inputs: request.inputs,
            parameters: request.parameters,
            graph_node: request.graph_node,
        }));
    }

    /// Tells the node to stop; if it has not returned after the grace
    /// period, its slot is freed and the worker replaced.
    fn abort(self: &Arc<Self>, id: u64) {
        let _ = self.to_worker.send(ToWorker::Abort { id });
        let Some(library) = self.library.upgrade() else { return };
        let worker = Arc::downgrade(self);
        let grace = library.settings.abort_grace;
        let runtime = library.runtime.clone();
        runtime.spawn(async move {
            tokio::time::sleep(grace).await;
            let Some(worker) = worker.upgrade() else { return };
            let running = {
                let mut inflight = lock(&worker.inflight);
                inflight
                    .get_mut(&id)
                    .and_then(|f| f.running.take().map(|r| (Arc::clone(&f.execution), r)))
            };
            if let Some((execution, running)) = running {
                tracing::warn!(
                    library = %library.label,
                    pid = worker.pid,
                    grace_ms = grace.as_millis() as u64,
                    "a node ignored its abort; replacing its worker"
                );
                // Its final status went out with the abort; this frees its slot.
                execution.end(running, Err((Failure::Aborted, ABORTED.to_owned())));
                library.replace(&worker);
            }
        });
    }

    /// Executions still running a node (not counting hung ones).
    fn live(&self) -> usize {
        lock(&self.inflight).values().filter(|f| f.running.is_some()).count()
    }

    /// Stops taking executions; ends once the live ones are done, or after
    /// the drain period.
    fn drain(self: &Arc<Self>, settings: &ProcessSettings, runtime: &Handle) {
        if self.draining.swap(true, Ordering::SeqCst) {
            return;
        }
        if self.live() == 0 {
            self.finish();
            return;
        }
        let worker = Arc::downgrade(self);
        let limit = settings.drain;
        runtime.spawn(async move {
            tokio::time::sleep(limit).await;
            if let Some(worker) = worker.upgrade()
                && !worker.exited.load(Ordering::SeqCst)
            {
                worker.end(Some((
                    format!(
                        "was stopped: its executions outlived worker_drain_ms ({} ms)",
                        limit.as_millis()
                    ),
                    false,
                )));
            }
        });
    }

    /// Asks the worker to run its shutdown hook and exit (an exit the log
    /// and its executions are told is no crash). False when it is gone.
    fn request_shutdown(&self) -> bool {
        {
            let mut ending = lock(&self.ending);
            if ending.is_none() {
                *ending = Some(("exited after its shutdown hook".to_owned(), false));
            }
        }
        self.to_worker.send(ToWorker::Shutdown).is_ok()
    }

    /// Asks the worker to run its shutdown hook and exit; kills it if it
    /// does not within two seconds.
    fn finish(self: &Arc<Self>) {
        self.request_shutdown();
        let worker = Arc::downgrade(self);
        if let Some(library) = self.library.upgrade() {
            library.runtime.spawn(async move {
                tokio::time::sleep(Duration::from_secs(2)).await;
                if let Some(worker) = worker.upgrade()
                    && !worker.exited.load(Ordering::SeqCst)
                {
                    worker.end(Some(("did not exit after its shutdown hook".to_owned(), false)));
                }
            });
        }
    }

    /// Kills the process; `why` (and whether it is a crash) is what its
    /// executions and the log are told.
    fn end(&self, why: Option<(String, bool)>) {
        let mut ending = lock(&self.ending);
        // A reason given now wins over "exited after its shutdown hook".
        if let Some(why) = why {
            *ending = Some(why);
        } else if ending.is_none() {
            *ending = Some(("was stopped".to_owned(), false));
        }
        drop(ending);
        self.kill.notify_one();
    }

    /// Ends every execution still waiting for this worker with `message`.
    fn fail_inflight(&self, message: String) {
        let inflight: Vec<InFlight> = lock(&self.inflight).drain().map(|(_, f)| f).collect();
        for InFlight { execution, running } in inflight {
            if let Some(running) = running {
                execution.end(running, Err((Failure::Crashed, message.clone())));
            }
        }
    }

    /// One frame from the worker; `Err` is a protocol violation.
    fn on_frame(self: &Arc<Self>, frame: &[u8]) -> Result<(), String> {
        match wire::decode::<FromWorker>(frame).map_err(|e| format!("undecodable frame: {e}"))? {
            FromWorker::Status { id, json } => {
                let execution = match lock(&self.inflight).get(&id) {
                    Some(f) => f.running.as_ref().map(|_| Arc::clone(&f.execution)),
                    None => return Err(format!("a status for execution {id}, which it was not given")),
                };
                if let Some(execution) = execution {
                    execution.node_status(&json);
                }
            }
            FromWorker::Done { id, outcome } => {
                let InFlight { execution, running } = lock(&self.inflight)
                    .remove(&id)
                    .ok_or_else(|| format!("a result for execution {id}, which it was not given"))?;
                if self.host_calls.load(Ordering::Relaxed)
                    && let Some(library) = self.library.upgrade()
                {
                    library.services.end_execution(self.version, id);
                }
                if let Some(running) = running {
                    execution.end(running, outcome.map_err(|message| (Failure::Node, message)));
                }
                if self.draining.load(Ordering::SeqCst) && self.live() == 0 {
                    self.finish();
                }
            }
            FromWorker::HostCall {
                id,
                call,
                request,
                body,
            } => {
                let execution = match lock(&self.inflight).get(&id) {
                    Some(f) => f.running.as_ref().map(|_| Arc::clone(&f.execution)),
                    None => return Err(format!("a host call for execution {id}, which it was not given")),
                };
                let library = self.library.upgrade();
                let (Some(execution), Some(library)) = (execution, library) else {
                    // Its execution already ended: nobody waits for the answer.
                    let _ = self.to_worker.send(ToWorker::HostReply {
                        call,
                        outcome: Err(nano_plugin_abi::services::failure(
                            nano_plugin_abi::services::ErrorKind::Aborted,
                            "Execution aborted",
                        )),
                    });
                    return Ok(());
                };
                self.host_calls.store(true, Ordering::Relaxed);
                let owner = Owner {
                    version: self.version,
                    label: Arc::clone(&library.label),
                    execution: id,
                };
                let to_worker = self.to_worker.clone();
                let services = Arc::clone(&library.services);
                library.runtime.spawn(async move {
                    let outcome = services
                        .call(&owner, &request, Bytes::from(body.into_vec()), || {
                            execution.is_aborted()
                        })
                        .await;
                    let _ = to_worker.send(ToWorker::HostReply {
                        call,
                        outcome: outcome.map(|(json, bytes)| (json, ByteBuf::from(Vec::from(bytes)))),
                    });
                });
            }
            FromWorker::ShutdownDone { hook } => {
                if let Some(reply) = lock(&self.shutdown_reply).take() {
                    let _ = reply.send(hook);
                }
            }
            other => return Err(format!("unexpected message {other:?}")),
        }
        Ok(())
    }
}

/// Reads a worker's frames until it exits, then fails what it was running
/// and tells its library.
async fn supervise(library: Arc<ProcessLibrary>, worker: Arc<Worker>, mut io: WorkerIo) {
    let label = library.label.to_string();
    let every = if library.settings.memory_limit_bytes.is_some() {
        Duration::from_millis(100)
    } else {
        Duration::from_secs(1)
    };
    let mut sample = tokio::time::interval(every);
    let rss = metrics::gauge!(metrics::WORKER_RSS, "library" => label.clone());
    let status = loop {
        tokio::select! {
            frame = io.frames.next() => match frame {
                Some(Ok(bytes)) => {
                    if let Err(violation) = worker.on_frame(&bytes) {
                        tracing::error!(library = %label, pid = worker.pid, "protocol violation by the worker: {violation}; ending it");
                        worker.end(Some((format!("was ended for a protocol violation ({violation})"), true)));
                    }
                }
                // End of file (or an oversized frame): the process is ending.
                Some(Err(err)) => {
                    worker.end(Some((format!("was ended for a protocol violation ({err})"), true)));
                    let _ = io.child.start_kill();
                    break io.child.wait().await;
                }
                None => break io.child.wait().await,
            },
            status = io.child.wait() => {
                // Gone, but what it wrote just before exiting (a result, its
                // shutdown hook's outcome) may still be unread: read it all.
                let rest = async {
                    while let Some(Ok(bytes)) = io.frames.next().await {
                        if worker.on_frame(&bytes).is_err() {
                            break;
                        }
                    }
                };
                let _ = tokio::time::timeout(Duration::from_secs(1), rest).await;
                break status;
            }
            () = worker.kill.notified() => {
                let _ = io.child.start_kill();
            }
            _ = sample.tick() => {
                if let Some(bytes) = resident_bytes(worker.pid) {
                    rss.set(bytes as f64);
                    if let Some(limit) = library.settings.memory_limit_bytes
                        && bytes > limit
                    {
                        worker.end(Some((
                            format!("exceeded worker_memory_limit_mb ({} MiB)", limit >> 20),
                            true,
                        )));
                    }
                }
            }
        }
    };
    worker.exited.store(true, Ordering::SeqCst);
    // Nothing more can come: a shutdown hook still awaited never reports.
    drop(lock(&worker.shutdown_reply).take());
    metrics::gauge!(metrics::WORKERS).decrement(1.0);
    remove_private_dir(worker.pid);
    let ending = lock(&worker.ending).take();
    let (cause, crashed) = match (&ending, &status) {
        (Some((why, crashed)), _) => (why.clone(), *crashed),
        (None, Ok(status)) if status.success() => ("exited".to_owned(), !worker.draining.load(Ordering::SeqCst)),
        (None, Ok(status)) => (describe(*status), true),
        (None, Err(err)) => (format!("ended ({err})"), true),
    };
    let inflight = worker.live();
    if crashed {
        tracing::error!(
            library = %label,
            pid = worker.pid,
            in_flight = inflight,
            "the worker for {label} {cause}"
        );
    } else {
        tracing::info!(library = %label, pid = worker.pid, "the worker for {label} {cause}");
    }
    let plural = if inflight == 1 { "" } else { "s" };
    let message = if crashed {
        format!("node crashed: the worker for {label} {cause} ({inflight} execution{plural} in flight)")
    } else {
        format!("the worker for {label} {cause}")
    };
    let reason = if cause.contains("worker_memory_limit_mb") {
        "memory"
    } else {
        "crashed"
    };
    // The library lets go of it (and schedules the restart) before its
    // executions hear of the crash: a client that retries at once then
    // waits for the new worker instead of reaching this dead one.
    library.worker_exited(&worker, crashed, reason);
    worker.fail_inflight(message);
    // What this worker left allocated at NanoCore is freed for it.
    let services = Arc::clone(&library.services);
    let version = worker.version;
    tokio::spawn(async move { services.end_version(version).await });
}

/// The next frame of a starting worker: `Err(Ok(()))` when its channel
/// closed (it is dying), `Err(Err(why))` when it is too slow or garbled.
async fn expect(
    frames: &mut FramedRead<OwnedReadHalf, LengthDelimitedCodec>,
    deadline: tokio::time::Instant,
    what: &'static str,
    timeout_ms: u128,
) -> Result<FromWorker, Result<(), String>> {
    match tokio::time::timeout_at(deadline, frames.next()).await {
        Ok(Some(Ok(bytes))) => wire::decode::<FromWorker>(&bytes).map_err(|e| Err(format!("{what}: {e}"))),
        Ok(_) => Err(Ok(())),
        Err(_) => Err(Err(format!("the worker did not {what} within {timeout_ms} ms"))),
    }
}

/// The start of the name of a worker's folder for its private copy.
pub(crate) fn private_dir_prefix(pid: u32) -> String {
    format!("nano-server-worker-{pid}-")
}

/// Removes what a dead worker left in the temporary folder (its private
/// copy, when it died while loading).
fn remove_private_dir(pid: u32) {
    let prefix = private_dir_prefix(pid);
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        if entry.file_name().to_string_lossy().starts_with(&prefix) {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// A channel buffer larger than this is given back once empty.
pub(crate) const LARGE_BUFFER: usize = 4 << 20;

/// Sends frames to a worker, every ready one with one flush.
fn spawn_writer(
    mut sink: FramedWrite<tokio::net::unix::OwnedWriteHalf, LengthDelimitedCodec>,
) -> mpsc::UnboundedSender<ToWorker> {
    let (to_worker, mut outgoing) = mpsc::unbounded_channel::<ToWorker>();
    tokio::spawn(async move {
        while let Some(message) = outgoing.recv().await {
            let mut fed = sink.feed(wire::encode(&message)).await;
            while fed.is_ok() {
                match outgoing.try_recv() {
                    Ok(message) => fed = sink.feed(wire::encode(&message)).await,
                    Err(_) => break,
                }
            }
            if fed.is_err() || SinkExt::<bytes::Bytes>::flush(&mut sink).await.is_err() {
                break;
            }
            // The library's bytes went through once; do not keep their buffer.
            if sink.write_buffer().capacity() > LARGE_BUFFER {
                *sink.write_buffer_mut() = bytes::BytesMut::new();
            }
        }
    });
    to_worker
}

/// A worker's stdout and stderr go to the server's log, tagged with its library.
fn forward_output(
    label: &Arc<str>,
    pid: u32,
    stdout: Option<tokio::process::ChildStdout>,
    stderr: Option<tokio::process::ChildStderr>,
) {
    if let Some(stdout) = stdout {
        let label = Arc::clone(label);
        tokio::spawn(async move {
            let mut lines = tokio::io::BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                tracing::info!(library = %label, pid, stream = "stdout", "{line}");
            }
        });
    }
    if let Some(stderr) = stderr {
        let label = Arc::clone(label);
        tokio::spawn(async move {
            let mut lines = tokio::io::BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                tracing::warn!(library = %label, pid, stream = "stderr", "{line}");
            }
        });
    }
}

/// A process's resident memory, from `/proc/<pid>/statm`.
fn resident_bytes(pid: u32) -> Option<u64> {
    let statm = std::fs::read_to_string(format!("/proc/{pid}/statm")).ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    Some(pages * u64::try_from(page).unwrap_or(4096))
}

/// How a worker ended, for an error message: "was killed by SIGSEGV".
fn describe(status: ExitStatus) -> String {
    match status.signal() {
        Some(signal) => format!("was killed by {}", signal_name(signal)),
        None => format!("exited with code {}", status.code().unwrap_or(-1)),
    }
}

/// The short cause for "crashed while loading (…)".
fn short_cause(status: ExitStatus) -> String {
    match status.signal() {
        Some(signal) => signal_name(signal),
        None => format!("exit code {}", status.code().unwrap_or(-1)),
    }
}

fn signal_name(signal: i32) -> String {
    match signal {
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGABRT => "SIGABRT",
        libc::SIGKILL => "SIGKILL",
        libc::SIGBUS => "SIGBUS",
        libc::SIGILL => "SIGILL",
        libc::SIGFPE => "SIGFPE",
        libc::SIGTERM => "SIGTERM",
        libc::SIGTRAP => "SIGTRAP",
        _ => return format!("signal {signal}"),
    }
    .to_owned()
}
