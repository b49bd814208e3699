//! NanoCore's host services for nodes (assets and resources), answered by
//! the server itself in both isolation modes: a node's call arrives as a
//! JSON [`Call`] (through `HostCallbacks::host_call` in process, over the
//! worker channel from a worker), and the server makes the HTTP request with
//! its one client and NanoCore's token, which workers never see.
//!
//! Large assets move in chunks of at most 256 KiB (`CHUNK_BYTES`; with 1 MiB
//! chunks the allocator kept 20 MiB more at peak): a download is read ahead
//! by a task a few chunks at a time, an upload from a file is streamed into
//! the multipart body as the node sends it, so neither the server nor a
//! worker holds a whole asset unless the node asks for one in memory.
//!
//! Every stream and upload belongs to one execution and ends with it (or
//! when it is aborted); every resource allocation is recorded against the
//! library version that made it, and what is left allocated when that
//! version's worker ends (or, in process, when the server stops) is freed.

mod client;

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use bytes::{Bytes, BytesMut};
pub use client::{Client, Failure, http_client};
use nano_plugin_abi::{
    host_wire::{Allocated, Begun, CHUNK_BYTES, Call, Done, ErrorKind, Opened, Resource, Upload, Url, to_json},
    services::check_hash,
};
use serde::Serialize;
use serde_json::{Value, json};
use tokio::{sync::mpsc, task::JoinHandle};

use crate::lock;

/// Chunks of a download read ahead of the node.
const READ_AHEAD: usize = 4;

/// Who makes a call: an execution of one library version.
#[derive(Debug, Clone)]
pub struct Owner {
    /// The library version (in process isolation: the worker), from
    /// [`Services::version_id`].
    pub version: u64,
    /// The library's path relative to the nodes folder, for logs.
    pub label: Arc<str>,
    pub execution: u64,
}

/// The host services and what they hold for running executions.
pub struct Services {
    client: Arc<Client>,
    server_uid: String,
    next_id: AtomicU64,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    streams: HashMap<u64, (Key, Arc<tokio::sync::Mutex<Download>>)>,
    uploads: HashMap<u64, (Key, Arc<tokio::sync::Mutex<Uploading>>)>,
    /// Version → (its label, the resources it allocated and did not free).
    resources: BTreeMap<u64, (Arc<str>, BTreeSet<String>)>,
}

/// (version, execution).
type Key = (u64, u64);

/// A download being read: chunks come from a read-ahead task.
struct Download {
    chunks: mpsc::Receiver<Result<Bytes, Failure>>,
    rest: Bytes,
    task: JoinHandle<()>,
}

impl Drop for Download {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// An upload being sent: chunks go into the request body.
struct Uploading {
    chunks: Option<mpsc::Sender<Result<Bytes, std::io::Error>>>,
    task: Option<JoinHandle<Result<Value, Failure>>>,
}

impl Drop for Uploading {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

impl Services {
    /// Services reaching NanoCore at `endpoint` (empty: not configured,
    /// every call fails saying so) with `token`, as server `server_uid`.
    pub fn new(endpoint: &str, token: Option<String>, server_uid: &str) -> Self {
        Self {
            client: Arc::new(Client::new(endpoint, token)),
            server_uid: server_uid.to_owned(),
            next_id: AtomicU64::new(1),
            state: Mutex::default(),
        }
    }

    /// Services for commands that run no nodes.
    pub fn disabled() -> Arc<Self> {
        Arc::new(Self::new("", None, ""))
    }

    /// NanoCore's API itself, for the server's own routes (`/assets`).
    pub(crate) fn client(&self) -> &Client {
        &self.client
    }

    /// A fresh id for a library version (or worker).
    pub fn version_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Runs `request` (a JSON [`Call`], with `body`) for `owner`, giving up
    /// with an `aborted` failure once `aborted()` says so; the answer as
    /// `host_call` returns it (JSON and bytes, or a JSON failure).
    pub async fn call(
        &self,
        owner: &Owner,
        request: &str,
        body: Bytes,
        aborted: impl Fn() -> bool,
    ) -> Result<(String, Bytes), String> {
        let call: Call = match serde_json::from_str(request) {
            Ok(call) => call,
            Err(err) => return Err(Failure::new(ErrorKind::Other, format!("not a host call ({err})")).to_json()),
        };
        let op = call.name();
        let watch = async {
            let mut every = tokio::time::interval(Duration::from_millis(50));
            loop {
                every.tick().await;
                if aborted() {
                    return;
                }
            }
        };
        let outcome = tokio::select! {
            outcome = self.run(owner, call, body) => outcome,
            () = watch => {
                self.end_execution(owner.version, owner.execution);
                Err(Failure::new(ErrorKind::Aborted, "Execution aborted"))
            }
        };
        outcome.map_err(|failure| {
            tracing::debug!(library = %owner.label, op, "host call failed: {}", failure.message);
            failure.to_json()
        })
    }

    async fn run(&self, owner: &Owner, call: Call, body: Bytes) -> Result<(String, Bytes), Failure> {
        let key = (owner.version, owner.execution);
        match call {
            Call::Open { hash } => {
                checked(&hash)?;
                let response = self.client.download(&hash).await?;
                let size = response.content_length();
                let stream = self.next_id.fetch_add(1, Ordering::Relaxed);
                let (sender, chunks) = mpsc::channel(READ_AHEAD);
                let task = tokio::spawn(read_ahead(response, sender));
                let download = Download {
                    chunks,
                    rest: Bytes::new(),
                    task,
                };
                lock(&self.state)
                    .streams
                    .insert(stream, (key, Arc::new(tokio::sync::Mutex::new(download))));
                answer(&Opened { size, stream })
            }
            Call::Read { stream, max } => {
                let download = self.stream(key, stream)?;
                let chunk = read(&mut *download.lock().await, (max as usize).clamp(1, CHUNK_BYTES)).await;
                if !matches!(&chunk, Ok(bytes) if !bytes.is_empty()) {
                    lock(&self.state).streams.remove(&stream);
                }
                Ok((to_json(&Done {}), chunk?))
            }
            Call::Close { stream } => {
                // A stream read to its end is gone already: closing it then
                // is fine (the Python runtime closes after end of file).
                let mut state = lock(&self.state);
                match state.streams.get(&stream) {
                    Some((owner, _)) if *owner != key => {
                        return Err(Failure::new(ErrorKind::Other, format!("no open asset stream {stream}")));
                    }
                    _ => {
                        state.streams.remove(&stream);
                    }
                }
                drop(state);
                answer(&Done {})
            }
            // NanoCore's own answers go through as sent (see host_wire): a
            // newer plugin may read fields this server does not name.
            Call::Exists { hash } => {
                checked(&hash)?;
                answer(&self.client.exists(&hash).await?)
            }
            Call::List(filter) => {
                if let Some(hash) = &filter.hash {
                    checked(hash)?;
                }
                answer(&self.client.list(&filter).await?)
            }
            Call::Presigned { hash } => {
                checked(&hash)?;
                answer(&self.client.presigned(&hash).await?)
            }
            Call::DownloadUrl { hash } => {
                checked(&hash)?;
                answer(&Url {
                    url: self.client.url(&format!("/assets/{hash}/download"))?,
                })
            }
            Call::Upload(upload) => {
                let size = body.len() as u64;
                answer(&self.client.upload(body.into(), Some(size), &upload).await?)
            }
            Call::UploadBegin { upload, size } => {
                let id = self.next_id.fetch_add(1, Ordering::Relaxed);
                self.begin_upload(key, id, upload, size)?;
                answer(&Begun { upload: id })
            }
            Call::UploadWrite { upload } => {
                let uploading = self.upload(key, upload)?;
                let sender = uploading.lock().await.chunks.clone();
                let sent = match sender {
                    Some(sender) => sender.send(Ok(body)).await.is_ok(),
                    None => false,
                };
                if !sent {
                    // The request ended early: its outcome says why.
                    lock(&self.state).uploads.remove(&upload);
                    let task = uploading.lock().await.task.take();
                    return Err(match task {
                        Some(task) => finished(task).await.err(),
                        None => None,
                    }
                    .unwrap_or_else(|| Failure::new(ErrorKind::Other, "the upload ended early")));
                }
                answer(&Done {})
            }
            Call::UploadFinish { upload } => {
                let uploading = self.upload(key, upload)?;
                lock(&self.state).uploads.remove(&upload);
                let task = {
                    let mut uploading = uploading.lock().await;
                    uploading.chunks = None;
                    uploading.task.take()
                };
                match task {
                    Some(task) => answer(&finished(task).await?),
                    None => Err(Failure::new(ErrorKind::Other, "the upload was already finished")),
                }
            }
            Call::UploadCancel { upload } => {
                lock(&self.state).uploads.remove(&upload);
                answer(&Done {})
            }
            Call::Allocate(resource) => {
                let resource_id = self.allocate(owner, resource).await?;
                answer(&Allocated { resource_id })
            }
            Call::Free { resource_id } => {
                self.client
                    .resources(&self.server_uid, "FREE", json!({"resourceId": resource_id}))
                    .await?;
                if let Some((_, held)) = lock(&self.state).resources.get_mut(&owner.version) {
                    held.remove(&resource_id);
                }
                answer(&Done {})
            }
        }
    }

    fn stream(&self, key: Key, stream: u64) -> Result<Arc<tokio::sync::Mutex<Download>>, Failure> {
        match lock(&self.state).streams.get(&stream) {
            Some((owner, download)) if *owner == key => Ok(Arc::clone(download)),
            _ => Err(Failure::new(ErrorKind::Other, format!("no open asset stream {stream}"))),
        }
    }

    fn upload(&self, key: Key, upload: u64) -> Result<Arc<tokio::sync::Mutex<Uploading>>, Failure> {
        match lock(&self.state).uploads.get(&upload) {
            Some((owner, uploading)) if *owner == key => Ok(Arc::clone(uploading)),
            _ => Err(Failure::new(
                ErrorKind::Other,
                format!("no upload {upload} in progress"),
            )),
        }
    }

    fn begin_upload(&self, key: Key, id: u64, upload: Upload, size: Option<u64>) -> Result<(), Failure> {
        // Checked now, so a missing endpoint fails the first call.
        self.client.url("/assets")?;
        let (sender, chunks) = mpsc::channel::<Result<Bytes, std::io::Error>>(2);
        let body = reqwest::Body::wrap_stream(tokio_stream(chunks));
        let client = Arc::clone(&self.client);
        let task = tokio::spawn(async move { client.upload(body, size, &upload).await });
        let uploading = Uploading {
            chunks: Some(sender),
            task: Some(task),
        };
        lock(&self.state)
            .uploads
            .insert(id, (key, Arc::new(tokio::sync::Mutex::new(uploading))));
        Ok(())
    }

    async fn allocate(&self, owner: &Owner, mut resource: Resource) -> Result<String, Failure> {
        if resource.resource_id.is_empty() {
            resource.resource_id = uuid::Uuid::new_v4().to_string();
        }
        // NanoCore's ALLOCATE takes the resource as plugins send it.
        let data = serde_json::to_value(&resource)
            .map_err(|e| Failure::new(ErrorKind::Other, format!("the resource is not JSON: {e}")))?;
        self.client.resources(&self.server_uid, "ALLOCATE", data).await?;
        lock(&self.state)
            .resources
            .entry(owner.version)
            .or_insert_with(|| (Arc::clone(&owner.label), BTreeSet::new()))
            .1
            .insert(resource.resource_id.clone());
        Ok(resource.resource_id)
    }

    /// The execution ended: its streams and unfinished uploads go.
    pub fn end_execution(&self, version: u64, execution: u64) {
        let mut state = lock(&self.state);
        state.streams.retain(|_, (key, _)| *key != (version, execution));
        state.uploads.retain(|_, (key, _)| *key != (version, execution));
    }

    /// Library version `version` ended (its worker exited, or the server
    /// stops): its streams go, and the resources it left allocated are
    /// freed at NanoCore.
    pub async fn end_version(&self, version: u64) {
        let held = {
            let mut state = lock(&self.state);
            state.streams.retain(|_, ((v, _), _)| *v != version);
            state.uploads.retain(|_, ((v, _), _)| *v != version);
            state.resources.remove(&version)
        };
        let Some((label, held)) = held else { return };
        for resource_id in held {
            match self
                .client
                .resources(&self.server_uid, "FREE", json!({"resourceId": resource_id}))
                .await
            {
                Ok(_) => tracing::info!(
                    library = %label,
                    resource_id,
                    "freed resource {resource_id}: {label} allocated it and did not free it"
                ),
                Err(failure) => tracing::warn!(
                    library = %label,
                    resource_id,
                    "could not free resource {resource_id} left allocated by {label}: {}",
                    failure.message
                ),
            }
        }
    }

    /// The server stops: frees what every version left allocated.
    pub async fn end_all(&self) {
        let versions: Vec<u64> = lock(&self.state).resources.keys().copied().collect();
        for version in versions {
            self.end_version(version).await;
        }
    }
}

/// A typed answer (or NanoCore's own JSON, forwarded) as `host_call`
/// returns it, without bytes.
fn answer(message: &impl Serialize) -> Result<(String, Bytes), Failure> {
    Ok((to_json(message), Bytes::new()))
}

fn checked(hash: &str) -> Result<(), Failure> {
    check_hash(hash).map_err(|e| Failure::new(e.kind(), e.message()))
}

/// Reads `response` into `chunks`, a few ahead of the node.
async fn read_ahead(mut response: reqwest::Response, chunks: mpsc::Sender<Result<Bytes, Failure>>) {
    loop {
        let next = match response.chunk().await {
            Ok(Some(chunk)) => Ok(chunk),
            Ok(None) => return,
            Err(err) => Err(Failure::new(
                ErrorKind::Unreachable,
                format!("the download from NanoCore broke off: {err}"),
            )),
        };
        let failed = next.is_err();
        if chunks.send(next).await.is_err() || failed {
            return;
        }
    }
}

/// Up to `max` bytes of `download`; empty at its end.
async fn read(download: &mut Download, max: usize) -> Result<Bytes, Failure> {
    let mut out = BytesMut::with_capacity(max);
    loop {
        let take = download.rest.len().min(max - out.len());
        out.extend_from_slice(&download.rest.split_to(take));
        if out.len() == max {
            return Ok(out.freeze());
        }
        match download.chunks.recv().await {
            Some(Ok(chunk)) => download.rest = chunk,
            Some(Err(failure)) => return Err(failure),
            None => return Ok(out.freeze()),
        }
    }
}

async fn finished(task: JoinHandle<Result<Value, Failure>>) -> Result<Value, Failure> {
    task.await
        .unwrap_or_else(|_| Err(Failure::new(ErrorKind::Other, "the upload was cancelled")))
}

/// An mpsc receiver as a stream, for a request body.
fn tokio_stream<T>(mut receiver: mpsc::Receiver<T>) -> impl futures_util::Stream<Item = T> {
    futures_util::stream::poll_fn(move |cx| receiver.poll_recv(cx))
}
