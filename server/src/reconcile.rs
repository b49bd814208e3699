//! Keeping the served set equal to what is on disk: used once at start and
//! after every batch of file events from the watcher.
//!
//! A file is (re)loaded only when its content changed (it is hashed), only
//! once it is stable (size and mtime did not move while it was read), and a
//! version is swapped in only after it loaded and passed every check: a
//! broken replacement leaves the previous version serving.

use std::{
    collections::{HashMap, HashSet},
    fs,
    path::{Path, PathBuf},
    sync::Arc,
    time::{Instant, SystemTime},
};

use crate::{
    execution::{Backend, PythonGroup, is_python_library},
    loader::{self, LoadError},
    metrics,
    python_groups::{self, Unit},
    registry::{Library, NodeRegistry},
};

/// What one pass changed.
#[derive(Debug, Default)]
pub struct Report {
    /// Libraries now served from these paths (new or replaced).
    pub loaded: Vec<PathBuf>,
    /// Files that failed to load, with why.
    pub refused: Vec<(PathBuf, LoadError)>,
    /// Paths no longer served.
    pub removed: Vec<PathBuf>,
}

/// What was last seen of a file.
struct Seen {
    len: u64,
    modified: Option<SystemTime>,
    hash: u64,
    /// Hash of the version being served from this path, if any.
    served: Option<u64>,
    /// Refused for its permissions (or its folders'): looked at again on
    /// every pass, since `chmod` changes neither content nor mtime.
    insecure: bool,
}

/// Brings the registry in line with the files under `root`.
pub struct Reconciler {
    backend: Arc<dyn Backend>,
    registry: NodeRegistry,
    root: PathBuf,
    allow_insecure: bool,
    python_group: PythonGroup,
    configured_interpreter: bool,
    seen: HashMap<PathBuf, Seen>,
    /// The members of each served group that its worker refused (shown
    /// as refused files until the group loads again, or goes).
    refused_members: HashMap<PathBuf, Vec<PathBuf>>,
}

impl Reconciler {
    pub fn new(backend: Arc<dyn Backend>, registry: NodeRegistry, root: PathBuf) -> Self {
        Self {
            backend,
            registry,
            root,
            allow_insecure: false,
            python_group: PythonGroup::Library,
            configured_interpreter: false,
            seen: HashMap::new(),
            refused_members: HashMap::new(),
        }
    }

    /// Loads libraries (and folders) writable by group or others too.
    pub fn allow_insecure_permissions(mut self, allow: bool) -> Self {
        self.allow_insecure = allow;
        self
    }

    /// `[python] group`, and whether `[python] interpreter` is set (then
    /// `project` makes one group of every `node.py`).
    pub fn python_group(mut self, group: PythonGroup, configured_interpreter: bool) -> Self {
        self.python_group = group;
        self.configured_interpreter = configured_interpreter;
        self
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// One pass. `touched` are paths named by file events: they are hashed
    /// even if size and mtime look unchanged; other files are re-read only
    /// when their size or mtime moved.
    pub fn reconcile(&mut self, touched: &HashSet<PathBuf>) -> std::io::Result<Report> {
        let _span = tracing::info_span!("reconcile", changed = touched.len()).entered();
        let started = Instant::now();
        let on_disk = loader::scan(&self.root)?;
        let mut report = Report::default();
        let mut loaded = Vec::new();
        let shared = SharedSources::find(&self.root, &on_disk, touched);
        let units = python_groups::units(&self.root, &on_disk, self.python_group, self.configured_interpreter);

        for unit in &units {
            let touched = unit
                .members
                .iter()
                .any(|path| is_touched(path, touched) || (shared.touched && is_python_library(path)));
            if let Some(library) = self.examine(unit, touched, shared.hash, &mut report) {
                loaded.push(library);
            }
        }
        let present: HashSet<&PathBuf> = units.iter().map(|unit| &unit.key).collect();
        report.removed = self.seen.keys().filter(|p| !present.contains(p)).cloned().collect();
        report.removed.sort();
        for path in &report.removed {
            self.seen.remove(path);
            self.registry.forget_refusal(path);
            for member in self.refused_members.remove(path).unwrap_or_default() {
                self.registry.forget_refusal(&member);
            }
        }
        // Removed files that never served anything change nothing.
        report.removed.retain(|path| self.registry.library(path).is_some());

        let new_versions: Vec<(PathBuf, Vec<String>)> =
            loaded.iter().map(|l: &Library| (l.path.clone(), describe(l))).collect();
        let previous = self.registry.apply(loaded, &report.removed);
        let elapsed_ms = started.elapsed().as_secs_f64() * 1000.0;
        for (path, new) in &new_versions {
            match previous.iter().find(|old| &old.path == path) {
                Some(old) => {
                    metrics::counter!(metrics::LIBRARY_SWAPS).increment(1);
                    let old = describe(old);
                    tracing::info!(library = %path.display(), ?old, ?new, elapsed_ms, "swapped {}", path.display());
                }
                None => {
                    metrics::counter!(metrics::LIBRARY_LOADS).increment(1);
                    tracing::info!(library = %path.display(), nodes = ?new, elapsed_ms, "loaded {}", path.display());
                }
            }
        }
        for path in &report.removed {
            let old = previous.iter().find(|old| &old.path == path).map(|old| describe(old));
            tracing::info!(library = %path.display(), nodes = ?old, elapsed_ms, "removed {}", path.display());
        }
        report.loaded = new_versions.into_iter().map(|(path, _)| path).collect();
        if !report.loaded.is_empty() || !report.removed.is_empty() {
            // The bytes read for the new versions were freed just now.
            crate::give_back_free_memory();
        }
        Ok(report)
    }

    /// Looks at one unit (a file, or a group of `node.py` files); returns
    /// a freshly loaded version to serve.
    fn examine(&mut self, unit: &Unit, touched: bool, shared_hash: u64, report: &mut Report) -> Option<Library> {
        let path = unit.key.as_path();
        let before = Meta::of(&unit.members)?;
        let seen = self.seen.get(path);
        let unchanged_meta = seen.is_some_and(|s| s.len == before.len && s.modified == before.modified);
        let insecure = seen.is_some_and(|s| s.insecure);
        if insecure && !self.allow_insecure && self.check_permissions(unit).is_err() {
            // Still refused; said once already.
            return None;
        }
        if unchanged_meta && !touched && !insecure {
            return None;
        }
        let mut read = Vec::with_capacity(unit.members.len());
        for member in &unit.members {
            match fs::read(member) {
                Ok(bytes) => read.push((member.clone(), bytes)),
                Err(err) => {
                    tracing::debug!(library = %member.display(), %err, "unreadable for now");
                    return None;
                }
            }
        }
        let after = Meta::of(&unit.members)?;
        if after != before || after.len != read.iter().map(|(_, bytes)| bytes.len() as u64).sum::<u64>() {
            // Still being written: its next write brings another event.
            tracing::debug!(library = %path.display(), "still changing; will look again");
            return None;
        }
        // A Python library is its node.py, the modules beside it, and the
        // project's shared modules; a group, all of its members'.
        let (bytes, hash) = if unit.is_group() {
            let bytes = python_groups::manifest(&read);
            // The manifest, then its members' neighbours, hashed as one.
            let mut hasher = xxhash_rust::xxh3::Xxh3::new();
            hasher.update(&bytes);
            for member in &unit.members {
                hasher.update(&sibling_sources_hash(member).to_le_bytes());
            }
            (bytes, hasher.digest() ^ shared_hash)
        } else {
            let (_, bytes) = read.pop().expect("a unit has a member");
            let hash = if is_python_library(path) {
                content_hash(&bytes) ^ sibling_sources_hash(path) ^ shared_hash
            } else {
                content_hash(&bytes)
            };
            (bytes, hash)
        };
        let served = seen.and_then(|s| s.served);
        let previous_hash = seen.map(|s| s.hash);
        let mut record = Seen {
            len: after.len,
            modified: after.modified,
            hash,
            served,
            insecure: false,
        };
        if served == Some(hash) || (previous_hash == Some(hash) && served.is_none() && !insecure) {
            if touched {
                tracing::info!(library = %path.display(), "unchanged content; nothing to do");
            }
            // Back to the version served: a refusal of another version is moot.
            if served == Some(hash) && self.registry.library(path).is_some() {
                self.registry.forget_refusal(path);
            }
            self.seen.insert(path.to_owned(), record);
            return None;
        }
        let trusted = if self.allow_insecure {
            Ok(())
        } else {
            self.check_permissions(unit)
        };
        // A span per load (or swap, when a version is served there), a child
        // of this pass's: what traces show of the library's life.
        let span = if self.registry.library(path).is_some() {
            tracing::info_span!("library_swap", library = %path.display())
        } else {
            tracing::info_span!("library_load", library = %path.display())
        };
        let started = Instant::now();
        let result = trusted
            .and_then(|()| span.in_scope(|| self.backend.load(path, &bytes)))
            .inspect(|loaded| {
                self.note_refused_members(path, &loaded.refused_members);
                for (member, reason) in &loaded.refused_members {
                    report
                        .refused
                        .push((member.clone(), LoadError::InWorker(reason.clone())));
                }
            })
            .map(|loaded| Library {
                path: path.to_owned(),
                abi_version: loaded.abi_version,
                nodes: loaded.nodes,
                runtime: loaded.runtime,
                loaded_at: SystemTime::now(),
                load_duration: started.elapsed(),
            });
        let library = match result {
            Ok(library) => {
                record.served = Some(hash);
                Some(library)
            }
            Err(err) => {
                record.insecure = matches!(err, LoadError::Insecure(_));
                if served.is_some() {
                    tracing::warn!(library = %path.display(), "refused {}: {err}; the previous version keeps serving", path.display());
                } else {
                    tracing::warn!(library = %path.display(), "refused {}: {err}", path.display());
                }
                metrics::counter!(metrics::LIBRARY_FAILURES).increment(1);
                self.registry
                    .refuse(path, err.to_string(), self.registry.library(path).is_some());
                report.refused.push((path.to_owned(), err));
                None
            }
        };
        self.seen.insert(path.to_owned(), record);
        library
    }
}

impl Reconciler {
    /// A group loaded: its members refused this time are shown as refused
    /// files (the rest of the group serves); those refused last time and
    /// not now are not.
    fn note_refused_members(&mut self, group: &Path, refused: &[(PathBuf, String)]) {
        for member in self.refused_members.remove(group).unwrap_or_default() {
            self.registry.forget_refusal(&member);
        }
        if refused.is_empty() {
            return;
        }
        for (member, reason) in refused {
            self.registry
                .refuse(member, format!("{reason} (the rest of its group serves)"), false);
        }
        self.refused_members.insert(
            group.to_owned(),
            refused.iter().map(|(member, _)| member.clone()).collect(),
        );
    }

    /// Every member's trust check (the first refusal).
    fn check_permissions(&self, unit: &Unit) -> Result<(), LoadError> {
        unit.members
            .iter()
            .try_for_each(|member| loader::check_permissions(member, &self.root))
    }
}

/// Size and modification time of a unit's files: the sum of the sizes and
/// the latest time (the files' own for a single file).
#[derive(PartialEq, Eq)]
struct Meta {
    len: u64,
    modified: Option<SystemTime>,
}

impl Meta {
    /// `None` if a file is gone (the next pass sees the unit without it).
    fn of(members: &[PathBuf]) -> Option<Self> {
        let mut meta = Self { len: 0, modified: None };
        for member in members {
            let found = fs::metadata(member).ok()?;
            meta.len += found.len();
            meta.modified = meta.modified.max(found.modified().ok());
        }
        Some(meta)
    }
}

/// Whether a file event named `path`, or for a Python library, a `.py`
/// module in its folder (an edit of a helper it imports reloads it).
fn is_touched(path: &Path, touched: &HashSet<PathBuf>) -> bool {
    touched.contains(path)
        || (is_python_library(path)
            && touched
                .iter()
                .any(|t| t.parent() == path.parent() && t.extension().is_some_and(|ext| ext == "py")))
}

/// The `.py` modules under the root outside every node folder (a folder
/// holding a `node.py`): shared code any Python library may import, so a
/// change to one reloads every Python library.
struct SharedSources {
    /// Their names and contents, hashed (0 when there are none).
    hash: u64,
    /// Whether a file event named one (or one that is gone).
    touched: bool,
}

impl SharedSources {
    fn find(root: &Path, libraries: &[PathBuf], touched: &HashSet<PathBuf>) -> Self {
        let node_folders: HashSet<&Path> = libraries
            .iter()
            .filter(|path| is_python_library(path))
            .filter_map(|path| path.parent())
            .collect();
        if node_folders.is_empty() {
            return Self {
                hash: 0,
                touched: false,
            };
        }
        let is_shared = |path: &Path| {
            path.extension().is_some_and(|ext| ext == "py")
                && path.parent().is_some_and(|folder| !node_folders.contains(folder))
        };
        let touched = touched.iter().any(|path| is_shared(path));
        let sources: Vec<PathBuf> = loader::walk(root, "nodes_path")
            .unwrap_or_default()
            .into_iter()
            .filter(|(path, is_folder)| !is_folder && is_shared(path))
            .map(|(path, _)| path)
            .collect();
        if sources.is_empty() {
            return Self { hash: 0, touched };
        }
        Self {
            hash: sources_hash(sources),
            touched,
        }
    }
}

/// The hash of the `.py` files beside the `node.py` at `path` (not itself),
/// by name and content: a change to one makes a new version.
fn sibling_sources_hash(path: &Path) -> u64 {
    let Some(folder) = path.parent() else { return 0 };
    let Ok(entries) = fs::read_dir(folder) else { return 0 };
    let sources: Vec<PathBuf> = entries
        .flatten()
        .map(|entry| entry.path())
        .filter(|p| p.as_path() != path && p.extension().is_some_and(|ext| ext == "py") && p.is_file())
        .collect();
    sources_hash(sources)
}

/// The hash of `sources` by name and content, in name order.
fn sources_hash(mut sources: Vec<PathBuf>) -> u64 {
    sources.sort();
    let mut all = Vec::new();
    for source in sources {
        all.extend_from_slice(source.as_os_str().as_encoded_bytes());
        all.push(0);
        all.extend_from_slice(&fs::read(&source).unwrap_or_default());
        all.push(0);
    }
    content_hash(&all)
}

fn describe(library: &Library) -> Vec<String> {
    library
        .nodes
        .iter()
        .map(|n| format!("{}@{}", n.uid, n.version))
        .collect()
}

/// XXH3: about 10× faster than SipHash on a library of several MB, and
/// collisions by accident are what matters here, not by design.
fn content_hash(bytes: &[u8]) -> u64 {
    xxhash_rust::xxh3::xxh3_64(bytes)
}
