//! The set of nodes being served: one owner, one way in.
//!
//! Readers take a cheap snapshot (`ArcSwap`), so executions never wait on a
//! writer; writers replace the whole set and every connected client is told.

use std::{
    collections::{BTreeMap, HashMap},
    path::PathBuf,
    sync::{Arc, Mutex},
};

use arc_swap::ArcSwap;
use serde_json::value::RawValue;
use tokio::sync::broadcast;

use crate::loader::Library;

/// One servable node: the library that runs it and its index there.
#[derive(Clone)]
pub struct NodeHandle {
    pub library: Arc<Library>,
    pub index: u32,
}

/// An immutable view of what is served.
pub struct Snapshot {
    nodes: HashMap<String, NodeHandle>,
    /// Node uids in serving order.
    pub uids: Vec<String>,
    /// `[NodeDefinition, …]`, serialised once per change.
    pub definitions: Box<RawValue>,
    /// Libraries that serve at least one node.
    pub libraries: usize,
}

impl Snapshot {
    fn build(libraries: &BTreeMap<PathBuf, Arc<Library>>) -> Self {
        let mut nodes = HashMap::new();
        let mut uids = Vec::new();
        let mut definitions = Vec::new();
        let mut serving = 0;
        // BTreeMap order: the library whose path sorts first wins a uid.
        for library in libraries.values() {
            let mut serves = false;
            for (index, node) in library.nodes.iter().enumerate() {
                if let Some(winner) = nodes.get(&node.uid).map(|h: &NodeHandle| h.library.path.clone()) {
                    tracing::warn!(
                        uid = %node.uid,
                        served_from = %winner.display(),
                        ignored = %library.path.display(),
                        "two libraries export node `{}`; serving the one whose path sorts first",
                        node.uid
                    );
                    continue;
                }
                let handle = NodeHandle {
                    library: Arc::clone(library),
                    index: index as u32,
                };
                nodes.insert(node.uid.clone(), handle);
                uids.push(node.uid.clone());
                definitions.push(&node.definition);
                serves = true;
            }
            serving += usize::from(serves);
        }
        let definitions = serde_json::value::to_raw_value(&definitions).expect("JSON values always serialise");
        Self {
            nodes,
            uids,
            definitions,
            libraries: serving,
        }
    }

    /// The node with this uid, if served.
    pub fn get(&self, uid: &str) -> Option<&NodeHandle> {
        self.nodes.get(uid)
    }
}

/// The node registry. Cloning shares it.
#[derive(Clone)]
pub struct NodeRegistry {
    inner: Arc<Inner>,
}

struct Inner {
    snapshot: ArcSwap<Snapshot>,
    libraries: Mutex<BTreeMap<PathBuf, Arc<Library>>>,
    updates: broadcast::Sender<Arc<Snapshot>>,
}

impl NodeRegistry {
    pub fn new() -> Self {
        let libraries = BTreeMap::new();
        let (updates, _) = broadcast::channel(16);
        Self {
            inner: Arc::new(Inner {
                snapshot: ArcSwap::from_pointee(Snapshot::build(&libraries)),
                libraries: Mutex::new(libraries),
                updates,
            }),
        }
    }

    /// What is served now.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.inner.snapshot.load_full()
    }

    /// Applies a batch of changes with one snapshot and one update to
    /// subscribers: `loaded` libraries replace whatever their path served,
    /// `removed` paths stop being served. Executions already running keep
    /// the version they started on. Returns the versions replaced or removed.
    pub fn apply(&self, loaded: Vec<Library>, removed: &[PathBuf]) -> Vec<Arc<Library>> {
        if loaded.is_empty() && removed.is_empty() {
            return Vec::new();
        }
        let mut previous = Vec::new();
        self.update(|libraries| {
            for library in loaded {
                previous.extend(libraries.insert(library.path.clone(), Arc::new(library)));
            }
            for path in removed {
                previous.extend(libraries.remove(path));
            }
        });
        previous
    }

    /// The library served for `path`, if any.
    pub fn library(&self, path: &std::path::Path) -> Option<Arc<Library>> {
        self.inner
            .libraries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(path)
            .cloned()
    }

    fn update(&self, change: impl FnOnce(&mut BTreeMap<PathBuf, Arc<Library>>)) {
        let mut libraries = self.inner.libraries.lock().unwrap_or_else(|e| e.into_inner());
        change(&mut libraries);
        let snapshot = Arc::new(Snapshot::build(&libraries));
        crate::metrics::gauge!(crate::metrics::NODES_LOADED).set(snapshot.uids.len() as f64);
        crate::metrics::gauge!(crate::metrics::LIBRARIES_LOADED).set(snapshot.libraries as f64);
        self.inner.snapshot.store(Arc::clone(&snapshot));
        // No subscribers is fine: nobody is connected.
        let _ = self.inner.updates.send(snapshot);
    }

    /// A stream of snapshots, one per change, for `definitions_update`.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Snapshot>> {
        self.inner.updates.subscribe()
    }
}

impl Default for NodeRegistry {
    fn default() -> Self {
        Self::new()
    }
}
