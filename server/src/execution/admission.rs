//! Admission and dispatch: how much the server holds, and which waiting
//! execution runs next.
//!
//! Every admitted execution is counted until it concludes, whatever the
//! backend does with it, so memory is bounded by `max_concurrent +
//! max_queued` executions (and the bytes of the waiting ones by
//! `max_queued_bytes`), not by how many threads happen to exist. Each node
//! has a lane: its own queue and its own concurrency limit (the global one
//! unless `[nodes.<uid>] max_concurrent` says less). Free slots go to the
//! lanes round-robin, so a node at its limit, or a slow node with a long
//! queue, never holds back the others.
//!
//! Fair slots: a node with nothing running may always start one execution,
//! even when other nodes hold every slot, so the executions of one node,
//! stalled or slow, never hold up another's. It stays work-conserving (a
//! lone node uses every slot). So at most `max_concurrent` plus one per
//! node run at once; what is admitted stays bounded by `max_concurrent +
//! max_queued`, the extra executions being counted among those.
//!
//! Handed ahead: a worker process can only start what it was handed, so a
//! slot that frees there would idle for a round trip to the server (its
//! result in, the next execution out) before it is used again. So a short
//! node's waiting executions may be handed to its worker *ahead*, without a
//! slot, while its lane runs and no other lane waits. They go when one of
//! its executions returns ([`Book::release`]), with what that return
//! dispatches: handing each ahead as it arrives cost a write and a worker
//! wake-up per execution, which made HTTP load (one request per connection)
//! 10% more expensive for nothing. The worker starts one
//! in the slot of an execution of the same node that returns, and the
//! server counts it running from then ([`Book::promote`]). A slot that
//! frees in the server while its lane has executions ahead is *granted* to
//! their worker ([`Book::take_grant`]), which starts the first of them in
//! it or gives it back. They stay counted among the waiting until they
//! begin; one the worker gives back (aborted, drained) goes to the front of
//! its lane again ([`Book::requeue`]) and is never handed ahead again. At
//! most `max_concurrent` nodes still run at once: a slot changes hands in
//! the worker, it is not added.

use std::{
    collections::{HashMap, VecDeque},
    sync::Arc,
    time::Duration,
};

use super::{Execution, LibraryRuntime, run::Pending};

/// The bounds, from the configuration.
#[derive(Debug, Clone)]
pub struct AdmissionLimits {
    /// Nodes running at once.
    pub max_concurrent: usize,
    /// Executions admitted beyond those running, waiting for a slot.
    pub max_queued: usize,
    /// Bytes of requests (inputs, parameters, graph node) waiting.
    pub max_queued_bytes: usize,
    /// Per node uid: nodes of that uid running at once.
    pub per_node: HashMap<String, usize>,
}

impl AdmissionLimits {
    fn node_limit(&self, uid: &str) -> usize {
        self.per_node
            .get(uid)
            .copied()
            .unwrap_or(self.max_concurrent)
            .clamp(1, self.max_concurrent)
    }
}

/// An admitted execution, until it concludes.
pub(super) struct Active {
    pub instance_id: String,
    /// The connection that started it.
    pub owner: u64,
    pub execution: Arc<Execution>,
}

/// A node whose runs average less than this may be handed ahead.
const AHEAD_BELOW: Duration = Duration::from_millis(1);

/// A lane may have this many times `max_concurrent` executions handed ahead.
const AHEAD_PER_SLOT: usize = 8;

/// One node's queue and its running count.
struct Lane {
    running: usize,
    waiting: VecDeque<Pending>,
    /// Whether the lane is in `Book::ready`.
    ready: bool,
    /// Handed ahead and not begun (counted among `Book::waiting`).
    ahead: usize,
    /// Slots granted to the worker holding them and not yet used or given
    /// back (counted among `running`).
    granted: usize,
    /// Where its executions went ahead last: where a slot is granted.
    ahead_to: Option<Arc<dyn LibraryRuntime>>,
    /// The moving average of its runs, in ns (`u64::MAX`: none yet).
    average_ns: u64,
}

impl Default for Lane {
    fn default() -> Self {
        Self {
            running: 0,
            waiting: VecDeque::new(),
            ready: false,
            ahead: 0,
            granted: 0,
            ahead_to: None,
            average_ns: u64::MAX,
        }
    }
}

impl Lane {
    /// Whether one more of its executions may be handed ahead, when no
    /// other lane waits: it runs (a slot will change hands), its node is
    /// short, and it has not handed its share.
    fn takes_ahead(&self, limits: &AdmissionLimits) -> bool {
        self.running > 0
            && self.ahead < limits.max_concurrent * AHEAD_PER_SLOT
            && self.average_ns < AHEAD_BELOW.as_nanos() as u64
    }

    /// Folds one run's duration into the average (1/8 weight).
    fn record(&mut self, ran: Duration) {
        let ran = ran.as_nanos().min(u64::MAX as u128 / 2) as u64;
        self.average_ns = match self.average_ns {
            u64::MAX => ran,
            old => old - old / 8 + ran / 8,
        };
    }
}

/// What may go to the runtimes now: with a slot, or ahead, and slots
/// granted to a runtime for a node's executions ahead.
#[derive(Default)]
#[must_use = "what was taken out of the lanes must be dispatched"]
pub(super) struct Handouts {
    pub now: Vec<Pending>,
    pub ahead: Vec<Pending>,
    pub grants: Vec<(Arc<dyn LibraryRuntime>, Arc<str>)>,
}

/// Everything admitted, under one lock: the executions by id, the counts
/// and the lanes. Invariant after every operation: no lane that could run
/// is waiting, that is every lane in `ready` has something running and
/// every slot is taken.
#[derive(Default)]
pub(super) struct Book {
    pub active: HashMap<u64, Active>,
    /// Admitted and not concluded (running, handed over, or waiting).
    accepted: usize,
    /// Handed to a runtime and not concluded: the slots taken.
    running: usize,
    waiting: usize,
    waiting_bytes: usize,
    lanes: HashMap<Arc<str>, Lane>,
    /// Lanes with executions waiting and room under their own limit.
    ready: VecDeque<Arc<str>>,
}

/// What admission decided for one execution.
pub(super) enum Admission {
    /// It has a slot: hand it to its runtime now.
    Now(Pending),
    /// It waits in its node's lane.
    Waiting,
    /// The server is full: refused, and why.
    Refused(Pending, String),
}

impl Book {
    /// Admits `pending` for node `uid`, or refuses it.
    pub fn admit(&mut self, limits: &AdmissionLimits, uid: &Arc<str>, pending: Pending) -> Admission {
        let capacity = limits.max_concurrent + limits.max_queued;
        if self.accepted >= capacity {
            let refusal = format!(
                "the server is busy: {} executions are running or waiting (max_concurrent_executions + max_queued_executions = {capacity}); try again later",
                self.accepted
            );
            return Admission::Refused(pending, refusal);
        }
        let node_limit = limits.node_limit(uid);
        // Lanes stay once made (one per node uid that was ever served), so
        // the common case neither clones the uid nor inserts.
        if !self.lanes.contains_key(uid) {
            self.lanes.insert(Arc::clone(uid), Lane::default());
        }
        let lane = self.lanes.get_mut(uid).expect("inserted above");
        let has_slot = self.running < limits.max_concurrent || lane.running == 0;
        if has_slot && lane.running < node_limit && lane.waiting.is_empty() {
            self.accepted += 1;
            self.running += 1;
            lane.running += 1;
            return Admission::Now(pending);
        }
        if self.waiting_bytes + pending.bytes > limits.max_queued_bytes {
            let refusal = format!(
                "the server is busy: {} KiB of requests are waiting (max_queued_bytes = {} KiB); try again later",
                self.waiting_bytes >> 10,
                limits.max_queued_bytes >> 10
            );
            return Admission::Refused(pending, refusal);
        }
        self.accepted += 1;
        self.waiting += 1;
        self.waiting_bytes += pending.bytes;
        lane.waiting.push_back(pending);
        if lane.running < node_limit && !lane.ready {
            lane.ready = true;
            self.ready.push_back(Arc::clone(uid));
        }
        Admission::Waiting
    }

    /// An execution of `uid` that held a slot concluded after `ran`: frees
    /// the slot and returns what may run now, or go ahead.
    pub fn release(&mut self, limits: &AdmissionLimits, uid: &Arc<str>, ran: Duration) -> Handouts {
        self.accepted -= 1;
        self.running -= 1;
        if let Some(lane) = self.lanes.get_mut(uid) {
            lane.running -= 1;
            lane.record(ran);
            if !lane.waiting.is_empty() && !lane.ready && lane.running < limits.node_limit(uid) {
                lane.ready = true;
                self.ready.push_back(Arc::clone(uid));
            }
        }
        let now = self.take_ready(limits);
        let ahead = self.take_ahead(limits, uid);
        let mut grants: Vec<_> = self.take_grant(limits, uid).into_iter().collect();
        if grants.is_empty() && self.ready.is_empty() && self.running < limits.max_concurrent {
            // Work-conserving: a slot nobody waits for in the server goes
            // to another node's executions ahead.
            let others: Vec<Arc<str>> = self
                .lanes
                .iter()
                .filter(|(other, lane)| *other != uid && lane.ahead > lane.granted)
                .map(|(other, _)| Arc::clone(other))
                .collect();
            grants.extend(others.iter().find_map(|other| self.take_grant(limits, other)));
        }
        Handouts { now, ahead, grants }
    }

    /// A slot for lane `uid`'s executions ahead, if one is free (or it is
    /// the lane's fair slot), and where they wait.
    fn take_grant(&mut self, limits: &AdmissionLimits, uid: &Arc<str>) -> Option<(Arc<dyn LibraryRuntime>, Arc<str>)> {
        let running = self.running;
        let lane = self.lanes.get_mut(uid)?;
        let has_slot = running < limits.max_concurrent || lane.running == 0;
        if !has_slot || lane.ahead <= lane.granted || lane.running >= limits.node_limit(uid) {
            return None;
        }
        let runtime = Arc::clone(lane.ahead_to.as_ref()?);
        lane.granted += 1;
        lane.running += 1;
        self.running += 1;
        Some((runtime, Arc::clone(uid)))
    }

    /// A slot granted for `uid` began an execution ahead of `bytes`.
    pub fn promote_granted(&mut self, uid: &Arc<str>, bytes: usize) {
        self.waiting -= 1;
        self.waiting_bytes -= bytes;
        if let Some(lane) = self.lanes.get_mut(uid) {
            lane.ahead -= 1;
            lane.granted -= 1;
        }
    }

    /// A slot granted for `uid` came back unused: it is free again, for
    /// what waits in the server or, if `regrant`, for executions of `uid`
    /// still ahead (handed while the grant was out: the return that freed
    /// a slot found it taken by the grant, so this is their only chance).
    pub fn ungrant(&mut self, limits: &AdmissionLimits, uid: &Arc<str>, regrant: bool) -> Handouts {
        self.running -= 1;
        if let Some(lane) = self.lanes.get_mut(uid) {
            lane.granted -= 1;
            lane.running -= 1;
            if !lane.waiting.is_empty() && !lane.ready && lane.running < limits.node_limit(uid) {
                lane.ready = true;
                self.ready.push_back(Arc::clone(uid));
            }
        }
        let now = self.take_ready(limits);
        let grants = if regrant {
            self.take_grant(limits, uid).into_iter().collect()
        } else {
            Vec::new()
        };
        Handouts {
            now,
            ahead: Vec::new(),
            grants,
        }
    }

    /// Tops up what lane `uid` has handed ahead, while no other lane waits.
    fn take_ahead(&mut self, limits: &AdmissionLimits, uid: &Arc<str>) -> Vec<Pending> {
        let mut ahead = Vec::new();
        if self.ready.iter().any(|ready| ready != uid) {
            return ahead;
        }
        let Some(lane) = self.lanes.get_mut(uid) else {
            return ahead;
        };
        while lane.takes_ahead(limits) && lane.waiting.front().is_some_and(Pending::may_go_ahead) {
            let pending = lane.waiting.pop_front().expect("checked above");
            lane.ahead += 1;
            lane.ahead_to = Some(Arc::clone(&pending.runtime));
            ahead.push(pending);
        }
        ahead
    }

    /// An execution of `uid` handed ahead began (its worker started it in
    /// the slot of one that returned): it holds a slot from now. The one
    /// that returned is released after this, so no other takes its slot.
    pub fn promote(&mut self, uid: &Arc<str>, bytes: usize) {
        self.waiting -= 1;
        self.waiting_bytes -= bytes;
        self.running += 1;
        if let Some(lane) = self.lanes.get_mut(uid) {
            lane.ahead -= 1;
            lane.running += 1;
        }
    }

    /// An execution handed ahead came back unstarted: it waits at the
    /// front of its lane, for a slot. Returns what may run now.
    pub fn requeue(&mut self, limits: &AdmissionLimits, mut pending: Pending) -> Vec<Pending> {
        pending.returned = true;
        let uid = Arc::clone(pending.job.execution.uid());
        let lane = self.lanes.entry(Arc::clone(&uid)).or_default();
        lane.ahead = lane.ahead.saturating_sub(1);
        lane.waiting.push_front(pending);
        if !lane.ready && lane.running < limits.node_limit(&uid) {
            lane.ready = true;
            self.ready.push_back(uid);
        }
        self.take_ready(limits)
    }

    /// Hands out free slots to ready lanes, round-robin; a lane with
    /// nothing running gets its fair slot even when all are taken.
    fn take_ready(&mut self, limits: &AdmissionLimits) -> Vec<Pending> {
        let mut now = Vec::new();
        let mut still_ready = VecDeque::new();
        while let Some(uid) = self.ready.pop_front() {
            let Some(lane) = self.lanes.get_mut(&uid) else { continue };
            if self.running >= limits.max_concurrent && lane.running > 0 {
                // Waits for a slot, keeping its turn.
                still_ready.push_back(uid);
                continue;
            }
            lane.ready = false;
            let Some(pending) = lane.waiting.pop_front() else {
                continue;
            };
            self.waiting -= 1;
            self.waiting_bytes -= pending.bytes;
            self.running += 1;
            lane.running += 1;
            if !lane.waiting.is_empty() && lane.running < limits.node_limit(&uid) {
                lane.ready = true;
                self.ready.push_back(uid);
            }
            now.push(pending);
        }
        self.ready = still_ready;
        now
    }

    /// Takes out of the lanes every waiting execution `drop_it` picks (they
    /// were aborted: their final status went out already).
    pub fn remove_waiting(&mut self, drop_it: impl Fn(&Pending) -> bool) -> Vec<Pending> {
        let mut removed = Vec::new();
        for lane in self.lanes.values_mut() {
            let (gone, kept): (VecDeque<Pending>, VecDeque<Pending>) =
                std::mem::take(&mut lane.waiting).into_iter().partition(&drop_it);
            lane.waiting = kept;
            removed.extend(gone);
        }
        for pending in &removed {
            self.accepted -= 1;
            self.waiting -= 1;
            self.waiting_bytes -= pending.bytes;
        }
        self.lanes
            .retain(|_, lane| lane.running > 0 || lane.ahead > 0 || !lane.waiting.is_empty());
        self.ready
            .retain(|uid| self.lanes.get(uid).is_some_and(|lane| !lane.waiting.is_empty()));
        for lane in self.lanes.values_mut() {
            lane.ready = false;
        }
        for uid in &self.ready {
            if let Some(lane) = self.lanes.get_mut(uid) {
                lane.ready = true;
            }
        }
        removed
    }

    /// Slots taken now.
    pub fn running(&self) -> usize {
        self.running
    }

    /// Executions waiting for a slot now.
    pub fn waiting(&self) -> usize {
        self.waiting
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_limit_is_between_one_and_the_global_limit() {
        let limits = AdmissionLimits {
            max_concurrent: 4,
            max_queued: 10,
            max_queued_bytes: 1 << 20,
            per_node: [("gpu".to_owned(), 1), ("wide".to_owned(), 64)].into_iter().collect(),
        };
        assert_eq!(limits.node_limit("gpu"), 1);
        assert_eq!(limits.node_limit("wide"), 4, "never above max_concurrent_executions");
        assert_eq!(limits.node_limit("other"), 4);
    }
}
