//! Where a node is executed: admission, the concurrency limit, the abort
//! flags, and the order of statuses (`running`, the node's own, then exactly
//! one `complete` or `error`).
//!
//! Transport-agnostic: the caller hands in a [`StatusSink`] and gets every
//! status of the execution through it.

use std::{
    collections::HashMap,
    sync::{
        Arc, Condvar, Mutex,
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use abi_stable::{sabi_trait::TD_Opaque, sabi_types::RRef, std_types::RStr};
use nano_plugin_abi::ffi::{ExecuteCall, HostCallbacks, HostCallbacks_TO};
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::{
    metrics,
    registry::{NodeHandle, NodeRegistry},
};

/// What to run, with every JSON part already validated.
#[derive(Debug, Clone)]
pub struct ExecutionRequest {
    pub instance_id: String,
    pub node_uid: String,
    /// JSON object.
    pub inputs: String,
    /// JSON array of parameter objects.
    pub parameters: String,
    /// JSON object, or `null`.
    pub graph_node: String,
}

/// A NodeStatus on its way to the caller; [`crate::protocol`] encodes it.
#[derive(Debug, Clone)]
pub enum Status {
    /// The status every execution starts with.
    Running,
    /// A node's own non-final status: its kind, and the NodeStatus object as
    /// the node wrote it.
    Update(UpdateKind, String),
    /// The final success, with the outputs object.
    Complete(Box<RawValue>),
    /// The final failure: why, and the message.
    Error(Failure, String),
}

/// The kinds of non-final status a node may send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpdateKind {
    Running,
    Idle,
    Missing,
}

/// Why an execution failed; transports map it to their own codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The node returned an error (or panicked).
    Node,
    /// No node with that uid is served.
    UnknownNode,
    /// Stopped by the caller, a disconnect or shutdown.
    Aborted,
    /// Ran past `execution_timeout_ms`.
    TimedOut,
    /// Refused: `max_queued_executions` are already waiting.
    Busy,
    /// The server could not run it.
    Internal,
}

impl Failure {
    /// Label for metrics and logs.
    pub fn label(self) -> &'static str {
        match self {
            Self::Node => "error",
            Self::UnknownNode => "unknown_node",
            Self::Aborted => "aborted",
            Self::TimedOut => "timeout",
            Self::Busy => "busy",
            Self::Internal => "internal",
        }
    }
}

impl Status {
    fn error(failure: Failure, message: impl Into<String>) -> Self {
        Self::Error(failure, message.into())
    }

    /// The status's `type`, also the name of its Server-Sent Event.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Running | Self::Update(UpdateKind::Running, _) => "running",
            Self::Update(UpdateKind::Idle, _) => "idle",
            Self::Update(UpdateKind::Missing, _) => "missing",
            Self::Complete(_) => "complete",
            Self::Error(..) => "error",
        }
    }

    /// Whether this status ends the execution.
    pub fn is_final(&self) -> bool {
        matches!(self, Self::Complete(_) | Self::Error(..))
    }
}

/// Receives the statuses of one execution, in order.
pub trait StatusSink: Send + Sync + 'static {
    fn send(&self, status: Status);
}

/// The message for an execution stopped before it completed.
pub const ABORTED: &str = "Execution aborted";

/// Runs executions. One per server; cloning the `Arc` shares it.
///
/// Nodes run on worker threads fed by one crossbeam channel. A worker sends
/// the execution's statuses itself, the final one included, so an execution
/// costs one hand-over to a worker and nothing else: no task, no join, no
/// wake-up of the async side. (The first version used tokio's
/// `spawn_blocking` per execution; under load the profile was half context
/// switches and lock contention in its pool.)
///
/// The pool is as small as keeps up and as large as blocking nodes need: it
/// starts with one worker per core, and a monitor adds one (up to
/// `max_concurrent`) whenever jobs wait and no node returned for a
/// millisecond; a worker idle for 10 s beyond the first ones retires. With 8
/// fixed workers on 2 cores, idle workers spinning for jobs cost up to 40%
/// of the HTTP throughput.
pub struct Executor {
    registry: NodeRegistry,
    jobs: crossbeam_channel::Sender<Job>,
    pool: Pool,
    max_queued: usize,
    /// Jobs in the queue that no worker has taken yet.
    queued: Arc<AtomicUsize>,
    /// Workers running a node (a node that never returns keeps its worker).
    busy: Arc<AtomicUsize>,
    max_concurrent: usize,
    timeout: Option<Duration>,
    /// For the timeout timers: workers are not runtime threads.
    runtime: Option<tokio::runtime::Handle>,
    active: Mutex<HashMap<u64, Active>>,
    next_id: AtomicU64,
}

/// How long a worker beyond the first ones waits for a job before it exits.
const WORKER_KEEP_ALIVE: Duration = Duration::from_secs(10);

/// How long waiting jobs may see no node return before another worker starts.
const NO_PROGRESS: Duration = Duration::from_millis(1);

/// The worker threads' bookkeeping (see [`Executor`]).
struct Pool {
    queue: crossbeam_channel::Receiver<Job>,
    /// Worker threads alive (a node that never returns keeps its thread).
    threads: AtomicUsize,
    /// Workers waiting for a job.
    idle: AtomicUsize,
    /// Nodes that returned, ever: the monitor's sign of progress.
    returned: AtomicU64,
    /// Workers kept even when idle.
    min: usize,
    /// Whether the monitor is watching the queue now.
    watching: AtomicBool,
    wanted: Mutex<bool>,
    wake_monitor: Condvar,
}

/// Adds workers while jobs wait and no node returns (they all block), up to
/// `max_concurrent`. Sleeps while the queue is empty.
fn monitor(executor: std::sync::Weak<Executor>) {
    loop {
        {
            let Some(strong) = executor.upgrade() else { return };
            let pool = &strong.pool;
            let mut wanted = pool.wanted.lock().unwrap_or_else(|e| e.into_inner());
            while !*wanted {
                // Re-check now and then that the executor still exists.
                let (guard, _) = pool
                    .wake_monitor
                    .wait_timeout(wanted, Duration::from_secs(1))
                    .unwrap_or_else(|e| e.into_inner());
                wanted = guard;
                if Arc::strong_count(&strong) == 1 {
                    return;
                }
            }
            *wanted = false;
            pool.watching.store(true, Ordering::SeqCst);
        }
        loop {
            let Some(strong) = executor.upgrade() else { return };
            let pool = &strong.pool;
            let before = pool.returned.load(Ordering::SeqCst);
            std::thread::sleep(NO_PROGRESS);
            if pool.queue.is_empty() {
                pool.watching.store(false, Ordering::SeqCst);
                // A job queued just now may have seen `watching` still set.
                if pool.queue.is_empty() {
                    break;
                }
                pool.watching.store(true, Ordering::SeqCst);
                continue;
            }
            let stalled = pool.returned.load(Ordering::SeqCst) == before && pool.idle.load(Ordering::SeqCst) == 0;
            if stalled && pool.threads.load(Ordering::SeqCst) < strong.max_concurrent {
                tracing::debug!(
                    threads = pool.threads.load(Ordering::SeqCst) + 1,
                    "nodes are blocking; adding a worker"
                );
                strong.spawn_worker();
            }
        }
    }
}

/// One execution handed to the workers.
struct Job {
    id: u64,
    node: NodeHandle,
    request: ExecutionRequest,
    state: Arc<ExecutionState>,
    queued_at: Instant,
    _queue_slot: QueueSlot,
    span: tracing::Span,
}

/// An admitted execution, until its node returned.
struct Active {
    instance_id: String,
    owner: u64,
    state: Arc<ExecutionState>,
}

impl Executor {
    /// An executor running at most `max_concurrent` nodes at once (with at
    /// most `max_queued` more waiting), each for at most `timeout` (if any).
    pub fn new(
        registry: NodeRegistry,
        max_concurrent: usize,
        max_queued: usize,
        timeout: Option<Duration>,
    ) -> Arc<Self> {
        let (jobs, queue) = crossbeam_channel::unbounded::<Job>();
        let max_concurrent = max_concurrent.max(1);
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let executor = Arc::new(Self {
            registry,
            jobs,
            pool: Pool {
                queue,
                threads: AtomicUsize::new(0),
                idle: AtomicUsize::new(0),
                returned: AtomicU64::new(0),
                min: cores.min(max_concurrent),
                watching: AtomicBool::new(false),
                wanted: Mutex::new(false),
                wake_monitor: Condvar::new(),
            },
            max_queued,
            queued: Arc::new(AtomicUsize::new(0)),
            busy: Arc::new(AtomicUsize::new(0)),
            max_concurrent,
            timeout,
            runtime: tokio::runtime::Handle::try_current().ok(),
            active: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(0),
        });
        for _ in 0..executor.pool.min {
            executor.spawn_worker();
        }
        let weak = Arc::downgrade(&executor);
        let monitor = std::thread::Builder::new()
            .name("node-pool-monitor".to_owned())
            .spawn(move || monitor(weak));
        if let Err(err) = monitor {
            tracing::error!(%err, "cannot start the node pool's monitor thread");
        }
        executor
    }

    /// Adds a worker thread (the caller checked there is room).
    fn spawn_worker(self: &Arc<Self>) {
        let n = self.pool.threads.fetch_add(1, Ordering::SeqCst);
        let queue = self.pool.queue.clone();
        // The workers hold the executor weakly: it owns them, not they it.
        let weak = Arc::downgrade(self);
        let spawned = std::thread::Builder::new()
            .name(format!("node-worker-{n}"))
            .spawn(move || {
                loop {
                    let received = match weak.upgrade() {
                        Some(executor) => {
                            executor.pool.idle.fetch_add(1, Ordering::SeqCst);
                            drop(executor);
                            queue.recv_timeout(WORKER_KEEP_ALIVE)
                        }
                        None => return,
                    };
                    let Some(executor) = weak.upgrade() else { return };
                    executor.pool.idle.fetch_sub(1, Ordering::SeqCst);
                    match received {
                        Ok(job) => {
                            // Taking this job may leave others with no one to take them.
                            executor.watch_pool();
                            executor.run(job);
                            executor.pool.returned.fetch_add(1, Ordering::SeqCst);
                        }
                        Err(crossbeam_channel::RecvTimeoutError::Timeout) => {
                            let min = executor.pool.min;
                            let retire = executor
                                .pool
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
            self.pool.threads.fetch_sub(1, Ordering::SeqCst);
            tracing::error!(%err, "cannot start a node worker thread");
        }
    }

    /// Called after queueing or taking a job: when jobs outnumber idle
    /// workers, the monitor watches whether the workers make progress.
    fn watch_pool(&self) {
        let pool = &self.pool;
        // More jobs waiting than idle workers to take them (jobs may arrive
        // in a burst before any worker woke up).
        let short = pool.queue.len() > pool.idle.load(Ordering::SeqCst);
        if short && !pool.watching.load(Ordering::SeqCst) {
            *pool.wanted.lock().unwrap_or_else(|e| e.into_inner()) = true;
            pool.wake_monitor.notify_one();
        }
    }

    /// Starts an execution for `owner` (a connection id) and returns at once;
    /// every status, the final one included, goes to `sink`.
    pub fn start(self: &Arc<Self>, owner: u64, request: ExecutionRequest, sink: Arc<dyn StatusSink>) {
        let Some(node) = self.registry.snapshot().get(&request.node_uid).cloned() else {
            metrics::counter!(metrics::EXECUTIONS, "node" => request.node_uid.clone(), "outcome" => "unknown_node")
                .increment(1);
            sink.send(Status::error(
                Failure::UnknownNode,
                crate::protocol::unknown_node_message(&request.node_uid),
            ));
            return;
        };
        // Bounded waiting: beyond it, refuse at once rather than grow.
        let waiting = self.queued.fetch_add(1, Ordering::SeqCst);
        let queue_slot = QueueSlot(Arc::clone(&self.queued));
        if waiting >= self.max_queued && self.busy.load(Ordering::SeqCst) >= self.max_concurrent {
            drop(queue_slot);
            metrics::counter!(metrics::EXECUTIONS, "node" => request.node_uid.clone(), "outcome" => "busy")
                .increment(1);
            sink.send(Status::error(
                Failure::Busy,
                format!("the server is busy: {waiting} executions are already waiting; try again later"),
            ));
            return;
        }
        let state = Arc::new(ExecutionState {
            aborted: AtomicBool::new(false),
            finished: AtomicBool::new(false),
            sink,
            worker: Mutex::new(WorkerState::default()),
        });
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.lock_active().insert(
            id,
            Active {
                instance_id: request.instance_id.clone(),
                owner,
                state: Arc::clone(&state),
            },
        );
        let span = tracing::info_span!("execution", instance = %request.instance_id, node = %request.node_uid);
        let job = Job {
            id,
            node,
            request,
            state,
            queued_at: Instant::now(),
            _queue_slot: queue_slot,
            span,
        };
        if let Err(crossbeam_channel::SendError(job)) = self.jobs.send(job) {
            // Only when every worker thread failed to start.
            job.state
                .finish(Status::error(Failure::Internal, "no worker thread to run the node"));
            self.lock_active().remove(&job.id);
            return;
        }
        self.watch_pool();
    }

    /// Runs one job on a worker thread, through to its final status.
    fn run(&self, job: Job) {
        let Job {
            id,
            node,
            request,
            state,
            queued_at,
            _queue_slot,
            span,
        } = job;
        drop(_queue_slot);
        let _entered = span.enter();
        let hot = metrics::hot();
        hot.queue_wait.record(queued_at.elapsed().as_secs_f64());
        let started = Instant::now();
        let final_status = if state.is_aborted() {
            Status::error(Failure::Aborted, ABORTED)
        } else {
            state.forward(Status::Running);
            let timer = self.timeout.and_then(|limit| self.start_timer(limit, &state));
            self.busy.fetch_add(1, Ordering::SeqCst);
            hot.in_flight.increment(1.0);
            state.worker_started();
            // Plugins catch their own panics; this guards the host's side,
            // so a worker never dies with an execution left unanswered.
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run_node(&node, &request, &state)))
                .unwrap_or_else(|_| Err("internal error while running the node".to_owned()));
            state.worker_returned();
            hot.in_flight.decrement(1.0);
            self.busy.fetch_sub(1, Ordering::SeqCst);
            if let Some(timer) = timer {
                timer.abort();
            }
            if state.is_aborted() {
                // Stopped, disconnected or timed out: that final status went
                // out already; this late result is dropped.
                Status::error(Failure::Aborted, ABORTED)
            } else {
                match outcome.and_then(parse_outputs) {
                    Ok(outputs) => Status::Complete(outputs),
                    Err(message) => Status::error(Failure::Node, message),
                }
            }
        };
        let uid = request.node_uid;
        let node_metrics = node.library.nodes[node.index as usize]
            .metrics
            .get_or_init(|| metrics::NodeMetrics::new(&uid));
        node_metrics.duration.record(started.elapsed().as_secs_f64());
        match &final_status {
            Status::Error(failure, message) => {
                tracing::debug!(outcome = failure.label(), %message, "execution failed");
                metrics::counter!(metrics::EXECUTIONS, "node" => uid, "outcome" => failure.label()).increment(1);
            }
            _ => node_metrics.complete.increment(1),
        }
        state.finish(final_status);
        self.lock_active().remove(&id);
    }

    /// Ends the execution with a timeout error after `limit`, unless the
    /// returned timer is aborted first (the node returned in time).
    fn start_timer(&self, limit: Duration, state: &Arc<ExecutionState>) -> Option<tokio::task::JoinHandle<()>> {
        let runtime = self.runtime.as_ref()?;
        let state = Arc::clone(state);
        Some(runtime.spawn(async move {
            tokio::time::sleep(limit).await;
            if !state.aborted.swap(true, Ordering::SeqCst) {
                // The late result is discarded: `finish` sends only once.
                state.finish(Status::error(
                    Failure::TimedOut,
                    format!("Execution timed out after {} ms", limit.as_millis()),
                ));
            }
        }))
    }

    /// Whether a node with this uid is served now.
    pub fn serves(&self, uid: &str) -> bool {
        self.registry.snapshot().get(uid).is_some()
    }

    /// Aborts every execution of `instance_id`. Their final `error` goes out
    /// when the returned value is dropped, so an acknowledgement can go first.
    pub fn stop_instance(&self, instance_id: &str) -> Aborted {
        self.abort_with(|active| active.instance_id == instance_id, ABORTED)
    }

    /// Aborts every execution started by `owner` (a connection that closed).
    pub fn abort_owner(&self, owner: u64) -> Aborted {
        self.abort_with(|active| active.owner == owner, ABORTED)
    }

    /// Aborts every execution of the server (shutdown).
    pub fn abort_all(&self, message: &str) -> Aborted {
        self.abort_with(|_| true, message)
    }

    /// Sets the abort flags; the final errors follow when the result drops.
    fn abort_with(&self, matches: impl Fn(&Active) -> bool, message: &str) -> Aborted {
        let states = self
            .lock_active()
            .values()
            .filter(|active| matches(active))
            .filter(|active| !active.state.finished.load(Ordering::SeqCst))
            .filter(|active| !active.state.aborted.swap(true, Ordering::SeqCst))
            .map(|active| Arc::clone(&active.state))
            .collect();
        Aborted {
            states,
            message: message.to_owned(),
        }
    }

    /// Executions that ended while their node is still running.
    pub fn stuck_count(&self) -> usize {
        self.lock_active()
            .values()
            .filter(|active| active.state.lock_worker().stuck)
            .count()
    }

    /// Executions admitted whose final status has not been sent yet.
    pub fn active_count(&self) -> usize {
        self.lock_active()
            .values()
            .filter(|active| !active.state.finished.load(Ordering::SeqCst))
            .count()
    }

    fn lock_active(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Active>> {
        self.active.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Executions just aborted. Dropping this sends each its final `error` at
/// once: a node that ignores the flag (or never returns) must not hold its
/// caller up.
#[must_use = "the final errors are sent when this is dropped"]
pub struct Aborted {
    states: Vec<Arc<ExecutionState>>,
    message: String,
}

impl Aborted {
    /// How many executions were aborted.
    pub fn len(&self) -> usize {
        self.states.len()
    }

    pub fn is_empty(&self) -> bool {
        self.states.is_empty()
    }
}

impl Drop for Aborted {
    fn drop(&mut self) {
        for state in &self.states {
            state.finish(Status::error(Failure::Aborted, self.message.clone()));
        }
    }
}

/// One place in the wait queue, given back when dropped.
struct QueueSlot(Arc<AtomicUsize>);

impl Drop for QueueSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The shared state of one execution: its abort flag and its sink.
struct ExecutionState {
    aborted: AtomicBool,
    finished: AtomicBool,
    sink: Arc<dyn StatusSink>,
    /// Whether the node is running on a worker, and whether it is counted as
    /// stuck (its execution ended before the node returned).
    worker: Mutex<WorkerState>,
}

#[derive(Default)]
struct WorkerState {
    running: bool,
    stuck: bool,
}

impl ExecutionState {
    fn is_aborted(&self) -> bool {
        self.aborted.load(Ordering::SeqCst)
    }

    /// Forwards a non-final status, unless the execution is over or aborted.
    fn forward(&self, status: Status) {
        if !self.is_aborted() && !self.finished.load(Ordering::SeqCst) {
            self.sink.send(status);
        }
    }

    /// Sends the final status, once. If the node is still running, its
    /// worker counts as stuck until it returns.
    fn finish(&self, status: Status) {
        if !self.finished.swap(true, Ordering::SeqCst) {
            self.sink.send(status);
            let mut worker = self.lock_worker();
            if worker.running && !worker.stuck {
                worker.stuck = true;
                metrics::gauge!(metrics::STUCK).increment(1.0);
            }
        }
    }

    fn worker_started(&self) {
        self.lock_worker().running = true;
    }

    fn worker_returned(&self) {
        let mut worker = self.lock_worker();
        worker.running = false;
        if std::mem::take(&mut worker.stuck) {
            metrics::gauge!(metrics::STUCK).decrement(1.0);
        }
    }

    fn lock_worker(&self) -> std::sync::MutexGuard<'_, WorkerState> {
        self.worker.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The host side of the plugin's callbacks.
impl HostCallbacks for ExecutionState {
    fn send_status(&self, status: RStr<'_>) {
        #[derive(Deserialize)]
        struct Kind<'a> {
            #[serde(rename = "type", borrow)]
            kind: &'a str,
        }
        let json = status.as_str();
        let kind = match serde_json::from_str::<Kind<'_>>(json) {
            Ok(Kind { kind: "running" }) => UpdateKind::Running,
            Ok(Kind { kind: "idle" }) => UpdateKind::Idle,
            Ok(Kind { kind: "missing" }) => UpdateKind::Missing,
            Ok(Kind { kind }) => {
                tracing::warn!(
                    kind,
                    "dropped a `{kind}` status sent by a node: nodes return outputs or errors instead"
                );
                return;
            }
            Err(err) => {
                tracing::warn!(%err, "dropped a malformed status sent by a node");
                return;
            }
        };
        self.forward(Status::Update(kind, json.to_owned()));
    }

    fn is_aborted(&self) -> bool {
        ExecutionState::is_aborted(self)
    }
}

fn run_node(node: &NodeHandle, request: &ExecutionRequest, state: &ExecutionState) -> Result<String, String> {
    let call = ExecuteCall {
        node_index: node.index,
        instance_id: request.instance_id.as_str().into(),
        inputs: request.inputs.as_str().into(),
        parameters: request.parameters.as_str().into(),
        graph_node: request.graph_node.as_str().into(),
    };
    let host = HostCallbacks_TO::from_ptr(RRef::new(state), TD_Opaque);
    node.library.execute(call, host)
}

fn parse_outputs(outputs: String) -> Result<Box<RawValue>, String> {
    match RawValue::from_string(outputs) {
        Ok(raw) if raw.get().starts_with('{') => Ok(raw),
        _ => Err("the node returned outputs that are not a JSON object".to_owned()),
    }
}
