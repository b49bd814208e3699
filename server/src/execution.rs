//! Where a node is executed: admission, the concurrency limit, the abort
//! flags, and the order of statuses (`running`, the node's own, then exactly
//! one `complete` or `error`).
//!
//! Transport-agnostic: the caller hands in a [`StatusSink`] and gets every
//! status of the execution through it.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use abi_stable::{sabi_trait::TD_Opaque, sabi_types::RRef, std_types::RStr};
use nano_plugin_abi::ffi::{ExecuteCall, HostCallbacks, HostCallbacks_TO};
use serde::Deserialize;
use serde_json::value::RawValue;
use tokio::sync::{Notify, Semaphore};
use tracing::Instrument;

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

/// A NodeStatus on its way to the caller.
#[derive(Debug, Clone)]
pub enum Status {
    /// A non-final status object (`running` and the node's own), as JSON.
    Update(String),
    /// The final success, with the outputs object.
    Complete(Box<RawValue>),
    /// The final failure: why, and the message.
    Error(Failure, String),
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

    fn running(message: &str) -> Self {
        Self::Update(serde_json::json!({"type": "running", "message": message}).to_string())
    }

    /// The NodeStatus object as JSON.
    pub fn to_json(&self) -> String {
        match self {
            Self::Update(json) => json.clone(),
            // The message is the Python SDK's, so orchestrators see the same.
            Self::Complete(outputs) => format!(
                r#"{{"type":"complete","message":"Execution finished.","outputs":{}}}"#,
                outputs.get()
            ),
            Self::Error(_, message) => serde_json::json!({"type": "error", "message": message}).to_string(),
        }
    }

    /// Whether this status ends the execution.
    pub fn is_final(&self) -> bool {
        !matches!(self, Self::Update(_))
    }
}

/// Receives the statuses of one execution, in order.
pub trait StatusSink: Send + Sync + 'static {
    fn send(&self, status: Status);
}

/// The message for an execution stopped before it completed.
pub const ABORTED: &str = "Execution aborted";

/// Runs executions. One per server; cloning the `Arc` shares it.
pub struct Executor {
    registry: NodeRegistry,
    permits: Arc<Semaphore>,
    max_queued: usize,
    queued: Arc<AtomicUsize>,
    timeout: Option<Duration>,
    active: Mutex<HashMap<u64, Active>>,
    next_id: AtomicU64,
}

/// An admitted execution, until its final status is sent.
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
        Arc::new(Self {
            registry,
            permits: Arc::new(Semaphore::new(max_concurrent)),
            max_queued,
            queued: Arc::new(AtomicUsize::new(0)),
            timeout,
            active: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(0),
        })
    }

    /// Starts an execution for `owner` (a connection id) and returns at once;
    /// every status, the final one included, goes to `sink`.
    pub fn start(self: &Arc<Self>, owner: u64, request: ExecutionRequest, sink: Arc<dyn StatusSink>) {
        let Some(node) = self.registry.snapshot().get(&request.node_uid).cloned() else {
            metrics::counter!(metrics::EXECUTIONS, "node" => request.node_uid.clone(), "outcome" => "unknown_node")
                .increment(1);
            sink.send(Status::error(
                Failure::UnknownNode,
                unknown_node_message(&request.node_uid),
            ));
            return;
        };
        // Bounded waiting: beyond it, refuse at once rather than grow.
        let waiting = self.queued.fetch_add(1, Ordering::SeqCst);
        let queue_slot = QueueSlot(Arc::clone(&self.queued));
        if waiting >= self.max_queued && self.permits.available_permits() == 0 {
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
            abort_signal: Notify::new(),
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
        let executor = Arc::clone(self);
        let span = tracing::info_span!("execution", instance = %request.instance_id, node = %request.node_uid);
        tokio::spawn(
            async move {
                let uid = request.node_uid.clone();
                let started = Instant::now();
                let final_status = executor.run(node, request, &state, queue_slot).await;
                let outcome = match &final_status {
                    Status::Error(failure, message) => {
                        tracing::debug!(outcome = failure.label(), %message, "execution failed");
                        failure.label()
                    }
                    _ => "complete",
                };
                metrics::counter!(metrics::EXECUTIONS, "node" => uid.clone(), "outcome" => outcome).increment(1);
                metrics::histogram!(metrics::EXECUTION_SECONDS, "node" => uid).record(started.elapsed().as_secs_f64());
                state.finish(final_status);
                executor.lock_active().remove(&id);
            }
            .instrument(span),
        );
    }

    async fn run(
        &self,
        node: NodeHandle,
        request: ExecutionRequest,
        state: &Arc<ExecutionState>,
        queue_slot: QueueSlot,
    ) -> Status {
        // Waits here while `max_concurrent_executions` are running.
        let queued = Instant::now();
        let Ok(permit) = Arc::clone(&self.permits).acquire_owned().await else {
            return Status::error(Failure::Internal, "the server is shutting down");
        };
        drop(queue_slot);
        metrics::histogram!(metrics::QUEUE_WAIT_SECONDS).record(queued.elapsed().as_secs_f64());
        if state.is_aborted() {
            return Status::error(Failure::Aborted, ABORTED);
        }
        state.forward(Status::running("Starting execution..."));
        let worker_state = Arc::clone(state);
        metrics::gauge!(metrics::IN_FLIGHT).increment(1.0);
        let worker = tokio::task::spawn_blocking(move || {
            // The slot stays taken until the node really returns, even after
            // a timeout: the worker thread is busy until then.
            let _permit = permit;
            worker_state.worker_started();
            let outcome = run_node(&node, &request, &worker_state);
            worker_state.worker_returned();
            metrics::gauge!(metrics::IN_FLIGHT).decrement(1.0);
            outcome
        });
        // The node's result, unless the execution is aborted first: then the
        // caller already has its final status and nobody waits for the node.
        let until_aborted = async {
            tokio::select! {
                outcome = worker => Some(outcome),
                () = state.abort_signal.notified() => None,
            }
        };
        let outcome = match self.timeout {
            None => until_aborted.await,
            Some(limit) => match tokio::time::timeout(limit, until_aborted).await {
                Ok(outcome) => outcome,
                Err(_) => {
                    // The late result is discarded: `finish` sends only once.
                    state.aborted.store(true, Ordering::SeqCst);
                    return Status::error(
                        Failure::TimedOut,
                        format!("Execution timed out after {} ms", limit.as_millis()),
                    );
                }
            },
        };
        if state.is_aborted() {
            return Status::error(Failure::Aborted, ABORTED);
        }
        let Some(outcome) = outcome else {
            return Status::error(Failure::Aborted, ABORTED);
        };
        match outcome {
            Ok(Ok(outputs)) => match parse_outputs(outputs) {
                Ok(outputs) => Status::Complete(outputs),
                Err(message) => Status::error(Failure::Node, message),
            },
            Ok(Err(message)) => Status::error(Failure::Node, message),
            Err(join_error) => {
                tracing::error!(%join_error, "execution worker failed");
                Status::error(Failure::Internal, "internal error while running the node")
            }
        }
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
            state.abort_signal.notify_one();
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
    /// Wakes the executor when the execution is aborted while its node runs.
    abort_signal: Notify,
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
        match serde_json::from_str::<Kind<'_>>(json) {
            Ok(Kind {
                kind: "idle" | "running" | "missing",
            }) => self.forward(Status::Update(json.to_owned())),
            Ok(Kind { kind }) => {
                tracing::warn!(
                    kind,
                    "dropped a `{kind}` status sent by a node: nodes return outputs or errors instead"
                )
            }
            Err(err) => tracing::warn!(%err, "dropped a malformed status sent by a node"),
        }
    }

    fn is_aborted(&self) -> bool {
        ExecutionState::is_aborted(self)
    }
}

/// The error for a uid nobody serves.
pub fn unknown_node_message(uid: &str) -> String {
    // The Python SDK's wording, which orchestrators may match on.
    format!("Node definition not found: {uid}")
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
