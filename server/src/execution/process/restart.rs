//! A [`RestartPolicy`] decides when a library's worker is started again:
//! exponential backoff after a crash, reset by a healthy spell, and giving
//! up after [`LOAD_CRASH_LIMIT`] workers in a row died while loading.

use std::time::{Duration, Instant};

use crate::execution::ProcessSettings;

/// Workers that die (or fail to start) while loading, in a row, before the
/// library is given up: a library that crashes as it loads would otherwise
/// be restarted forever.
pub(crate) const LOAD_CRASH_LIMIT: u32 = 3;

/// Backoff and the crash-while-loading count of one library's worker.
#[derive(Debug)]
pub(crate) struct RestartPolicy {
    initial: Duration,
    max: Duration,
    reset: Duration,
    /// The delay before the next restart.
    backoff: Duration,
    /// When the serving worker came up.
    up_since: Option<Instant>,
    /// Workers that died or failed while loading, in a row.
    load_crashes: u32,
}

/// What to do after a replacement worker failed to load.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Retry {
    After(Duration),
    /// [`LOAD_CRASH_LIMIT`] reached: the library failed for good.
    GiveUp,
}

impl RestartPolicy {
    pub(crate) fn new(settings: &ProcessSettings) -> Self {
        Self {
            initial: settings.restart_initial,
            max: settings.restart_max,
            reset: settings.restart_reset,
            backoff: settings.restart_initial,
            up_since: None,
            load_crashes: 0,
        }
    }

    /// A worker loaded the library and serves: the crashes while loading
    /// are forgotten and its healthy spell starts.
    pub(crate) fn worker_up(&mut self, now: Instant) {
        self.load_crashes = 0;
        self.up_since = Some(now);
    }

    /// The serving worker crashed: how long to wait before its replacement.
    /// A worker that was up for `restart_reset` starts the backoff over.
    pub(crate) fn worker_crashed(&mut self, now: Instant) -> Duration {
        if self
            .up_since
            .is_some_and(|up| now.saturating_duration_since(up) >= self.reset)
        {
            self.backoff = self.initial;
        }
        self.next_delay()
    }

    /// A replacement worker died or failed while loading.
    pub(crate) fn load_failed(&mut self) -> Retry {
        self.load_crashes += 1;
        if self.load_crashes >= LOAD_CRASH_LIMIT {
            return Retry::GiveUp;
        }
        Retry::After(self.next_delay())
    }

    /// The current backoff; the next one is twice as long, up to the maximum.
    fn next_delay(&mut self) -> Duration {
        let delay = self.backoff;
        self.backoff = (self.backoff * 2).min(self.max);
        delay
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RestartPolicy {
        let mut settings = ProcessSettings::defaults(std::path::PathBuf::new());
        settings.restart_initial = Duration::from_millis(100);
        settings.restart_max = Duration::from_millis(700);
        settings.restart_reset = Duration::from_secs(60);
        RestartPolicy::new(&settings)
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn backoff_doubles_up_to_the_maximum() {
        let mut policy = policy();
        let now = Instant::now();
        policy.worker_up(now);
        let delays: Vec<Duration> = (0..5).map(|_| policy.worker_crashed(now)).collect();
        assert_eq!(delays, [ms(100), ms(200), ms(400), ms(700), ms(700)]);
    }

    #[test]
    fn a_healthy_spell_resets_the_backoff() {
        let mut policy = policy();
        let start = Instant::now();
        policy.worker_up(start);
        policy.worker_crashed(start);
        policy.worker_crashed(start);
        // Up again, but crashing before `restart_reset`: the backoff goes on.
        policy.worker_up(start);
        assert_eq!(policy.worker_crashed(start + Duration::from_secs(59)), ms(400));
        // Up for a whole `restart_reset`: it starts over.
        policy.worker_up(start);
        assert_eq!(policy.worker_crashed(start + Duration::from_secs(60)), ms(100));
    }

    #[test]
    fn gives_up_after_the_limit_of_crashes_while_loading_in_a_row() {
        let mut policy = policy();
        let retries: Vec<Retry> = (1..LOAD_CRASH_LIMIT).map(|_| policy.load_failed()).collect();
        assert_eq!(retries, [Retry::After(ms(100)), Retry::After(ms(200))]);
        assert_eq!(policy.load_failed(), Retry::GiveUp);
    }

    #[test]
    fn a_worker_that_comes_up_clears_the_crashes_while_loading() {
        let mut policy = policy();
        for _ in 1..LOAD_CRASH_LIMIT {
            assert!(matches!(policy.load_failed(), Retry::After(_)));
        }
        policy.worker_up(Instant::now());
        assert!(matches!(policy.load_failed(), Retry::After(_)));
    }
}
