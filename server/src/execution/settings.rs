//! The process backend's settings: plain data, on every platform (the
//! backend itself needs Unix; elsewhere process isolation is refused at
//! start with `PROCESS_ISOLATION_UNSUPPORTED`).

use std::{path::PathBuf, time::Duration};

/// How the process backend runs workers (from the configuration).
#[derive(Debug, Clone)]
pub struct ProcessSettings {
    /// `nodes_path`: libraries are named relative to it in logs and metrics.
    pub root: PathBuf,
    /// Node threads per worker (at most).
    pub threads: usize,
    /// Start-up, handshake and `definitions()` must finish within this.
    pub start_timeout: Duration,
    /// An aborted node that has not returned after this loses its worker.
    pub abort_grace: Duration,
    /// A worker being replaced may finish its executions for this long.
    pub drain: Duration,
    /// A worker whose resident memory passes this is ended.
    pub memory_limit_bytes: Option<u64>,
    /// The first restart after a crash waits this long, each next one twice
    /// as long, up to `restart_max`; `restart_reset` of health resets it.
    pub restart_initial: Duration,
    pub restart_max: Duration,
    pub restart_reset: Duration,
    /// Executions arriving while a worker restarts wait at most this long.
    pub restart_wait: Duration,
    /// A worker that leaves a ping unanswered this long is replaced (none:
    /// no heartbeat).
    pub heartbeat: Option<Duration>,
    /// Swap libraries by stopping the old worker before starting the new
    /// one (for libraries holding a model too large to hold twice), by
    /// default or for these libraries (paths relative to `root`).
    pub stop_first: bool,
    pub stop_first_libraries: std::collections::HashSet<String>,
}

impl ProcessSettings {
    /// The defaults of the configuration, for libraries under `root`.
    pub fn defaults(root: PathBuf) -> Self {
        Self {
            root,
            threads: 1,
            start_timeout: Duration::from_secs(10),
            abort_grace: Duration::from_secs(5),
            drain: Duration::from_secs(60),
            memory_limit_bytes: None,
            restart_initial: Duration::from_millis(100),
            restart_max: Duration::from_secs(30),
            restart_reset: Duration::from_secs(60),
            restart_wait: Duration::from_secs(10),
            heartbeat: Some(Duration::from_secs(10)),
            stop_first: false,
            stop_first_libraries: std::collections::HashSet::new(),
        }
    }
}

/// How Python `node.py` libraries are run (from the configuration).
#[derive(Debug, Clone, Default)]
pub struct PythonSettings {
    /// The folder of the configuration file: the workers' working
    /// directory, first on their module search path.
    pub project_root: PathBuf,
    /// `[python] interpreter`: the interpreter every worker runs (a path,
    /// or a name looked up on `PATH`); `None`: looked for per library.
    pub interpreter: Option<PathBuf>,
    /// `[python] workers`: worker processes per library (0 counts as 1).
    pub workers: usize,
}

/// `[python] group`: which `node.py` files share one worker process (one
/// interpreter), so that many nodes need not cost an interpreter each.
/// The files of a group load, crash, restart and swap together; an edit of
/// one reloads its group.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PythonGroup {
    /// One worker per `node.py`: isolates best, costs an interpreter each.
    Library,
    /// One worker per node pack: the nearest folder (up to `nodes_path`)
    /// holding a `.venv`, `requirements.txt` or `pyproject.toml`; files in
    /// no such folder form one pack, `nodes_path` itself. The default: a
    /// project of many nodes costs about one interpreter, while a pack
    /// with its own dependencies runs apart.
    #[default]
    Pack,
    /// One worker per interpreter: every file that runs on the same one
    /// (a node folder with its own `.venv` runs apart), as the SDK does.
    Project,
}
