//! nano-server: serves compiled node plugins over the Nano protocol.
//!
//! Reading order: [`config`] (what to serve), [`loader`] (plugin libraries
//! in: discovery, trust, loading), `reconcile` and `watcher` (keeping the
//! served set equal to the disk), `registry` (what is served now),
//! `execution` (running a node, on a backend), [`protocol`] (the wire
//! format), `state`, `transport` and `api` (the transports: listener,
//! router, WebSocket sessions, the HTTP API), `ui` (the browser pages),
//! `metrics` and `failures` (what is measured and kept);
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
mod execution;
mod failures;
pub mod loader;
mod metrics;
mod nanocore;
pub mod protocol;
pub mod python_env;
mod python_groups;
mod rate_limit;
mod reconcile;
mod registry;
pub mod scaffold;
pub mod serve;
mod state;
pub mod telemetry;
mod transport;
mod ui;
mod watcher;

/// Runs a worker process (`nano-server worker`, started by the server in
/// process isolation, never by hand).
#[cfg(unix)]
pub fn run_worker(threads: usize) -> std::process::ExitCode {
    execution::run_worker(threads)
}

/// Returns free heap memory to the system after something large and rare was
/// freed (a library version: the server reads each file whole, to hash and
/// copy the bytes it loads). The binary allocates with mimalloc, which keeps
/// freed segments for reuse until a collection; glibc's heap (the unit tests,
/// and what C code in the process uses) is trimmed too. Without this, RSS
/// after a burst of swaps kept one file's size per overlapping read.
pub(crate) fn give_back_free_memory() {
    // SAFETY: mi_collect only walks mimalloc's own heaps and arenas; it is
    // callable whether or not mimalloc is the global allocator.
    unsafe {
        libmimalloc_sys::mi_collect(true);
    }
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks the allocator's own free lists.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Locks a mutex, taking the data even if a thread panicked holding it: every
/// lock in the server guards data that stays consistent between statements.
pub(crate) fn lock<T: ?Sized>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
