//! A library version run by worker processes (one, or `[python] workers`
//! for a Python library): what each event of its life does (the transition
//! in [`super::phase`], then starting, draining or failing workers), and
//! the [`LibraryRuntime`] the executor hands executions to.

use std::{
    path::PathBuf,
    sync::{Arc, Mutex, Weak},
    time::Duration,
};

use super::{
    exit::{StartError, WorkerExit},
    phase::{LibraryState, Phase},
    restart::{LOAD_CRASH_LIMIT, RestartPolicy, Retry},
    spawn::{self, Started},
    supervisor::supervise,
    worker::{SHUTDOWN_HOOK_TIMEOUT, Worker, WorkerContext, WorkerOwner},
};
use crate::{
    execution::{Failure, HookOutcome, Job, LibraryRuntime, run::Pending, wire},
    loader::LoadError,
    lock, metrics,
};

/// A stop-first swap waits for the old worker's drain (`worker_drain_ms`)
/// and then this long for its shutdown hook and its exit.
const SWAP_STOP_SLACK: Duration = Duration::from_secs(3);

/// Called with a library's runtime and why when it failed for good (its
/// worker died while loading [`LOAD_CRASH_LIMIT`] times in a row, or a
/// replacement worker refused it): its nodes stop being served.
pub type OnFailed = Box<dyn Fn(&Arc<dyn LibraryRuntime>, &str) + Send + Sync>;

/// One library version and its workers.
pub(crate) struct ProcessLibrary {
    me: Weak<ProcessLibrary>,
    context: Arc<WorkerContext>,
    path: PathBuf,
    /// Kept to start replacement workers with the same version.
    bytes: Vec<u8>,
    on_failed: Arc<Mutex<Option<OnFailed>>>,
    state: Mutex<LibraryState>,
}

/// A version gone (swapped out or removed): its copy of the library's bytes
/// (megabytes, often) is freed, and the allocator is told to give back what
/// is free. Otherwise glibc keeps such large blocks in whichever thread's
/// arena freed them (its mmap threshold rises after the first), and the
/// server's memory after a swap depends on which threads did the work.
impl Drop for ProcessLibrary {
    fn drop(&mut self) {
        self.bytes = Vec::new();
        crate::give_back_free_memory();
    }
}

impl ProcessLibrary {
    pub(crate) fn new(
        context: Arc<WorkerContext>,
        path: PathBuf,
        bytes: Vec<u8>,
        on_failed: Arc<Mutex<Option<OnFailed>>>,
        workers: usize,
    ) -> Arc<Self> {
        Arc::new_cyclic(|me| Self {
            me: me.clone(),
            state: Mutex::new(LibraryState::new(workers, || RestartPolicy::new(&context.settings))),
            context,
            path,
            bytes,
            on_failed,
        })
    }

    /// The path relative to `nodes_path`.
    pub(crate) fn label(&self) -> &str {
        &self.context.label
    }

    fn arc(&self) -> Arc<ProcessLibrary> {
        self.me.upgrade().expect("a library is alive while its methods run")
    }

    /// Stop-first swap: stops taking executions (they wait for the new
    /// version), lets the running ones finish (at most `worker_drain_ms`)
    /// and waits until its workers ran their shutdown hooks and exited.
    /// False when there was no worker to stop.
    pub(crate) fn stop_for_swap(&self) -> bool {
        let Some(workers) = lock(&self.state).pause() else {
            return false;
        };
        if workers.is_empty() {
            return true;
        }
        for worker in &workers {
            tracing::info!(library = %self.label(), pid = worker.pid, "stop-first swap: stopping the old worker before starting the new one");
            worker.drain();
        }
        let limit = self.context.settings.drain + SWAP_STOP_SLACK;
        let (done, gone) = std::sync::mpsc::channel();
        self.context.runtime.spawn(async move {
            futures_util::future::join_all(workers.iter().map(|worker| worker.exit_within(limit))).await;
            let _ = done.send(());
        });
        let _ = gone.recv();
        true
    }

    /// Stop-first swap failed (the new version was refused): this version
    /// gets its workers again.
    pub(crate) fn resume(&self) {
        let mut state = lock(&self.state);
        if state.resume() {
            for slot in 0..state.slots() {
                self.context.runtime.spawn(self.arc().restart(slot, Duration::ZERO));
            }
        }
    }

    /// The first workers, one per slot, started at once: the library loads
    /// when every one of them loaded it. What the first worker reported.
    pub(crate) async fn start_first(self: Arc<Self>) -> Result<wire::LoadedLibrary, LoadError> {
        let slots = lock(&self.state).slots();
        let results = futures_util::future::join_all((0..slots).map(|_| self.start_one_first())).await;
        let (mut started, mut failed) = (Vec::new(), None);
        for result in results {
            match result {
                Ok(one) => started.push(one),
                Err(err) => {
                    failed.get_or_insert(err);
                }
            }
        }
        if let Some(err) = failed {
            // One that failed fails the load: the others are ended.
            for Started { worker, io, .. } in started {
                self.context
                    .runtime
                    .spawn(supervise(self.arc(), Arc::clone(&worker), io));
                worker.end(None);
            }
            return Err(err);
        }
        let mut loaded = None;
        for (
            slot,
            Started {
                worker,
                io,
                loaded: theirs,
            },
        ) in started.into_iter().enumerate()
        {
            self.install(slot, worker, io);
            loaded.get_or_insert(theirs);
        }
        Ok(loaded.expect("a library has at least one worker slot"))
    }

    /// One first worker: up to [`LOAD_CRASH_LIMIT`] tries if it dies while
    /// loading.
    async fn start_one_first(&self) -> Result<Started, LoadError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.start_worker().await {
                Ok(started) => return Ok(started),
                Err(StartError::Crashed(cause)) if attempt < LOAD_CRASH_LIMIT => {
                    tracing::warn!(library = %self.label(), attempt, "worker died while loading ({cause}); trying again");
                }
                Err(StartError::Crashed(cause)) => return Err(LoadError::Crashed(cause)),
                Err(StartError::Refused(reason)) => return Err(LoadError::InWorker(reason)),
                Err(err) => return Err(LoadError::Worker(err.to_string())),
            }
        }
    }

    async fn start_worker(&self) -> Result<Started, StartError> {
        let owner: Weak<dyn WorkerOwner> = self.me.clone();
        spawn::start_worker(&self.context, &self.path, &self.bytes, owner).await
    }

    /// Makes `worker` the one serving in `slot` and supervises it.
    fn install(&self, slot: usize, worker: Arc<Worker>, io: spawn::WorkerIo) {
        let waiting = lock(&self.state).start_serving(slot, Arc::clone(&worker));
        self.context
            .runtime
            .spawn(supervise(self.arc(), Arc::clone(&worker), io));
        for job in waiting {
            if let Some(job) = worker.run(job) {
                // Drained already (replaced or retired): pick again.
                self.execute(job);
            }
        }
    }

    /// Starts a replacement worker for `slot` after `delay`; gives up after
    /// [`LOAD_CRASH_LIMIT`] failures while loading in a row.
    async fn restart(self: Arc<Self>, slot: usize, mut delay: Duration) {
        loop {
            tokio::time::sleep(delay).await;
            if lock(&self.state).is_over() {
                return;
            }
            match self.start_worker().await {
                Ok(Started { worker, io, .. }) => {
                    if lock(&self.state).is_over() {
                        worker.end(None);
                        return;
                    }
                    tracing::info!(library = %self.label(), pid = worker.pid, slot, "worker restarted");
                    self.install(slot, worker, io);
                    return;
                }
                Err(StartError::Refused(reason)) => {
                    self.fail(format!("a replacement worker refused it: {reason}"));
                    return;
                }
                Err(err) => {
                    let retry = lock(&self.state).load_failed(slot);
                    match retry {
                        Retry::After(next) => delay = next,
                        Retry::GiveUp => {
                            self.fail(format!(
                                "its worker died while loading {LOAD_CRASH_LIMIT} times in a row ({err})"
                            ));
                            return;
                        }
                    }
                    tracing::warn!(library = %self.label(), "replacement worker failed ({err}); trying again");
                }
            }
        }
    }

    /// Gives up on the library: its nodes stop being served (its other
    /// workers drain).
    fn fail(&self, reason: String) {
        let (serving, waiting) = lock(&self.state).fail(reason.clone());
        for worker in serving {
            worker.drain();
        }
        tracing::error!(
            library = %self.label(),
            "{} failed: {reason}; its nodes are no longer served until the file changes",
            self.label()
        );
        metrics::counter!(metrics::LIBRARY_FAILURES).increment(1);
        for job in waiting {
            job.execution.reject(
                Failure::Crashed,
                format!("node crashed: {} failed ({reason})", self.label()),
            );
        }
        let runtime: Arc<dyn LibraryRuntime> = self.arc();
        if let Some(hook) = lock(&self.on_failed).as_ref() {
            hook(&runtime, &reason);
        }
    }

    /// An execution that waited for a restart too long.
    fn expire(&self, id: u64) {
        let job = lock(&self.state).waiting.remove(id);
        if let Some(job) = job {
            job.execution.reject(
                Failure::Crashed,
                format!(
                    "node crashed: the worker for {} is restarting after a crash; try again later",
                    self.label()
                ),
            );
        }
    }

    fn count_restart(&self, reason: &'static str) {
        metrics::counter!(metrics::WORKER_RESTARTS, "library" => self.label().to_owned(), "reason" => reason)
            .increment(1);
    }
}

impl WorkerOwner for ProcessLibrary {
    /// New executions go to a fresh worker at once; the old one drains.
    fn worker_hung(&self, worker: &Arc<Worker>) {
        let slot = lock(&self.state).hang(worker);
        if let Some(slot) = slot {
            self.count_restart("hung");
            self.context.runtime.spawn(self.arc().restart(slot, Duration::ZERO));
        }
        worker.drain();
    }

    /// If it served, a replacement starts (after a backoff if it crashed).
    fn worker_exited(&self, worker: &Arc<Worker>, exit: &WorkerExit) {
        let Some((slot, delay)) = lock(&self.state).lose(worker, exit) else {
            return;
        };
        if exit.is_crash() {
            self.count_restart(exit.restart_reason());
            tracing::warn!(library = %self.label(), delay_ms = delay.as_millis() as u64, "restarting the worker after a crash");
        }
        self.context.runtime.spawn(self.arc().restart(slot, delay));
    }
}

impl LibraryRuntime for ProcessLibrary {
    fn execute(&self, job: Job) {
        let mut state = lock(&self.state);
        match &state.phase {
            Phase::Retired => {
                // Replaced or removed after this job was admitted for it.
                drop(state);
                job.redirect(self);
            }
            Phase::Failed(reason) => {
                let message = format!("node crashed: {} failed ({reason})", self.label());
                drop(state);
                job.execution.reject(Failure::Crashed, message);
            }
            Phase::Starting | Phase::Serving | Phase::Paused => {
                if let Some(worker) = state.pick(Worker::live) {
                    drop(state);
                    if let Some(job) = worker.run(job) {
                        // Drained between the pick and now (replaced or
                        // retired): the state no longer offers it.
                        self.execute(job);
                    }
                    return;
                }
                // Wait for a new worker, for a while.
                let id = job.execution.id();
                state.waiting.push(job);
                drop(state);
                let library = self.arc();
                let wait = self.context.settings.restart_wait;
                self.context.runtime.spawn(async move {
                    tokio::time::sleep(wait).await;
                    library.expire(id);
                });
            }
        }
    }

    fn hands_ahead(&self) -> bool {
        self.context.kind.hands_ahead()
    }

    fn execute_ahead(&self, pending: Pending) -> Option<Pending> {
        let worker = lock(&self.state).pick(Worker::live);
        match worker {
            Some(worker) => worker.run_ahead(pending),
            None => Some(pending),
        }
    }

    fn grant(&self, uid: &Arc<str>) -> bool {
        let worker = lock(&self.state).pick(Worker::live);
        worker.is_some_and(|worker| worker.grant(uid))
    }

    /// Runs in every worker; the first failure is the outcome.
    fn shutdown_hook(&self) -> HookOutcome {
        let mut workers = lock(&self.state).shut_down();
        if workers.len() <= 1 {
            return workers.pop().and_then(|worker| self.worker_shutdown_hook(worker));
        }
        let outcomes: Vec<HookOutcome> = std::thread::scope(|scope| {
            let hooks: Vec<_> = workers
                .into_iter()
                .map(|worker| scope.spawn(move || self.worker_shutdown_hook(worker)))
                .collect();
            hooks
                .into_iter()
                .map(|hook| {
                    hook.join()
                        .unwrap_or_else(|_| Some(Err("the shutdown hook panicked".to_owned())))
                })
                .collect()
        });
        let mut outcome = None;
        for one in outcomes.into_iter().flatten() {
            if outcome.as_ref().is_none_or(Result::is_ok) {
                outcome = Some(one);
            }
        }
        outcome
    }

    fn retire(&self) -> bool {
        let (workers, waiting) = lock(&self.state).retire();
        // What waited for a restart or a stop-first swap goes to the
        // version served now (the registry serves it before retiring this).
        for job in waiting {
            job.redirect(self);
        }
        for worker in workers {
            // Its executions finish on this version; then its shutdown hook
            // runs in the worker, which exits.
            worker.drain();
        }
        false
    }

    fn is_up(&self) -> bool {
        lock(&self.state).is_up()
    }

    fn trouble(&self) -> Option<String> {
        let label = self.label();
        let state = lock(&self.state);
        if let Some(half) = self.context.settings.heartbeat.map(|limit| limit / 2) {
            let silent = state.workers().map(|w| w.silent_for()).max().unwrap_or_default();
            if silent >= half {
                return Some(format!(
                    "the worker for {label} has not answered for {} ms",
                    silent.as_millis()
                ));
            }
        }
        let restarting = state.restarting();
        (restarting > 0).then(|| {
            let of = state.slots();
            format!("the worker for {label} is restarting ({restarting} of {of} down)")
        })
    }
}

impl ProcessLibrary {
    /// Runs the shutdown hook in `worker`, which then exits.
    fn worker_shutdown_hook(&self, worker: Arc<Worker>) -> HookOutcome {
        let (reply, answer) = std::sync::mpsc::channel();
        if !worker.request_shutdown(Some(reply)) {
            return Some(Err("the worker is gone".to_owned()));
        }
        match answer.recv_timeout(SHUTDOWN_HOOK_TIMEOUT) {
            Ok(outcome) => outcome,
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => Some(Err(format!(
                "{}: the worker exited before reporting its shutdown hook",
                self.label()
            ))),
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                worker.end(Some(WorkerExit::HookTimedOut));
                Some(Err(format!(
                    "{}: the shutdown hook did not finish in time",
                    self.label()
                )))
            }
        }
    }
}
