//! Spawning a worker: its process (any [`WorkerKind`]) with its end of the
//! channel as fd 3, its stdout and stderr forwarded to the log, then the
//! handshake and the library's load, each bounded by `worker_start_timeout_ms`.

use std::{
    io,
    os::fd::AsRawFd,
    path::Path,
    process::Stdio,
    sync::{Arc, Weak},
    time::Duration,
};

use futures_util::StreamExt;
use tokio::{
    io::AsyncBufReadExt,
    net::unix::OwnedReadHalf,
    process::{Child, ChildStderr, ChildStdout},
};
use tokio_util::codec::{FramedRead, LengthDelimitedCodec};

use super::{
    exit::{StartError, short_cause},
    kind::WorkerKind,
    worker::{Worker, WorkerContext, WorkerOwner},
};
use crate::{
    execution::wire::{self, FromWorker},
    metrics,
};

/// A worker whose channel closed while starting gets this long to exit, so
/// its exit status can say why it died ("crashed while loading (SIGSEGV)").
const DYING_WORKER_WAIT: Duration = Duration::from_secs(5);

/// A worker's process and the frames it sends, owned by its supervisor.
pub(crate) struct WorkerIo {
    pub child: Child,
    pub frames: FramedRead<OwnedReadHalf, LengthDelimitedCodec>,
}

/// A worker that loaded its library.
pub(crate) struct Started {
    pub worker: Arc<Worker>,
    pub io: WorkerIo,
    /// What the worker loaded.
    pub loaded: wire::LoadedLibrary,
}

/// Spawns a worker for the library at `path`, shakes hands and has it load
/// the library (`bytes`, as read and trusted by the server).
pub(crate) async fn start_worker(
    context: &Arc<WorkerContext>,
    path: &Path,
    bytes: &[u8],
    owner: Weak<dyn WorkerOwner>,
) -> Result<Started, StartError> {
    let kind = &context.kind;
    let (ours, theirs) = std::os::unix::net::UnixStream::pair().map_err(StartError::spawn("socketpair"))?;
    let mut command = kind.command(&context.label, context.settings.threads)?;
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let fd = theirs.as_raw_fd();
    let parent = std::process::id();
    // SAFETY: between fork and exec only async-signal-safe calls (dup2,
    // fcntl, prctl, getppid, _exit) run.
    unsafe {
        command.pre_exec(move || {
            if fd == wire::CHANNEL_FD {
                let flags = libc::fcntl(fd, libc::F_GETFD);
                libc::fcntl(fd, libc::F_SETFD, flags & !libc::FD_CLOEXEC);
            } else if libc::dup2(fd, wire::CHANNEL_FD) < 0 {
                return Err(io::Error::last_os_error());
            }
            #[cfg(target_os = "linux")]
            {
                // A SIGKILLed server leaves no worker behind.
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(io::Error::last_os_error());
                }
                if libc::getppid() as u32 != parent {
                    libc::_exit(1);
                }
            }
            let _ = parent;
            Ok(())
        });
    }
    let mut child = command
        .spawn()
        .map_err(StartError::spawn("starting a worker process"))?;
    drop(theirs);
    let pid = child.id().unwrap_or(0);
    forward_output(&context.label, pid, child.stdout.take(), child.stderr.take());
    ours.set_nonblocking(true).map_err(StartError::spawn("socket"))?;
    let stream = tokio::net::UnixStream::from_std(ours).map_err(StartError::spawn("socket"))?;
    let (reader, writer) = stream.into_split();
    let mut frames = FramedRead::new(reader, wire::codec(kind.max_from_worker()));
    let worker = Worker::new(pid, Arc::clone(context), owner, writer);

    for message in kind.greeting(path, bytes) {
        worker.send(message);
    }
    let handshake = Handshake {
        kind: kind.as_ref(),
        worker: &worker,
        frames: &mut frames,
        deadline: tokio::time::Instant::now() + context.settings.start_timeout,
        timeout_ms: context.settings.start_timeout.as_millis(),
    };
    match handshake.run().await {
        Ok(Some(loaded)) => {
            metrics::gauge!(metrics::WORKERS).increment(1.0);
            Ok(Started {
                worker,
                io: WorkerIo { child, frames },
                loaded,
            })
        }
        // The channel closed: the process is dying; its status says how.
        Ok(None) => {
            let status = tokio::time::timeout(DYING_WORKER_WAIT, child.wait()).await;
            kind.clean_up(pid);
            let cause = match status {
                Ok(Ok(status)) => short_cause(status),
                _ => "unknown cause".to_owned(),
            };
            Err(StartError::Crashed(cause))
        }
        Err(err) => {
            let _ = child.start_kill();
            let _ = child.wait().await;
            kind.clean_up(pid);
            Err(err)
        }
    }
}

/// The start of a worker's conversation: its `Hello` (for a kind that has
/// one), then its `Loaded`.
struct Handshake<'a> {
    kind: &'a dyn WorkerKind,
    worker: &'a Worker,
    frames: &'a mut FramedRead<OwnedReadHalf, LengthDelimitedCodec>,
    deadline: tokio::time::Instant,
    timeout_ms: u128,
}

impl Handshake<'_> {
    /// The library's ABI version and definitions; `None` when the channel
    /// closed first.
    async fn run(mut self) -> Result<Option<wire::LoadedLibrary>, StartError> {
        let Some(expected) = self.kind.build_id() else {
            return self.loaded().await;
        };
        match self.expect("answer the handshake").await? {
            None => return Ok(None),
            Some(FromWorker::Hello { build_id }) if build_id == expected => {}
            Some(FromWorker::Hello { build_id }) => {
                return Err(StartError::Protocol(format!(
                    "the worker is from another build ({build_id})"
                )));
            }
            Some(other) => {
                return Err(StartError::Protocol(format!(
                    "the worker answered the handshake with {other:?}"
                )));
            }
        }
        self.loaded().await
    }

    /// The answer to the load. A host call made while loading (a
    /// library's `init` fetching an asset) belongs to no execution: it is
    /// answered for the worker's library version, while the load waits.
    async fn loaded(&mut self) -> Result<Option<wire::LoadedLibrary>, StartError> {
        loop {
            return match self.expect("report its definitions").await? {
                None => Ok(None),
                Some(FromWorker::Loaded(Ok(loaded))) => Ok(Some(loaded)),
                Some(FromWorker::Loaded(Err(reason))) => Err(StartError::Refused(reason)),
                Some(FromWorker::HostCall {
                    id,
                    call,
                    request,
                    body,
                }) if id == wire::NO_EXECUTION => {
                    self.worker.host_call_outside_execution(call, request, body);
                    continue;
                }
                Some(other) => Err(StartError::Protocol(format!(
                    "the worker answered the load with {other:?}"
                ))),
            };
        }
    }

    /// The next message, if the channel is still open.
    async fn expect(&mut self, step: &'static str) -> Result<Option<FromWorker>, StartError> {
        match tokio::time::timeout_at(self.deadline, self.frames.next()).await {
            Ok(Some(Ok(bytes))) => self
                .kind
                .decode(&bytes)
                .map(Some)
                .map_err(|e| StartError::Protocol(format!("{step}: {e}"))),
            Ok(_) => Ok(None),
            Err(_) => Err(StartError::TimedOut {
                step,
                timeout_ms: self.timeout_ms,
            }),
        }
    }
}

/// A worker's stdout and stderr go to the server's log, tagged with its library.
fn forward_output(label: &Arc<str>, pid: u32, stdout: Option<ChildStdout>, stderr: Option<ChildStderr>) {
    if let Some(stdout) = stdout {
        let label = Arc::clone(label);
        tokio::spawn(async move {
            let mut lines = tokio::io::BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                tracing::info!(library = %label, pid, stream = "stdout", "{line}");
            }
        });
    }
    if let Some(stderr) = stderr {
        let label = Arc::clone(label);
        tokio::spawn(async move {
            let mut lines = tokio::io::BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                tracing::warn!(library = %label, pid, stream = "stderr", "{line}");
            }
        });
    }
}
