//! Why a worker did not come up ([`StartError`]) or went down
//! ([`WorkerExit`]): typed, so the supervisor decides on variants and only
//! the log and the executions' messages see the text.

use std::{fmt, io, os::unix::process::ExitStatusExt, process::ExitStatus};

/// Why a worker could not be started with its library loaded.
#[derive(Debug, thiserror::Error)]
pub(crate) enum StartError {
    /// The worker refused the library (its own reason).
    #[error("{0}")]
    Refused(String),
    /// The worker died while starting or loading (the short cause:
    /// "SIGSEGV", "exit code 3").
    #[error("{0}")]
    Crashed(String),
    /// Its process could not be started.
    #[error("{what}: {source}")]
    Spawn {
        what: &'static str,
        #[source]
        source: io::Error,
    },
    /// It did not answer a step of the start in time.
    #[error("the worker did not {step} within {timeout_ms} ms")]
    TimedOut { step: &'static str, timeout_ms: u128 },
    /// It answered with something else than the step expects (another
    /// build, a garbled frame, an unexpected message).
    #[error("{0}")]
    Protocol(String),
}

impl StartError {
    /// Wraps an I/O error of one step of starting the process.
    pub(crate) fn spawn(what: &'static str) -> impl FnOnce(io::Error) -> Self {
        move |source| Self::Spawn { what, source }
    }
}

/// Why a worker's process ended: chosen by the server when it ended the
/// worker, else read from the process's exit status.
#[derive(Debug, Clone)]
pub(crate) enum WorkerExit {
    /// It broke the channel's protocol (a garbled, oversized or unexpected frame).
    ProtocolViolation(String),
    /// Its resident memory passed `worker_memory_limit_mb`.
    MemoryLimit { limit_mib: u64 },
    /// It left a heartbeat unanswered past `worker_heartbeat_ms`: stopped
    /// (SIGSTOP), deadlocked, or swapping.
    Stalled { silent_ms: u128 },
    /// It ran its shutdown hook and exited, as asked.
    ShutDown,
    /// It was asked to run its shutdown hook, which did not finish in time.
    HookTimedOut,
    /// It ran its shutdown hook but did not exit.
    LingeredAfterHook,
    /// Draining, its executions outlived `worker_drain_ms`.
    DrainTimedOut { drain_ms: u128 },
    /// The server no longer needed it (started for a retired version).
    Stopped,
    /// It exited with success on its own (a crash unless it was draining).
    Exited { draining: bool },
    /// It died: a signal or a failing exit code.
    Died(ExitStatus),
    /// Waiting for the process failed.
    Lost(String),
}

impl WorkerExit {
    /// The exit status the process ended with, when the server did not end it.
    pub(crate) fn from_status(status: io::Result<ExitStatus>, draining: bool) -> Self {
        match status {
            Ok(status) if status.success() => Self::Exited { draining },
            Ok(status) => Self::Died(status),
            Err(err) => Self::Lost(err.to_string()),
        }
    }

    /// Whether it counts as a crash: logged as an error, its executions
    /// fail as crashed and, for the serving worker, a restart with backoff.
    pub(crate) fn is_crash(&self) -> bool {
        match self {
            Self::ProtocolViolation(_)
            | Self::MemoryLimit { .. }
            | Self::Stalled { .. }
            | Self::Died(_)
            | Self::Lost(_) => true,
            Self::Exited { draining } => !draining,
            Self::ShutDown
            | Self::HookTimedOut
            | Self::LingeredAfterHook
            | Self::DrainTimedOut { .. }
            | Self::Stopped => false,
        }
    }

    /// The `reason` label of the restart metric.
    pub(crate) fn restart_reason(&self) -> &'static str {
        match self {
            Self::MemoryLimit { .. } => "memory",
            Self::Stalled { .. } => "stalled",
            _ => "crashed",
        }
    }
}

/// The cause as it follows "the worker for <library> ".
impl fmt::Display for WorkerExit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ProtocolViolation(violation) => write!(f, "was ended for a protocol violation ({violation})"),
            Self::MemoryLimit { limit_mib } => write!(f, "exceeded worker_memory_limit_mb ({limit_mib} MiB)"),
            Self::Stalled { silent_ms } => write!(f, "stopped answering for {silent_ms} ms"),
            Self::ShutDown => f.write_str("exited after its shutdown hook"),
            Self::HookTimedOut => f.write_str("its shutdown hook did not finish in time"),
            Self::LingeredAfterHook => f.write_str("did not exit after its shutdown hook"),
            Self::DrainTimedOut { drain_ms } => {
                write!(
                    f,
                    "was stopped: its executions outlived worker_drain_ms ({drain_ms} ms)"
                )
            }
            Self::Stopped => f.write_str("was stopped"),
            Self::Exited { .. } => f.write_str("exited"),
            Self::Died(status) => match status.signal() {
                Some(signal) => write!(f, "was killed by {}", signal_name(signal)),
                None => write!(f, "exited with code {}", status.code().unwrap_or(-1)),
            },
            Self::Lost(err) => write!(f, "ended ({err})"),
        }
    }
}

/// The short cause for "crashed while loading (…)": "SIGSEGV", "exit code 3".
pub(crate) fn short_cause(status: ExitStatus) -> String {
    match status.signal() {
        Some(signal) => signal_name(signal),
        None => format!("exit code {}", status.code().unwrap_or(-1)),
    }
}

fn signal_name(signal: i32) -> String {
    match signal {
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGABRT => "SIGABRT",
        libc::SIGKILL => "SIGKILL",
        libc::SIGBUS => "SIGBUS",
        libc::SIGILL => "SIGILL",
        libc::SIGFPE => "SIGFPE",
        libc::SIGTERM => "SIGTERM",
        libc::SIGTRAP => "SIGTRAP",
        _ => return format!("signal {signal}"),
    }
    .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signal_is_named_and_counts_as_a_crash() {
        let exit = WorkerExit::Died(ExitStatus::from_raw(libc::SIGSEGV));
        assert_eq!(exit.to_string(), "was killed by SIGSEGV");
        assert!(exit.is_crash());
        assert_eq!(short_cause(ExitStatus::from_raw(3 << 8)), "exit code 3");
    }

    #[test]
    fn exits_the_server_asked_for_are_no_crash() {
        assert!(!WorkerExit::ShutDown.is_crash());
        assert!(!WorkerExit::Exited { draining: true }.is_crash());
        assert!(WorkerExit::Exited { draining: false }.is_crash());
        assert_eq!(WorkerExit::MemoryLimit { limit_mib: 400 }.restart_reason(), "memory");
    }

    #[test]
    fn a_stall_is_a_crash_with_its_own_reason() {
        let exit = WorkerExit::Stalled { silent_ms: 10_000 };
        assert!(exit.is_crash());
        assert_eq!(exit.restart_reason(), "stalled");
        assert_eq!(exit.to_string(), "stopped answering for 10000 ms");
    }
}
