//! The seam between what to run and where it runs: a [`Backend`] loads
//! library versions, and each loaded version is a [`LibraryRuntime`] the
//! executor hands admitted executions to.
//!
//! The executor owns admission, abort flags, timeouts and the order of
//! statuses; a runtime owns a library's whole life after loading: running
//! its nodes, its shutdown hook, and what happens when it is no longer
//! served. A runtime reports through each job's [`Execution`](super::Execution): `begin` when
//! the node starts, `end` when it returned (or failed as a whole), from any
//! thread and at any time, so an execution may outlive the thread that
//! started it and one failure may end several executions at once.

use std::{path::Path, sync::Arc};

use super::Job;
use crate::loader::{LoadError, NodeInfo};

/// Where libraries run: loads one version of a library (its bytes already
/// read and trusted) and reads its node definitions.
pub trait Backend: Send + Sync {
    fn load(&self, path: &Path, bytes: &[u8]) -> Result<Loaded, LoadError>;
}

/// A library version loaded by a [`Backend`].
pub struct Loaded {
    /// The nano-plugin-abi version it was built against.
    pub abi_version: String,
    /// Its nodes, in the order the library lists them.
    pub nodes: Vec<NodeInfo>,
    pub runtime: Arc<dyn LibraryRuntime>,
}

/// What a library's shutdown hook did: `None` when the library has none
/// (built against nano-plugin-abi 0.1.0), else its result.
pub type HookOutcome = Option<Result<(), String>>;

/// One loaded library version, running its nodes.
pub trait LibraryRuntime: Send + Sync {
    /// Runs one admitted execution; returns at once. The runtime calls
    /// `job.execution.begin()` when the node starts and `end` when it is
    /// over, or `reject` if it cannot run it at all.
    fn execute(&self, job: Job);

    /// Runs the library's shutdown hook, blocking until it returns.
    fn shutdown_hook(&self) -> HookOutcome;

    /// The version is no longer served (replaced, removed, or the server is
    /// stopping); executions already handed over still finish, and one
    /// handed over later (it waited for a slot) goes to the version served
    /// now through [`Job::redirect`]. Returns
    /// whether its shutdown hook is still owed when the server stops (true
    /// for a library that stays mapped in the server's process).
    fn retire(&self) -> bool;

    /// Whether it can run executions now or soon (a worker is up or
    /// restarting); false once it failed for good.
    fn is_up(&self) -> bool {
        true
    }
}
