//! A worker's supervisor: the task that reads its frames, samples its
//! memory, kills it when asked, and once it is gone tells its library and
//! fails what it was running. It knows the worker only through [`Worker`]
//! and [`WorkerOwner`], whatever its kind.

use std::{sync::Arc, time::Duration};

use futures_util::StreamExt;

use super::{
    exit::WorkerExit,
    spawn::WorkerIo,
    worker::{Worker, WorkerOwner},
};
use crate::{execution::Failure, metrics};

/// How often a worker's resident memory is sampled with a memory limit set
/// (a leak of 100 MB/s overshoots it by at most 10 MB)...
const MEMORY_SAMPLE_LIMITED: Duration = Duration::from_millis(100);

/// ...and without one (only the `worker_rss` gauge reads it).
const MEMORY_SAMPLE: Duration = Duration::from_secs(1);

/// After the process is gone, what it wrote just before (a result, its
/// shutdown hook's outcome) is read for at most this long.
const LAST_FRAMES_WAIT: Duration = Duration::from_secs(1);

/// Reads a worker's frames until it exits, then fails what it was running
/// and tells `owner`, which holds its library alive meanwhile.
pub(crate) async fn supervise(owner: Arc<dyn WorkerOwner>, worker: Arc<Worker>, mut io: WorkerIo) {
    let label = worker.context.label.to_string();
    let memory_limit = worker.context.settings.memory_limit_bytes;
    let mut sample = tokio::time::interval(if memory_limit.is_some() {
        MEMORY_SAMPLE_LIMITED
    } else {
        MEMORY_SAMPLE
    });
    let rss = metrics::gauge!(metrics::WORKER_RSS, "library" => label.clone());
    // A ping every quarter of the heartbeat: a stall is seen between the
    // limit and 1.25 times it.
    let heartbeat = worker.context.settings.heartbeat;
    let mut beat = tokio::time::interval(heartbeat.map_or(Duration::from_secs(3600), |limit| limit / 4));
    beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut stalled = false;
    let status = loop {
        tokio::select! {
            frame = io.frames.next() => match frame {
                Some(Ok(bytes)) => {
                    if let Err(violation) = worker.on_frame(&bytes) {
                        tracing::error!(library = %label, pid = worker.pid, "protocol violation by the worker: {violation}; ending it");
                        worker.end(Some(WorkerExit::ProtocolViolation(violation)));
                    }
                }
                // The channel reset: a process that died with frames it had
                // not read yet (a ping, an execution) resets it instead of
                // closing it. Like end of file: its exit status says why.
                Some(Err(err)) if is_disconnect(&err) => {
                    match tokio::time::timeout(LAST_FRAMES_WAIT, io.child.wait()).await {
                        Ok(status) => break status,
                        Err(_) => {
                            // Alive with its channel gone: it cannot serve.
                            if !worker.is_ending() {
                                worker.end(Some(WorkerExit::ProtocolViolation(err.to_string())));
                            }
                            let _ = io.child.start_kill();
                            break io.child.wait().await;
                        }
                    }
                }
                // An oversized frame, or another read error: the process is
                // ended. (Killed by the server, the server's reason stands.)
                Some(Err(err)) => {
                    if !worker.is_ending() {
                        worker.end(Some(WorkerExit::ProtocolViolation(err.to_string())));
                    }
                    let _ = io.child.start_kill();
                    break io.child.wait().await;
                }
                None => break io.child.wait().await,
            },
            status = io.child.wait() => {
                // Gone, but what it wrote just before exiting may still be unread.
                let rest = async {
                    while let Some(Ok(bytes)) = io.frames.next().await {
                        if worker.on_frame(&bytes).is_err() {
                            break;
                        }
                    }
                };
                let _ = tokio::time::timeout(LAST_FRAMES_WAIT, rest).await;
                break status;
            }
            () = worker.kill.notified() => {
                let _ = io.child.start_kill();
            }
            _ = beat.tick(), if heartbeat.is_some() && !stalled => {
                // A worker asked for its shutdown hook may run it on the
                // thread that answers pings; the hook has its own timeout.
                if worker.is_ending() {
                    continue;
                }
                let silent = worker.ping();
                if let Some(limit) = heartbeat
                    && silent >= limit
                {
                    stalled = true;
                    tracing::error!(
                        library = %label,
                        pid = worker.pid,
                        silent_ms = silent.as_millis() as u64,
                        "the worker for {label} stopped answering its heartbeat (stopped, deadlocked or swapping); replacing it"
                    );
                    worker.end(Some(WorkerExit::Stalled { silent_ms: silent.as_millis() }));
                }
            }
            _ = sample.tick() => {
                if let Some(bytes) = resident_bytes(worker.pid) {
                    rss.set(bytes as f64);
                    if let Some(limit) = memory_limit
                        && bytes > limit
                    {
                        worker.end(Some(WorkerExit::MemoryLimit { limit_mib: limit >> 20 }));
                    }
                }
            }
        }
    };
    let exit = worker.exited(status);
    metrics::gauge!(metrics::WORKERS).decrement(1.0);
    worker.context.kind.clean_up(worker.pid);
    let crashed = exit.is_crash();
    let inflight = worker.in_flight();
    if crashed {
        tracing::error!(
            library = %label,
            pid = worker.pid,
            in_flight = inflight,
            "the worker for {label} {exit}"
        );
    } else {
        tracing::info!(library = %label, pid = worker.pid, "the worker for {label} {exit}");
    }
    let plural = if inflight == 1 { "" } else { "s" };
    let (failure, message) = match exit {
        WorkerExit::Stalled { .. } => (Failure::Stalled, format!("node stalled: the worker for {label} {exit}")),
        _ if crashed => (
            Failure::Crashed,
            format!("node crashed: the worker for {label} {exit} ({inflight} execution{plural} in flight)"),
        ),
        _ => (Failure::Crashed, format!("the worker for {label} {exit}")),
    };
    // The library lets go of it (and schedules the restart) before its
    // executions hear of the crash: a client that retries at once then
    // waits for the new worker instead of reaching this dead one.
    owner.worker_exited(&worker, &exit);
    worker.fail_inflight(failure, message);
    // What this worker left allocated at NanoCore is freed for it.
    let services = Arc::clone(&worker.context.services);
    let version = worker.version;
    tokio::spawn(async move { services.end_version(version).await });
}

/// Whether a read error means the worker's end of the channel is gone
/// (it died, or is dying), not that it sent something wrong.
fn is_disconnect(err: &std::io::Error) -> bool {
    matches!(
        err.kind(),
        std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::UnexpectedEof
    )
}

/// A process's resident memory, from `/proc/<pid>/statm`.
fn resident_bytes(pid: u32) -> Option<u64> {
    let statm = std::fs::read_to_string(format!("/proc/{pid}/statm")).ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    Some(pages * u64::try_from(page).unwrap_or(4096))
}
