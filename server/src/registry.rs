//! The set of nodes being served: one owner, one way in.
//!
//! Readers take a cheap snapshot (`ArcSwap`), so executions never wait on a
//! writer; writers replace the whole set and every connected client is told.

use std::{
    collections::{BTreeMap, HashMap},
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::{Duration, SystemTime},
};

use arc_swap::ArcSwap;
use serde_json::value::RawValue;
use tokio::sync::{broadcast, watch};

use crate::{
    execution::{LibraryRuntime, Target},
    loader::NodeInfo,
    lock,
};

/// One library version as served: where it came from, what it exports, and
/// the runtime its nodes run on (whichever backend loaded it).
pub struct Library {
    /// The file under `nodes_path` it was loaded from.
    pub path: PathBuf,
    /// The nano-plugin-abi version it was built against; for a Python
    /// library, the interpreter that runs it ("python 3.11.7 (/usr/bin/python3)").
    pub abi_version: String,
    /// Its nodes, in the order the library lists them.
    pub nodes: Vec<NodeInfo>,
    pub runtime: Arc<dyn LibraryRuntime>,
    /// When this version was loaded, and how long loading it took.
    pub loaded_at: SystemTime,
    pub load_duration: Duration,
}

impl std::fmt::Debug for Library {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Library")
            .field("path", &self.path)
            .field("abi_version", &self.abi_version)
            .field("nodes", &self.nodes.iter().map(|n| &n.uid).collect::<Vec<_>>())
            .finish()
    }
}

/// One servable node: the library that exports it, and what the executor
/// needs to run it.
#[derive(Clone)]
pub struct NodeHandle {
    pub library: Arc<Library>,
    pub target: Target,
}

impl NodeHandle {
    /// The node's entry in its library.
    pub fn info(&self) -> &NodeInfo {
        &self.library.nodes[self.target.node_index as usize]
    }
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
                    target: Target {
                        uid: node.uid.as_str().into(),
                        runtime: Arc::clone(&library.runtime),
                        node_index: index as u32,
                        metrics: Arc::clone(&node.metrics),
                    },
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
    /// Versions no longer served whose shutdown hook is still owed.
    retired: Mutex<Vec<Arc<Library>>>,
    updates: broadcast::Sender<Arc<Snapshot>>,
    /// Library files not served, and why, by path.
    refused: Mutex<BTreeMap<PathBuf, Refusal>>,
    /// How often the library at a path was replaced by a new version.
    swaps: Mutex<HashMap<PathBuf, u64>>,
    /// Bumped on every change to the served set or the refusals.
    revision: watch::Sender<u64>,
}

/// A library file that is not served, and why.
#[derive(Debug, Clone)]
pub struct Refusal {
    pub path: PathBuf,
    pub reason: String,
    pub at: SystemTime,
    /// A version loaded earlier from the same path is still served.
    pub previous_serving: bool,
}

impl NodeRegistry {
    pub fn new() -> Self {
        let libraries = BTreeMap::new();
        let (updates, _) = broadcast::channel(16);
        Self {
            inner: Arc::new(Inner {
                snapshot: ArcSwap::from_pointee(Snapshot::build(&libraries)),
                libraries: Mutex::new(libraries),
                retired: Mutex::new(Vec::new()),
                updates,
                refused: Mutex::new(BTreeMap::new()),
                swaps: Mutex::new(HashMap::new()),
                revision: watch::channel(0).0,
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
    /// the version they started on; the versions replaced or removed are
    /// retired (see [`LibraryRuntime::retire`]) and returned.
    pub fn apply(&self, loaded: Vec<Library>, removed: &[PathBuf]) -> Vec<Arc<Library>> {
        if loaded.is_empty() && removed.is_empty() {
            return Vec::new();
        }
        let mut previous = Vec::new();
        {
            let mut refused = lock(&self.inner.refused);
            let mut swaps = lock(&self.inner.swaps);
            for path in loaded.iter().map(|library| &library.path).chain(removed) {
                refused.remove(path);
            }
            for path in removed {
                swaps.remove(path);
            }
        }
        self.update(|libraries| {
            for library in loaded {
                let path = library.path.clone();
                let replaced = libraries.insert(path.clone(), Arc::new(library));
                if replaced.is_some() {
                    *lock(&self.inner.swaps).entry(path).or_default() += 1;
                }
                previous.extend(replaced);
            }
            for path in removed {
                previous.extend(libraries.remove(path));
            }
        });
        let owed = previous.iter().filter(|old| old.runtime.retire()).cloned();
        lock(&self.inner.retired).extend(owed);
        previous
    }

    /// Stops serving the library version running on `runtime` (it failed
    /// for good, for `reason`), unless another version replaced it already.
    pub fn withdraw(&self, runtime: &Arc<dyn LibraryRuntime>, reason: &str) {
        let served = lock(&self.inner.libraries)
            .values()
            .any(|library| Arc::ptr_eq(&library.runtime, runtime));
        if served {
            let mut failed = Vec::new();
            self.update(|libraries| {
                libraries.retain(|path, library| {
                    let keep = !Arc::ptr_eq(&library.runtime, runtime);
                    if !keep {
                        failed.push(path.clone());
                    }
                    keep
                });
            });
            for path in failed {
                self.refuse(
                    &path,
                    format!("failed while serving: {reason}; not served until the file changes"),
                    false,
                );
            }
        }
    }

    /// Records that the file at `path` was refused, and why.
    pub fn refuse(&self, path: &Path, reason: String, previous_serving: bool) {
        let refusal = Refusal {
            path: path.to_owned(),
            reason,
            at: SystemTime::now(),
            previous_serving,
        };
        lock(&self.inner.refused).insert(path.to_owned(), refusal);
        self.inner.revision.send_modify(|revision| *revision += 1);
    }

    /// Forgets the refusal of `path` (its file is gone, or back to the
    /// version served).
    pub fn forget_refusal(&self, path: &Path) {
        if lock(&self.inner.refused).remove(path).is_some() {
            self.inner.revision.send_modify(|revision| *revision += 1);
        }
    }

    /// The library files not served, and why, by path.
    pub fn refusals(&self) -> Vec<Refusal> {
        lock(&self.inner.refused).values().cloned().collect()
    }

    /// The libraries served now, by path, each with how often it was
    /// replaced by a new version.
    pub fn libraries(&self) -> Vec<(Arc<Library>, u64)> {
        // Libraries, then swaps: the order `apply` takes them in.
        let libraries = lock(&self.inner.libraries);
        let swaps = lock(&self.inner.swaps);
        libraries
            .values()
            .map(|library| (Arc::clone(library), swaps.get(&library.path).copied().unwrap_or(0)))
            .collect()
    }

    /// A counter bumped on every change to the served set or the refusals:
    /// for event streams that only need the latest state.
    pub fn watch(&self) -> watch::Receiver<u64> {
        self.inner.revision.subscribe()
    }

    /// Whether any served library can run executions (its worker is up or
    /// restarting); false when there is none.
    pub fn any_up(&self) -> bool {
        lock(&self.inner.libraries)
            .values()
            .any(|library| library.runtime.is_up())
    }

    /// Why libraries serve less than they should right now (`/readyz`'s
    /// `degraded`), in path order.
    pub fn troubles(&self) -> Vec<String> {
        let libraries = lock(&self.inner.libraries);
        let mut troubles: Vec<(&std::path::PathBuf, String)> = libraries
            .iter()
            .filter_map(|(path, library)| library.runtime.trouble().map(|t| (path, t)))
            .collect();
        troubles.sort();
        troubles.into_iter().map(|(_, trouble)| trouble).collect()
    }

    /// The library served for `path`, if any.
    pub fn library(&self, path: &std::path::Path) -> Option<Arc<Library>> {
        lock(&self.inner.libraries).get(path).cloned()
    }

    /// The server is stopping: every version whose shutdown hook is owed,
    /// replaced ones first, then those still served. (The served set is
    /// left as it is: nothing executes any more.)
    pub fn retire_all(&self) -> Vec<Arc<Library>> {
        let mut owed = std::mem::take(&mut *lock(&self.inner.retired));
        owed.extend(lock(&self.inner.libraries).values().cloned());
        owed
    }

    fn update(&self, change: impl FnOnce(&mut BTreeMap<PathBuf, Arc<Library>>)) {
        let mut libraries = lock(&self.inner.libraries);
        change(&mut libraries);
        let snapshot = Arc::new(Snapshot::build(&libraries));
        crate::metrics::gauge!(crate::metrics::NODES_LOADED).set(snapshot.uids.len() as f64);
        crate::metrics::gauge!(crate::metrics::LIBRARIES_LOADED).set(snapshot.libraries as f64);
        self.inner.snapshot.store(Arc::clone(&snapshot));
        // No subscribers is fine: nobody is connected.
        let _ = self.inner.updates.send(snapshot);
        self.inner.revision.send_modify(|revision| *revision += 1);
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

/// What [`NodeRegistry::run_shutdown_hooks`] did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct HooksReport {
    /// Hooks that returned `Ok`.
    pub ran: usize,
    /// Hooks that returned an error or panicked (logged).
    pub failed: usize,
    /// Libraries built against a nano-plugin-abi without the hook.
    pub without_hook: usize,
    /// Hooks still running when the budget ran out (logged, left behind).
    pub unfinished: usize,
}

impl NodeRegistry {
    /// The server is stopping: calls the shutdown hook of every library
    /// version it owes one (those still served, and replaced ones that stay
    /// mapped), one after the other on a thread of their own, waiting at
    /// most `budget` in total. A hook that overstays is left running: the
    /// process exits soon.
    pub fn run_shutdown_hooks(&self, budget: std::time::Duration) -> HooksReport {
        let owed = self.retire_all();
        let total = owed.len();
        let mut report = HooksReport::default();
        let (sender, results) = std::sync::mpsc::channel();
        let hooks = std::thread::Builder::new()
            .name("shutdown-hooks".to_owned())
            .spawn(move || {
                for library in owed {
                    let outcome = library.runtime.shutdown_hook();
                    if sender.send((library, outcome)).is_err() {
                        return;
                    }
                }
            });
        if let Err(err) = hooks {
            tracing::warn!(%err, "cannot start a thread for the plugins' shutdown hooks; skipped");
            report.unfinished = total;
            return report;
        }
        let deadline = std::time::Instant::now() + budget;
        for _ in 0..total {
            let wait = deadline.saturating_duration_since(std::time::Instant::now());
            let Ok((library, outcome)) = results.recv_timeout(wait) else {
                break;
            };
            match outcome {
                Some(Ok(())) => report.ran += 1,
                Some(Err(message)) => {
                    report.failed += 1;
                    tracing::warn!(path = %library.path.display(), "shutdown hook failed: {message}");
                }
                None => {
                    report.without_hook += 1;
                    tracing::debug!(
                        path = %library.path.display(),
                        "no shutdown hook: built against nano-plugin-abi {}",
                        library.abi_version
                    );
                }
            }
        }
        report.unfinished = total - report.ran - report.failed - report.without_hook;
        if report.unfinished > 0 {
            tracing::warn!(
                unfinished = report.unfinished,
                budget_ms = budget.as_millis() as u64,
                "plugin shutdown hooks still running after the budget; not waiting for them"
            );
        }
        report
    }
}
