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
    collections::{HashMap, VecDeque},
    io::{Read, Write},
    os::{
        fd::{AsRawFd, FromRawFd},
        unix::net::UnixStream,
    },
    process::ExitCode,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
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
            if let Some(message) = self.buffered()? {
                return Ok(Some(message));
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

    /// The next message already read, if a whole one is.
    fn buffered(&mut self) -> anyhow::Result<Option<ToWorker>> {
        let Some(frame) = self.codec.decode(&mut self.buffer)? else {
            return Ok(None);
        };
        // The library comes in one large frame; do not keep its buffer.
        if self.buffer.is_empty() && self.buffer.capacity() > wire::LARGE_BUFFER {
            self.buffer = BytesMut::new();
        }
        Ok(Some(wire::decode::<ToWorker>(&frame)?))
    }

    /// Reads what the channel holds now, without waiting (the end of file
    /// or an error is left to [`next`](Self::next)).
    fn read_ready(&mut self) {
        // SAFETY: a non-blocking recv into a buffer this struct owns, of its length.
        let n = unsafe {
            libc::recv(
                self.stream.as_raw_fd(),
                self.chunk.as_mut_ptr().cast(),
                self.chunk.len(),
                libc::MSG_DONTWAIT,
            )
        };
        if n > 0 {
            self.buffer.extend_from_slice(&self.chunk[..n as usize]);
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
    let (module, node_count) = match loaded {
        Ok(loaded) => {
            let definitions: Vec<&serde_json::Value> = loaded.nodes.iter().map(|n| &n.definition).collect();
            let json = serde_json::to_string(&definitions)?;
            channel.send(&FromWorker::Loaded(Ok(wire::LoadedLibrary {
                abi_version: loaded.abi_version,
                definitions: json,
                refused: Vec::new(),
            })));
            (loaded.module, loaded.nodes.len())
        }
        Err(err) => {
            channel.send(&FromWorker::Loaded(Err(err.to_string())));
            return Ok(());
        }
    };

    // One thread to start with: a second one is added as soon as a node
    // makes the others wait (see `pool`), and a thread per core would wake
    // and sleep in turn for trivial nodes, each time a context switch.
    let shared = Arc::new(Shared {
        channel,
        module,
        pool: Pool::start_with(1, threads),
        running: Mutex::default(),
        calls: Arc::new(Calls::default()),
        incoming: Mutex::new(incoming),
        generation: AtomicU64::new(0),
        inline: Inline::new(node_count),
        slots: Mutex::new(Slots {
            running: vec![0; node_count],
            ahead: (0..node_count).map(|_| VecDeque::new()).collect(),
        }),
        deferred: Mutex::default(),
    });
    let watch = Arc::clone(&shared);
    std::thread::Builder::new()
        .name("inline-watch".to_owned())
        .spawn(move || watch.watch_inline_runs())?;
    read_frames(&shared, 0)?;
    // Reading moved to another thread (a node ran long here): this one is
    // done; the process ends when the server says so.
    loop {
        std::thread::park();
    }
}

/// What the threads of a worker share.
struct Shared {
    channel: Arc<Channel>,
    module: PluginModuleRef,
    pool: Arc<Pool>,
    running: Mutex<HashMap<u64, Arc<AtomicBool>>>,
    calls: Arc<Calls>,
    /// The channel's reading end: held only while reading, by the thread
    /// whose `generation` is current.
    incoming: Mutex<Incoming>,
    /// Which reading thread is current: bumped when an inline run keeps
    /// the current one too long, and a new thread takes over reading.
    generation: AtomicU64,
    inline: Inline,
    /// Taken before `running` when both are.
    slots: Mutex<Slots>,
    /// Messages read while a node ran inline, handled after it by the
    /// reading thread.
    deferred: Mutex<VecDeque<ToWorker>>,
}

/// Per node: how many of its executions run here, and those handed ahead
/// (see [`ExecuteFrame::ahead`]) that wait for one of them to return and
/// leave its slot.
struct Slots {
    running: Vec<usize>,
    ahead: Vec<VecDeque<ExecuteFrame>>,
}

impl Slots {
    /// Takes every execution waiting ahead for `node` (all nodes: `None`).
    fn take_ahead(&mut self, node: Option<usize>) -> Vec<u64> {
        let queues: Vec<&mut VecDeque<ExecuteFrame>> = match node {
            Some(node) => self.ahead.get_mut(node).into_iter().collect(),
            None => self.ahead.iter_mut().collect(),
        };
        queues
            .into_iter()
            .flat_map(|queue| queue.drain(..).map(|frame| frame.id))
            .collect()
    }
}

/// Short nodes run on the thread that read their frame: handing each to a
/// pool thread cost a wake-up (a context switch) per execution, more than
/// a trivial node's whole run. A node runs inline once its runs take less
/// than [`INLINE_BELOW`] on average (its first run is on the pool, which
/// measures it). Reading stops while a node runs inline, so an inline run
/// that lasts longer than [`INLINE_LIMIT`] moves reading to a new thread
/// (pings and aborts are answered again at once) and sends that node back
/// to the pool.
struct Inline {
    /// Per node: the moving average of its run time in ns (`u64::MAX`:
    /// never measured, or sent back to the pool).
    average_ns: Vec<AtomicU64>,
    /// When the current inline run began (ns since `epoch`, 0: none), and
    /// of which node.
    since_ns: AtomicU64,
    node: AtomicU64,
    /// Inline runs begun so far (the watcher naps longer when none do).
    begun: AtomicU64,
    epoch: std::time::Instant,
}

/// A node whose runs average less than this runs on the reading thread.
const INLINE_BELOW: Duration = Duration::from_micros(100);
/// An inline run longer than this hands reading to a new thread.
const INLINE_LIMIT: Duration = Duration::from_millis(20);
/// The watcher's longest nap while no node runs inline: an inline run that
/// blocks is seen within this plus [`INLINE_LIMIT`].
const INLINE_IDLE_NAP: Duration = Duration::from_millis(500);

impl Inline {
    fn new(nodes: usize) -> Self {
        Self {
            average_ns: (0..nodes).map(|_| AtomicU64::new(u64::MAX)).collect(),
            since_ns: AtomicU64::new(0),
            node: AtomicU64::new(0),
            begun: AtomicU64::new(0),
            epoch: std::time::Instant::now(),
        }
    }

    fn runs_inline(&self, node: usize) -> bool {
        self.average_ns
            .get(node)
            .is_some_and(|average| average.load(Ordering::Relaxed) < INLINE_BELOW.as_nanos() as u64)
    }

    /// Folds one run's duration into the node's average (1/8 weight).
    fn record(&self, node: usize, took: Duration) {
        let Some(average) = self.average_ns.get(node) else {
            return;
        };
        let took = took.as_nanos().min(u64::MAX as u128 / 2) as u64;
        let old = average.load(Ordering::Relaxed);
        let new = if old == u64::MAX {
            took
        } else {
            old - old / 8 + took / 8
        };
        average.store(new, Ordering::Relaxed);
    }

    fn now_ns(&self) -> u64 {
        (self.epoch.elapsed().as_nanos() as u64).max(1)
    }
}

impl Shared {
    /// Gives the server back what waits ahead for `node` (every node: `None`).
    fn give_back(&self, node: Option<usize>) {
        let ids = lock(&self.slots).take_ahead(node);
        if !ids.is_empty() {
            self.channel.send(&FromWorker::Returned { ids });
        }
    }

    /// An execution of `node` returned: the next one waiting ahead for it
    /// takes its slot (and the abort flag it runs with), else the slot is
    /// given back to the server.
    /// On the reading thread (`reader`: its generation), what the channel
    /// holds is read first: an execution handed ahead there takes the slot
    /// without a round trip through the server.
    fn next_in_slot(
        self: &Arc<Self>,
        node: usize,
        reader: Option<u64>,
    ) -> anyhow::Result<Option<(ExecuteFrame, Arc<AtomicBool>)>> {
        if let Some(generation) = reader
            && lock(&self.slots).ahead.get(node).is_some_and(VecDeque::is_empty)
        {
            self.poll_channel(generation)?;
        }
        let mut slots = lock(&self.slots);
        if let Some(next) = self.first_ahead(&mut slots, node) {
            return Ok(Some(next));
        }
        if let Some(running) = slots.running.get_mut(node) {
            *running = running.saturating_sub(1);
        }
        Ok(None)
    }

    /// Takes the first execution waiting ahead for `node`, with the abort
    /// flag it runs with (under the `slots` lock, so an abort finds it
    /// either waiting or running).
    fn first_ahead(&self, slots: &mut Slots, node: usize) -> Option<(ExecuteFrame, Arc<AtomicBool>)> {
        let frame = slots.ahead.get_mut(node)?.pop_front()?;
        let aborted = self.abort_flag(frame.id);
        Some((frame, aborted))
    }

    /// The abort flag execution `id` runs with, which an abort sets.
    fn abort_flag(&self, id: u64) -> Arc<AtomicBool> {
        let aborted = Arc::new(AtomicBool::new(false));
        lock(&self.running).insert(id, Arc::clone(&aborted));
        aborted
    }

    /// Reads what the channel holds, without waiting: executions handed
    /// ahead are queued now, the rest waits for the reading loop.
    fn poll_channel(self: &Arc<Self>, generation: u64) -> anyhow::Result<()> {
        let mut polled = Vec::new();
        {
            let mut incoming = lock(&self.incoming);
            if self.generation.load(Ordering::Acquire) != generation {
                return Ok(());
            }
            incoming.read_ready();
            while let Some(message) = incoming.buffered()? {
                polled.push(message);
            }
        }
        for message in polled {
            match message {
                ToWorker::Execute(frame) if frame.ahead => execute(self, frame, None)?,
                other => lock(&self.deferred).push_back(other),
            }
        }
        Ok(())
    }

    /// Sends `node` back to the pool for good.
    fn demote(&self, node: usize) {
        if let Some(average) = self.inline.average_ns.get(node) {
            average.store(u64::MAX, Ordering::Relaxed);
        }
    }

    /// Watches inline runs: one that lasts past [`INLINE_LIMIT`] gets its
    /// node sent back to the pool and reading moved to a new thread.
    fn watch_inline_runs(self: Arc<Self>) {
        let mut nap = INLINE_LIMIT / 2;
        let mut seen = self.inline.begun.load(Ordering::Relaxed);
        loop {
            std::thread::sleep(nap);
            let begun = self.inline.begun.load(Ordering::Relaxed);
            let since = self.inline.since_ns.load(Ordering::Acquire);
            nap = if begun == seen && since == 0 {
                (nap * 2).min(INLINE_IDLE_NAP)
            } else {
                INLINE_LIMIT / 2
            };
            seen = begun;
            if since == 0 || self.inline.now_ns().saturating_sub(since) < INLINE_LIMIT.as_nanos() as u64 {
                continue;
            }
            // Still the same run (it did not end and another begin)?
            if self
                .inline
                .since_ns
                .compare_exchange(since, 0, Ordering::AcqRel, Ordering::Relaxed)
                .is_err()
            {
                continue;
            }
            let node = self.inline.node.load(Ordering::Relaxed) as usize;
            self.demote(node);
            // They would wait for the run that blocks: they may run elsewhere.
            self.give_back(Some(node));
            let generation = self.generation.fetch_add(1, Ordering::AcqRel) + 1;
            let shared = Arc::clone(&self);
            let spawned = std::thread::Builder::new()
                .name("channel-reader".to_owned())
                .spawn(move || {
                    if let Err(err) = read_frames(&shared, generation) {
                        eprintln!("nano-server worker: {err:#}");
                        std::process::exit(1);
                    }
                });
            if spawned.is_err() {
                eprintln!("nano-server worker: no thread to read the channel");
                std::process::exit(1);
            }
        }
    }
}

/// Reads and handles frames for as long as `generation` is the current
/// reader; returns when another thread took over reading.
fn read_frames(shared: &Arc<Shared>, generation: u64) -> anyhow::Result<()> {
    loop {
        let deferred = lock(&shared.deferred).pop_front();
        let message = match deferred {
            Some(message) => Some(message),
            None => {
                let mut incoming = lock(&shared.incoming);
                if shared.generation.load(Ordering::Acquire) != generation {
                    return Ok(());
                }
                incoming.next()?
            }
        };
        match message {
            Some(ToWorker::Execute(frame)) => execute(shared, frame, Some(generation))?,
            // Answered here, on the thread that reads the channel; a node
            // that runs here long hands reading to another thread, so a
            // busy worker is never taken for a stalled one.
            Some(ToWorker::Ping { seq }) => shared.channel.send(&FromWorker::Pong { seq }),
            Some(ToWorker::Abort { id }) => {
                let mut slots = lock(&shared.slots);
                let waiting = slots
                    .ahead
                    .iter_mut()
                    .find_map(|queue| queue.iter().position(|f| f.id == id).map(|at| queue.remove(at)));
                if waiting.is_some() {
                    drop(slots);
                    shared.channel.send(&FromWorker::Returned { ids: vec![id] });
                } else if let Some(flag) = lock(&shared.running).get(&id) {
                    flag.store(true, Ordering::SeqCst);
                }
            }
            Some(ToWorker::ReturnAhead) => shared.give_back(None),
            Some(ToWorker::Start { node }) => {
                let node = node as usize;
                let mut slots = lock(&shared.slots);
                match shared.first_ahead(&mut slots, node) {
                    Some((frame, aborted)) => {
                        slots.running[node] += 1;
                        drop(slots);
                        shared.channel.send(&FromWorker::Began { id: frame.id });
                        start(shared, frame, aborted, Some(generation))?;
                    }
                    None => {
                        drop(slots);
                        shared.channel.send(&FromWorker::Released { node: node as u32 });
                    }
                }
            }
            Some(ToWorker::HostReply { call, outcome }) => {
                if let Some(waiting) = lock(&shared.calls.waiting).remove(&call) {
                    let _ = waiting.send(outcome.map(|(json, bytes)| (json, bytes.into_vec())));
                }
            }
            Some(ToWorker::Shutdown) => {
                let hook = shared
                    .module
                    .shutdown()
                    .map(|hook| hook().into_result().map_err(|e| e.into_string()));
                // Written before `send` returns (or by a node's thread that
                // is writing now, which it waits for below).
                shared.channel.send(&FromWorker::ShutdownDone { hook });
                while lock(&shared.channel.out).writing {
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

/// Takes one execution: runs it here if its node is short, else on the
/// pool; one handed ahead waits for a slot of its node (or goes back).
/// `reader`: the generation of the reading thread calling it, if it is one.
fn execute(shared: &Arc<Shared>, frame: ExecuteFrame, reader: Option<u64>) -> anyhow::Result<()> {
    let node = frame.node_index as usize;
    {
        let mut slots = lock(&shared.slots);
        let Some(running) = slots.running.get_mut(node) else {
            anyhow::bail!("the server sent node {node}, which this library does not have");
        };
        if !frame.ahead {
            *running += 1;
        } else if shared.inline.runs_inline(node) {
            // A short node: it starts when one returns, or in a granted slot.
            slots.ahead[node].push_back(frame);
            return Ok(());
        } else {
            drop(slots);
            shared.channel.send(&FromWorker::Returned { ids: vec![frame.id] });
            return Ok(());
        }
    }
    let aborted = shared.abort_flag(frame.id);
    start(shared, frame, aborted, reader)
}

/// Runs an execution that has a slot, and each one that takes the slot
/// after it: here while its node is short, else on the pool.
fn start(
    shared: &Arc<Shared>,
    frame: ExecuteFrame,
    aborted: Arc<AtomicBool>,
    reader: Option<u64>,
) -> anyhow::Result<()> {
    let mut next = Some((frame, aborted));
    while let Some((frame, aborted)) = next.take() {
        let node = frame.node_index as usize;
        if !shared.inline.runs_inline(node) {
            let for_pool = Arc::clone(shared);
            let work = pool::Work::Other(Box::new(move || {
                let mut next = Some((frame, aborted));
                while let Some((frame, aborted)) = next.take() {
                    match run_and_answer(&for_pool, frame, aborted, None) {
                        Ok((took, after)) => {
                            for_pool.inline.record(node, took);
                            next = after;
                        }
                        Err(err) => {
                            eprintln!("nano-server worker: {err:#}");
                            std::process::exit(1);
                        }
                    }
                }
            }));
            if shared.pool.submit(work).is_err() {
                anyhow::bail!("no thread to run a node");
            }
            return Ok(());
        }
        shared.inline.node.store(node as u64, Ordering::Relaxed);
        shared.inline.begun.fetch_add(1, Ordering::Relaxed);
        shared.inline.since_ns.store(shared.inline.now_ns(), Ordering::Release);
        let (took, after) = run_and_answer(shared, frame, aborted, reader)?;
        // Zero it unless the watcher did (then this node was sent back).
        if shared.inline.since_ns.swap(0, Ordering::AcqRel) != 0 {
            shared.inline.record(node, took);
        }
        next = after;
    }
    Ok(())
}

/// Runs the node of `frame` on this thread and sends its result; how long
/// the node ran, and the execution that takes its slot.
type Next = Option<(ExecuteFrame, Arc<AtomicBool>)>;

fn run_and_answer(
    shared: &Arc<Shared>,
    frame: ExecuteFrame,
    aborted: Arc<AtomicBool>,
    reader: Option<u64>,
) -> anyhow::Result<(Duration, Next)> {
    let id = frame.id;
    let node = frame.node_index as usize;
    let host = WorkerHost {
        id,
        aborted,
        channel: Arc::clone(&shared.channel),
        calls: Arc::clone(&shared.calls),
    };
    let started = std::time::Instant::now();
    let outcome = run_node(shared.module, frame, &host);
    let took = started.elapsed();
    lock(&shared.running).remove(&id);
    let next = shared.next_in_slot(node, reader)?;
    host.channel.send(&FromWorker::Done {
        id,
        outcome,
        message: None,
        next: next.as_ref().map(|(frame, _)| frame.id),
    });
    Ok((took, next))
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
