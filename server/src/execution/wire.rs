//! The channel between the server and a worker process: length-delimited
//! frames (tokio-util's codec) on a socketpair the worker holds as fd 3,
//! each frame one postcard-encoded message.
//!
//! The worker speaks only when spoken to, except for the statuses and
//! results of executions the server handed it; its frames are untrusted
//! (size-capped, and one naming an execution it was not given ends it).

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;
use tokio_util::codec::LengthDelimitedCodec;

/// This build's id: a worker from another build is refused at the handshake.
pub(crate) const BUILD_ID: &str = env!("NANO_BUILD_ID");

/// The fd the worker finds its end of the channel on.
pub(crate) const CHANNEL_FD: i32 = 3;

/// Largest frame to a worker: the library's bytes, or a request (inputs
/// and parameters up to `max_message_bytes`).
pub(crate) const MAX_TO_WORKER: usize = 1 << 30;

/// Largest frame from a worker: a node's outputs or one status.
pub(crate) const MAX_FROM_WORKER: usize = 256 << 20;

/// A channel buffer larger than this is given back once empty (the
/// library's bytes pass once; keeping their buffer would cost that much).
pub(crate) const LARGE_BUFFER: usize = 4 << 20;

/// The start of the name of a worker's folder for its private copy of the
/// library: the server removes what a worker that died while loading left.
pub(crate) fn private_dir_prefix(pid: u32) -> String {
    format!("nano-server-worker-{pid}-")
}

/// Server → worker.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum ToWorker {
    Hello {
        build_id: String,
    },
    /// Load this library (its bytes, as read and trusted by the server).
    Load {
        path: String,
        #[serde(with = "serde_bytes")]
        bytes: Vec<u8>,
    },
    Execute(ExecuteFrame),
    Abort {
        id: u64,
    },
    /// A slot for `node`: start the first execution waiting ahead for it
    /// ([`FromWorker::Began`]), or give the slot back
    /// ([`FromWorker::Released`]) when none waits.
    Start {
        node: u32,
    },
    /// Give back every execution handed ahead and not begun
    /// ([`FromWorker::Returned`]): the worker is draining.
    ReturnAhead,
    /// Run the shutdown hook, answer, exit.
    Shutdown,
    /// The answer to [`FromWorker::HostCall`] `call`: JSON and bytes, or a
    /// JSON failure.
    HostReply {
        call: u64,
        outcome: Result<(String, ByteBuf), String>,
    },
    /// Heartbeat: answered with [`FromWorker::Pong`] `seq` by the thread
    /// that reads the channel, which never runs node code.
    Ping {
        seq: u64,
    },
}

/// One execution handed to a worker.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct ExecuteFrame {
    pub id: u64,
    pub node_index: u32,
    /// The node's uid: what a language runtime names nodes by (native
    /// workers use `node_index`, so it is not encoded for them).
    #[serde(skip)]
    pub uid: std::sync::Arc<str>,
    pub instance_id: String,
    pub inputs: String,
    pub parameters: String,
    pub graph_node: String,
    /// Handed ahead, without a slot: the worker starts it only in the slot
    /// of an execution of the same node that returns (its `Done` names it
    /// as `next`) or in one granted by [`ToWorker::Start`], and gives it
    /// back ([`FromWorker::Returned`]) when its node does not run inline,
    /// or when it is told to abort it or drains.
    pub ahead: bool,
}

/// What a worker loaded.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct LoadedLibrary {
    /// The nano-plugin-abi version it was built against; for a language
    /// runtime, the interpreter ("python 3.11.7 (/usr/bin/python3)").
    pub abi_version: String,
    /// Its definitions, a JSON list.
    pub definitions: String,
    /// For a group of files in one worker: the members refused (path,
    /// why), while the others serve.
    pub refused: Vec<(String, String)>,
}

/// Worker → server.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum FromWorker {
    Hello {
        build_id: String,
    },
    /// The library's ABI version and definitions, or why it was refused.
    Loaded(Result<LoadedLibrary, String>),
    /// A status a node sent (its JSON object).
    Status {
        id: u64,
        json: String,
    },
    /// A node returned: its outputs (JSON object) or its error; `message`
    /// is its own message for `complete` (a language SDK's node may give
    /// one; native nodes never do).
    Done {
        id: u64,
        outcome: Result<String, String>,
        message: Option<String>,
        /// The execution handed ahead that the worker started in this
        /// one's slot (it began when this one returned).
        next: Option<u64>,
    },
    /// Executions handed ahead that the worker gives back unstarted.
    Returned {
        ids: Vec<u64>,
    },
    /// It started execution `id`, handed ahead, in a slot granted by
    /// [`ToWorker::Start`].
    Began {
        id: u64,
    },
    /// A slot granted for `node` by [`ToWorker::Start`], unused.
    Released {
        node: u32,
    },
    /// A node of execution `id` calls a host service (NanoCore): a JSON
    /// `Call` and its bytes; answered by [`ToWorker::HostReply`] `call`.
    HostCall {
        id: u64,
        call: u64,
        request: String,
        body: ByteBuf,
    },
    /// The shutdown hook ran: `None` when the library has none.
    ShutdownDone {
        hook: Option<Result<(), String>>,
    },
    /// The answer to [`ToWorker::Ping`] `seq`.
    Pong {
        seq: u64,
    },
}

/// The execution id of a host call made outside any execution (while a
/// library loads): a language runtime's `call` with a `null` id. The
/// server's execution ids never reach it.
pub(crate) const NO_EXECUTION: u64 = u64::MAX;

/// The codec for one direction, refusing frames over `max` bytes.
pub(crate) fn codec(max: usize) -> LengthDelimitedCodec {
    LengthDelimitedCodec::builder().max_frame_length(max).new_codec()
}

pub(crate) fn encode<T: Serialize>(message: &T) -> Bytes {
    Bytes::from(postcard::to_allocvec(message).expect("wire messages always encode"))
}

pub(crate) fn decode<'a, T: Deserialize<'a>>(frame: &'a [u8]) -> Result<T, postcard::Error> {
    postcard::from_bytes(frame)
}
