//! An execution: one run of one node for a caller, from admission to its
//! single final status. The [`Executor`] owns admission, the abort flags,
//! the timeouts and the order of statuses (`running`, the node's own, then
//! exactly one `complete` or `error`); where the node runs is a backend's
//! business ([`backend`]; in-process: [`pool`]; process isolation:
//! `process`, `worker` and `wire`).
//!
//! Transport-agnostic: the caller hands in a [`StatusSink`] and gets every
//! status of the execution through it. The statuses are in [`status`], one
//! run ([`Execution`], [`Job`]) in [`run`], the executor in [`executor`]
//! and its bookkeeping in [`admission`].

mod admission;
mod backend;
mod executor;
mod host;
mod languages;
mod pool;
#[cfg(unix)]
mod process;
mod run;
mod settings;
mod status;
#[cfg(unix)]
mod wire;
#[cfg(unix)]
mod worker;

pub use admission::AdmissionLimits;
pub use backend::{Backend, Loaded};
pub use executor::Executor;
pub use languages::{Languages, PYTHON_LIBRARY, is_python_library};
pub use pool::InProcess;
#[cfg(unix)]
pub use process::ProcessBackend;
pub use run::{ExecutionRequest, HookOutcome, LibraryRuntime, Origin, Target};
pub use settings::{ProcessSettings, PythonGroup, PythonSettings};
pub use status::{ABORTED, Failure, Status, StatusSink, UpdateKind};
#[cfg(unix)]
pub use worker::run as run_worker;

// What the backends are handed and report through, for them alone (only
// the process backend names `Running`: it holds one across tasks).
#[cfg(unix)]
use run::Running;
use run::{Execution, Job};

/// Why `isolation = "process"` is refused where the process backend is not
/// built (it needs Unix: socketpairs, an inherited fd, `pre_exec`).
#[cfg(not(unix))]
pub const PROCESS_ISOLATION_UNSUPPORTED: &str = "process isolation (the default) needs Linux or macOS; on this platform set isolation = \"in-process\" in the configuration, or pass --isolation in-process";
