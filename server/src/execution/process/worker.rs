//! A [`Worker`] is the server's handle on one worker process: the writer of
//! its channel, the executions it was handed and not answered (its
//! in-flight table), and why the server is ending it. Its frames reach it
//! through its supervisor; what it must tell its library goes through
//! [`WorkerOwner`].

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex, Weak,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use bytes::Bytes;
use futures_util::SinkExt;
use serde_bytes::ByteBuf;
use tokio::{
    net::unix::OwnedWriteHalf,
    runtime::Handle,
    sync::{Notify, mpsc, watch},
};
use tokio_util::codec::FramedWrite;

use super::{exit::WorkerExit, kind::WorkerKind};
use crate::{
    execution::{
        ABORTED, Execution, Failure, HookOutcome, Job, ProcessSettings, Running,
        run::Admitter,
        run::Pending,
        wire::{self, ExecuteFrame, FromWorker, ToWorker},
    },
    lock,
    nanocore::{Owner, Services},
};

/// A worker asked to run its shutdown hook gets this long to report it and
/// exit; then it is ended (a hook must not hold up a swap or the shutdown).
pub(crate) const SHUTDOWN_HOOK_TIMEOUT: Duration = Duration::from_secs(2);

/// What every worker of one library version shares.
pub(crate) struct WorkerContext {
    /// The library's path relative to `nodes_path`: the `library` of logs and metrics.
    pub label: Arc<str>,
    pub settings: Arc<ProcessSettings>,
    pub runtime: Handle,
    /// NanoCore's services, which the workers' host calls reach.
    pub services: Arc<Services>,
    pub kind: Arc<dyn WorkerKind>,
}

/// What a worker tells the library it serves.
pub(crate) trait WorkerOwner: Send + Sync {
    /// A node ignored its abort past `abort_grace_ms`: new executions must
    /// go to another worker, and this one drains.
    fn worker_hung(&self, worker: &Arc<Worker>);

    /// The worker's process ended; its executions are failed after this
    /// returns, so a client retrying at once finds the replacement.
    fn worker_exited(&self, worker: &Arc<Worker>, exit: &WorkerExit);
}

/// One worker process, as the server sees it.
pub(crate) struct Worker {
    pub pid: u32,
    /// Its id for NanoCore's services: what it allocated is freed when it ends.
    pub version: u64,
    pub context: Arc<WorkerContext>,
    owner: Weak<dyn WorkerOwner>,
    /// Whether it made a host call (its executions' streams must be released).
    host_calls: AtomicBool,
    to_worker: mpsc::UnboundedSender<ToWorker>,
    /// Executions handed to it and not answered, by id. `running` is taken
    /// when the execution ends without the node (it hung past its abort).
    inflight: Mutex<HashMap<u64, InFlight>>,
    /// Why the server is ending it (none: it ended on its own).
    ending: Mutex<Option<WorkerExit>>,
    /// Wakes its supervisor to kill the process.
    pub kill: Notify,
    /// Takes no new executions; ends when its last one does.
    draining: AtomicBool,
    /// Closed once its shutdown was asked for (drained): no execution may
    /// be handed to it after that. Guards `handing_over` too, so a drain
    /// never shuts a worker that an execution was just picked for.
    gate: Mutex<Gate>,
    /// Set by its supervisor once the process is gone.
    exited: watch::Sender<bool>,
    shutdown_reply: Mutex<Option<std::sync::mpsc::Sender<HookOutcome>>>,
    heartbeat: Mutex<Heartbeat>,
    /// Slots granted to it ([`ToWorker::Start`]) and not yet used or given back.
    grants: Mutex<Vec<Grant>>,
}

/// A slot granted to a worker for a node's executions ahead.
struct Grant {
    node: u32,
    uid: Arc<str>,
    admitter: Arc<dyn Admitter>,
}

/// The worker's heartbeat: one ping at a time, and when it went out.
#[derive(Default)]
struct Heartbeat {
    next_seq: u64,
    awaiting: Option<(u64, Instant)>,
}

struct InFlight {
    execution: Arc<Execution>,
    running: Option<Running>,
    /// Handed ahead and not begun: what goes back to its lane if the worker
    /// gives it back or ends.
    ahead: Option<Pending>,
}

impl InFlight {
    /// Whether the worker still owes its result (it runs, or may start it).
    fn owed(&self) -> bool {
        self.running.is_some() || self.ahead.is_some()
    }
}

#[derive(Default)]
struct Gate {
    closed: bool,
    /// Executions between `run`'s check of the gate and their entry in
    /// `inflight`.
    handing_over: usize,
}

impl Worker {
    /// The handle of a worker that loaded its library; `writer` is the
    /// server's end of its channel.
    pub(crate) fn new(
        pid: u32,
        context: Arc<WorkerContext>,
        owner: Weak<dyn WorkerOwner>,
        writer: OwnedWriteHalf,
    ) -> Arc<Self> {
        let sink = FramedWrite::new(writer, wire::codec(context.kind.max_to_worker()));
        let to_worker = spawn_writer(sink, Arc::clone(&context.kind));
        Arc::new(Self {
            pid,
            version: context.services.version_id(),
            context,
            owner,
            host_calls: AtomicBool::new(false),
            to_worker,
            inflight: Mutex::new(HashMap::new()),
            ending: Mutex::new(None),
            kill: Notify::new(),
            draining: AtomicBool::new(false),
            gate: Mutex::new(Gate::default()),
            exited: watch::Sender::new(false),
            shutdown_reply: Mutex::new(None),
            heartbeat: Mutex::default(),
            grants: Mutex::default(),
        })
    }

    /// Sends a message; lost if the worker is gone (its supervisor tells).
    /// A host call that belongs to no execution (made at import, in
    /// `init`, or by a background task): answered for this worker's
    /// library version. What it opens (a download, an upload) lasts until
    /// it is finished or the worker ends; what it allocates is freed, if
    /// the library does not, when the worker ends.
    pub(crate) fn host_call_outside_execution(&self, call: u64, request: String, body: ByteBuf) {
        let owner = Owner {
            version: self.version,
            label: Arc::clone(&self.context.label),
            execution: wire::NO_EXECUTION,
        };
        let to_worker = self.to_worker.clone();
        let services = Arc::clone(&self.context.services);
        self.context.runtime.spawn(async move {
            let outcome = services
                .call(&owner, &request, Bytes::from(body.into_vec()), || false)
                .await;
            let _ = to_worker.send(ToWorker::HostReply {
                call,
                outcome: outcome.map(|(json, bytes)| (json, ByteBuf::from(Vec::from(bytes)))),
            });
        });
    }

    pub(crate) fn send(&self, message: ToWorker) {
        let _ = self.to_worker.send(message);
    }

    /// Sends a ping unless one is still unanswered; returns how long the
    /// worker has left it unanswered (zero when it answered the last).
    pub(crate) fn ping(&self) -> Duration {
        let mut heartbeat = lock(&self.heartbeat);
        if let Some((_, sent)) = heartbeat.awaiting {
            return sent.elapsed();
        }
        let seq = heartbeat.next_seq;
        heartbeat.next_seq += 1;
        heartbeat.awaiting = Some((seq, Instant::now()));
        drop(heartbeat);
        self.send(ToWorker::Ping { seq });
        Duration::ZERO
    }

    /// How long its last ping has waited for an answer.
    pub(crate) fn silent_for(&self) -> Duration {
        lock(&self.heartbeat)
            .awaiting
            .map_or(Duration::ZERO, |(_, sent)| sent.elapsed())
    }

    /// Whether the server is ending it (or asked for its shutdown hook).
    pub(crate) fn is_ending(&self) -> bool {
        lock(&self.ending).is_some()
    }

    /// Hands an execution to the worker (statuses and the result come back
    /// through its supervisor).
    /// Gives the job back when the worker was shut meanwhile (it was
    /// drained between the pick and now): the caller picks again.
    #[must_use]
    pub(crate) fn run(self: &Arc<Self>, job: Job) -> Option<Job> {
        {
            let mut gate = lock(&self.gate);
            if gate.closed {
                return Some(job);
            }
            gate.handing_over += 1;
        }
        let Job {
            node_index,
            request,
            execution,
        } = job;
        let began = execution.begin();
        let handed = began.is_some();
        if let Some(running) = began {
            lock(&self.inflight).insert(
                execution.id(),
                InFlight {
                    execution: Arc::clone(&execution),
                    running: Some(running),
                    ahead: None,
                },
            );
        }
        lock(&self.gate).handing_over -= 1;
        if !handed {
            // Aborted before it began: a drain may be waiting for this one.
            let _ = self.finish_if_idle();
            return None;
        }
        let id = execution.id();
        if self.has_exited() {
            // It died meanwhile and its supervisor may have missed this one.
            self.fail_inflight(
                Failure::Crashed,
                format!("node crashed: the worker for {} had just exited", self.context.label),
            );
            return None;
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
            uid: Arc::clone(execution.uid()),
            instance_id: request.instance_id,
            inputs: request.inputs,
            parameters: request.parameters,
            graph_node: request.graph_node,
            ahead: false,
        }));
        None
    }

    /// Hands an execution ahead (see [`crate::execution::admission`]); gives
    /// it back when this worker cannot take it (draining, shut, or gone).
    #[must_use]
    pub(crate) fn run_ahead(self: &Arc<Self>, pending: Pending) -> Option<Pending> {
        let job = pending.job();
        let execution = Arc::clone(&job.execution);
        let id = execution.id();
        let frame = ExecuteFrame {
            id,
            node_index: job.node_index,
            uid: Arc::clone(execution.uid()),
            instance_id: job.request.instance_id.clone(),
            inputs: job.request.inputs.clone(),
            parameters: job.request.parameters.clone(),
            graph_node: job.request.graph_node.clone(),
            ahead: true,
        };
        {
            // Under the gate: a drain either sees it in flight or refuses
            // it, and a `Start` granted for it goes after it.
            let gate = lock(&self.gate);
            if gate.closed || self.is_draining() || self.is_ending() {
                return Some(pending);
            }
            lock(&self.inflight).insert(
                id,
                InFlight {
                    execution: Arc::clone(&execution),
                    running: None,
                    ahead: Some(pending),
                },
            );
            let _ = self.to_worker.send(ToWorker::Execute(frame));
        }
        if self.has_exited() {
            // Its supervisor may have missed this one.
            return lock(&self.inflight).remove(&id).and_then(|f| f.ahead);
        }
        let worker = Arc::downgrade(self);
        execution.on_abort(Box::new(move || {
            if let Some(worker) = worker.upgrade() {
                worker.abort(id);
            }
        }));
        None
    }

    /// A slot freed for node `uid`, whose executions wait ahead here: asks
    /// the worker to start one in it. False when none waits here.
    pub(crate) fn grant(&self, uid: &Arc<str>) -> bool {
        let node = {
            let gate = lock(&self.gate);
            if gate.closed || self.is_draining() || self.is_ending() || self.has_exited() {
                return false;
            }
            let inflight = lock(&self.inflight);
            let Some(pending) = inflight
                .values()
                .filter_map(|f| f.ahead.as_ref())
                .find(|pending| pending.job().execution.uid() == uid)
            else {
                return false;
            };
            let node = pending.job().node_index;
            // Under the in-flight lock: see `fail_inflight`.
            lock(&self.grants).push(Grant {
                node,
                uid: Arc::clone(uid),
                admitter: pending.job().execution.admitter(),
            });
            node
        };
        self.send(ToWorker::Start { node });
        true
    }

    /// Takes back a slot granted for `node`.
    fn take_grant(&self, node: u32) -> Result<Grant, String> {
        let mut grants = lock(&self.grants);
        let at = grants
            .iter()
            .position(|grant| grant.node == node)
            .ok_or_else(|| format!("used a slot for node {node}, which it was not granted"))?;
        Ok(grants.swap_remove(at))
    }

    /// The worker started `id`, handed ahead, in the slot of one that
    /// returned, or in a slot granted to it (`granted`): it holds that
    /// slot from now.
    fn begin_ahead(&self, id: u64, granted: bool) -> Result<(), String> {
        let pending = lock(&self.inflight)
            .get_mut(&id)
            .and_then(|f| f.ahead.take())
            .ok_or_else(|| format!("started execution {id}, which it was not handed ahead"))?;
        let execution = Arc::clone(&pending.job().execution);
        if granted {
            self.take_grant(pending.job().node_index)?;
            execution.promote_granted(pending.bytes());
        } else {
            execution.promote(pending.bytes());
        }
        drop(pending);
        // None: it was aborted meanwhile (its final status went out, its
        // slot is free again); the worker's result is dropped.
        let Some(running) = execution.begin() else {
            return Ok(());
        };
        let unclaimed = match lock(&self.inflight).get_mut(&id) {
            Some(f) => {
                f.running = Some(running);
                None
            }
            None => Some(running),
        };
        if let Some(running) = unclaimed {
            // The worker ended meanwhile, failing what it held.
            execution.end(
                running,
                Err((
                    Failure::Crashed,
                    format!("node crashed: the worker for {} exited", self.context.label),
                )),
            );
        }
        Ok(())
    }

    /// The worker gave back executions handed ahead, unstarted: each waits
    /// for a slot again (an aborted one just ends).
    fn take_back(self: &Arc<Self>, ids: &[u64]) -> Result<(), String> {
        for &id in ids {
            let pending = {
                let mut inflight = lock(&self.inflight);
                match inflight.get(&id) {
                    Some(f) if f.ahead.is_some() => inflight.remove(&id).and_then(|f| f.ahead),
                    _ => None,
                }
            }
            .ok_or_else(|| format!("gave back execution {id}, which it was not handed ahead"))?;
            pending.give_back();
        }
        let _ = self.finish_if_idle();
        Ok(())
    }

    /// Draining and idle (nothing running, nothing being handed over):
    /// closes the gate and asks the worker to shut down; whether it did.
    fn finish_if_idle(self: &Arc<Self>) -> bool {
        if !self.is_draining() {
            return false;
        }
        {
            let mut gate = lock(&self.gate);
            if gate.closed || gate.handing_over > 0 || self.live() > 0 {
                return false;
            }
            gate.closed = true;
        }
        self.finish();
        true
    }

    /// Tells the node to stop; if it has not returned after the grace
    /// period, its slot is freed and the worker replaced.
    fn abort(self: &Arc<Self>, id: u64) {
        let _ = self.to_worker.send(ToWorker::Abort { id });
        let Some(owner) = self.owner.upgrade() else { return };
        let worker = Arc::downgrade(self);
        let grace = self.context.settings.abort_grace;
        self.context.runtime.spawn(async move {
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
                    library = %worker.context.label,
                    pid = worker.pid,
                    grace_ms = grace.as_millis() as u64,
                    "a node ignored its abort; replacing its worker"
                );
                // Its final status went out with the abort; this frees its slot.
                execution.end(running, Err((Failure::Aborted, ABORTED.to_owned())));
                owner.worker_hung(&worker);
            }
        });
    }

    /// Executions still running a node, or handed ahead (not counting
    /// hung ones).
    pub(crate) fn live(&self) -> usize {
        lock(&self.inflight).values().filter(|f| f.owed()).count()
    }

    /// Executions running a node now (not those handed ahead).
    pub(crate) fn in_flight(&self) -> usize {
        lock(&self.inflight).values().filter(|f| f.running.is_some()).count()
    }

    pub(crate) fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    pub(crate) fn has_exited(&self) -> bool {
        *self.exited.borrow()
    }

    /// Waits (at most `limit`) until the process is gone.
    pub(crate) async fn exit_within(&self, limit: Duration) {
        let mut exited = self.exited.subscribe();
        let _ = tokio::time::timeout(limit, exited.wait_for(|gone| *gone)).await;
    }

    /// Its supervisor saw the process end: nothing more can come from it, so
    /// a shutdown hook still awaited never reports. Returns why it ended.
    pub(crate) fn exited(&self, status: std::io::Result<std::process::ExitStatus>) -> WorkerExit {
        self.exited.send_replace(true);
        drop(lock(&self.shutdown_reply).take());
        let ending = lock(&self.ending).take();
        ending.unwrap_or_else(|| WorkerExit::from_status(status, self.is_draining()))
    }

    /// Stops taking executions; ends once the live ones are done, or after
    /// the drain period.
    pub(crate) fn drain(self: &Arc<Self>) {
        if self.draining.swap(true, Ordering::SeqCst) || self.finish_if_idle() {
            return;
        }
        if self.context.kind.hands_ahead() {
            // What waits in it for a slot may run on another worker.
            self.send(ToWorker::ReturnAhead);
        }
        let worker = Arc::downgrade(self);
        let limit = self.context.settings.drain;
        self.context.runtime.spawn(async move {
            tokio::time::sleep(limit).await;
            if let Some(worker) = worker.upgrade()
                && !worker.has_exited()
            {
                worker.end(Some(WorkerExit::DrainTimedOut {
                    drain_ms: limit.as_millis(),
                }));
            }
        });
    }

    /// Asks the worker to run its shutdown hook, report it to `reply`, and
    /// exit (an exit the log and its executions are told is no crash).
    /// False when it is gone.
    pub(crate) fn request_shutdown(&self, reply: Option<std::sync::mpsc::Sender<HookOutcome>>) -> bool {
        if reply.is_some() {
            *lock(&self.shutdown_reply) = reply;
        }
        lock(&self.ending).get_or_insert(WorkerExit::ShutDown);
        self.to_worker.send(ToWorker::Shutdown).is_ok()
    }

    /// Asks the worker to run its shutdown hook and exit; kills it if it
    /// does not in time.
    fn finish(self: &Arc<Self>) {
        self.request_shutdown(None);
        let worker = Arc::downgrade(self);
        self.context.runtime.spawn(async move {
            tokio::time::sleep(SHUTDOWN_HOOK_TIMEOUT).await;
            if let Some(worker) = worker.upgrade()
                && !worker.has_exited()
            {
                worker.end(Some(WorkerExit::LingeredAfterHook));
            }
        });
    }

    /// Kills the process; `why` is what its executions and the log are
    /// told (none: it was stopped, unless a shutdown was asked for).
    pub(crate) fn end(&self, why: Option<WorkerExit>) {
        let mut ending = lock(&self.ending);
        // A reason given now wins over "exited after its shutdown hook".
        match why {
            Some(why) => *ending = Some(why),
            None => {
                ending.get_or_insert(WorkerExit::Stopped);
            }
        }
        drop(ending);
        self.kill.notify_one();
    }

    /// Ends every execution still waiting for this worker with `message`;
    /// those handed ahead never began, so they wait for a slot again, and
    /// the slots granted to it are freed.
    pub(crate) fn fail_inflight(&self, failure: Failure, message: String) {
        let inflight: Vec<InFlight> = lock(&self.inflight).drain().map(|(_, f)| f).collect();
        // After the drain: `grant` adds under the in-flight lock, and only
        // for an execution still in it.
        let grants = std::mem::take(&mut *lock(&self.grants));
        for grant in grants {
            grant.admitter.ungrant(&grant.uid);
        }
        for InFlight {
            execution,
            running,
            ahead,
        } in inflight
        {
            if let Some(pending) = ahead {
                pending.give_back();
            } else if let Some(running) = running {
                execution.end(running, Err((failure, message.clone())));
            }
        }
    }

    /// The execution `id` if it still runs a node; `Err` if the worker was
    /// never given it (a protocol violation).
    fn running(&self, id: u64, what: &str) -> Result<Option<Arc<Execution>>, String> {
        match lock(&self.inflight).get(&id) {
            Some(f) => Ok(f.running.as_ref().map(|_| Arc::clone(&f.execution))),
            None => Err(format!("{what} for execution {id}, which it was not given")),
        }
    }

    /// One frame from the worker; `Err` is a protocol violation.
    pub(crate) fn on_frame(self: &Arc<Self>, frame: &[u8]) -> Result<(), String> {
        let message = self
            .context
            .kind
            .decode(frame)
            .map_err(|e| format!("undecodable frame: {e}"))?;
        match message {
            FromWorker::Status { id, json } => {
                if let Some(execution) = self.running(id, "a status")? {
                    execution.node_status(&json);
                }
            }
            FromWorker::Done {
                id,
                outcome,
                message,
                next,
            } => {
                // Before this one's slot is released, so none other takes it.
                if let Some(next) = next {
                    self.begin_ahead(next, false)?;
                }
                let InFlight { execution, running, .. } = lock(&self.inflight)
                    .remove(&id)
                    .ok_or_else(|| format!("a result for execution {id}, which it was not given"))?;
                if self.host_calls.load(Ordering::Relaxed) && self.owner.strong_count() > 0 {
                    self.context.services.end_execution(self.version, id);
                }
                if let Some(running) = running {
                    let any_json = self.context.kind.outputs_any_json();
                    execution.end_with(
                        running,
                        outcome.map_err(|message| (Failure::Node, message)),
                        any_json,
                        message,
                    );
                }
                let _ = self.finish_if_idle();
            }
            FromWorker::HostCall {
                id,
                call,
                request,
                body,
            } => {
                if id == wire::NO_EXECUTION {
                    self.host_call_outside_execution(call, request, body);
                    return Ok(());
                }
                let execution = self.running(id, "a host call")?;
                let (Some(execution), true) = (execution, self.owner.strong_count() > 0) else {
                    // Its execution already ended: nobody waits for the answer.
                    let _ = self.to_worker.send(ToWorker::HostReply {
                        call,
                        outcome: Err(nano_plugin_abi::host_wire::Failure::new(
                            nano_plugin_abi::host_wire::ErrorKind::Aborted,
                            "Execution aborted",
                        )
                        .to_json()),
                    });
                    return Ok(());
                };
                self.host_calls.store(true, Ordering::Relaxed);
                let owner = Owner {
                    version: self.version,
                    label: Arc::clone(&self.context.label),
                    execution: id,
                };
                let to_worker = self.to_worker.clone();
                let services = Arc::clone(&self.context.services);
                self.context.runtime.spawn(async move {
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
            FromWorker::Returned { ids } => self.take_back(&ids)?,
            FromWorker::Began { id } => self.begin_ahead(id, true)?,
            FromWorker::Released { node } => {
                let grant = self.take_grant(node)?;
                grant.admitter.ungrant(&grant.uid);
            }
            FromWorker::Pong { seq } => {
                let mut heartbeat = lock(&self.heartbeat);
                match heartbeat.awaiting {
                    Some((awaited, _)) if awaited == seq => heartbeat.awaiting = None,
                    _ => return Err(format!("a pong for ping {seq}, which is not awaited")),
                }
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

/// Sends frames to a worker, every ready one with one flush.
fn spawn_writer(
    mut sink: FramedWrite<OwnedWriteHalf, tokio_util::codec::LengthDelimitedCodec>,
    kind: Arc<dyn WorkerKind>,
) -> mpsc::UnboundedSender<ToWorker> {
    let (to_worker, mut outgoing) = mpsc::unbounded_channel::<ToWorker>();
    tokio::spawn(async move {
        while let Some(message) = outgoing.recv().await {
            let mut fed = Ok(());
            let mut next = Some(message);
            while let Some(message) = next.take() {
                if let Some(frame) = kind.encode(&message) {
                    fed = sink.feed(frame).await;
                    if fed.is_err() {
                        break;
                    }
                }
                next = outgoing.try_recv().ok();
            }
            if fed.is_err() || SinkExt::<Bytes>::flush(&mut sink).await.is_err() {
                break;
            }
            // The library's bytes went through once; do not keep their buffer.
            if sink.write_buffer().capacity() > wire::LARGE_BUFFER {
                *sink.write_buffer_mut() = bytes::BytesMut::new();
            }
        }
    });
    to_worker
}
