//! A [`WorkerKind`] is what runs in a worker: the program to start and the
//! encoding of its channel. The supervisor speaks [`ToWorker`] and
//! [`FromWorker`] over length-delimited frames on fd 3 to any kind; only
//! the kind knows how a message becomes a frame.
//!
//! [`Native`] is `nano-server worker` loading a Rust plugin library, its
//! frames postcard ([`wire`]). [`Python`](super::python::Python) is an
//! interpreter running SDK `node.py` files, its frames JSON
//! (`docs/worker-protocol.md`); both reuse the supervisor as is.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use tokio::process::Command;

use super::exit::StartError;
use crate::execution::wire::{self, FromWorker, ToWorker};

/// How to start one kind of worker and how its channel is encoded.
pub(crate) trait WorkerKind: Send + Sync + 'static {
    /// The command starting one worker for the library `label` with up to
    /// `threads` node threads (the channel, stdio and parent-death signal
    /// are set up by the caller).
    fn command(&self, label: &str, threads: usize) -> Result<Command, StartError>;

    /// The id both ends send in their `Hello`: a worker that answers with
    /// another is refused. `None`: the kind has no `Hello` exchange, its
    /// worker answers the [`greeting`](Self::greeting) with `Loaded` at once.
    fn build_id(&self) -> Option<&str>;

    /// The first messages to the worker: they have it load the library at
    /// `path` (`bytes`, as read and trusted by the server).
    fn greeting(&self, path: &Path, bytes: &[u8]) -> Vec<ToWorker>;

    /// The frame for `message`; `None` when this kind has no such message
    /// (nothing is sent).
    fn encode(&self, message: &ToWorker) -> Option<Bytes>;

    /// One frame from the (untrusted) worker; `Err` says why it is not a message.
    fn decode(&self, frame: &[u8]) -> Result<FromWorker, String>;

    /// Largest frame to the worker.
    fn max_to_worker(&self) -> usize;

    /// Largest frame from the worker: a larger one is a protocol violation.
    fn max_from_worker(&self) -> usize;

    /// Removes what a dead worker `pid` may have left behind.
    fn clean_up(&self, pid: u32);

    /// Whether its nodes' outputs may be any JSON value (else an object).
    fn outputs_any_json(&self) -> bool {
        false
    }

    /// Whether its workers take executions handed ahead (see
    /// [`ExecuteFrame::ahead`](crate::execution::wire::ExecuteFrame::ahead)).
    fn hands_ahead(&self) -> bool {
        false
    }
}

/// The server's own binary as a worker, loading a Rust plugin library.
pub(crate) struct Native;

impl WorkerKind for Native {
    fn command(&self, label: &str, threads: usize) -> Result<Command, StartError> {
        let exe = if cfg!(target_os = "linux") {
            PathBuf::from("/proc/self/exe")
        } else {
            std::env::current_exe().map_err(StartError::spawn("finding the server's binary"))?
        };
        let mut command = Command::new(exe);
        command
            .arg0("nano-server")
            .arg("worker")
            .arg("--threads")
            .arg(threads.to_string())
            .arg("--library")
            .arg(label)
            // A worker runs plugin code: it gets no credential of the server's.
            .env_remove("NANO_SERVER_TOKEN")
            .env_remove("NANOCORE_TOKEN");
        Ok(command)
    }

    fn build_id(&self) -> Option<&str> {
        Some(wire::BUILD_ID)
    }

    fn greeting(&self, path: &Path, bytes: &[u8]) -> Vec<ToWorker> {
        vec![
            ToWorker::Hello {
                build_id: wire::BUILD_ID.to_owned(),
            },
            ToWorker::Load {
                path: path.display().to_string(),
                bytes: bytes.to_vec(),
            },
        ]
    }

    fn encode(&self, message: &ToWorker) -> Option<Bytes> {
        Some(wire::encode(message))
    }

    fn decode(&self, frame: &[u8]) -> Result<FromWorker, String> {
        wire::decode(frame).map_err(|err| err.to_string())
    }

    fn max_to_worker(&self) -> usize {
        wire::MAX_TO_WORKER
    }

    fn hands_ahead(&self) -> bool {
        true
    }

    fn max_from_worker(&self) -> usize {
        wire::MAX_FROM_WORKER
    }

    /// Its private copy of the library, when it died while loading.
    fn clean_up(&self, pid: u32) {
        let prefix = wire::private_dir_prefix(pid);
        let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
            return;
        };
        for entry in entries.flatten() {
            if entry.file_name().to_string_lossy().starts_with(&prefix) {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }
}
