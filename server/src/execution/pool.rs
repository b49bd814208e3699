//! The in-process backend: libraries are mapped into the server's own
//! process and their nodes run on a pool of worker threads.
//!
//! Workers are fed by one crossbeam channel and finish their executions
//! themselves (statuses included), so an execution costs one hand-over to a
//! worker and nothing else: no task, no join, no wake-up of the async side.
//! (The first version used tokio's `spawn_blocking` per execution; under
//! load the profile was half context switches and lock contention in its
//! pool.)
//!
//! The pool is as small as keeps up and as large as blocking nodes need: it
//! starts with one worker per core, and a monitor adds one (up to
//! `max_threads`) whenever jobs wait and no node returned for a millisecond;
//! a worker idle for 10 s beyond the first ones retires. With 8 fixed
//! workers on 2 cores, idle workers spinning for jobs cost up to 40% of the
//! HTTP throughput.

use std::{
    path::{Path, PathBuf},
    sync::{
        Arc, Condvar, Mutex, Weak,
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
    },
    time::Duration,
};

use nano_plugin_abi::ffi::PluginModuleRef;

use super::{
    Backend, Failure, HookOutcome, Job, LibraryRuntime, Loaded,
    host::{self, HostServices, InProcessHost, VersionInfo},
};
use crate::{
    loader::{LoadError, Loader},
    lock,
    nanocore::Services,
};

/// The in-process [`Backend`]: one thread pool for every library.
pub struct InProcess {
    loader: Loader,
    pool: Arc<Pool>,
    services: Option<Arc<HostServices>>,
    /// `nodes_path`: libraries are named relative to it in logs.
    root: PathBuf,
}

impl InProcess {
    /// A backend running at most `max_threads` nodes at once, answering
    /// NanoCore calls with `services` on `runtime` (none: such calls fail).
    pub fn new(
        max_threads: usize,
        root: &Path,
        services: Option<(Arc<Services>, tokio::runtime::Handle)>,
    ) -> std::io::Result<Self> {
        Ok(Self {
            loader: Loader::new()?,
            pool: Pool::start(max_threads),
            services: services.map(|(services, runtime)| Arc::new(HostServices { services, runtime })),
            root: root.to_owned(),
        })
    }
}

/// Runs `node_index` of `version` for `job` on this thread, through to its
/// final status (the in-process backend's unit of work).
fn run_job(version: &Version, job: Job) {
    let Job {
        node_index,
        request,
        execution,
    } = job;
    let _entered = execution.span().clone().entered();
    let Some(running) = execution.begin() else { return };
    // Plugins catch their own panics; this guards the host's side, so a
    // worker never dies with an execution left unanswered.
    let host = InProcessHost {
        execution: &execution,
        services: version.services.as_deref(),
        version: &version.info,
        called: AtomicBool::new(false),
    };
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        host::call_node(version.module, node_index, &request, &host)
    }))
    .unwrap_or_else(|_| Err("internal error while running the node".to_owned()));
    host.finish();
    execution.end(running, outcome.map_err(|message| (Failure::Node, message)));
}

impl Backend for InProcess {
    fn load(&self, path: &Path, bytes: &[u8]) -> Result<Loaded, LoadError> {
        let module = self.loader.load_bytes(path, bytes)?;
        let label = path.strip_prefix(&self.root).unwrap_or(path).display().to_string();
        let info = VersionInfo {
            id: self.services.as_ref().map_or(0, |host| host.services.version_id()),
            label: label.into(),
        };
        Ok(Loaded {
            abi_version: module.abi_version,
            nodes: module.nodes,
            runtime: Arc::new(InProcessLibrary {
                version: Arc::new(Version {
                    module: module.module,
                    services: self.services.clone(),
                    info,
                }),
                pool: Arc::clone(&self.pool),
                retired: AtomicBool::new(false),
            }),
            refused_members: Vec::new(),
        })
    }
}

/// One library version mapped into this process. It is never unmapped (see
/// [`crate::loader`]), so its shutdown hook is owed even after a swap.
struct InProcessLibrary {
    version: Arc<Version>,
    pool: Arc<Pool>,
    /// Replaced or removed: executions dispatched later run on the version
    /// served now.
    retired: AtomicBool,
}

/// A mapped library version, as its executions need it.
pub(crate) struct Version {
    module: PluginModuleRef,
    services: Option<Arc<HostServices>>,
    info: VersionInfo,
}

impl LibraryRuntime for InProcessLibrary {
    fn execute(&self, job: Job) {
        if self.retired.load(Ordering::Acquire) {
            job.redirect(self);
            return;
        }
        if let Err(Work::Node(_, job)) = self.pool.submit(Work::Node(Arc::clone(&self.version), job)) {
            // Only when every worker thread failed to start.
            job.execution
                .reject(Failure::Internal, "no worker thread to run the node".to_owned());
        }
    }

    fn shutdown_hook(&self) -> HookOutcome {
        self.version
            .module
            .shutdown()
            .map(|hook| hook().into_result().map_err(|e| e.into_string()))
    }

    fn retire(&self) -> bool {
        self.retired.store(true, Ordering::Release);
        true
    }
}

/// One unit of work for the pool: a node run through to its end. The
/// in-process case is a plain value (no allocation per execution).
pub(crate) enum Work {
    Node(Arc<Version>, Job),
    Other(Box<dyn FnOnce() + Send>),
}

impl Work {
    fn run(self) {
        match self {
            Self::Node(version, job) => run_job(&version, job),
            Self::Other(work) => work(),
        }
    }
}

/// How long a worker beyond the first ones waits for a job before it exits.
const WORKER_KEEP_ALIVE: Duration = Duration::from_secs(10);

/// How long waiting jobs may see no node return before another worker starts.
const NO_PROGRESS: Duration = Duration::from_millis(1);

/// The worker threads and their bookkeeping (see the module docs). Also
/// what a worker process runs its nodes on.
pub(crate) struct Pool {
    jobs: crossbeam_channel::Sender<Work>,
    queue: crossbeam_channel::Receiver<Work>,
    /// Worker threads alive (a node that never returns keeps its thread).
    threads: AtomicUsize,
    /// Workers waiting for a job.
    idle: AtomicUsize,
    /// Nodes that returned, ever: the monitor's sign of progress.
    returned: AtomicU64,
    /// Workers kept even when idle.
    min: usize,
    max: usize,
    /// Whether the monitor is watching the queue now.
    watching: AtomicBool,
    wanted: Mutex<bool>,
    wake_monitor: Condvar,
}

impl Pool {
    /// Hands `work` to a worker thread; gives it back only when no thread
    /// could start (a rare path: the size of the error does not matter).
    #[allow(clippy::result_large_err)]
    pub(crate) fn submit(&self, work: Work) -> Result<(), Work> {
        self.jobs
            .send(work)
            .map_err(|crossbeam_channel::SendError(work)| work)?;
        self.watch();
        Ok(())
    }

    /// A pool of one thread per core, growing to `max_threads` while nodes
    /// block.
    pub(crate) fn start(max_threads: usize) -> Arc<Self> {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Self::start_with(cores, max_threads)
    }

    /// A pool of `min_threads`, growing to `max_threads` while nodes block.
    pub(crate) fn start_with(min_threads: usize, max_threads: usize) -> Arc<Self> {
        let (jobs, queue) = crossbeam_channel::unbounded::<Work>();
        let max = max_threads.max(1);
        let min = min_threads.max(1);
        let pool = Arc::new(Self {
            jobs,
            queue,
            threads: AtomicUsize::new(0),
            idle: AtomicUsize::new(0),
            returned: AtomicU64::new(0),
            min: min.min(max),
            max,
            watching: AtomicBool::new(false),
            wanted: Mutex::new(false),
            wake_monitor: Condvar::new(),
        });
        for _ in 0..pool.min {
            pool.spawn_worker();
        }
        let weak = Arc::downgrade(&pool);
        let monitor = std::thread::Builder::new()
            .name("node-pool-monitor".to_owned())
            .spawn(move || monitor(weak));
        if let Err(err) = monitor {
            tracing::error!(%err, "cannot start the node pool's monitor thread");
        }
        pool
    }

    /// Adds a worker thread (the caller checked there is room).
    fn spawn_worker(self: &Arc<Self>) {
        let n = self.threads.fetch_add(1, Ordering::SeqCst);
        let queue = self.queue.clone();
        // The workers hold the pool weakly: it owns them, not they it.
        let weak = Arc::downgrade(self);
        let spawned = std::thread::Builder::new()
            .name(format!("node-worker-{n}"))
            .spawn(move || {
                loop {
                    let received = match weak.upgrade() {
                        Some(pool) => {
                            pool.idle.fetch_add(1, Ordering::SeqCst);
                            drop(pool);
                            queue.recv_timeout(WORKER_KEEP_ALIVE)
                        }
                        None => return,
                    };
                    let Some(pool) = weak.upgrade() else { return };
                    pool.idle.fetch_sub(1, Ordering::SeqCst);
                    match received {
                        Ok(work) => {
                            // Taking this job may leave others with no one to take them.
                            pool.watch();
                            drop(pool);
                            work.run();
                            let Some(pool) = weak.upgrade() else { return };
                            pool.returned.fetch_add(1, Ordering::SeqCst);
                        }
                        Err(crossbeam_channel::RecvTimeoutError::Timeout) => {
                            let min = pool.min;
                            let retire = pool
                                .threads
                                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |t| (t > min).then(|| t - 1));
                            if retire.is_ok() {
                                return;
                            }
                        }
                        Err(crossbeam_channel::RecvTimeoutError::Disconnected) => return,
                    }
                }
            });
        if let Err(err) = spawned {
            self.threads.fetch_sub(1, Ordering::SeqCst);
            tracing::error!(%err, "cannot start a node worker thread");
        }
    }

    /// Called after queueing or taking a job: when jobs outnumber idle
    /// workers, the monitor watches whether the workers make progress.
    fn watch(&self) {
        // At its maximum (a worker process's single thread, say) the monitor
        // could add nobody: do not wake it.
        if self.threads.load(Ordering::Relaxed) >= self.max {
            return;
        }
        // More jobs waiting than idle workers to take them (jobs may arrive
        // in a burst before any worker woke up).
        let short = self.queue.len() > self.idle.load(Ordering::SeqCst);
        if short && !self.watching.load(Ordering::SeqCst) {
            *lock(&self.wanted) = true;
            self.wake_monitor.notify_one();
        }
    }
}

/// Adds workers while jobs wait and no node returns (they all block), up to
/// the pool's maximum. Sleeps while the queue is empty.
fn monitor(pool: Weak<Pool>) {
    loop {
        {
            let Some(strong) = pool.upgrade() else { return };
            let mut wanted = lock(&strong.wanted);
            while !*wanted {
                // Re-check now and then that the pool still exists.
                let (guard, _) = strong
                    .wake_monitor
                    .wait_timeout(wanted, Duration::from_secs(1))
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                wanted = guard;
                if Arc::strong_count(&strong) == 1 {
                    return;
                }
            }
            *wanted = false;
            strong.watching.store(true, Ordering::SeqCst);
        }
        loop {
            let Some(strong) = pool.upgrade() else { return };
            let before = strong.returned.load(Ordering::SeqCst);
            std::thread::sleep(NO_PROGRESS);
            if strong.queue.is_empty() {
                strong.watching.store(false, Ordering::SeqCst);
                // A job queued just now may have seen `watching` still set.
                if strong.queue.is_empty() {
                    break;
                }
                strong.watching.store(true, Ordering::SeqCst);
                continue;
            }
            let stalled = strong.returned.load(Ordering::SeqCst) == before && strong.idle.load(Ordering::SeqCst) == 0;
            if stalled && strong.threads.load(Ordering::SeqCst) < strong.max {
                tracing::debug!(
                    threads = strong.threads.load(Ordering::SeqCst) + 1,
                    "nodes are blocking; adding a worker"
                );
                strong.spawn_worker();
            }
        }
    }
}
