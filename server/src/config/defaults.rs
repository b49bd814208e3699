//! The value of every key `config.toml` may leave out, each named once;
//! the keys' docs in `file.rs` link here, and the README's table agrees.

use super::{Isolation, SwapStrategy};

pub const DOMAIN: &str = "local.nanograph";
/// Loopback: nothing is reachable from another machine unless asked for.
pub const HOST: &str = "127.0.0.1";
pub const PORT: u16 = 3017;
/// Relative to the configuration file's folder.
pub const NODES_PATH: &str = "nodes";
pub const AUTO_WATCH: bool = true;
pub const WATCH_DEBOUNCE_MS: u64 = 500;
pub const BUILD_SOURCES: bool = false;
pub const ALLOW_INSECURE_PERMISSIONS: bool = false;
pub const ISOLATION: Isolation = Isolation::Process;
pub const UI: bool = true;
pub const SHUTDOWN_GRACE_MS: u64 = 10_000;

pub const MAX_REQUEST_BYTES: usize = 16 << 20;
pub const MAX_MESSAGE_BYTES: usize = 16 << 20;
pub const MAX_CONNECTIONS: usize = 1024;
pub const MAX_OUTBOX_BYTES: usize = 8 << 20;
/// A client that takes nothing for this long while frames wait for it is
/// cut off: long enough for an
/// orchestrator's GC pause or burst of work, short enough that a client that
/// never reads frees its executions' slots.
pub const CLIENT_STALL_MS: u64 = 30_000;
/// `client_stall_ms` is raised to this.
pub const MIN_CLIENT_STALL_MS: u64 = 100;
/// `max_outbox_bytes` is raised to this: one status frame must fit.
pub const MIN_OUTBOX_BYTES: usize = 64 << 10;
pub const MAX_HTTP_CONNECTIONS: usize = 4096;
/// A quarter of `MAX_HTTP_CONNECTIONS`: idle event streams can never take
/// the connections executions and health checks need.
pub const MAX_EVENT_STREAMS: usize = 1024;
/// Enough browser tabs and scripts for one person; far from one client
/// holding the server.
pub const MAX_EVENT_STREAMS_PER_ADDRESS: usize = 64;
pub const HEADER_READ_TIMEOUT_MS: u64 = 10_000;
/// `header_read_timeout_ms` is kept within these (slowloris: a slow header
/// must not hold a connection for long).
pub const HEADER_READ_TIMEOUT_BOUNDS_MS: (u64, u64) = (100, 30_000);
pub const IDLE_TIMEOUT_MS: u64 = 60_000;
/// `idle_timeout_ms` is raised to this.
pub const MIN_IDLE_TIMEOUT_MS: u64 = 100;

pub const MAX_QUEUED_EXECUTIONS: usize = 1024;
pub const MAX_QUEUED_BYTES: usize = 256 << 20;

/// `max_concurrent_executions`: a small multiple of the cores, because
/// nodes often wait on I/O or sleep (4 when the cores cannot be counted).
pub fn max_concurrent_executions() -> usize {
    std::thread::available_parallelism().map_or(4, |n| n.get() * 4)
}

pub const ABORT_GRACE_MS: u64 = 5_000;
pub const WORKER_DRAIN_MS: u64 = 60_000;
pub const WORKER_START_TIMEOUT_MS: u64 = 10_000;
pub const WORKER_RESTART_INITIAL_MS: u64 = 100;
pub const WORKER_RESTART_MAX_MS: u64 = 30_000;
pub const WORKER_RESTART_WAIT_MS: u64 = 10_000;
pub const WORKER_RESTART_RESET_MS: u64 = 60_000;
/// A worker silent this long is replaced. Its pings are answered by a
/// thread that runs no node code, so only a stopped, deadlocked or swapping
/// process misses them; in a Python worker that thread still needs the GIL,
/// which CPython hands over every 5 ms but a C extension may hold for
/// seconds, hence 10 s rather than one.
pub const WORKER_HEARTBEAT_MS: u64 = 10_000;
/// `worker_heartbeat_ms` is raised to this (a ping goes out every quarter).
pub const MIN_WORKER_HEARTBEAT_MS: u64 = 200;
pub const SWAP_STRATEGY: SwapStrategy = SwapStrategy::Overlap;

pub const PYTHON_WORKERS: usize = 1;
/// `[python] workers` above this is refused (a typo, not a pool size).
pub const MAX_PYTHON_WORKERS: usize = 64;
