//! A plugin library: finding it ([`scan`]), deciding whether to trust it
//! ([`trust`]), and mapping it into this process with every check (here).
//!
//! Every library is loaded from a private copy with a unique name, never
//! from the file under `nodes/`: `dlopen` of a path already loaded returns
//! the old code, and overwriting a mapped file corrupts the running code.
//!
//! Libraries are never unloaded (`dlclose`): a Rust cdylib registers
//! thread-local destructors that run at thread exit, so unloading it while
//! any thread has touched it is unsound. A replaced version therefore stays
//! mapped for the life of the process.

use std::{
    ffi::OsStr,
    fmt, fs,
    path::Path,
    sync::{
        Arc, OnceLock,
        atomic::{AtomicU64, Ordering},
    },
};

mod scan;
mod trust;

pub use scan::{is_plugin_file, scan, walk};
pub use trust::check_permissions;

use abi_stable::{
    library::{LibHeader, LibraryError, RootModule, lib_header_from_path},
    std_types::RResult,
};
use nano_plugin_abi::ffi::PluginModuleRef;
use serde_json::Value;

/// A library mapped into this process that passed every check.
pub struct LoadedModule {
    /// The nano-plugin-abi version it was built against.
    pub abi_version: String,
    /// Its nodes, in the order the library lists them.
    pub nodes: Vec<NodeInfo>,
    /// Its root module: the functions the host calls.
    pub module: PluginModuleRef,
}

/// One node a library exports.
pub struct NodeInfo {
    pub uid: String,
    pub version: String,
    /// The definition exactly as the plugin gave it (plus `"type": "server"`).
    pub definition: Value,
    /// Set on its first execution; shared with the executor.
    pub metrics: Arc<OnceLock<crate::metrics::NodeMetrics>>,
}

/// Why a file was not loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read or copy the file: {0}")]
    Copy(#[source] std::io::Error),
    #[error("not a loadable library: {0}")]
    Open(String),
    #[error("not a nano-server plugin: {0}")]
    NotAPlugin(String),
    #[error("built against nano-plugin-abi {library}, this server has {host}: {reason}")]
    IncompatibleAbi {
        library: String,
        host: &'static str,
        reason: String,
    },
    #[error("failed to initialise: {0}")]
    Init(String),
    #[error("invalid node definitions: {0}")]
    Definitions(String),
    #[error("insecure permissions: {0}")]
    Insecure(String),
    /// Refused by the worker process that loaded it (its own reason).
    #[error("{0}")]
    InWorker(String),
    /// The worker process loading it died (three times in a row).
    #[error("crashed while loading ({0})")]
    Crashed(String),
    /// The worker process could not start, or load it in time.
    #[error("{0}")]
    Worker(String),
}

/// Loads libraries from private copies, each in a folder of its own that
/// exists only while the copy is being mapped: nothing is left on disk,
/// even by a process that is killed (or crashes) later.
pub struct Loader {
    prefix: String,
    next_copy: AtomicU64,
    /// Off Unix a mapped file cannot be deleted: its folder stays until the
    /// loader is dropped.
    #[cfg(not(unix))]
    kept: std::sync::Mutex<Vec<tempfile::TempDir>>,
}

impl Loader {
    pub fn new() -> std::io::Result<Self> {
        Self::with_prefix("nano-server-")
    }

    /// A loader whose private folders' names start with `prefix` (so
    /// whoever knows it can remove what a process that crashed while
    /// mapping a copy left behind).
    pub fn with_prefix(prefix: &str) -> std::io::Result<Self> {
        Ok(Self {
            prefix: prefix.to_owned(),
            next_copy: AtomicU64::new(0),
            #[cfg(not(unix))]
            kept: std::sync::Mutex::new(Vec::new()),
        })
    }

    /// Loads `bytes`, read from `path`. Read once: the bytes checked are the
    /// bytes copied and loaded, even if the file is rewritten meanwhile.
    pub fn load_bytes(&self, path: &Path, bytes: &[u8]) -> Result<LoadedModule, LoadError> {
        check_object_file(bytes)?;
        let folder = tempfile::Builder::new()
            .prefix(&self.prefix)
            .tempdir()
            .map_err(LoadError::Copy)?;
        let n = self.next_copy.fetch_add(1, Ordering::Relaxed);
        let name = path.file_name().unwrap_or(OsStr::new("plugin"));
        let copy = folder.path().join(format!("{n}-{}", name.to_string_lossy()));
        fs::write(&copy, bytes).map_err(LoadError::Copy)?;
        let loaded = load_from(&copy);
        // The mapping outlives the file on Unix, so the copy (and its
        // folder) can go now.
        #[cfg(not(unix))]
        crate::lock(&self.kept).push(folder);
        loaded
    }
}

/// Refuses files the dynamic loader would choke on. `dlopen` maps segments
/// that reach past the end of a truncated file, and the first access to
/// them kills the process with SIGBUS; so every segment must lie inside it.
fn check_object_file(bytes: &[u8]) -> Result<(), LoadError> {
    use object::{Object, ObjectSegment};
    let file = object::File::parse(bytes).map_err(|e| LoadError::Open(format!("not an object file: {e}")))?;
    for segment in file.segments() {
        segment.data().map_err(|_| {
            LoadError::Open(format!(
                "truncated: a segment ends past the end of the file ({} bytes)",
                bytes.len()
            ))
        })?;
    }
    Ok(())
}

fn load_from(copy: &Path) -> Result<LoadedModule, LoadError> {
    let header = lib_header_from_path(copy).map_err(|err| match err {
        LibraryError::OpenError { err, .. } => LoadError::Open(err.to_string()),
        LibraryError::GetSymbolError { .. } => LoadError::NotAPlugin(
            "it exports no root module (was it built with `nano_plugin_abi::export_nodes!`?)".to_owned(),
        ),
        _ => LoadError::NotAPlugin(one_line(&err)),
    })?;
    let module = init_module(header)?;
    let definitions = match (module.definitions())() {
        RResult::ROk(json) => json.into_string(),
        RResult::RErr(message) => return Err(LoadError::Init(message.into_string())),
    };
    Ok(LoadedModule {
        abi_version: header.version_strings().version.as_str().to_owned(),
        nodes: parse_definitions(&definitions)?,
        module,
    })
}

fn init_module(header: &'static LibHeader) -> Result<PluginModuleRef, LoadError> {
    let consts = header.root_mod_consts();
    let base_name = consts.base_name().as_str();
    if base_name != PluginModuleRef::BASE_NAME {
        return Err(LoadError::NotAPlugin(format!(
            "an abi_stable library for `{base_name}`, not for nano-server"
        )));
    }
    let err = match header.init_root_module::<PluginModuleRef>() {
        Ok(module) => return Ok(module),
        Err(err) => err,
    };
    if let LibraryError::RootModule { .. } = err {
        return Err(LoadError::Init(one_line(&err)));
    }
    if let Some(module) = init_older_module(header) {
        return module;
    }
    Err(LoadError::IncompatibleAbi {
        library: header.version_strings().version.as_str().to_owned(),
        host: nano_plugin_abi::ABI_VERSION,
        reason: layout_mismatch(&err),
    })
}

/// abi_stable only accepts a library built against the host's interface
/// version or a newer one: its checker refuses a root module with fewer
/// fields than the host's. Ours is a prefix type designed the other way
/// round too: fields appended in a later 0.x.y (such as `shutdown`) read as
/// `None` from a library that lacks them, because the accessors consult the
/// field count the library recorded in its own module. So a library from an
/// older patch release of the same series is checked in the reverse
/// direction (its layout must be a prefix of ours) and then loaded.
/// `None` when the library is not such an older release.
fn init_older_module(header: &'static LibHeader) -> Option<Result<PluginModuleRef, LoadError>> {
    use abi_stable::{StableAbi, abi_stability::abi_checking::check_layout_compatibility, sabi_types::VersionNumber};
    let library = VersionNumber::new(header.version_strings()).ok()?;
    let host = VersionNumber::new(PluginModuleRef::VERSION_STRINGS).ok()?;
    let older_in_series = if host.major == 0 {
        library.major == 0 && library.minor == host.minor && library.patch < host.patch
    } else {
        library.major == host.major && library.minor < host.minor
    };
    if !older_in_series {
        return None;
    }
    let layout = header.layout()?;
    let refused = |reason: String| LoadError::IncompatibleAbi {
        library: library.to_string(),
        host: nano_plugin_abi::ABI_VERSION,
        reason,
    };
    if let Err(err) = check_layout_compatibility(layout, <PluginModuleRef as StableAbi>::LAYOUT) {
        return Some(Err(refused(layout_mismatch(&LibraryError::AbiInstability(
            abi_stable::std_types::RBoxError::new(err),
        )))));
    }
    // SAFETY: the check above proved every field and type the library has
    // matches ours; the fields it lacks are only reached through accessors
    // that return `None` for them.
    Some(
        unsafe { header.init_root_module_with_unchecked_layout::<PluginModuleRef>() }.map_err(|err| match err {
            LibraryError::RootModule { .. } => LoadError::Init(one_line(&err)),
            _ => refused(one_line(&err)),
        }),
    )
}

pub(crate) fn parse_definitions(json: &str) -> Result<Vec<NodeInfo>, LoadError> {
    let list: Vec<Value> =
        serde_json::from_str(json).map_err(|e| LoadError::Definitions(format!("not a JSON list: {e}")))?;
    if list.is_empty() {
        return Err(LoadError::Definitions("the library exports no node".to_owned()));
    }
    list.into_iter()
        .map(|mut definition| {
            let object = definition
                .as_object_mut()
                .ok_or_else(|| LoadError::Definitions("a definition is not an object".to_owned()))?;
            let uid = match object.get("uid").and_then(Value::as_str) {
                Some(uid) if !uid.trim().is_empty() => uid.to_owned(),
                _ => {
                    return Err(LoadError::Definitions("a definition has no `uid`".to_owned()));
                }
            };
            let version = object.get("version").and_then(Value::as_str).unwrap_or("").to_owned();
            object
                .entry("type")
                .or_insert_with(|| Value::String("server".to_owned()));
            Ok(NodeInfo {
                uid,
                version,
                definition,
                metrics: Arc::default(),
            })
        })
        .collect()
}

/// abi_stable's errors span many lines; logs want one.
fn one_line(err: &dyn fmt::Display) -> String {
    let text = err.to_string();
    let lines: Vec<&str> = text.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    lines.join(" ")
}

/// The gist of an abi_stable layout report (hundreds of lines): each
/// `Error:` with what was expected and what was found.
fn layout_mismatch(err: &LibraryError) -> String {
    let text = err.to_string();
    tracing::debug!(report = %text, "full ABI check report");
    let lines: Vec<&str> = text.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    let value_after = |label: &str, from: usize| {
        lines[from..]
            .iter()
            .position(|l| *l == label)
            .and_then(|i| lines.get(from + i + 1))
            .copied()
            .unwrap_or("?")
    };
    let problems: Vec<String> = lines
        .iter()
        .enumerate()
        .filter_map(|(i, line)| line.strip_prefix("Error:").map(|what| (i, what)))
        .take(4)
        .map(|(i, what)| {
            format!(
                "{what} (expected {}, found {})",
                value_after("Expected:", i),
                value_after("Found:", i)
            )
        })
        .collect();
    if problems.is_empty() {
        one_line(err)
    } else {
        format!("layout check failed: {}", problems.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn definitions_need_a_uid_and_get_type_server() {
        let nodes = parse_definitions(r#"[{"uid":"a","name":"A","x":1}]"#).unwrap();
        assert_eq!(nodes[0].definition["type"], "server");
        assert_eq!(nodes[0].definition["x"], 1);
        assert!(parse_definitions(r#"[{"name":"A"}]"#).is_err());
        assert!(parse_definitions("[]").is_err());
        assert!(parse_definitions("{").is_err());
    }
}
