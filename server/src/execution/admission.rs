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

use std::{
    collections::{HashMap, VecDeque},
    sync::Arc,
};

use super::{Execution, Job, LibraryRuntime};

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

/// An admitted execution not yet handed to its runtime.
pub(super) struct Pending {
    pub runtime: Arc<dyn LibraryRuntime>,
    pub job: Job,
    bytes: usize,
}

impl Pending {
    pub fn new(runtime: Arc<dyn LibraryRuntime>, job: Job) -> Self {
        let request = &job.request;
        let bytes = request.inputs.len() + request.parameters.len() + request.graph_node.len();
        Self { runtime, job, bytes }
    }

    /// Hands the execution, which has a slot now, to its runtime.
    pub fn dispatch(self) {
        self.runtime.execute(self.job);
    }
}

/// One node's queue and its running count.
#[derive(Default)]
struct Lane {
    running: usize,
    waiting: VecDeque<Pending>,
    /// Whether the lane is in `Book::ready`.
    ready: bool,
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

    /// An execution of `uid` that held a slot concluded: frees the slot and
    /// returns what may run now.
    pub fn release(&mut self, limits: &AdmissionLimits, uid: &Arc<str>) -> Vec<Pending> {
        self.accepted -= 1;
        self.running -= 1;
        if let Some(lane) = self.lanes.get_mut(uid) {
            lane.running -= 1;
            if !lane.waiting.is_empty() && !lane.ready && lane.running < limits.node_limit(uid) {
                lane.ready = true;
                self.ready.push_back(Arc::clone(uid));
            }
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
            .retain(|_, lane| lane.running > 0 || !lane.waiting.is_empty());
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
