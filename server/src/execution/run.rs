//! One run of one node for a caller, from admission to its single final
//! status: what to run (an [`ExecutionRequest`] on a [`Target`]), the
//! [`Job`] a runtime is handed, and the [`Execution`] it reports through.
//! The executor that admitted a run is seen only as an [`Admitter`], so a
//! run does not depend on the executor that creates it.

use std::{
    sync::{
        Arc, Mutex, OnceLock,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use serde_json::value::RawValue;

use super::{ABORTED, Failure, Status, StatusSink};
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

/// What a library's shutdown hook did: `None` when the library has none
/// (built against nano-plugin-abi 0.1.0), else its result.
pub type HookOutcome = Option<Result<(), String>>;

/// One loaded library version, running its nodes: the seam between what
/// to run and where it runs.
///
/// The executor owns admission, abort flags, timeouts and the order of
/// statuses; a runtime owns a library's whole life after loading: running
/// its nodes, its shutdown hook, and what happens when it is no longer
/// served. A runtime reports through each job's [`Execution`]: `begin` when
/// the node starts, `end` when it returned (or failed as a whole), from any
/// thread and at any time, so an execution may outlive the thread that
/// started it and one failure may end several executions at once.
pub trait LibraryRuntime: Send + Sync {
    /// Runs one admitted execution; returns at once. The runtime calls
    /// `job.execution.begin()` when the node starts and `end` when it is
    /// over, or `reject` if it cannot run it at all.
    fn execute(&self, job: Job);

    /// Runs the library's shutdown hook, blocking until it returns.
    fn shutdown_hook(&self) -> HookOutcome;

    /// The version is no longer served (replaced, removed, or the server is
    /// stopping); executions already handed over still finish, and one
    /// handed over later (it waited for a slot) goes to the version served
    /// now through [`Job::redirect`]. Returns
    /// whether its shutdown hook is still owed when the server stops (true
    /// for a library that stays mapped in the server's process).
    fn retire(&self) -> bool;

    /// Whether it may be handed executions ahead (see
    /// [`super::admission`]): only a runtime whose worker starts one in the
    /// slot of an execution of the same node that returns.
    fn hands_ahead(&self) -> bool {
        false
    }

    /// Hands an execution ahead, without a slot; returns it when it
    /// cannot take it now. It reports through the execution as `execute`
    /// does, after [`Execution::promote`] when it began, or gives it back
    /// with [`Pending::requeue`] unstarted.
    #[must_use]
    fn execute_ahead(&self, pending: Pending) -> Option<Pending> {
        Some(pending)
    }

    /// A slot freed for node `uid`, whose executions wait ahead here: has
    /// the worker holding them start the first one in it (it reports
    /// through [`Execution::promote_granted`], or gives the slot back with
    /// the admitter's `ungrant`). False when none waits here: the slot is
    /// freed at once.
    fn grant(&self, _uid: &Arc<str>) -> bool {
        false
    }

    /// Whether it can run executions now or soon (a worker is up or
    /// restarting); false once it failed for good.
    fn is_up(&self) -> bool {
        true
    }

    /// Why it serves less than it should right now, for `/readyz`'s
    /// `degraded` (a worker silent for half its heartbeat, or one
    /// restarting); none when it is healthy.
    fn trouble(&self) -> Option<String> {
        None
    }
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
        match execution.admitter.resolve(&execution.uid) {
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

/// An admitted execution not yet handed to its runtime (or handed ahead).
pub struct Pending {
    pub(super) runtime: Arc<dyn LibraryRuntime>,
    pub(super) job: Job,
    pub(super) bytes: usize,
    /// It was handed ahead and given back: it waits for a slot now.
    pub(super) returned: bool,
}

impl Pending {
    pub(super) fn new(runtime: Arc<dyn LibraryRuntime>, job: Job) -> Self {
        let request = &job.request;
        let bytes = request.inputs.len() + request.parameters.len() + request.graph_node.len();
        Self {
            runtime,
            job,
            bytes,
            returned: false,
        }
    }

    /// Hands the execution, which has a slot now, to its runtime.
    pub(super) fn dispatch(self) {
        self.runtime.execute(self.job);
    }

    /// Hands the execution ahead to its runtime; returns it when the
    /// runtime cannot take it now.
    #[must_use]
    pub(super) fn dispatch_ahead(self) -> Option<Self> {
        let runtime = Arc::clone(&self.runtime);
        let refused = runtime.execute_ahead(self);
        if refused.is_none() {
            metrics::hot().handed_ahead.increment(1);
        }
        refused
    }

    /// The execution.
    pub(super) fn job(&self) -> &Job {
        &self.job
    }

    /// What it counts against `max_queued_bytes`.
    pub(super) fn bytes(&self) -> usize {
        self.bytes
    }

    /// Handed ahead (or about to be), it came back unstarted: it waits for
    /// a slot again.
    pub(super) fn requeue(self) {
        let admitter = self.job.execution.admitter();
        admitter.requeue(self);
    }

    /// Handed ahead, its worker gave it back unstarted: it waits for a
    /// slot again, or ends if it was aborted meanwhile.
    pub(super) fn give_back(self) {
        metrics::hot().given_back.increment(1);
        let execution = Arc::clone(&self.job.execution);
        if execution.is_aborted() {
            execution.promote(self.bytes);
            execution.reject(Failure::Aborted, ABORTED.to_owned());
        } else {
            self.requeue();
        }
    }

    pub(super) fn may_go_ahead(&self) -> bool {
        !self.returned && self.runtime.hands_ahead()
    }
}

/// What a run needs of the executor that admitted it.
pub(super) trait Admitter: Send + Sync {
    /// How long a node may run, and the runtime its timer runs on (none:
    /// no limit).
    fn time_limit(&self) -> Option<(Duration, &tokio::runtime::Handle)>;

    /// The target served now for node `uid` (see [`Job::redirect`]).
    fn resolve(&self, uid: &str) -> Option<Target>;

    /// Keeps a failed execution for the operator page.
    fn record_failure(&self, uid: &str, instance_id: &str, failure: Failure, message: &str);

    /// Execution `id` of node `uid`, which held a slot, concluded after
    /// `ran`: forgets it and hands its slot to the next one waiting.
    fn release(&self, id: u64, uid: &Arc<str>, ran: Duration);

    /// An execution of `uid` handed ahead (`bytes` of request) began: it
    /// holds a slot now (see [`super::admission`]).
    fn promote(&self, uid: &Arc<str>, bytes: usize);

    /// An execution handed ahead came back unstarted: it waits for a slot.
    fn requeue(&self, pending: Pending);

    /// An execution of `uid` handed ahead began in a slot granted to its
    /// worker (counted running already).
    fn promote_granted(&self, uid: &Arc<str>, bytes: usize);

    /// A slot granted for `uid` came back unused.
    fn ungrant(&self, uid: &Arc<str>);
}

/// One admitted execution: its abort flag, its sink, and its place in the
/// executor's bookkeeping. Runtimes report through it.
pub struct Execution {
    id: u64,
    uid: Arc<str>,
    /// The workflow instance it belongs to (for the failure list).
    instance_id: Box<str>,
    metrics: Arc<OnceLock<metrics::NodeMetrics>>,
    aborted: AtomicBool,
    finished: AtomicBool,
    sink: Arc<dyn StatusSink>,
    /// Whether the node is running, and whether it is counted as stuck (its
    /// execution ended before the node returned).
    worker: Mutex<WorkerState>,
    queued_at: Instant,
    span: tracing::Span,
    admitter: Arc<dyn Admitter>,
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
    /// Execution `id` of `target` for `request`, admitted (or about to be
    /// refused) by `admitter`; every status goes to `sink`.
    pub(super) fn new(
        id: u64,
        target: &Target,
        request: &ExecutionRequest,
        origin: &Origin,
        sink: Arc<dyn StatusSink>,
        admitter: Arc<dyn Admitter>,
    ) -> Self {
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
        Self {
            id,
            uid: Arc::clone(&target.uid),
            instance_id: request.instance_id.as_str().into(),
            metrics: Arc::clone(&target.metrics),
            aborted: AtomicBool::new(false),
            finished: AtomicBool::new(false),
            sink,
            worker: Mutex::new(WorkerState::default()),
            queued_at: Instant::now(),
            span,
            admitter,
            abort_hook: Mutex::new(None),
        }
    }

    /// The span the node's work is logged in.
    pub fn span(&self) -> &tracing::Span {
        &self.span
    }

    pub(super) fn is_aborted(&self) -> bool {
        self.aborted.load(Ordering::SeqCst)
    }

    /// Whether its final status went out.
    pub(super) fn is_finished(&self) -> bool {
        self.finished.load(Ordering::SeqCst)
    }

    /// Whether it ended while its node is still running.
    pub(super) fn is_stuck(&self) -> bool {
        self.lock_worker().stuck
    }

    /// The execution's id, unique in this server's life.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The uid of the node it runs.
    pub(super) fn uid(&self) -> &Arc<str> {
        &self.uid
    }

    /// Sets the abort flag; true if this call set it (the caller then owes
    /// the abort hook and the final status).
    pub(super) fn abort(&self) -> bool {
        !self.aborted.swap(true, Ordering::SeqCst)
    }

    /// Calls `hook` once when the execution is aborted (at once if it is
    /// already).
    pub fn on_abort(&self, hook: Box<dyn FnOnce() + Send>) {
        *lock(&self.abort_hook) = Some(hook);
        if self.is_aborted() {
            self.run_abort_hook();
        }
    }

    pub(super) fn run_abort_hook(&self) {
        let hook = lock(&self.abort_hook).take();
        if let Some(hook) = hook {
            hook();
        }
    }

    /// The node is about to start: sends `running` and starts the timeout.
    /// `None` when the execution was aborted while it waited (its final
    /// status is sent here); the runtime must not run the node then.
    pub fn begin(self: &Arc<Self>) -> Option<Running> {
        let hot = metrics::hot();
        hot.queue_wait.record(self.queued_at.elapsed().as_secs_f64());
        let started = Instant::now();
        if self.is_aborted() {
            self.conclude(started, Status::error(Failure::Aborted, ABORTED));
            return None;
        }
        self.forward(Status::Running);
        if crate::telemetry::span_details_wanted() {
            self.span.record(
                "queue_wait_ms",
                started.duration_since(self.queued_at).as_secs_f64() * 1e3,
            );
        }
        let timer = self
            .admitter
            .time_limit()
            .map(|(limit, runtime)| self.start_timer(limit, runtime));
        hot.in_flight.increment(1.0);
        self.lock_worker().running = true;
        Some(Running { started, timer })
    }

    /// The node returned (or its runtime failed): sends the final status
    /// unless one went out already (aborted or timed out).
    pub fn end(&self, running: Running, outcome: Result<String, (Failure, String)>) {
        self.end_with(running, outcome, false, None);
    }

    /// [`end`](Self::end), for a node whose outputs may be any JSON value
    /// (a language SDK's node: they are forwarded as it returned them,
    /// `null` too; a native node's must be an object), and that may have
    /// ended with its own `message` (else "Execution finished.").
    pub fn end_with(
        &self,
        running: Running,
        outcome: Result<String, (Failure, String)>,
        any_json: bool,
        message: Option<String>,
    ) {
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
                    Ok(raw) if any_json || raw.get().starts_with('{') => {
                        Status::Complete(raw, message.map(String::into_boxed_str))
                    }
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
        if crate::telemetry::span_details_wanted() {
            self.span.record("duration_ms", duration * 1e3);
            self.span.record(
                "outcome",
                match &status {
                    Status::Error(failure, _) => failure.label(),
                    _ => "complete",
                },
            );
        }
        self.count(&status);
        self.finish(status);
        self.admitter.release(self.id, &self.uid, started.elapsed());
    }

    /// What admitted it.
    pub(super) fn admitter(&self) -> Arc<dyn Admitter> {
        Arc::clone(&self.admitter)
    }

    /// Handed ahead, it began in the slot of one that returned: it holds
    /// a slot from now (call [`begin`](Self::begin) next).
    pub(super) fn promote(&self, bytes: usize) {
        self.admitter.promote(&self.uid, bytes);
    }

    /// Handed ahead, it began in a slot granted to its worker (call
    /// [`begin`](Self::begin) next).
    pub(super) fn promote_granted(&self, bytes: usize) {
        self.admitter.promote_granted(&self.uid, bytes);
    }

    /// Counts the outcome in the metrics.
    pub(super) fn count(&self, status: &Status) {
        match status {
            Status::Error(failure, message) => {
                tracing::debug!(parent: &self.span, outcome = failure.label(), error = %message, "execution failed");
                self.admitter
                    .record_failure(&self.uid, &self.instance_id, *failure, message);
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
    fn start_timer(self: &Arc<Self>, limit: Duration, runtime: &tokio::runtime::Handle) -> tokio::task::JoinHandle<()> {
        let execution = Arc::clone(self);
        runtime.spawn(async move {
            tokio::time::sleep(limit).await;
            if execution.abort() {
                execution.run_abort_hook();
                // The late result is discarded: `finish` sends only once.
                execution.finish(Status::error(
                    Failure::TimedOut,
                    format!("Execution timed out after {} ms", limit.as_millis()),
                ));
            }
        })
    }

    /// Forwards a non-final status, unless the execution is over or aborted.
    pub(super) fn forward(&self, status: Status) {
        if !self.is_aborted() && !self.is_finished() {
            self.sink.send(status);
        }
    }

    /// Sends the final status, once. If the node is still running, it
    /// counts as stuck until it returns.
    pub(super) fn finish(&self, status: Status) {
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
