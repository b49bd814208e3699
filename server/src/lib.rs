//! nano-server: serves compiled node plugins over the Nano protocol.
//!
//! Reading order: [`config`] (what to serve), [`loader`] (plugin libraries
//! in), [`reconcile`] and [`watcher`] (keeping the served set equal to the
//! disk), [`registry`] (what is served now), [`execution`] (running a node),
//! [`protocol`] (the wire format), [`ws`] and [`http`] (the transports);
//! [`api`] is the plain HTTP API; [`metrics`] names what is measured;
//! [`build`] and [`scaffold`] back the `build` and `new` commands.

pub mod api;
pub mod build;
pub mod config;
pub mod execution;
pub mod http;
pub mod loader;
pub mod metrics;
pub mod protocol;
pub mod reconcile;
pub mod registry;
pub mod scaffold;
pub mod state;
pub mod watcher;
pub mod ws;

/// Locks a mutex, taking the data even if a thread panicked holding it: every
/// lock in the server guards data that stays consistent between statements.
pub(crate) fn lock<T: ?Sized>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
