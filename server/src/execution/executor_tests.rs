//! The executor as its callers see it: the order in which waiting
//! executions start, exactly one final status per execution whatever ends
//! it, and executions that waited across a swap. Runtimes are stand-ins
//! that keep the jobs handed to them, so each test decides when a node
//! starts and how it ends.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex, OnceLock,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use super::*;
use crate::{
    execution::run::Admitter,
    execution::{HookOutcome, LibraryRuntime},
    lock,
};

/// The statuses an execution sent, as `kind`, or `error:<label>` for errors.
#[derive(Default)]
struct Heard(Mutex<Vec<Status>>);

impl StatusSink for Heard {
    fn send(&self, status: Status) {
        lock(&self.0).push(status);
    }
}

impl Heard {
    fn kinds(&self) -> Vec<String> {
        lock(&self.0)
            .iter()
            .map(|status| match status {
                Status::Error(failure, _) => format!("error:{}", failure.label()),
                status => status.kind().to_owned(),
            })
            .collect()
    }

    fn finals(&self) -> usize {
        lock(&self.0).iter().filter(|status| status.is_final()).count()
    }
}

/// A slot granted for a node uid, and what granted it.
type Granted = (Arc<str>, Arc<dyn Admitter>);

/// A library version that keeps the jobs handed to it until the test takes
/// them; once retired it redirects them, as the real runtimes do.
struct Version {
    jobs: Mutex<HashMap<String, Job>>,
    /// The instance ids handed to any version of the test, in order.
    dispatched: Arc<Mutex<Vec<String>>>,
    retired: AtomicBool,
    /// Whether it takes executions ahead, as a worker process does.
    takes_ahead: bool,
    /// The executions handed ahead, by instance id.
    ahead: Mutex<HashMap<String, Pending>>,
    /// Slots granted to it, for these node uids, and by what.
    grants: Mutex<Vec<Granted>>,
}

impl LibraryRuntime for Version {
    fn execute(&self, job: Job) {
        if self.retired.load(Ordering::SeqCst) {
            job.redirect(self);
            return;
        }
        let instance = job.request.instance_id.clone();
        lock(&self.dispatched).push(instance.clone());
        lock(&self.jobs).insert(instance, job);
    }

    fn shutdown_hook(&self) -> HookOutcome {
        None
    }

    fn retire(&self) -> bool {
        self.retired.store(true, Ordering::SeqCst);
        false
    }

    fn hands_ahead(&self) -> bool {
        self.takes_ahead
    }

    fn execute_ahead(&self, pending: Pending) -> Option<Pending> {
        let instance = pending.job().request.instance_id.clone();
        lock(&self.ahead).insert(instance, pending);
        None
    }

    fn grant(&self, uid: &Arc<str>) -> bool {
        let admitter = lock(&self.ahead)
            .values()
            .find(|pending| pending.job().execution.uid() == uid)
            .map(|pending| pending.job().execution.admitter());
        let Some(admitter) = admitter else {
            return false;
        };
        lock(&self.grants).push((Arc::clone(uid), admitter));
        true
    }
}

impl Version {
    fn take(&self, instance: &str) -> Job {
        lock(&self.jobs)
            .remove(instance)
            .unwrap_or_else(|| panic!("`{instance}` was not handed to this version"))
    }

    fn holds(&self, instance: &str) -> bool {
        lock(&self.jobs).contains_key(instance)
    }

    /// Runs `instance`'s node through to `outcome`.
    fn run(&self, instance: &str, outcome: Result<&str, Failure>) {
        let job = self.take(instance);
        let running = job.execution.begin().expect("the execution was not aborted");
        job.execution.end(
            running,
            outcome
                .map(str::to_owned)
                .map_err(|failure| (failure, "it failed".to_owned())),
        );
    }

    fn complete(&self, instance: &str) {
        self.run(instance, Ok(r#"{"out":[1]}"#));
    }

    /// The instance ids waiting ahead here, sorted.
    fn ahead(&self) -> Vec<String> {
        let mut ahead: Vec<String> = lock(&self.ahead).keys().cloned().collect();
        ahead.sort();
        ahead
    }

    fn take_ahead(&self, instance: &str) -> Pending {
        lock(&self.ahead)
            .remove(instance)
            .unwrap_or_else(|| panic!("`{instance}` was not handed ahead to this version"))
    }

    /// As a worker does: `returned` returns, and `next`, handed ahead,
    /// starts in its slot.
    fn transfer(&self, returned: &str, next: &str) {
        let pending = self.take_ahead(next);
        pending.job().execution.promote(pending.bytes());
        self.complete(returned);
        lock(&self.jobs).insert(next.to_owned(), pending_job(pending));
    }

    /// As a worker does: `next`, handed ahead, starts in a slot granted.
    fn start_granted(&self, next: &str) {
        let pending = self.take_ahead(next);
        let uid = Arc::clone(pending.job().execution.uid());
        let mut grants = lock(&self.grants);
        let at = grants
            .iter()
            .position(|(granted, _)| *granted == uid)
            .expect("a slot was granted");
        grants.remove(at);
        drop(grants);
        pending.job().execution.promote_granted(pending.bytes());
        lock(&self.jobs).insert(next.to_owned(), pending_job(pending));
    }

    /// As a worker does when nothing waits ahead for a granted slot.
    fn release_grant(&self) {
        let (uid, admitter) = lock(&self.grants).pop().expect("a slot was granted");
        admitter.ungrant(&uid);
    }

    /// As the process backend does with what a worker gives back.
    fn give_back(&self, instance: &str) {
        self.take_ahead(instance).give_back();
    }
}

/// The job of an execution handed ahead.
fn pending_job(pending: Pending) -> Job {
    let job = pending.job();
    Job {
        node_index: job.node_index,
        request: job.request.clone(),
        execution: Arc::clone(&job.execution),
    }
}

/// An executor, the nodes it serves now, and what was handed out.
struct Server {
    executor: Executor,
    served: Arc<Mutex<HashMap<String, Target>>>,
    dispatched: Arc<Mutex<Vec<String>>>,
}

impl Server {
    fn new(max_concurrent: usize, max_queued: usize) -> Self {
        Self::with(
            AdmissionLimits {
                max_concurrent,
                max_queued,
                max_queued_bytes: 1 << 20,
                per_node: HashMap::new(),
            },
            None,
        )
    }

    fn with(limits: AdmissionLimits, timeout: Option<Duration>) -> Self {
        let served: Arc<Mutex<HashMap<String, Target>>> = Arc::default();
        let resolver = {
            let served = Arc::clone(&served);
            Box::new(move |uid: &str| lock(&served).get(uid).cloned())
        };
        Self {
            executor: Executor::new(limits, timeout, resolver),
            served,
            dispatched: Arc::default(),
        }
    }

    /// Serves a new version of `uid` (replacing the one served) with the
    /// node at `node_index`.
    fn serve(&self, uid: &str, node_index: u32) -> Arc<Version> {
        self.serve_version(uid, node_index, false)
    }

    /// Serves `uid` from a version that takes executions ahead, its node
    /// measured short by one run (`warm-up`).
    fn serve_short_ahead(&self, uid: &str) -> Arc<Version> {
        let version = self.serve_version(uid, 0, true);
        self.start(uid, "warm-up");
        version.complete("warm-up");
        version
    }

    fn serve_version(&self, uid: &str, node_index: u32, takes_ahead: bool) -> Arc<Version> {
        let version = Arc::new(Version {
            jobs: Mutex::default(),
            dispatched: Arc::clone(&self.dispatched),
            retired: AtomicBool::new(false),
            takes_ahead,
            ahead: Mutex::default(),
            grants: Mutex::default(),
        });
        let target = Target {
            uid: uid.into(),
            runtime: Arc::clone(&version) as Arc<dyn LibraryRuntime>,
            node_index,
            metrics: Arc::new(OnceLock::new()),
        };
        lock(&self.served).insert(uid.to_owned(), target);
        version
    }

    /// Starts `instance` of the version of `uid` served now.
    fn start(&self, uid: &str, instance: &str) -> Arc<Heard> {
        let target = lock(&self.served).get(uid).cloned().expect("the node is served");
        let heard = Arc::new(Heard::default());
        let request = ExecutionRequest {
            instance_id: instance.to_owned(),
            node_uid: uid.to_owned(),
            inputs: "{}".to_owned(),
            parameters: "[]".to_owned(),
            graph_node: "null".to_owned(),
        };
        let sink = Arc::clone(&heard) as Arc<dyn StatusSink>;
        self.executor.start(1, &target, request, Origin::default(), sink);
        heard
    }

    fn dispatched(&self) -> Vec<String> {
        lock(&self.dispatched).clone()
    }
}

// Admission order.

#[test]
fn executions_waiting_for_a_node_start_in_the_order_they_arrived() {
    let server = Server::new(1, 10);
    let a = server.serve("a", 0);
    for instance in ["a1", "a2", "a3", "a4"] {
        server.start("a", instance);
    }
    assert_eq!(server.dispatched(), ["a1"], "one slot: the others wait");
    for instance in ["a1", "a2", "a3"] {
        a.complete(instance);
    }
    assert_eq!(server.dispatched(), ["a1", "a2", "a3", "a4"]);
}

#[test]
fn free_slots_go_to_the_waiting_nodes_in_turn() {
    let server = Server::new(1, 10);
    let a = server.serve("a", 0);
    let b = server.serve("b", 0);
    for (uid, instance) in [("a", "a1"), ("a", "a2"), ("a", "a3"), ("b", "b1"), ("b", "b2")] {
        server.start(uid, instance);
    }
    a.complete("a1");
    b.complete("b1");
    a.complete("a2");
    b.complete("b2");
    assert_eq!(
        server.dispatched(),
        ["a1", "b1", "a2", "b2", "a3"],
        "a long queue of one node does not hold back another's"
    );
}

#[test]
fn a_node_holding_every_slot_does_not_hold_up_another_node() {
    // a's executions hold both slots (stalled, say); b still gets one, its
    // fair slot, and only one: its next waits like a's.
    let server = Server::new(2, 10);
    let a = server.serve("a", 0);
    let b = server.serve("b", 0);
    for instance in ["a1", "a2", "a3"] {
        server.start("a", instance);
    }
    server.start("b", "b1");
    server.start("b", "b2");
    assert_eq!(server.dispatched(), ["a1", "a2", "b1"]);
    // b's slot frees: b's next takes it, not a's (a holds the other two).
    b.complete("b1");
    assert_eq!(server.dispatched(), ["a1", "a2", "b1", "b2"]);
    // Work-conserving: alone, a uses every slot again once b is done.
    b.complete("b2");
    a.complete("a1");
    assert_eq!(server.dispatched(), ["a1", "a2", "b1", "b2", "a3"]);
}

#[test]
fn a_node_at_its_own_limit_does_not_hold_back_the_others() {
    let limits = AdmissionLimits {
        max_concurrent: 2,
        max_queued: 10,
        max_queued_bytes: 1 << 20,
        per_node: [("a".to_owned(), 1)].into_iter().collect(),
    };
    let server = Server::with(limits, None);
    let a = server.serve("a", 0);
    let b = server.serve("b", 0);
    server.start("a", "a1");
    server.start("a", "a2");
    server.start("b", "b1");
    assert_eq!(server.dispatched(), ["a1", "b1"]);
    b.complete("b1");
    assert_eq!(server.dispatched(), ["a1", "b1"], "a2 waits for a's own slot");
    a.complete("a1");
    assert_eq!(server.dispatched(), ["a1", "b1", "a2"]);
}

#[test]
fn beyond_the_running_and_waiting_limits_an_execution_is_refused_as_busy() {
    let server = Server::new(1, 1);
    let a = server.serve("a", 0);
    server.start("a", "a1");
    let waiting = server.start("a", "a2");
    let refused = server.start("a", "a3");
    assert_eq!(refused.kinds(), ["error:busy"]);
    assert_eq!(server.executor.active_count(), 2, "the refused one is not kept");
    a.complete("a1");
    a.complete("a2");
    assert_eq!(waiting.kinds(), ["running", "complete"]);
    assert_eq!(server.dispatched(), ["a1", "a2"]);
}

#[test]
fn beyond_the_waiting_bytes_an_execution_is_refused_as_busy() {
    let limits = AdmissionLimits {
        max_concurrent: 1,
        max_queued: 10,
        // One waiting request ({}, [] and null) fits; two do not.
        max_queued_bytes: 10,
        per_node: HashMap::new(),
    };
    let server = Server::with(limits, None);
    server.serve("a", 0);
    server.start("a", "a1");
    let waiting = server.start("a", "a2");
    let refused = server.start("a", "a3");
    assert!(waiting.kinds().is_empty());
    assert_eq!(refused.kinds(), ["error:busy"]);
}

// Exactly one final status.

#[test]
fn a_node_that_completes_sends_running_then_complete() {
    let server = Server::new(1, 1);
    let a = server.serve("a", 0);
    let heard = server.start("a", "a1");
    a.complete("a1");
    assert_eq!(heard.kinds(), ["running", "complete"]);
    assert_eq!(server.executor.active_count(), 0);
}

#[test]
fn a_node_that_fails_sends_running_then_one_error_kept_for_the_operator() {
    let server = Server::new(1, 1);
    let a = server.serve("a", 0);
    let heard = server.start("a", "a1");
    a.run("a1", Err(Failure::Node));
    assert_eq!(heard.kinds(), ["running", "error:error"]);
    let failures = server.executor.recent_failures();
    assert_eq!(failures.len(), 1);
    assert_eq!((failures[0].node.as_str(), failures[0].outcome), ("a", "error"));
}

#[test]
fn outputs_that_are_not_a_json_object_end_in_an_error() {
    let server = Server::new(1, 1);
    let a = server.serve("a", 0);
    let heard = server.start("a", "a1");
    a.run("a1", Ok("[1]"));
    assert_eq!(heard.kinds(), ["running", "error:error"]);
}

#[test]
fn an_abort_while_the_node_runs_ends_it_once_though_the_node_returns_later() {
    let server = Server::new(1, 1);
    let a = server.serve("a", 0);
    let heard = server.start("a", "a1");
    let next = server.start("a", "a2");
    let job = a.take("a1");
    let running = job.execution.begin().expect("not aborted yet");
    let aborted = server.executor.stop_instance("a1");
    assert_eq!(aborted.len(), 1);
    assert_eq!(
        heard.kinds(),
        ["running"],
        "the final error waits for the acknowledgement"
    );
    drop(aborted);
    assert_eq!(heard.kinds(), ["running", "error:aborted"]);
    assert_eq!(server.executor.stuck_count(), 1, "its node has not returned");
    assert!(server.executor.is_wedged(), "the only slot is held by a stuck node");

    // The node goes on talking, then returns: none of it reaches the caller.
    job.execution.node_status(r#"{"type":"running","progress":50}"#);
    job.execution.end(running, Ok(r#"{"out":[1]}"#.to_owned()));
    assert_eq!(heard.kinds(), ["running", "error:aborted"]);
    assert_eq!(server.executor.stuck_count(), 0);
    assert_eq!(
        server.dispatched(),
        ["a1", "a2"],
        "its slot freed when the node returned"
    );
    a.complete("a2");
    assert_eq!(next.kinds(), ["running", "complete"]);
}

#[test]
fn an_execution_aborted_while_it_waits_ends_once_and_never_runs() {
    let server = Server::new(1, 1);
    let a = server.serve("a", 0);
    server.start("a", "a1");
    let waiting = server.start("a", "a2");
    drop(server.executor.stop_instance("a2"));
    assert_eq!(waiting.kinds(), ["error:aborted"]);
    a.complete("a1");
    assert_eq!(server.dispatched(), ["a1"]);
    assert_eq!(waiting.finals(), 1);
    assert_eq!(server.executor.active_count(), 0);
}

#[test]
fn an_execution_aborted_before_its_node_began_ends_once_and_frees_its_slot() {
    let server = Server::new(1, 1);
    let a = server.serve("a", 0);
    let heard = server.start("a", "a1");
    server.start("a", "a2");
    drop(server.executor.abort_owner(1));
    let job = a.take("a1");
    assert!(job.execution.begin().is_none(), "the runtime must not run it");
    assert_eq!(heard.kinds(), ["error:aborted"]);
    assert_eq!(server.dispatched(), ["a1"], "a2 was aborted too (same owner)");
    assert_eq!(server.executor.active_count(), 0);
}

#[test]
fn a_runtime_that_cannot_run_an_execution_ends_it_once_and_frees_its_slot() {
    let server = Server::new(1, 1);
    let a = server.serve("a", 0);
    let heard = server.start("a", "a1");
    server.start("a", "a2");
    a.take("a1").execution.reject(Failure::Internal, "no worker".to_owned());
    assert_eq!(heard.kinds(), ["error:internal"]);
    assert_eq!(server.dispatched(), ["a1", "a2"]);
}

#[test]
fn a_shutdown_ends_every_execution_with_its_message() {
    let server = Server::new(1, 1);
    let a = server.serve("a", 0);
    let running = server.start("a", "a1");
    let waiting = server.start("a", "a2");
    let _node = a.take("a1").execution.begin();
    assert_eq!(server.executor.abort_all("the server is stopping").len(), 2);
    for heard in [&running, &waiting] {
        assert_eq!(heard.finals(), 1);
        assert!(
            matches!(lock(&heard.0).last(), Some(Status::Error(Failure::Aborted, message)) if message == "the server is stopping")
        );
    }
}

#[tokio::test]
async fn a_node_past_the_timeout_ends_with_one_timeout_error() {
    let limits = AdmissionLimits {
        max_concurrent: 1,
        max_queued: 1,
        max_queued_bytes: 1 << 20,
        per_node: HashMap::new(),
    };
    let server = Server::with(limits, Some(Duration::from_millis(20)));
    let a = server.serve("a", 0);
    let heard = server.start("a", "a1");
    let job = a.take("a1");
    let running = job.execution.begin().expect("not aborted");
    for _ in 0..200 {
        if heard.finals() > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(heard.kinds(), ["running", "error:timeout"]);
    job.execution.end(running, Ok(r#"{"out":[1]}"#.to_owned()));
    assert_eq!(
        heard.kinds(),
        ["running", "error:timeout"],
        "the late result is dropped"
    );
}

// Job::redirect.

#[test]
fn an_execution_queued_across_a_swap_runs_on_the_version_served_when_it_leaves_the_queue() {
    let server = Server::new(1, 1);
    let old = server.serve("a", 0);
    server.start("a", "a1");
    let queued = server.start("a", "a2");
    let new = server.serve("a", 3);
    old.retire();
    old.complete("a1");
    assert!(!old.holds("a2"));
    let job = new.take("a2");
    assert_eq!(job.node_index, 3, "the node's index in the new version");
    lock(&new.jobs).insert("a2".to_owned(), job);
    new.complete("a2");
    assert_eq!(queued.kinds(), ["running", "complete"]);
}

#[test]
fn an_execution_queued_while_its_node_is_removed_ends_as_unknown_node() {
    let server = Server::new(1, 1);
    let a = server.serve("a", 0);
    server.start("a", "a1");
    let queued = server.start("a", "a2");
    lock(&server.served).remove("a");
    a.retire();
    a.complete("a1");
    assert_eq!(queued.kinds(), ["error:unknown_node"]);
    assert_eq!(server.executor.active_count(), 0, "its slot is free again");
}

#[test]
fn a_withdrawn_version_still_served_ends_the_execution_instead_of_looping() {
    let server = Server::new(1, 1);
    let a = server.serve("a", 0);
    server.start("a", "a1");
    let queued = server.start("a", "a2");
    a.retire();
    a.complete("a1");
    assert_eq!(queued.kinds(), ["error:unknown_node"]);
}

// Executions handed ahead (a worker process's short nodes).

#[test]
fn beyond_the_free_slots_a_short_nodes_executions_go_ahead_and_start_in_slots_that_free_in_its_worker() {
    let server = Server::new(2, 10);
    let a = server.serve_short_ahead("a");
    let heard: Vec<Arc<Heard>> = ["a1", "a2", "a3", "a4", "a5"]
        .into_iter()
        .map(|instance| server.start("a", instance))
        .collect();
    assert_eq!(server.dispatched(), ["warm-up", "a1", "a2"], "two slots");
    assert!(a.ahead().is_empty(), "they go ahead with what a return dispatches");
    a.complete("a1");
    assert_eq!(server.dispatched(), ["warm-up", "a1", "a2", "a3"], "a3 took a1's slot");
    assert_eq!(a.ahead(), ["a4", "a5"], "the rest wait in the worker, without a slot");
    // a2 returns and a4 starts in its slot, in the worker: no slot frees.
    a.transfer("a2", "a4");
    let late = server.start("a", "a6");
    assert_eq!(server.dispatched().len(), 4, "both slots are still taken (a3, a4)");
    // a3 returns: a6, waiting in the server, takes its slot.
    a.complete("a3");
    assert_eq!(server.dispatched().last().map(String::as_str), Some("a6"));
    // a4 returns with nothing started in its slot and nothing waiting in
    // the server: the slot is granted to the worker holding a5, which
    // starts it there.
    a.complete("a4");
    a.start_granted("a5");
    a.complete("a5");
    a.complete("a6");
    for heard in heard.iter().chain([&late]) {
        assert_eq!(heard.kinds(), ["running", "complete"]);
    }
    assert_eq!(server.executor.active_count(), 0);
    // No slot was lost: two start at once again.
    server.start("a", "a7");
    server.start("a", "a8");
    assert_eq!(&server.dispatched()[5..], ["a7", "a8"]);
}

#[test]
fn an_execution_given_back_waits_for_a_slot_and_an_aborted_one_ends_once() {
    let server = Server::new(1, 10);
    let a = server.serve_short_ahead("a");
    server.start("a", "a1");
    server.start("a", "a2");
    let given_back = server.start("a", "a3");
    let aborted = server.start("a", "a4");
    a.complete("a1");
    assert_eq!(a.ahead(), ["a3", "a4"]);
    drop(server.executor.stop_instance("a4"));
    a.give_back("a4");
    assert_eq!(aborted.kinds(), ["error:aborted"], "one final status");
    a.give_back("a3");
    assert_eq!(
        server.dispatched(),
        ["warm-up", "a1", "a2"],
        "a3 waits: a2 holds the slot"
    );
    a.complete("a2");
    assert_eq!(
        server.dispatched(),
        ["warm-up", "a1", "a2", "a3"],
        "then it takes the slot"
    );
    assert!(a.ahead().is_empty(), "given back, it never goes ahead again");
    a.complete("a3");
    assert_eq!(given_back.kinds(), ["running", "complete"]);
    assert_eq!(server.executor.active_count(), 0);
}

#[test]
fn a_granted_slot_that_comes_back_unused_is_free_again() {
    let server = Server::new(1, 10);
    let a = server.serve_short_ahead("a");
    server.start("a", "a1");
    server.start("a", "a2");
    server.start("a", "a3");
    a.complete("a1");
    assert_eq!(a.ahead(), ["a3"]);
    a.complete("a2");
    // The worker gave a3 back (say it was drained) before the grant came:
    // a3 waits for a slot, which the grant holds until it comes back.
    a.give_back("a3");
    assert_eq!(server.dispatched(), ["warm-up", "a1", "a2"]);
    a.release_grant();
    assert_eq!(
        server.dispatched(),
        ["warm-up", "a1", "a2", "a3"],
        "a3 took the free slot"
    );
    a.complete("a3");
    assert_eq!(server.executor.active_count(), 0);
}

#[test]
fn nothing_goes_ahead_while_another_node_waits_for_a_slot() {
    let server = Server::new(2, 10);
    let a = server.serve_short_ahead("a");
    let b = server.serve("b", 0);
    server.start("a", "a1");
    server.start("a", "a2");
    server.start("b", "b1");
    server.start("b", "b2");
    server.start("a", "a3");
    server.start("a", "a4");
    // (b1 took b's fair slot: a1's return brings the count back to two.)
    a.complete("a1");
    assert!(
        a.ahead().is_empty(),
        "b waits for a slot: a's wait their turn in the server"
    );
    b.complete("b1");
    assert_eq!(
        server.dispatched(),
        ["warm-up", "a1", "a2", "b1", "b2"],
        "b's turn first"
    );
    a.complete("a2");
    assert_eq!(server.dispatched().last().map(String::as_str), Some("a3"));
}

#[test]
fn a_slot_another_node_frees_goes_to_executions_waiting_ahead() {
    let server = Server::new(2, 10);
    let a = server.serve_short_ahead("a");
    let b = server.serve("b", 0);
    server.start("a", "a1");
    server.start("b", "b1");
    server.start("a", "a2");
    let ahead = server.start("a", "a3");
    a.complete("a1");
    assert_eq!(a.ahead(), ["a3"]);
    b.complete("b1");
    a.start_granted("a3");
    a.complete("a3");
    a.complete("a2");
    assert_eq!(ahead.kinds(), ["running", "complete"]);
    assert_eq!(server.executor.active_count(), 0);
}

#[test]
fn a_granted_slot_that_comes_back_goes_to_an_execution_handed_ahead_meanwhile() {
    let server = Server::new(2, 10);
    let a = server.serve_short_ahead("a");
    for instance in ["a1", "a2", "a3", "a4", "a5"] {
        server.start("a", instance);
    }
    a.complete("a1");
    assert_eq!(a.ahead(), ["a4", "a5"]);
    // a3 returns with nothing started in its slot: it is granted (for a5).
    a.complete("a3");
    let late = server.start("a", "a6");
    // Before the grant arrives, a2 returns and a5 starts in its slot; that
    // return hands a6 ahead, but the grant holds the free slot.
    a.transfer("a2", "a5");
    assert_eq!(a.ahead(), ["a4", "a6"]);
    a.transfer("a5", "a4");
    assert_eq!(a.ahead(), ["a6"]);
    // The grant found nothing waiting (a4 and a5 were taken by returns):
    // it comes back, and the slot is granted again, for a6.
    a.release_grant();
    a.start_granted("a6");
    a.complete("a4");
    a.complete("a6");
    assert_eq!(late.kinds(), ["running", "complete"]);
    assert_eq!(server.executor.active_count(), 0);
}
