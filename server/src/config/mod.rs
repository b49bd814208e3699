//! Server configuration: a file (`config.toml`, or the SDKs'
//! `nanoserver.json`), then environment variables (as the orchestrator sets
//! them), then command-line flags, each overriding the last.
//!
//! [`Config`] is made of the sections its users take: [`Limits`] (the
//! transports), [`Admission`] (the executor), [`Process`] (the process
//! backend), [`Telemetry`] (logs) and [`NanoCore`]. The keys are documented
//! where they are defined (`file.rs`), their defaults in `defaults.rs`, the
//! environment in `env.rs`.

mod defaults;
mod env;
mod file;
mod resolve;
mod sdk;
mod secret;
#[cfg(test)]
mod tests;

use std::{
    collections::{HashMap, HashSet},
    net::IpAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use serde::Deserialize;

pub use secret::Secret;

/// Why the configuration cannot be used. Each variant renders as one line
/// naming the file (or variable) and the key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {file}: {source}")]
    Read {
        file: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{file}: line {line}: {message}")]
    Syntax {
        file: PathBuf,
        line: usize,
        message: String,
    },
    #[error("{file}: key `{key}`: {message}")]
    Key {
        file: PathBuf,
        key: String,
        message: String,
    },
    #[error("{file}: missing required key `{key}`")]
    Missing { file: PathBuf, key: &'static str },
    #[error("environment variable {var}: {message}")]
    Env { var: &'static str, message: String },
}

/// Something loading the file found worth telling but not fatal, logged once
/// the logger runs (it starts after the configuration is loaded).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoadNote {
    Info(String),
    Warning(String),
}

/// How a new version of a library replaces the old one (process isolation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SwapStrategy {
    /// Start the new worker, move new executions to it, drain the old one.
    Overlap,
    /// Drain and stop the old worker first (a library whose model is too
    /// large to hold twice); executions wait meanwhile.
    StopFirst,
}

/// Where plugin code runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Isolation {
    /// Each library in a worker process of its own: a crash, hang or leak
    /// takes down only that worker.
    Process,
    /// Libraries mapped into the server: fastest, for trusted nodes.
    InProcess,
}

impl Isolation {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Process => "process",
            Self::InProcess => "in-process",
        }
    }
}

/// Overrides given on the command line.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub host: Option<String>,
    pub port: Option<u16>,
    pub nodes_path: Option<PathBuf>,
    pub isolation: Option<Isolation>,
}

/// Who this server is, as sent in `GET /` and the handshake.
#[derive(Debug, Clone)]
pub struct Identity {
    pub domain: String,
    pub server_name: String,
    pub server_uid: String,
    pub server_package_id: String,
    /// Where NanoCore's API is, as told to the orchestrator and used for the
    /// nodes' asset and resource calls; empty when unset.
    pub nanocore_http_endpoint: String,
}

/// The resolved configuration. Each key's meaning is on its `file.rs` key.
#[derive(Debug, Clone)]
pub struct Config {
    pub identity: Identity,
    pub host: String,
    pub port: u16,
    /// Absolute, because file events name absolute paths and they are
    /// compared with the scanned ones.
    pub nodes_path: PathBuf,
    pub auto_watch: bool,
    pub watch_debounce: Duration,
    pub build_sources: bool,
    pub allow_insecure_permissions: bool,
    pub isolation: Isolation,
    pub ui: bool,
    /// How long in-flight executions may run on after SIGINT, SIGTERM or SIGHUP.
    pub shutdown_grace: Duration,
    pub limits: Limits,
    pub admission: Admission,
    pub process: Process,
    pub telemetry: Telemetry,
    pub nanocore: NanoCore,
    pub python: Python,
    /// What loading the file found worth telling (see [`Config::log_notes`]).
    pub notes: Vec<LoadNote>,
}

/// Limits and access rules of the transports (HTTP, WebSocket, event streams).
#[derive(Debug, Clone)]
pub struct Limits {
    /// `auth_token`: the bearer token every route but the probes needs.
    pub auth_token: Option<Secret>,
    pub max_request_bytes: usize,
    pub max_message_bytes: usize,
    /// WebSocket connections open at once.
    pub max_connections: usize,
    pub max_outbox_bytes: usize,
    pub client_stall: Duration,
    /// Origins besides the server's own, lower-case, without a trailing `/`.
    pub allowed_origins: Vec<String>,
    /// TCP connections open at once.
    pub max_http_connections: usize,
    /// Event streams open at once, in total and per client address.
    pub max_event_streams: usize,
    pub max_event_streams_per_address: usize,
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
}

/// How many executions run and wait, and for how long they may run.
#[derive(Debug, Clone)]
pub struct Admission {
    pub max_concurrent_executions: usize,
    pub max_queued_executions: usize,
    pub max_queued_bytes: usize,
    /// Per node uid (`[nodes.<uid>] max_concurrent`): at most this many at once.
    pub node_concurrency: HashMap<String, usize>,
    /// `None`: no limit.
    pub execution_timeout: Option<Duration>,
}

/// The worker processes of process isolation.
#[derive(Debug, Clone)]
pub struct Process {
    pub abort_grace: Duration,
    pub worker_drain: Duration,
    /// `None`: no limit.
    pub worker_memory_limit_mb: Option<u64>,
    pub worker_start_timeout: Duration,
    pub worker_restart_initial: Duration,
    pub worker_restart_max: Duration,
    pub worker_restart_wait: Duration,
    /// None: no heartbeat.
    pub worker_heartbeat: Option<Duration>,
    pub worker_restart_reset: Duration,
    /// The default swap strategy.
    pub swap_strategy: SwapStrategy,
    /// The libraries (relative to `nodes_path`) that swap stop-first whatever
    /// the default.
    pub stop_first_libraries: HashSet<String>,
}

/// How Python `node.py` libraries are run (`[python]`).
#[derive(Debug, Clone)]
pub struct Python {
    /// The folder of the configuration file: the workers' working directory.
    pub project_root: PathBuf,
    /// `[python] interpreter`, resolved against the file's folder when it
    /// is a path; `None`: looked for per library.
    pub interpreter: Option<PathBuf>,
    /// `[python] workers`: worker processes per Python library.
    pub workers: usize,
    /// `[python] group`: which `node.py` files share a worker.
    pub group: crate::execution::PythonGroup,
}

/// How log lines are written and filtered (traces: `OTEL_*`, read by
/// `telemetry`).
#[derive(Debug, Clone)]
pub struct Telemetry {
    /// `--log-format` wins over it.
    pub log_format: crate::telemetry::LogFormat,
    /// From the environment (see `env.rs`); `None`: none set.
    pub log_filter: Option<String>,
}

/// NanoCore's API: where it is is part of [`Identity`]; its token only the
/// server holds (workers never see it).
#[derive(Debug, Clone)]
pub struct NanoCore {
    /// `NANOCORE_TOKEN`.
    pub token: Option<Secret>,
}

impl Config {
    /// Reads `file` (JSON in the SDKs' `nanoserver.json` form if its name
    /// ends in `.json`, else TOML), applies the process environment and
    /// `overrides`.
    pub fn load(file: &Path, overrides: &Overrides) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(file).map_err(|source| ConfigError::Read {
            file: file.to_owned(),
            source,
        })?;
        let env = |var: &str| std::env::var(var).ok();
        if is_json(file) {
            Self::from_json(&text, file, env, overrides)
        } else {
            Self::from_toml(&text, file, env, overrides)
        }
    }

    /// Builds the configuration from TOML text; `env` looks up environment
    /// variables (injected so tests need not touch the process environment).
    pub fn from_toml(
        text: &str,
        file: &Path,
        env: impl Fn(&str) -> Option<String>,
        overrides: &Overrides,
    ) -> Result<Self, ConfigError> {
        let parsed = file::parse(text, file)?;
        Self::resolve(parsed, file, "server_uid", Vec::new(), &env::Env(env), overrides)
    }

    /// Builds the configuration from a `nanoserver.json`: the SDKs' keys
    /// (`serverUid`, `nodesPath`, …) and this server's own (`auth_token`,
    /// `isolation`, …); other keys, which SDK projects carry for their own
    /// tools, are ignored with a warning in [`Config::notes`].
    pub fn from_json(
        text: &str,
        file: &Path,
        env: impl Fn(&str) -> Option<String>,
        overrides: &Overrides,
    ) -> Result<Self, ConfigError> {
        let mut notes = Vec::new();
        let parsed = sdk::parse_json(text, file, &mut notes)?;
        Self::resolve(parsed, file, "serverUid", notes, &env::Env(env), overrides)
    }

    /// Logs what loading the file found worth telling; once, at start.
    pub fn log_notes(&self) {
        for note in &self.notes {
            match note {
                LoadNote::Info(message) => tracing::info!("{message}"),
                LoadNote::Warning(message) => tracing::warn!("{message}"),
            }
        }
    }

    /// The address to listen on, accepting bare IPv6 addresses too.
    pub fn listen_address(&self) -> String {
        match self.host.parse::<IpAddr>() {
            Ok(IpAddr::V6(ip)) => format!("[{ip}]:{}", self.port),
            _ => format!("{}:{}", self.host, self.port),
        }
    }
}

/// `path` made absolute against the working directory, without resolving
/// links (the folder need not exist yet).
pub(crate) fn absolute(path: &Path) -> PathBuf {
    let joined = if path.is_absolute() {
        path.to_owned()
    } else {
        std::env::current_dir().unwrap_or_default().join(path)
    };
    let mut out = PathBuf::new();
    for part in joined.components() {
        match part {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// Whether `file` is read as JSON (`nanoserver.json`) rather than TOML.
fn is_json(file: &Path) -> bool {
    file.extension().is_some_and(|ext| ext.eq_ignore_ascii_case("json"))
}

/// The configuration file when `--config` is not given: `config.toml` in the
/// current folder, else the SDKs' `nanoserver.json` there, else
/// `config.toml` (whose absence is then the error).
pub fn default_file() -> PathBuf {
    let (toml, json) = (Path::new("config.toml"), Path::new("nanoserver.json"));
    if !toml.exists() && json.is_file() {
        json.to_owned()
    } else {
        toml.to_owned()
    }
}
