//! A worker process (`nano-server worker`, started by the server's process
//! backend from its own binary): loads one library, runs its nodes on a
//! thread pool, and talks to the server over fd 3 (see [`super::wire`]).
//! It never listens on a socket; when the server goes, so does it (the
//! parent-death signal set before exec, or end of file on the channel).

use std::{
    collections::HashMap,
    os::fd::FromRawFd,
    process::ExitCode,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
};

use abi_stable::std_types::{RResult, RSlice, RStr, RString};
use futures_util::{SinkExt, StreamExt};
use nano_plugin_abi::ffi::{HostAnswer, HostCallbacks, PluginModuleRef};
use serde_bytes::ByteBuf;
use tokio::sync::mpsc;
use tokio_util::codec::{FramedRead, FramedWrite};

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
    let channel = unsafe { std::os::unix::net::UnixStream::from_raw_fd(wire::CHANNEL_FD) };
    // Programs a plugin starts must not inherit the channel.
    // SAFETY: fcntl on an fd this process owns.
    unsafe {
        let flags = libc::fcntl(wire::CHANNEL_FD, libc::F_GETFD);
        libc::fcntl(wire::CHANNEL_FD, libc::F_SETFD, flags | libc::FD_CLOEXEC);
    }
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("nano-server worker: cannot start the runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve(channel, threads)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("nano-server worker: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// Statuses and results on their way to the server.
type Outbox = mpsc::UnboundedSender<FromWorker>;

async fn serve(channel: std::os::unix::net::UnixStream, threads: usize) -> anyhow::Result<()> {
    channel.set_nonblocking(true)?;
    let (reader, writer) = tokio::net::UnixStream::from_std(channel)?.into_split();
    let mut frames = FramedRead::new(reader, wire::codec(wire::MAX_TO_WORKER));
    let (outbox, mut outgoing) = mpsc::unbounded_channel::<FromWorker>();
    // The writer sends every message that is ready with one flush.
    let writer = tokio::spawn(async move {
        let mut sink = FramedWrite::new(writer, wire::codec(wire::MAX_FROM_WORKER));
        while let Some(message) = outgoing.recv().await {
            let last = matches!(message, FromWorker::ShutdownDone { .. });
            let mut fed = sink.feed(wire::encode(&message)).await;
            while fed.is_ok() {
                match outgoing.try_recv() {
                    Ok(message) => fed = sink.feed(wire::encode(&message)).await,
                    Err(_) => break,
                }
            }
            if fed.is_err() || SinkExt::<bytes::Bytes>::flush(&mut sink).await.is_err() || last {
                break;
            }
            if sink.write_buffer().capacity() > super::process::LARGE_BUFFER {
                *sink.write_buffer_mut() = bytes::BytesMut::new();
            }
        }
    });

    let Some(ToWorker::Hello { build_id }) = next(&mut frames).await? else {
        anyhow::bail!("the server did not start with a handshake");
    };
    if build_id != wire::BUILD_ID {
        anyhow::bail!(
            "started by another build of nano-server ({build_id}; this is {})",
            wire::BUILD_ID
        );
    }
    let _ = outbox.send(FromWorker::Hello {
        build_id: wire::BUILD_ID.to_owned(),
    });
    let Some(ToWorker::Load { path, bytes }) = next(&mut frames).await? else {
        anyhow::bail!("the server did not send a library");
    };
    // Named after this process, so the server can remove it if this worker
    // dies while loading; gone once the library is mapped.
    let loader = Loader::with_prefix(&super::process::private_dir_prefix(std::process::id()))?;
    let loaded = loader.load_bytes(std::path::Path::new(&path), &bytes);
    drop(loader);
    let module = match loaded {
        Ok(loaded) => {
            let definitions: Vec<&serde_json::Value> = loaded.nodes.iter().map(|n| &n.definition).collect();
            let json = serde_json::to_string(&definitions)?;
            let _ = outbox.send(FromWorker::Loaded(Ok((loaded.abi_version, json))));
            loaded.module
        }
        Err(err) => {
            let _ = outbox.send(FromWorker::Loaded(Err(err.to_string())));
            drop(outbox);
            let _ = writer.await;
            return Ok(());
        }
    };
    drop(bytes);
    // The library came in one large frame; do not keep its buffer.
    *frames.read_buffer_mut() = bytes::BytesMut::new();

    let pool = Pool::start(threads);
    let running: Arc<Mutex<HashMap<u64, Arc<AtomicBool>>>> = Arc::default();
    let calls = Arc::new(Calls::default());
    loop {
        match next(&mut frames).await? {
            Some(ToWorker::Execute(frame)) => {
                let aborted = Arc::new(AtomicBool::new(false));
                lock(&running).insert(frame.id, Arc::clone(&aborted));
                let (outbox, running, calls) = (outbox.clone(), Arc::clone(&running), Arc::clone(&calls));
                let work = pool::Work::Other(Box::new(move || {
                    let id = frame.id;
                    let outcome = run_node(
                        module,
                        frame,
                        &WorkerHost {
                            id,
                            aborted,
                            outbox: outbox.clone(),
                            calls,
                        },
                    );
                    lock(&running).remove(&id);
                    let _ = outbox.send(FromWorker::Done { id, outcome });
                }));
                if pool.submit(work).is_err() {
                    anyhow::bail!("no thread to run a node");
                }
            }
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
                let _ = outbox.send(FromWorker::ShutdownDone { hook });
                drop(outbox);
                let _ = writer.await;
                // Nodes still running (ignoring their abort) end with the process.
                std::process::exit(0);
            }
            Some(other) => anyhow::bail!("unexpected message from the server: {other:?}"),
            // The server closed the channel (or is gone): stop at once.
            None => std::process::exit(0),
        }
    }
}

/// The next message from the server; `None` when it closed the channel.
async fn next(
    frames: &mut FramedRead<tokio::net::unix::OwnedReadHalf, tokio_util::codec::LengthDelimitedCodec>,
) -> anyhow::Result<Option<ToWorker>> {
    match frames.next().await {
        Some(Ok(bytes)) => Ok(Some(wire::decode::<ToWorker>(&bytes)?)),
        Some(Err(err)) => Err(err.into()),
        None => Ok(None),
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
    outbox: Outbox,
    calls: Arc<Calls>,
}

impl HostCallbacks for WorkerHost {
    fn send_status(&self, status: RStr<'_>) {
        let _ = self.outbox.send(FromWorker::Status {
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
        let sent = self.outbox.send(FromWorker::HostCall {
            id: self.id,
            call,
            request: request.as_str().to_owned(),
            body: ByteBuf::from(body.as_slice().to_vec()),
        });
        let outcome = match sent {
            Ok(()) => answer.recv().unwrap_or_else(|_| Err(gone())),
            Err(_) => Err(gone()),
        };
        host::answer(outcome.map(|(json, bytes)| (json, bytes::Bytes::from(bytes))))
    }
}

/// The failure of a call the server can no longer answer.
fn gone() -> String {
    nano_plugin_abi::services::failure(
        nano_plugin_abi::services::ErrorKind::Other,
        "the server closed the worker's channel",
    )
}
