//! Run a node in a unit test, without a server.
//!
//! Behind the cargo feature `testing`: enable it in a node crate's
//! `[dev-dependencies]` (see [the crate docs](crate#testing-a-node-the-testing-feature)),
//! so the plugin library does not ship it.
//!
//! ```
//! use nano_plugin_abi::{prelude::*, testing};
//! use serde_json::json;
//!
//! struct Echo;
//! impl Node for Echo {
//!     fn definition(&self) -> NodeDefinition {
//!         NodeDefinition::new("echo", "Echo").parameter(Parameter::boolean("loud", false))
//!     }
//!     fn execute(&self, ctx: &Context) -> NodeResult {
//!         ctx.running("echoing");
//!         let text: String = ctx.input("text")?;
//!         let loud: bool = ctx.param("loud")?;
//!         Ok(Outputs::new().with("text", if loud { text.to_uppercase() } else { text }))
//!     }
//! }
//!
//! let run = testing::run(&Echo, json!({"text": ["hi"]}), json!({"loud": true}));
//! assert_eq!(run.outputs().unwrap().get("text"), Some(&json!(["HI"])));
//! assert_eq!(run.statuses[0]["message"], "echoing");
//! ```
//!
//! Nodes that use NanoCore's assets and resources run against an in-memory
//! [`AssetStore`]:
//!
//! ```
//! use nano_plugin_abi::{prelude::*, testing};
//! use serde_json::json;
//!
//! struct Size;
//! impl Node for Size {
//!     fn definition(&self) -> NodeDefinition {
//!         NodeDefinition::new("size", "Size")
//!     }
//!     fn execute(&self, ctx: &Context) -> NodeResult {
//!         let hash: String = ctx.input("asset")?;
//!         Ok(Outputs::new().with("size", ctx.assets().resolve(&hash)?.len()))
//!     }
//! }
//!
//! let store = testing::AssetStore::new();
//! let hash = store.put(b"four".to_vec(), "text");
//! let run = testing::run_with(&Size, json!({"asset": hash}), json!({}), &store);
//! assert_eq!(run.outputs().unwrap().get("size"), Some(&json!([4])));
//! let run = testing::run_with(&Size, json!({"asset": format!("sha256:{}", "0".repeat(64))}), json!({}), &store);
//! assert!(run.result.unwrap_err().message().starts_with("asset not found"));
//! ```

use std::{
    collections::{BTreeMap, HashMap},
    panic::{AssertUnwindSafe, catch_unwind},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
};

use serde::Serialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::{
    Node,
    context::{Context, NodeResult},
    export::panic_message,
    host::Host,
    host_wire::{
        Allocated, AssetInfo, Begun, Call, Done, ErrorKind, Exists, Failure, Opened, PresignedUrl, Resource, Upload,
        Url, to_json,
    },
};

/// What a test run of a node produced.
#[derive(Debug)]
pub struct TestRun {
    /// What `execute` returned (a panic becomes an error, as in the server).
    pub result: NodeResult,
    /// Every status the node sent, in order.
    pub statuses: Vec<Value>,
}

impl TestRun {
    /// The outputs, panicking with the node's error if it failed.
    pub fn outputs(&self) -> Result<&crate::Outputs, &crate::NodeError> {
        self.result.as_ref()
    }
}

/// Runs `node` with `inputs` (a JSON object) and `params` (an object
/// `{"name": value}` or the protocol's list of parameter objects).
/// Asset calls go to an empty in-memory [`AssetStore`].
pub fn run(node: &dyn Node, inputs: Value, params: Value) -> TestRun {
    run_with_abort(node, inputs, params, false, &AssetStore::new())
}

/// Like [`run`], with NanoCore's assets and resources served by `store`.
pub fn run_with(node: &dyn Node, inputs: Value, params: Value, store: &AssetStore) -> TestRun {
    run_with_abort(node, inputs, params, false, store)
}

/// Like [`run`], with the abort flag already set.
pub fn run_aborted(node: &dyn Node, inputs: Value, params: Value) -> TestRun {
    run_with_abort(node, inputs, params, true, &AssetStore::new())
}

fn run_with_abort(node: &dyn Node, inputs: Value, params: Value, aborted: bool, store: &AssetStore) -> TestRun {
    let parameters = match params {
        Value::Object(map) => Value::Array(
            map.into_iter()
                .map(|(name, value)| json!({"name": name, "value": value}))
                .collect(),
        ),
        other => other,
    };
    let host = Collector {
        statuses: Mutex::new(Vec::new()),
        aborted: AtomicBool::new(aborted),
        store: store.clone(),
    };
    let definition = node.definition();
    let result = catch_unwind(AssertUnwindSafe(|| {
        let ctx = Context::new(
            &definition,
            "test-instance",
            &inputs.to_string(),
            &parameters.to_string(),
            "null",
            &host,
        )?;
        node.execute(&ctx)
    }))
    .unwrap_or_else(|payload| Err(format!("node panicked: {}", panic_message(&*payload)).into()));
    TestRun {
        result,
        statuses: host.statuses.into_inner().unwrap_or_default(),
    }
}

/// Runs `node` the way the export glue does (JSON text in, JSON text out),
/// as a plain Rust call: everything but the boundary crossing. The baseline
/// of the ABI micro-benchmark; statuses the node sends are dropped.
pub fn execute_json(
    node: &dyn Node,
    definition: &crate::NodeDefinition,
    inputs: &str,
    parameters: &str,
) -> Result<String, crate::NodeError> {
    let ctx = Context::new(definition, "bench-instance", inputs, parameters, "null", &Discard)?;
    node.execute(&ctx)?.to_json()
}

struct Discard;

impl Host for Discard {
    fn send_status(&self, _status_json: &str) {}

    fn is_aborted(&self) -> bool {
        false
    }

    fn call(&self, _request: &str, _body: &[u8]) -> Result<(String, Vec<u8>), String> {
        Err(Failure::unsupported().to_json())
    }
}

struct Collector {
    statuses: Mutex<Vec<Value>>,
    aborted: AtomicBool,
    store: AssetStore,
}

impl Host for Collector {
    fn send_status(&self, status_json: &str) {
        if let (Ok(mut statuses), Ok(status)) = (self.statuses.lock(), serde_json::from_str(status_json)) {
            statuses.push(status);
        }
    }

    fn is_aborted(&self) -> bool {
        self.aborted.load(Ordering::SeqCst)
    }

    fn call(&self, request: &str, body: &[u8]) -> Result<(String, Vec<u8>), String> {
        self.store.call(request, body)
    }
}

/// An in-memory NanoCore for unit tests: assets named by the SHA-256 of
/// their content, and the resources currently allocated. Clones share it.
#[derive(Clone, Default)]
pub struct AssetStore {
    inner: Arc<Mutex<Store>>,
}

#[derive(Default)]
struct Store {
    assets: BTreeMap<String, (AssetInfo, Arc<Vec<u8>>)>,
    streams: HashMap<u64, (Arc<Vec<u8>>, usize)>,
    uploads: HashMap<u64, (Upload, Vec<u8>)>,
    resources: BTreeMap<String, Resource>,
    next_id: u64,
}

impl AssetStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Stores `bytes` as an asset of type `kind`; returns its hash.
    pub fn put(&self, bytes: impl Into<Vec<u8>>, kind: &str) -> String {
        let upload = Upload::new().kind(kind);
        lock(&self.inner).store(bytes.into(), &upload).hash
    }

    /// Asset `hash`: what NanoCore records about it, and its bytes.
    pub fn get(&self, hash: &str) -> Option<(AssetInfo, Vec<u8>)> {
        lock(&self.inner)
            .assets
            .get(hash)
            .map(|(info, bytes)| (info.clone(), bytes.to_vec()))
    }

    /// Every stored asset.
    pub fn assets(&self) -> Vec<AssetInfo> {
        lock(&self.inner)
            .assets
            .values()
            .map(|(info, _)| info.clone())
            .collect()
    }

    /// The resources allocated and not freed.
    pub fn resources(&self) -> Vec<Resource> {
        lock(&self.inner).resources.values().cloned().collect()
    }

    /// Answers one host call the way the server does, from memory.
    fn call(&self, request: &str, body: &[u8]) -> Result<(String, Vec<u8>), String> {
        let call: Call = serde_json::from_str(request).map_err(|e| fail(ErrorKind::Other, e.to_string()))?;
        let mut store = lock(&self.inner);
        let not_found = |hash: &str| fail(ErrorKind::NotFound, format!("asset not found: {hash}"));
        match call {
            Call::Open { hash } => {
                let bytes = match store.assets.get(&hash) {
                    Some((_, bytes)) => Arc::clone(bytes),
                    None => return Err(not_found(&hash)),
                };
                let (stream, size) = (store.id(), bytes.len() as u64);
                store.streams.insert(stream, (bytes, 0));
                answer(&Opened {
                    size: Some(size),
                    stream,
                })
            }
            Call::Read { stream, max } => {
                let Some((bytes, offset)) = store.streams.get_mut(&stream) else {
                    return Err(fail(ErrorKind::Other, format!("no stream {stream}")));
                };
                let end = bytes.len().min(*offset + max as usize);
                let chunk = bytes[*offset..end].to_vec();
                *offset = end;
                if chunk.is_empty() {
                    store.streams.remove(&stream);
                }
                Ok((to_json(&Done {}), chunk))
            }
            Call::Close { stream } => {
                store.streams.remove(&stream);
                answer(&Done {})
            }
            Call::Exists { hash } => answer(&Exists {
                exists: store.assets.contains_key(&hash),
            }),
            Call::List(filter) => {
                let listed: Vec<&AssetInfo> = store
                    .assets
                    .values()
                    .map(|(info, _)| info)
                    .filter(|info| filter.kind.is_none() || info.kind == filter.kind)
                    .filter(|info| filter.hash.as_ref().is_none_or(|hash| &info.hash == hash))
                    .collect();
                answer(&listed)
            }
            Call::Presigned { hash } | Call::DownloadUrl { hash } if !store.assets.contains_key(&hash) => {
                Err(not_found(&hash))
            }
            Call::Presigned { hash } => answer(&PresignedUrl {
                url: format!("memory://presigned/{hash}"),
                expires_in: Some(3600),
            }),
            Call::DownloadUrl { hash } => answer(&Url {
                url: format!("memory://assets/{hash}/download"),
            }),
            Call::Upload(upload) => answer(&store.store(body.to_vec(), &upload)),
            Call::UploadBegin { upload, .. } => {
                let id = store.id();
                store.uploads.insert(id, (upload, Vec::new()));
                answer(&Begun { upload: id })
            }
            Call::UploadWrite { upload } => match store.uploads.get_mut(&upload) {
                Some((_, data)) => {
                    data.extend_from_slice(body);
                    answer(&Done {})
                }
                None => Err(fail(ErrorKind::Other, format!("no upload {upload}"))),
            },
            Call::UploadFinish { upload } => match store.uploads.remove(&upload) {
                Some((options, data)) => answer(&store.store(data, &options)),
                None => Err(fail(ErrorKind::Other, format!("no upload {upload}"))),
            },
            Call::UploadCancel { upload } => {
                store.uploads.remove(&upload);
                answer(&Done {})
            }
            Call::Allocate(mut resource) => {
                if resource.resource_id.is_empty() {
                    resource.resource_id = format!("resource-{}", store.id());
                }
                let resource_id = resource.resource_id.clone();
                store.resources.insert(resource_id.clone(), resource);
                answer(&Allocated { resource_id })
            }
            Call::Free { resource_id } => {
                store.resources.remove(&resource_id);
                answer(&Done {})
            }
        }
    }
}

/// An answer as `host_call` returns it, without bytes.
fn answer<T: Serialize + ?Sized>(message: &T) -> Result<(String, Vec<u8>), String> {
    Ok((to_json(message), Vec::new()))
}

fn fail(kind: ErrorKind, message: impl Into<String>) -> String {
    Failure::new(kind, message).to_json()
}

impl Store {
    fn id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    fn store(&mut self, bytes: Vec<u8>, upload: &Upload) -> AssetInfo {
        let hash = format!("sha256:{}", hex(&Sha256::digest(&bytes)));
        let already_exists = self.assets.contains_key(&hash);
        let info = AssetInfo {
            hash: hash.clone(),
            name: upload.filename.clone(),
            kind: upload.kind.clone(),
            size: Some(bytes.len() as u64),
            created_at: None,
            meta: upload.meta.clone().unwrap_or(Value::Null),
            ephemeral: false,
            already_exists,
        };
        self.assets.insert(hash, (info.clone(), Arc::new(bytes)));
        info
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
