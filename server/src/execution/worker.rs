//! A worker process (`nano-server worker`, started by the server's process
//! backend from its own binary): loads one library, runs its nodes on a
//! thread pool, and talks to the server over fd 3 (see [`super::wire`]).
//! It never listens on a socket; when the server goes, so does it (the
//! parent-death signal set before exec, or end of file on the channel).
//!
//! No async runtime: the main thread reads frames with blocking reads and
//! hands executions to the pool; whichever thread has a message writes it
//! (see [`Channel::send`]), so a result leaves from the thread that made it,
//! without waking another one.

use std::{
    collections::HashMap,
    io::{Read, Write},
    os::{fd::FromRawFd, unix::net::UnixStream},
    process::ExitCode,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
};

use abi_stable::std_types::{RResult, RSlice, RStr, RString};
use bytes::BytesMut;
use nano_plugin_abi::ffi::{HostAnswer, HostCallbacks, PluginModuleRef};
use serde_bytes::ByteBuf;
use tokio_util::codec::{Decoder, Encoder, LengthDelimitedCodec};

use super::{
    ExecutionRequest, host,
    pool::{self, Pool},
    wire::{self, ExecuteFrame, FromWorker, ToWorker},
};
use crate::{loader::Loader, lock};

/// Runs the worker until the server closes the channel or asks it to stop.
pub fn run(threads: usize) -> ExitCode {
    // SAFETY: the server hands the worker its end of the channel as fd 3
    // (dup2 before exec); nothing else in this process owns that fd.
    let channel = unsafe { UnixStream::from_raw_fd(wire::CHANNEL_FD) };
    // Programs a plugin starts must not inherit the channel.
    // SAFETY: fcntl on an fd this process owns.
    unsafe {
        let flags = libc::fcntl(wire::CHANNEL_FD, libc::F_GETFD);
        libc::fcntl(wire::CHANNEL_FD, libc::F_SETFD, flags | libc::FD_CLOEXEC);
    }
    match run_worker_loop(channel, threads) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("nano-server worker: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// The worker's end of the channel, written by any thread.
struct Channel {
    stream: UnixStream,
    out: Mutex<Outgoing>,
}

#[derive(Default)]
struct Outgoing {
    /// Encoded frames not yet written.
    pending: BytesMut,
    /// A buffer to swap in while `pending` is written.
    spare: BytesMut,
    /// Some thread is writing: it also writes what others add meanwhile.
    writing: bool,
}

impl Channel {
    /// Sends one message. Frames queue up while another thread writes, and
    /// that thread writes them too: one syscall carries every message that
    /// is ready, and the sender never waits for a thread to wake up. A
    /// write error (the server is gone) is left to the reader, which sees
    /// the end of file and exits.
    fn send(&self, message: &FromWorker) {
        let frame = wire::encode(message);
        let mut out = lock(&self.out);
        if wire::codec(wire::MAX_FROM_WORKER)
            .encode(frame, &mut out.pending)
            .is_err()
        {
            drop(out);
            // Over the cap: the server would end this worker for it anyway.
            eprintln!(
                "nano-server worker: a message over {} bytes was dropped",
                wire::MAX_FROM_WORKER
            );
            return;
        }
        if out.writing {
            return;
        }
        out.writing = true;
        loop {
            let spare = std::mem::take(&mut out.spare);
            let mut batch = std::mem::replace(&mut out.pending, spare);
            drop(out);
            let written = (&self.stream).write_all(&batch);
            batch.clear();
            out = lock(&self.out);
            if batch.capacity() <= wire::LARGE_BUFFER {
                out.spare = batch;
            }
            if written.is_err() || out.pending.is_empty() {
                out.writing = false;
                return;
            }
        }
    }
}

/// Frames from the server, read with blocking reads.
struct Incoming {
    stream: UnixStream,
    buffer: BytesMut,
    /// What one read takes (allocated once: zeroing it per read shows).
    chunk: Box<[u8]>,
    codec: LengthDelimitedCodec,
}

impl Incoming {
    /// The next message; `None` when the server closed the channel.
    fn next(&mut self) -> anyhow::Result<Option<ToWorker>> {
        loop {
            if let Some(frame) = self.codec.decode(&mut self.buffer)? {
                // The library comes in one large frame; do not keep its buffer.
                if self.buffer.is_empty() && self.buffer.capacity() > wire::LARGE_BUFFER {
                    self.buffer = BytesMut::new();
                }
                return Ok(Some(wire::decode::<ToWorker>(&frame)?));
            }
            let n = match self.stream.read(&mut self.chunk) {
                Ok(n) => n,
                Err(err) if err.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(err) => return Err(err.into()),
            };
            if n == 0 {
                return Ok(None);
            }
            self.buffer.extend_from_slice(&self.chunk[..n]);
        }
    }
}

/// Shakes hands, loads the library and runs what the server sends until it
/// closes the channel or asks for the shutdown hook.
fn run_worker_loop(stream: UnixStream, threads: usize) -> anyhow::Result<()> {
    stream.set_nonblocking(false)?;
    let channel = Arc::new(Channel {
        stream: stream.try_clone()?,
        out: Mutex::default(),
    });
    let mut incoming = Incoming {
        stream,
        buffer: BytesMut::new(),
        chunk: vec![0; 64 << 10].into_boxed_slice(),
        codec: wire::codec(wire::MAX_TO_WORKER),
    };

    let Some(ToWorker::Hello { build_id }) = incoming.next()? else {
        anyhow::bail!("the server did not start with a handshake");
    };
    if build_id != wire::BUILD_ID {
        anyhow::bail!(
            "started by another build of nano-server ({build_id}; this is {})",
            wire::BUILD_ID
        );
    }
    channel.send(&FromWorker::Hello {
        build_id: wire::BUILD_ID.to_owned(),
    });
    let Some(ToWorker::Load { path, bytes }) = incoming.next()? else {
        anyhow::bail!("the server did not send a library");
    };
    // Named after this process, so the server can remove it if this worker
    // dies while loading; gone once the library is mapped.
    let loader = Loader::with_prefix(&wire::private_dir_prefix(std::process::id()))?;
    let loaded = loader.load_bytes(std::path::Path::new(&path), &bytes);
    drop(loader);
    drop(bytes);
    let module = match loaded {
        Ok(loaded) => {
            let definitions: Vec<&serde_json::Value> = loaded.nodes.iter().map(|n| &n.definition).collect();
            let json = serde_json::to_string(&definitions)?;
            channel.send(&FromWorker::Loaded(Ok((loaded.abi_version, json))));
            loaded.module
        }
        Err(err) => {
            channel.send(&FromWorker::Loaded(Err(err.to_string())));
            return Ok(());
        }
    };

    // One thread to start with: a second one is added as soon as a node
    // makes the others wait (see `pool`), and a thread per core would wake
    // and sleep in turn for trivial nodes, each time a context switch.
    let pool = Pool::start_with(1, threads);
    let running: Arc<Mutex<HashMap<u64, Arc<AtomicBool>>>> = Arc::default();
    let calls = Arc::new(Calls::default());
    loop {
        match incoming.next()? {
            Some(ToWorker::Execute(frame)) => {
                let aborted = Arc::new(AtomicBool::new(false));
                lock(&running).insert(frame.id, Arc::clone(&aborted));
                let (channel, running, calls) = (Arc::clone(&channel), Arc::clone(&running), Arc::clone(&calls));
                let work = pool::Work::Other(Box::new(move || {
                    let id = frame.id;
                    let host = WorkerHost {
                        id,
                        aborted,
                        channel,
                        calls,
                    };
                    let outcome = run_node(module, frame, &host);
                    lock(&running).remove(&id);
                    host.channel.send(&FromWorker::Done {
                        id,
                        outcome,
                        message: None,
                    });
                }));
                if pool.submit(work).is_err() {
                    anyhow::bail!("no thread to run a node");
                }
            }
            // Answered here, on the thread that reads the channel and never
            // runs a node: a busy worker is never taken for a stalled one.
            Some(ToWorker::Ping { seq }) => channel.send(&FromWorker::Pong { seq }),
            Some(ToWorker::Abort { id }) => {
                if let Some(flag) = lock(&running).get(&id) {
                    flag.store(true, Ordering::SeqCst);
                }
            }
            Some(ToWorker::HostReply { call, outcome }) => {
                if let Some(waiting) = lock(&calls.waiting).remove(&call) {
                    let _ = waiting.send(outcome.map(|(json, bytes)| (json, bytes.into_vec())));
                }
            }
            Some(ToWorker::Shutdown) => {
                let hook = module
                    .shutdown()
                    .map(|hook| hook().into_result().map_err(|e| e.into_string()));
                // Written before `send` returns (or by a node's thread that
                // is writing now, which it waits for below).
                channel.send(&FromWorker::ShutdownDone { hook });
                while lock(&channel.out).writing {
                    std::thread::yield_now();
                }
                // Nodes still running (ignoring their abort) end with the process.
                std::process::exit(0);
            }
            Some(other) => anyhow::bail!("unexpected message from the server: {other:?}"),
            // The server closed the channel (or is gone): stop at once.
            None => std::process::exit(0),
        }
    }
}

/// Runs one node on this pool thread until it returns.
fn run_node(module: PluginModuleRef, frame: ExecuteFrame, host: &WorkerHost) -> Result<String, String> {
    let request = ExecutionRequest {
        instance_id: frame.instance_id,
        node_uid: String::new(),
        inputs: frame.inputs,
        parameters: frame.parameters,
        graph_node: frame.graph_node,
    };
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        host::call_node(module, frame.node_index, &request, host)
    }))
    .unwrap_or_else(|_| Err("internal error while running the node".to_owned()))
}

/// Host calls waiting for the server's answer, by call id.
#[derive(Default)]
struct Calls {
    next: AtomicU64,
    waiting: Mutex<HashMap<u64, std::sync::mpsc::SyncSender<HostOutcome>>>,
}

type HostOutcome = Result<(String, Vec<u8>), String>;

/// The host callbacks in a worker: statuses go to the server, the abort
/// flag is set when the server says so, host calls are made by the server
/// (this process has no NanoCore token) while the node's thread waits.
struct WorkerHost {
    id: u64,
    aborted: Arc<AtomicBool>,
    channel: Arc<Channel>,
    calls: Arc<Calls>,
}

impl HostCallbacks for WorkerHost {
    fn send_status(&self, status: RStr<'_>) {
        self.channel.send(&FromWorker::Status {
            id: self.id,
            json: status.as_str().to_owned(),
        });
    }

    fn is_aborted(&self) -> bool {
        self.aborted.load(Ordering::SeqCst)
    }

    fn host_call(&self, request: RStr<'_>, body: RSlice<'_, u8>) -> RResult<HostAnswer, RString> {
        let call = self.calls.next.fetch_add(1, Ordering::Relaxed);
        let (reply, answer) = std::sync::mpsc::sync_channel(1);
        lock(&self.calls.waiting).insert(call, reply);
        self.channel.send(&FromWorker::HostCall {
            id: self.id,
            call,
            request: request.as_str().to_owned(),
            body: ByteBuf::from(body.as_slice().to_vec()),
        });
        // When the channel closes the process exits, this thread with it.
        let outcome = answer.recv().unwrap_or_else(|_| Err(gone()));
        host::answer(outcome.map(|(json, bytes)| (json, bytes::Bytes::from(bytes))))
    }
}

/// The failure of a call the server can no longer answer.
fn gone() -> String {
    nano_plugin_abi::host_wire::Failure::new(
        nano_plugin_abi::host_wire::ErrorKind::Other,
        "the server closed the worker's channel",
    )
    .to_json()
}
