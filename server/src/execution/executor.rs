//! The executor: admits executions within the limits (or refuses them with
//! `busy`), keeps each until it concludes, aborts them on request, and
//! hands a waiting one to its runtime when a slot frees. One per server.

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use super::{
    ABORTED, AdmissionLimits, Execution, ExecutionRequest, Failure, Job, Origin, Status, StatusSink, Target,
    admission::{Active, Admission, Book, Handouts},
    run::Admitter,
    run::Pending,
};
use crate::{
    failures::{FailureLog, FailureRecord},
    lock, metrics,
};

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
    resolver: Resolver,
    /// The last failures, for the operator page.
    failures: FailureLog,
}

impl Admitter for Shared {
    fn time_limit(&self) -> Option<(Duration, &tokio::runtime::Handle)> {
        Some((self.timeout?, self.runtime.as_ref()?))
    }

    fn resolve(&self, uid: &str) -> Option<Target> {
        (self.resolver)(uid)
    }

    fn record_failure(&self, uid: &str, instance_id: &str, failure: Failure, message: &str) {
        self.failures.record(uid, instance_id, failure.label(), message);
    }

    fn release(&self, id: u64, uid: &Arc<str>, ran: Duration) {
        let mut book = lock(&self.book);
        book.active.remove(&id);
        let handouts = book.release(&self.limits, uid, ran);
        if !handouts.now.is_empty() {
            metrics::hot().queued.set(book.waiting() as f64);
        }
        drop(book);
        self.hand_out(handouts);
    }

    fn promote(&self, uid: &Arc<str>, bytes: usize) {
        let mut book = lock(&self.book);
        book.promote(uid, bytes);
        metrics::hot().queued.set(book.waiting() as f64);
    }

    fn requeue(&self, pending: Pending) {
        let now = lock(&self.book).requeue(&self.limits, pending);
        self.hand_out(Handouts {
            now,
            ..Handouts::default()
        });
    }

    fn promote_granted(&self, uid: &Arc<str>, bytes: usize) {
        let mut book = lock(&self.book);
        book.promote_granted(uid, bytes);
        metrics::hot().queued.set(book.waiting() as f64);
    }

    fn ungrant(&self, uid: &Arc<str>) {
        let handouts = lock(&self.book).ungrant(&self.limits, uid, true);
        self.hand_out(handouts);
    }
}

impl Shared {
    /// Dispatches what the book handed out (outside its lock: a runtime
    /// may call back into it).
    fn hand_out(&self, handouts: Handouts) {
        for pending in handouts.now {
            pending.dispatch();
        }
        for pending in handouts.ahead {
            if let Some(pending) = pending.dispatch_ahead() {
                pending.requeue();
            }
        }
        for (runtime, uid) in handouts.grants {
            if !runtime.grant(&uid) {
                // None waits there after all: the slot is free (granting it
                // again would ask the same runtime again).
                let handouts = lock(&self.book).ungrant(&self.limits, &uid, false);
                self.hand_out(handouts);
            }
        }
    }
}

impl Executor {
    /// An executor within `limits`, each execution running for at most
    /// `timeout` (if any); `resolver` finds the version of a node served
    /// now, for executions whose version was retired before they ran (see
    /// [`Job::redirect`](super::Job::redirect)).
    pub fn new(limits: AdmissionLimits, timeout: Option<Duration>, resolver: Resolver) -> Self {
        Self {
            shared: Arc::new(Shared {
                limits: AdmissionLimits {
                    max_concurrent: limits.max_concurrent.max(1),
                    ..limits
                },
                timeout,
                runtime: tokio::runtime::Handle::try_current().ok(),
                book: Mutex::new(Book::default()),
                resolver,
                failures: FailureLog::default(),
            }),
            next_id: AtomicU64::new(0),
        }
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
        let admitter: Arc<dyn Admitter> = Arc::clone(shared) as _;
        let execution = Arc::new(Execution::new(id, target, &request, &origin, sink, admitter));
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
                pending.dispatch();
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
            .filter(|active| !active.execution.is_finished())
            .filter(|active| active.execution.abort())
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
            book.active.remove(&pending.job.execution.id());
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
            .filter(|active| active.execution.is_stuck())
            .count()
    }

    /// Whether every slot is held by a node whose execution already ended
    /// (aborted or timed out) and that has not returned: nothing can run.
    pub fn is_wedged(&self) -> bool {
        let book = lock(&self.shared.book);
        let stuck = book
            .active
            .values()
            .filter(|active| active.execution.is_stuck())
            .count();
        book.running() >= self.shared.limits.max_concurrent && stuck >= book.running()
    }

    /// The last failed executions, newest first.
    pub fn recent_failures(&self) -> Vec<FailureRecord> {
        self.shared.failures.recent()
    }

    /// Executions admitted whose final status has not been sent yet.
    pub fn active_count(&self) -> usize {
        lock(&self.shared.book)
            .active
            .values()
            .filter(|active| !active.execution.is_finished())
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

#[cfg(test)]
#[path = "executor_tests.rs"]
mod tests;
