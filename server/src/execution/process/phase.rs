//! A library version's [`Phase`], its worker slots and their transitions,
//! one method per event: the state machine alone, without processes, so its
//! rules are tested here.

use std::{
    collections::{HashMap, VecDeque},
    sync::Arc,
    time::{Duration, Instant},
};

use super::{exit::WorkerExit, restart::RestartPolicy, worker::Worker};
use crate::execution::Job;

/// Where a library version is in its life.
///
/// A library has one worker slot per process it runs (`[python] workers`;
/// a native library has one). While `Serving`, each slot holds its serving
/// worker or none while that worker's replacement starts (after a crash
/// or a hang, with the slot's own [`RestartPolicy`]): executions go to the
/// least-loaded serving worker, and wait only when no slot has one. A
/// worker that stops answering pings (a heartbeat) would be replaced like
/// one whose node ignored its abort
/// ([`WorkerOwner::worker_hung`](super::worker::WorkerOwner::worker_hung)).
/// A worker running several libraries (grouping) would be one `Arc` in a
/// slot of each. `W` is the worker handle (a number in the tests).
pub(crate) enum Phase {
    /// The first workers are starting: `load` has not returned yet.
    Starting,
    /// Its slots' workers take new executions; an empty slot is restarting.
    Serving,
    /// Stopped for a stop-first swap: executions wait for the new version.
    Paused,
    /// Given up: its nodes are no longer served (why).
    Failed(String),
    /// No longer served: executions go to the version served now.
    Retired,
}

/// Executions that arrived while no worker was up, in arrival order.
#[derive(Default)]
pub(crate) struct Waiting {
    jobs: HashMap<u64, Job>,
    order: VecDeque<u64>,
}

impl Waiting {
    pub(crate) fn push(&mut self, job: Job) {
        let id = job.execution.id();
        self.jobs.insert(id, job);
        self.order.push_back(id);
    }

    pub(crate) fn remove(&mut self, id: u64) -> Option<Job> {
        self.order.retain(|waiting| *waiting != id);
        self.jobs.remove(&id)
    }

    pub(crate) fn take_all(&mut self) -> Vec<Job> {
        let mut jobs = std::mem::take(&mut self.jobs);
        std::mem::take(&mut self.order)
            .into_iter()
            .filter_map(|id| jobs.remove(&id))
            .collect()
    }
}

/// One worker process of a library: the worker serving in it (none while
/// its replacement starts) and its own restart policy.
struct Slot<W> {
    worker: Option<Arc<W>>,
    policy: RestartPolicy,
}

/// A library's phase, its worker slots and what waits for a worker.
pub(crate) struct LibraryState<W = Worker> {
    pub phase: Phase,
    slots: Vec<Slot<W>>,
    /// Where the next [`pick`](Self::pick) starts looking: ties go round.
    next: usize,
    pub waiting: Waiting,
}

impl<W> LibraryState<W> {
    /// A library of `workers` slots (at least one).
    pub(crate) fn new(workers: usize, policy: impl Fn() -> RestartPolicy) -> Self {
        Self {
            phase: Phase::Starting,
            slots: (0..workers.max(1))
                .map(|_| Slot {
                    worker: None,
                    policy: policy(),
                })
                .collect(),
            next: 0,
            waiting: Waiting::default(),
        }
    }

    /// How many worker processes it runs.
    pub(crate) fn slots(&self) -> usize {
        self.slots.len()
    }

    /// The slot `worker` serves in.
    fn slot_of(&self, worker: &Arc<W>) -> Option<usize> {
        self.slots
            .iter()
            .position(|slot| slot.worker.as_ref().is_some_and(|w| Arc::ptr_eq(w, worker)))
    }

    /// The serving workers.
    fn take_workers(&mut self) -> Vec<Arc<W>> {
        self.slots.iter_mut().filter_map(|slot| slot.worker.take()).collect()
    }

    /// The worker a new execution goes to, if it is serving: the one with
    /// the fewest executions in flight (`load`), ties taken in turn so two
    /// executions handed out at once go to two workers.
    pub(crate) fn pick(&mut self, load: impl Fn(&W) -> usize) -> Option<Arc<W>> {
        if !matches!(self.phase, Phase::Serving) {
            return None;
        }
        if let [only] = self.slots.as_slice() {
            return only.worker.clone();
        }
        let n = self.slots.len();
        let start = self.next;
        self.next = (start + 1) % n;
        (0..n)
            .filter_map(|i| self.slots[(start + i) % n].worker.as_ref())
            .min_by_key(|worker| load(worker))
            .cloned()
    }

    /// A worker loaded the library in `slot`: it serves, and takes what waited.
    pub(crate) fn start_serving(&mut self, slot: usize, worker: Arc<W>) -> Vec<Job> {
        self.phase = Phase::Serving;
        let slot = &mut self.slots[slot];
        slot.worker = Some(worker);
        slot.policy.worker_up(Instant::now());
        self.waiting.take_all()
    }

    /// Stop-first swap: `None` when it is over already (failed or retired),
    /// else the workers that served (they must be stopped).
    pub(crate) fn pause(&mut self) -> Option<Vec<Arc<W>>> {
        match std::mem::replace(&mut self.phase, Phase::Paused) {
            phase @ (Phase::Failed(_) | Phase::Retired) => {
                self.phase = phase;
                None
            }
            Phase::Serving | Phase::Starting | Phase::Paused => Some(self.take_workers()),
        }
    }

    /// The stop-first swap failed: true when its workers must start again
    /// (in every slot).
    pub(crate) fn resume(&mut self) -> bool {
        let paused = matches!(self.phase, Phase::Paused);
        if paused {
            self.phase = Phase::Serving;
        }
        paused
    }

    /// `worker` ended: if it served, its slot and the delay before its
    /// replacement. The other slots serve on.
    pub(crate) fn lose(&mut self, worker: &Arc<W>, exit: &WorkerExit) -> Option<(usize, Duration)> {
        let index = self.slot_of(worker)?;
        let slot = &mut self.slots[index];
        slot.worker = None;
        // The server only ends on purpose workers it took out of service
        // first; one that still served and was not a crash starts again at once.
        let delay = if exit.is_crash() {
            slot.policy.worker_crashed(Instant::now())
        } else {
            Duration::ZERO
        };
        Some((index, delay))
    }

    /// `worker` lost a node that ignored its abort: its slot if it served,
    /// where a replacement must start at once.
    pub(crate) fn hang(&mut self, worker: &Arc<W>) -> Option<usize> {
        let index = self.slot_of(worker)?;
        self.slots[index].worker = None;
        Some(index)
    }

    /// A replacement for `slot` failed while loading: what its policy says.
    pub(crate) fn load_failed(&mut self, slot: usize) -> super::restart::Retry {
        self.slots[slot].policy.load_failed()
    }

    /// Gives up: the workers still serving (they must drain) and what waited.
    pub(crate) fn fail(&mut self, reason: String) -> (Vec<Arc<W>>, Vec<Job>) {
        self.phase = Phase::Failed(reason);
        (self.take_workers(), self.waiting.take_all())
    }

    /// No longer served: the workers that served and what waited.
    pub(crate) fn retire(&mut self) -> (Vec<Arc<W>>, Vec<Job>) {
        (self.shut_down(), self.waiting.take_all())
    }

    /// The server stops: the workers that served, to run their shutdown
    /// hooks. What waits keeps waiting (and expires): nothing else will serve it.
    pub(crate) fn shut_down(&mut self) -> Vec<Arc<W>> {
        self.phase = Phase::Retired;
        self.take_workers()
    }

    /// The serving workers.
    pub(crate) fn workers(&self) -> impl Iterator<Item = &Arc<W>> {
        self.slots.iter().filter_map(|slot| slot.worker.as_ref())
    }

    /// How many slots wait for a replacement worker while it serves.
    pub(crate) fn restarting(&self) -> usize {
        if matches!(self.phase, Phase::Serving) {
            self.slots.iter().filter(|slot| slot.worker.is_none()).count()
        } else {
            0
        }
    }

    /// Whether it runs executions now or soon.
    pub(crate) fn is_up(&self) -> bool {
        matches!(self.phase, Phase::Serving | Phase::Paused)
    }

    /// Failed or retired: no worker is to start any more.
    pub(crate) fn is_over(&self) -> bool {
        matches!(self.phase, Phase::Failed(_) | Phase::Retired)
    }

    #[cfg(test)]
    fn is_retired(&self) -> bool {
        matches!(self.phase, Phase::Retired)
    }
}

#[cfg(test)]
mod tests {
    use std::{os::unix::process::ExitStatusExt, process::ExitStatus};

    use super::*;
    use crate::execution::ProcessSettings;

    /// A state of `workers` slots whose workers are plain numbers.
    fn state(workers: usize) -> LibraryState<u32> {
        LibraryState::new(workers, || {
            RestartPolicy::new(&ProcessSettings::defaults(Default::default()))
        })
    }

    fn crash() -> WorkerExit {
        WorkerExit::Died(ExitStatus::from_raw(libc::SIGSEGV))
    }

    fn is(picked: Option<Arc<u32>>, worker: &Arc<u32>) -> bool {
        picked.is_some_and(|w| Arc::ptr_eq(&w, worker))
    }

    #[test]
    fn a_crash_of_the_serving_worker_restarts_it_with_backoff() {
        let mut state = state(1);
        let worker = Arc::new(1);
        assert!(!state.is_up(), "the first worker is not up before it loaded");
        assert!(state.pick(|_| 0).is_none());
        assert!(state.start_serving(0, Arc::clone(&worker)).is_empty());
        assert!(state.is_up());
        let (slot, first) = state.lose(&worker, &crash()).expect("it served");
        assert_eq!(slot, 0);
        assert!(state.pick(|_| 0).is_none(), "nothing serves while it restarts");
        assert!(state.is_up(), "executions wait for the replacement");
        state.start_serving(0, Arc::clone(&worker));
        assert_eq!(state.lose(&worker, &crash()), Some((0, first * 2)));
    }

    #[test]
    fn a_crash_of_one_of_several_workers_restarts_only_its_slot() {
        let mut state = state(2);
        let (a, b) = (Arc::new(1), Arc::new(2));
        state.start_serving(0, Arc::clone(&a));
        state.start_serving(1, Arc::clone(&b));
        let (slot, delay) = state.lose(&b, &crash()).expect("it served");
        assert_eq!(slot, 1);
        // The other slot serves on, and its own backoff was not touched.
        assert!(is(state.pick(|_| 0), &a) && is(state.pick(|_| 0), &a));
        state.start_serving(1, Arc::clone(&b));
        assert_eq!(state.lose(&a, &crash()), Some((0, delay)));
        assert_eq!(state.lose(&b, &crash()), Some((1, delay * 2)));
        assert!(state.pick(|_| 0).is_none() && state.is_up());
    }

    #[test]
    fn only_a_slot_waiting_for_its_replacement_while_serving_counts_as_restarting() {
        let mut state = state(2);
        let (a, b) = (Arc::new(1), Arc::new(2));
        assert_eq!(state.restarting(), 0, "starting is not restarting");
        state.start_serving(0, Arc::clone(&a));
        state.start_serving(1, Arc::clone(&b));
        assert_eq!((state.restarting(), state.workers().count()), (0, 2));
        state.lose(&b, &crash());
        assert_eq!((state.restarting(), state.workers().count()), (1, 1));
        state.retire();
        assert_eq!(state.restarting(), 0, "a retired version restarts nothing");
    }

    #[test]
    fn executions_go_to_the_least_loaded_worker_and_ties_go_round() {
        let mut state = state(3);
        let workers: Vec<Arc<u32>> = (0..3).map(Arc::new).collect();
        for (slot, worker) in workers.iter().enumerate() {
            state.start_serving(slot, Arc::clone(worker));
        }
        let load = |w: &u32| [2, 1, 5][*w as usize];
        for _ in 0..4 {
            assert!(is(state.pick(load), &workers[1]));
        }
        let idle: Vec<u32> = (0..6).map(|_| *state.pick(|_| 0).unwrap()).collect();
        assert_eq!(idle, [1, 2, 0, 1, 2, 0]);
    }

    #[test]
    fn a_worker_no_longer_serving_changes_nothing_when_it_ends_or_hangs() {
        let mut state = state(1);
        let (old, new) = (Arc::new(1), Arc::new(2));
        state.start_serving(0, Arc::clone(&old));
        assert_eq!(state.hang(&old), Some(0));
        state.start_serving(0, Arc::clone(&new));
        assert_eq!(state.lose(&old, &crash()), None);
        assert_eq!(state.hang(&old), None);
        assert!(is(state.pick(|_| 0), &new));
    }

    #[test]
    fn a_stop_first_swap_pauses_every_worker_and_a_failed_one_resumes() {
        let mut state = state(2);
        let (a, b) = (Arc::new(1), Arc::new(2));
        state.start_serving(0, Arc::clone(&a));
        state.start_serving(1, Arc::clone(&b));
        let stopped = state.pause().expect("a serving library can be paused");
        assert_eq!(stopped.len(), 2);
        assert!(state.is_up(), "executions wait for the new version");
        assert!(state.pick(|_| 0).is_none());
        assert!(state.resume());
        assert!(matches!(state.phase, Phase::Serving));
        assert!(!state.resume(), "only a paused library resumes");
    }

    #[test]
    fn failed_and_retired_are_final() {
        let mut state = state(2);
        state.start_serving(1, Arc::new(1));
        let (serving, waiting) = state.fail("crashed while loading".to_owned());
        assert_eq!(serving.len(), 1, "the other worker drains");
        assert!(waiting.is_empty());
        assert!(!state.is_up());
        assert!(state.pause().is_none());
        let (workers, waiting) = state.retire();
        assert!(workers.is_empty() && waiting.is_empty());
        assert!(state.is_retired() && !state.is_up());
        assert!(state.pause().is_none());
    }

    #[test]
    fn retiring_hands_back_every_serving_worker() {
        let mut state = state(2);
        let (a, b) = (Arc::new(1), Arc::new(2));
        state.start_serving(0, Arc::clone(&a));
        state.start_serving(1, Arc::clone(&b));
        assert_eq!(state.shut_down().len(), 2);
        assert!(state.is_retired());
        assert_eq!(state.lose(&a, &crash()), None);
    }
}
