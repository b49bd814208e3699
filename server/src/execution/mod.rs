//! An execution: one run of one node for a caller, from admission to its
//! single final status. The [`Executor`] owns admission, the abort flags,
//! the timeouts and the order of statuses (`running`, the node's own, then
//! exactly one `complete` or `error`); where the node runs is a backend's
//! business ([`backend`]; in-process: [`pool`]).
//!
//! Transport-agnostic: the caller hands in a [`StatusSink`] and gets every
//! status of the execution through it.

mod admission;
mod backend;
mod host;
mod pool;
#[cfg(unix)]
mod process;
mod settings;
#[cfg(unix)]
mod wire;
#[cfg(unix)]
mod worker;

pub use admission::AdmissionLimits;
pub use backend::{Backend, HookOutcome, LibraryRuntime, Loaded};
pub use pool::InProcess;
#[cfg(unix)]
pub use process::ProcessBackend;
pub use settings::ProcessSettings;
#[cfg(unix)]
pub use worker::run as run_worker;

/// Why `isolation = "process"` is refused where the process backend is not
/// built (it needs Unix: socketpairs, an inherited fd, `pre_exec`).
#[cfg(not(unix))]
pub const PROCESS_ISOLATION_UNSUPPORTED: &str = "process isolation (the default) needs Linux or macOS; on this platform set isolation = \"in-process\" in the configuration, or pass --isolation in-process";

use std::{
    sync::{
        Arc, Mutex, OnceLock,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use serde_json::value::RawValue;

use self::admission::{Admission, Book, Pending};
use crate::{lock, metrics};

/// Where an execution request came from, for its span (logs, traces).
#[derive(Debug, Default)]
pub struct Origin {
    /// `websocket`, `http` or `sse`.
    pub transport: &'static str,
    /// The request's `nodeId`, as JSON text.
    pub node_id: String,
    /// A W3C `traceparent` to continue (HTTP only).
    pub traceparent: Option<String>,
}

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
    /// The process running the node died (process isolation).
    Crashed,
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
            Self::Crashed => "crashed",
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

/// What the executor needs of a served node; the registry hands it out.
#[derive(Clone)]
pub struct Target {
    pub uid: Arc<str>,
    /// The library version that runs it.
    pub runtime: Arc<dyn LibraryRuntime>,
    /// Its index in the library's definition list.
    pub node_index: u32,
    /// Set on its first execution.
    pub metrics: Arc<OnceLock<metrics::NodeMetrics>>,
}

/// One admitted execution, handed to a [`LibraryRuntime`].
pub struct Job {
    pub node_index: u32,
    pub request: ExecutionRequest,
    pub execution: Arc<Execution>,
}

impl Job {
    /// The version this job was handed to (`from`) no longer runs
    /// executions and the node has not begun: it was replaced or removed
    /// between admission and dispatch. Hands the job to the version of its
    /// node served now, or ends it if the node is no longer served.
    pub fn redirect(mut self, from: &dyn LibraryRuntime) {
        let execution = Arc::clone(&self.execution);
        let target = execution
            .shared
            .resolver
            .get()
            .and_then(|resolve| resolve(&execution.uid));
        match target {
            // (The same version again would loop: it is being withdrawn.)
            Some(target) if !std::ptr::addr_eq(Arc::as_ptr(&target.runtime), from as *const dyn LibraryRuntime) => {
                self.node_index = target.node_index;
                target.runtime.execute(self);
            }
            _ => execution.reject(
                Failure::UnknownNode,
                format!(
                    "node `{}` is no longer served (it was removed before this execution began)",
                    execution.uid
                ),
            ),
        }
    }
}

/// Finds the target served now for a node uid (the registry's view).
pub type Resolver = Box<dyn Fn(&str) -> Option<Target> + Send + Sync>;

/// Runs executions. One per server.
pub struct Executor {
    shared: Arc<Shared>,
    next_id: AtomicU64,
}

/// What the executor and its executions share.
struct Shared {
    limits: AdmissionLimits,
    timeout: Option<Duration>,
    /// For the timeout timers: runtimes run nodes off the async runtime.
    runtime: Option<tokio::runtime::Handle>,
    book: Mutex<Book>,
    /// Where a job whose version was retired before it ran goes instead.
    resolver: OnceLock<Resolver>,
    /// The last failures, for the operator page.
    failures: crate::failures::FailureLog,
}

impl Shared {
    /// Hands executions that were given a slot to their runtimes.
    fn dispatch(&self, now: Vec<Pending>) {
        for pending in now {
            pending.runtime.execute(pending.job);
        }
    }
}

/// Hands one execution that was given a slot to its runtime.
fn dispatch_one(pending: Pending) {
    pending.runtime.execute(pending.job);
}

/// An admitted execution, until it concludes.
struct Active {
    instance_id: String,
    owner: u64,
    execution: Arc<Execution>,
}

impl Executor {
    /// An executor within `limits`, each execution running for at most
    /// `timeout` (if any).
    pub fn new(limits: AdmissionLimits, timeout: Option<Duration>) -> Self {
        Self {
            shared: Arc::new(Shared {
                limits: AdmissionLimits {
                    max_concurrent: limits.max_concurrent.max(1),
                    ..limits
                },
                timeout,
                runtime: tokio::runtime::Handle::try_current().ok(),
                book: Mutex::new(Book::default()),
                resolver: OnceLock::new(),
                failures: crate::failures::FailureLog::default(),
            }),
            next_id: AtomicU64::new(0),
        }
    }

    /// How to find the version of a node served now, for executions whose
    /// version was retired before they ran (see [`Job::redirect`]). Set
    /// once; later calls are ignored.
    pub fn resolve_with(&self, resolver: Resolver) {
        let _ = self.shared.resolver.set(resolver);
    }

    /// Starts an execution of `target` for `owner` (a connection id) and
    /// returns at once; every status, the final one included, goes to `sink`.
    /// Beyond the admission limits it is refused at once with a `busy` error.
    pub fn start(
        &self,
        owner: u64,
        target: &Target,
        request: ExecutionRequest,
        origin: Origin,
        sink: Arc<dyn StatusSink>,
    ) {
        let shared = &self.shared;
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let span = tracing::info_span!(
            "execution",
            instanceId = %request.instance_id,
            node = %request.node_uid,
            nodeId = %origin.node_id,
            transport = origin.transport,
            outcome = tracing::field::Empty,
            queue_wait_ms = tracing::field::Empty,
            duration_ms = tracing::field::Empty,
        );
        if let Some(traceparent) = &origin.traceparent {
            crate::telemetry::continue_trace(&span, traceparent);
        }
        let execution = Arc::new(Execution {
            id,
            uid: Arc::clone(&target.uid),
            metrics: Arc::clone(&target.metrics),
            aborted: AtomicBool::new(false),
            finished: AtomicBool::new(false),
            sink,
            worker: Mutex::new(WorkerState::default()),
            queued_at: Instant::now(),
            span,
            shared: Arc::clone(shared),
            abort_hook: Mutex::new(None),
        });
        let active = Active {
            instance_id: request.instance_id.clone(),
            owner,
            execution: Arc::clone(&execution),
        };
        let job = Job {
            node_index: target.node_index,
            request,
            execution,
        };
        let pending = Pending::new(Arc::clone(&target.runtime), job);
        let mut book = lock(&shared.book);
        match book.admit(&shared.limits, &target.uid, pending) {
            Admission::Now(pending) => {
                book.active.insert(id, active);
                drop(book);
                dispatch_one(pending);
            }
            Admission::Waiting => {
                book.active.insert(id, active);
                metrics::hot().queued.set(book.waiting() as f64);
            }
            Admission::Refused(pending, refusal) => {
                drop(book);
                metrics::counter!(metrics::EXECUTIONS, "node" => target.uid.to_string(), "outcome" => "busy")
                    .increment(1);
                pending.job.execution.finish(Status::Error(Failure::Busy, refusal));
            }
        }
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

    /// Sets the abort flags and takes the aborted ones that still wait out
    /// of their lanes; the final errors follow when the result drops.
    fn abort_with(&self, matches: impl Fn(&Active) -> bool, message: &str) -> Aborted {
        let mut book = lock(&self.shared.book);
        let executions: Vec<Arc<Execution>> = book
            .active
            .values()
            .filter(|active| matches(active))
            .filter(|active| !active.execution.finished.load(Ordering::SeqCst))
            .filter(|active| !active.execution.aborted.swap(true, Ordering::SeqCst))
            .map(|active| Arc::clone(&active.execution))
            .collect();
        for execution in &executions {
            execution.run_abort_hook();
        }
        let unstarted = if executions.is_empty() {
            Vec::new()
        } else {
            book.remove_waiting(|pending| pending.job.execution.is_aborted())
        };
        for pending in &unstarted {
            book.active.remove(&pending.job.execution.id);
        }
        metrics::hot().queued.set(book.waiting() as f64);
        drop(book);
        for pending in unstarted {
            pending.job.execution.count(&Status::error(Failure::Aborted, ABORTED));
        }
        Aborted {
            executions,
            message: message.to_owned(),
        }
    }

    /// Executions that ended while their node is still running.
    pub fn stuck_count(&self) -> usize {
        lock(&self.shared.book)
            .active
            .values()
            .filter(|active| active.execution.lock_worker().stuck)
            .count()
    }

    /// Whether every slot is held by a node whose execution already ended
    /// (aborted or timed out) and that has not returned: nothing can run.
    pub fn is_wedged(&self) -> bool {
        let book = lock(&self.shared.book);
        let stuck = book
            .active
            .values()
            .filter(|active| active.execution.lock_worker().stuck)
            .count();
        book.running() >= self.shared.limits.max_concurrent && stuck >= book.running()
    }

    /// The last failed executions, newest first.
    pub fn recent_failures(&self) -> Vec<crate::failures::FailureRecord> {
        self.shared.failures.recent()
    }

    /// Executions admitted whose final status has not been sent yet.
    pub fn active_count(&self) -> usize {
        lock(&self.shared.book)
            .active
            .values()
            .filter(|active| !active.execution.finished.load(Ordering::SeqCst))
            .count()
    }
}

/// Executions just aborted. Dropping this sends each its final `error` at
/// once: a node that ignores the flag (or never returns) must not hold its
/// caller up.
#[must_use = "the final errors are sent when this is dropped"]
pub struct Aborted {
    executions: Vec<Arc<Execution>>,
    message: String,
}

impl Aborted {
    /// How many executions were aborted.
    pub fn len(&self) -> usize {
        self.executions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.executions.is_empty()
    }
}

impl Drop for Aborted {
    fn drop(&mut self) {
        for execution in &self.executions {
            execution.finish(Status::error(Failure::Aborted, self.message.clone()));
        }
    }
}

/// One admitted execution: its abort flag, its sink, and its place in the
/// executor's bookkeeping. Runtimes report through it.
pub struct Execution {
    id: u64,
    uid: Arc<str>,
    metrics: Arc<OnceLock<metrics::NodeMetrics>>,
    aborted: AtomicBool,
    finished: AtomicBool,
    sink: Arc<dyn StatusSink>,
    /// Whether the node is running, and whether it is counted as stuck (its
    /// execution ended before the node returned).
    worker: Mutex<WorkerState>,
    queued_at: Instant,
    span: tracing::Span,
    shared: Arc<Shared>,
    /// Set by a runtime that must be told of an abort (a worker process
    /// cannot read the flag); called once, when the flag is set.
    abort_hook: Mutex<Option<Box<dyn FnOnce() + Send>>>,
}

#[derive(Default)]
struct WorkerState {
    running: bool,
    stuck: bool,
}

/// A node started by [`Execution::begin`], to be ended by [`Execution::end`].
#[must_use = "a started execution must be ended"]
pub struct Running {
    started: Instant,
    timer: Option<tokio::task::JoinHandle<()>>,
}

impl Execution {
    /// The span the node's work is logged in.
    pub fn span(&self) -> &tracing::Span {
        &self.span
    }

    fn is_aborted(&self) -> bool {
        self.aborted.load(Ordering::SeqCst)
    }

    /// The execution's id, unique in this server's life.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Calls `hook` once when the execution is aborted (at once if it is
    /// already).
    pub fn on_abort(&self, hook: Box<dyn FnOnce() + Send>) {
        *lock(&self.abort_hook) = Some(hook);
        if self.is_aborted() {
            self.run_abort_hook();
        }
    }

    fn run_abort_hook(&self) {
        let hook = lock(&self.abort_hook).take();
        if let Some(hook) = hook {
            hook();
        }
    }

    /// The node is about to start: sends `running` and starts the timeout.
    /// `None` when the execution was aborted while it waited (its final
    /// status is sent here); the runtime must not run the node then.
    pub fn begin(self: &Arc<Self>) -> Option<Running> {
        let shared = &self.shared;
        let hot = metrics::hot();
        hot.queue_wait.record(self.queued_at.elapsed().as_secs_f64());
        let started = Instant::now();
        if self.is_aborted() {
            self.conclude(started, Status::error(Failure::Aborted, ABORTED));
            return None;
        }
        self.forward(Status::Running);
        self.span.record(
            "queue_wait_ms",
            started.duration_since(self.queued_at).as_secs_f64() * 1e3,
        );
        let timer = shared.timeout.and_then(|limit| self.start_timer(limit));
        hot.in_flight.increment(1.0);
        self.lock_worker().running = true;
        Some(Running { started, timer })
    }

    /// The node returned (or its runtime failed): sends the final status
    /// unless one went out already (aborted or timed out).
    pub fn end(&self, running: Running, outcome: Result<String, (Failure, String)>) {
        {
            let mut worker = self.lock_worker();
            worker.running = false;
            if std::mem::take(&mut worker.stuck) {
                metrics::gauge!(metrics::STUCK).decrement(1.0);
            }
        }
        metrics::hot().in_flight.decrement(1.0);
        if let Some(timer) = running.timer {
            timer.abort();
        }
        let status = if self.is_aborted() {
            // Stopped, disconnected or timed out: that final status went
            // out already; this late result is dropped.
            Status::error(Failure::Aborted, ABORTED)
        } else {
            match outcome {
                Ok(outputs) => match RawValue::from_string(outputs) {
                    Ok(raw) if raw.get().starts_with('{') => Status::Complete(raw),
                    _ => Status::error(Failure::Node, "the node returned outputs that are not a JSON object"),
                },
                Err((failure, message)) => Status::Error(failure, message),
            }
        };
        self.conclude(running.started, status);
    }

    /// The runtime cannot run this execution at all (it never began).
    pub fn reject(&self, failure: Failure, message: String) {
        self.conclude(Instant::now(), Status::Error(failure, message));
    }

    /// Records the outcome, sends the final status, forgets the execution
    /// and gives its slot to the next one waiting.
    fn conclude(&self, started: Instant, status: Status) {
        let node_metrics = self.metrics.get_or_init(|| metrics::NodeMetrics::new(&self.uid));
        let duration = started.elapsed().as_secs_f64();
        node_metrics.duration.record(duration);
        self.span.record("duration_ms", duration * 1e3);
        self.span.record(
            "outcome",
            match &status {
                Status::Error(failure, _) => failure.label(),
                _ => "complete",
            },
        );
        self.count(&status);
        self.finish(status);
        let shared = &self.shared;
        let mut book = lock(&shared.book);
        book.active.remove(&self.id);
        let now = book.release(&shared.limits, &self.uid);
        if !now.is_empty() {
            metrics::hot().queued.set(book.waiting() as f64);
        }
        drop(book);
        shared.dispatch(now);
    }

    /// Counts the outcome in the metrics.
    fn count(&self, status: &Status) {
        match status {
            Status::Error(failure, message) => {
                tracing::debug!(parent: &self.span, outcome = failure.label(), error = %message, "execution failed");
                self.shared.failures.record(&self.uid, failure.label(), message);
                metrics::counter!(metrics::EXECUTIONS, "node" => self.uid.to_string(), "outcome" => failure.label())
                    .increment(1);
            }
            _ => {
                let node_metrics = self.metrics.get_or_init(|| metrics::NodeMetrics::new(&self.uid));
                node_metrics.complete.increment(1);
            }
        }
    }

    /// Ends the execution with a timeout error after `limit`, unless the
    /// returned timer is aborted first (the node returned in time).
    fn start_timer(self: &Arc<Self>, limit: Duration) -> Option<tokio::task::JoinHandle<()>> {
        let runtime = self.shared.runtime.as_ref()?;
        let execution = Arc::clone(self);
        Some(runtime.spawn(async move {
            tokio::time::sleep(limit).await;
            if !execution.aborted.swap(true, Ordering::SeqCst) {
                execution.run_abort_hook();
                // The late result is discarded: `finish` sends only once.
                execution.finish(Status::error(
                    Failure::TimedOut,
                    format!("Execution timed out after {} ms", limit.as_millis()),
                ));
            }
        }))
    }

    /// Forwards a non-final status, unless the execution is over or aborted.
    fn forward(&self, status: Status) {
        if !self.is_aborted() && !self.finished.load(Ordering::SeqCst) {
            self.sink.send(status);
        }
    }

    /// Sends the final status, once. If the node is still running, it
    /// counts as stuck until it returns.
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

    fn lock_worker(&self) -> std::sync::MutexGuard<'_, WorkerState> {
        lock(&self.worker)
    }
}
