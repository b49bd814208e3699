//! nano-server: serves compiled node plugins over the Nano protocol.
//!
//! Reading order: [`config`] (what to serve), [`loader`] (plugin libraries
//! in: discovery, trust, loading), `reconcile` and `watcher` (keeping the
//! served set equal to the disk), `registry` (what is served now),
//! `execution` (running a node, on a backend), [`protocol`] (the wire
//! format), `state`, `ws`, `http` and `api` (the transports), `ui` (the
//! browser pages), `metrics` and `failures` (what is measured and kept);
//! [`serve`] ties them together. [`build`],
//! [`scaffold`] and [`catalog`] back the `build`, `new`, `inspect` and
//! `nodes` commands.
//!
//! Public are the modules the binary, the benchmarks and the fuzz target
//! use; the rest is internal.

// Without Unix the process backend is not built (process isolation is
// refused at start), and what only it uses goes unused there.
#![cfg_attr(not(unix), allow(dead_code))]

mod api;
pub mod build;
pub mod catalog;
pub mod config;
mod connection;
mod execution;
mod failures;
mod http;
pub mod loader;
mod metrics;
mod nanocore;
pub mod protocol;
mod reconcile;
mod registry;
pub mod scaffold;
pub mod serve;
mod state;
pub mod telemetry;
mod ui;
mod watcher;
mod ws;

/// Runs a worker process (`nano-server worker`, started by the server in
/// process isolation, never by hand).
#[cfg(unix)]
pub fn run_worker(threads: usize) -> std::process::ExitCode {
    execution::run_worker(threads)
}

/// The server's one HTTP client (NanoCore's API, trace export), shared.
pub fn http_client() -> anyhow::Result<reqwest::Client> {
    nanocore::http_client()
}

/// Locks a mutex, taking the data even if a thread panicked holding it: every
/// lock in the server guards data that stays consistent between statements.
pub(crate) fn lock<T: ?Sized>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
