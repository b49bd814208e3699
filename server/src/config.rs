//! Server configuration: a file (`config.toml`, or the SDKs'
//! `nanoserver.json`), then environment variables (as the orchestrator sets
//! them), then command-line flags, each overriding the last.

use std::{
    net::IpAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use serde::Deserialize;

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

/// The keys of `config.toml`; unknown keys are an error, not silently ignored.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    domain: Option<String>,
    server_name: Option<String>,
    server_uid: Option<String>,
    server_package_id: Option<String>,
    host: Option<String>,
    port: Option<u16>,
    nodes_path: Option<PathBuf>,
    auto_watch: Option<bool>,
    watch_debounce_time: Option<u64>,
    max_concurrent_executions: Option<usize>,
    max_request_bytes: Option<usize>,
    execution_timeout_ms: Option<u64>,
    build_sources: Option<bool>,
    auth_token: Option<String>,
    max_queued_executions: Option<usize>,
    max_message_bytes: Option<usize>,
    max_connections: Option<usize>,
    shutdown_grace_ms: Option<u64>,
    allow_insecure_permissions: Option<bool>,
    max_queued_bytes: Option<usize>,
    max_outbox_bytes: Option<usize>,
    max_http_connections: Option<usize>,
    header_read_timeout_ms: Option<u64>,
    idle_timeout_ms: Option<u64>,
    allowed_origins: Option<Vec<String>>,
    nodes: Option<std::collections::BTreeMap<String, NodeSettings>>,
    isolation: Option<Isolation>,
    log_format: Option<crate::telemetry::LogFormat>,
    abort_grace_ms: Option<u64>,
    worker_drain_ms: Option<u64>,
    worker_memory_limit_mb: Option<u64>,
    worker_start_timeout_ms: Option<u64>,
    worker_restart_initial_ms: Option<u64>,
    worker_restart_max_ms: Option<u64>,
    worker_restart_wait_ms: Option<u64>,
    worker_restart_reset_ms: Option<u64>,
    swap_strategy: Option<SwapStrategy>,
    libraries: Option<std::collections::BTreeMap<String, LibrarySettings>>,
    ui: Option<bool>,
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

/// `[libraries."<path relative to nodes_path>"]`: settings of one library.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LibrarySettings {
    pub swap_strategy: Option<SwapStrategy>,
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

/// `[nodes.<uid>]`: settings of one node.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeSettings {
    /// Executions of this node running at once (e.g. 1 for a GPU node that
    /// must run alone); the others wait in its own queue.
    pub max_concurrent: Option<usize>,
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
    pub nanocore_http_endpoint: String,
}

/// The resolved configuration. Its `Debug` output redacts the token.
#[derive(Clone)]
pub struct Config {
    pub identity: Identity,
    pub host: String,
    pub port: u16,
    pub nodes_path: PathBuf,
    pub auto_watch: bool,
    pub watch_debounce: Duration,
    pub max_concurrent_executions: usize,
    /// Largest HTTP request body accepted (413 beyond).
    pub max_request_bytes: usize,
    /// Longest an execution may run before it is aborted with an error.
    pub execution_timeout: Option<Duration>,
    /// Build node crates under `nodes_path` at start and when their sources change.
    pub build_sources: bool,
    /// When set, every route but `/healthz` and `/readyz` (and the
    /// WebSocket) needs `Authorization: Bearer <token>`.
    pub auth_token: Option<String>,
    /// `NANOCORE_TOKEN`: the bearer token for NanoCore's API (assets,
    /// resources). Only the server holds it; workers never see it.
    pub nanocore_token: Option<String>,
    /// Executions that may wait for a slot; beyond, new ones are refused.
    pub max_queued_executions: usize,
    /// Largest WebSocket message accepted (close 1009 beyond).
    pub max_message_bytes: usize,
    /// WebSocket connections open at once; more are refused with 503.
    pub max_connections: usize,
    /// How long in-flight executions may run on after SIGINT/SIGTERM.
    pub shutdown_grace: Duration,
    /// Load libraries that are writable by group or others.
    pub allow_insecure_permissions: bool,
    /// Bytes of requests waiting for a slot; beyond, new ones are refused.
    pub max_queued_bytes: usize,
    /// Unsent bytes a WebSocket or event stream may hold before its client
    /// is cut off for not reading.
    pub max_outbox_bytes: usize,
    /// TCP connections open at once (upgraded WebSockets included).
    pub max_http_connections: usize,
    /// How long a client may take to send a request's headers.
    pub header_read_timeout: Duration,
    /// How long an idle keep-alive connection is kept.
    pub idle_timeout: Duration,
    /// Origins (`scheme://host[:port]`) besides the server's own whose
    /// pages may POST or open a WebSocket.
    pub allowed_origins: Vec<String>,
    /// Per node uid: at most this many executions at once.
    pub node_concurrency: std::collections::HashMap<String, usize>,
    pub isolation: Isolation,
    /// How log lines are written (`--log-format` wins): text or JSON lines.
    pub log_format: crate::telemetry::LogFormat,
    /// An aborted node that has not returned after this loses its worker
    /// (process isolation).
    pub abort_grace: Duration,
    /// How long a replaced or retired worker may finish its executions.
    pub worker_drain: Duration,
    /// A worker whose resident memory passes this is ended.
    pub worker_memory_limit_mb: Option<u64>,
    pub worker_start_timeout: Duration,
    pub worker_restart_initial: Duration,
    pub worker_restart_max: Duration,
    pub worker_restart_wait: Duration,
    /// A worker up this long without a crash resets the restart delay.
    pub worker_restart_reset: Duration,
    /// The default swap strategy, and the libraries (relative to
    /// `nodes_path`) that swap stop-first.
    pub swap_strategy: SwapStrategy,
    pub stop_first_libraries: std::collections::HashSet<String>,
    /// What loading the file found worth telling (see [`Config::log_notes`]).
    pub notes: Vec<LoadNote>,
    /// Serve the browser pages under `/ui/` (and the asset routes they use).
    pub ui: bool,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("identity", &self.identity)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("nodes_path", &self.nodes_path)
            .field("auto_watch", &self.auto_watch)
            .field("watch_debounce", &self.watch_debounce)
            .field("max_concurrent_executions", &self.max_concurrent_executions)
            .field("max_request_bytes", &self.max_request_bytes)
            .field("execution_timeout", &self.execution_timeout)
            .field("build_sources", &self.build_sources)
            .field("auth_token", &redacted(self.auth_token.as_deref()))
            .field("nanocore_token", &redacted(self.nanocore_token.as_deref()))
            .field("max_queued_executions", &self.max_queued_executions)
            .field("max_message_bytes", &self.max_message_bytes)
            .field("max_connections", &self.max_connections)
            .field("shutdown_grace", &self.shutdown_grace)
            .field("allow_insecure_permissions", &self.allow_insecure_permissions)
            .field("max_queued_bytes", &self.max_queued_bytes)
            .field("max_outbox_bytes", &self.max_outbox_bytes)
            .field("max_http_connections", &self.max_http_connections)
            .field("header_read_timeout", &self.header_read_timeout)
            .field("idle_timeout", &self.idle_timeout)
            .field("allowed_origins", &self.allowed_origins)
            .field("node_concurrency", &self.node_concurrency)
            .field("isolation", &self.isolation)
            .field("abort_grace", &self.abort_grace)
            .field("worker_drain", &self.worker_drain)
            .field("worker_memory_limit_mb", &self.worker_memory_limit_mb)
            .field("worker_start_timeout", &self.worker_start_timeout)
            .field("worker_restart_initial", &self.worker_restart_initial)
            .field("worker_restart_max", &self.worker_restart_max)
            .field("worker_restart_wait", &self.worker_restart_wait)
            .field("worker_restart_reset", &self.worker_restart_reset)
            .field("swap_strategy", &self.swap_strategy)
            .field("stop_first_libraries", &self.stop_first_libraries)
            .field("notes", &self.notes)
            .field("ui", &self.ui)
            .finish()
    }
}

/// How a secret shows in `Debug` output: whether it is set, never its value.
pub(crate) fn redacted(secret: Option<&str>) -> &'static str {
    match secret {
        Some(_) => "<redacted>",
        None => "<not set>",
    }
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
        Self::resolve(parse(text, file)?, file, "server_uid", Vec::new(), env, overrides)
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
        let parsed = parse_json(text, file, &mut notes)?;
        Self::resolve(parsed, file, "serverUid", notes, env, overrides)
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

    /// The file's keys, then the environment and `overrides` on top: one
    /// path for both file formats, so both get the same checks. `uid_key` is
    /// how the file spells `server_uid`, for the error when it is missing.
    fn resolve(
        parsed: FileConfig,
        file: &Path,
        uid_key: &'static str,
        notes: Vec<LoadNote>,
        env: impl Fn(&str) -> Option<String>,
        overrides: &Overrides,
    ) -> Result<Self, ConfigError> {
        let env_port = match env("PORT") {
            Some(port) => Some(port.trim().parse::<u16>().map_err(|e| ConfigError::Env {
                var: "PORT",
                message: format!("`{port}` is not a port number: {e}"),
            })?),
            None => None,
        };
        let server_uid = env("SERVER_UID")
            .or(parsed.server_uid)
            .filter(|uid| !uid.trim().is_empty())
            .ok_or_else(|| ConfigError::Missing {
                file: file.to_owned(),
                key: uid_key,
            })?;
        let server_name = env("SERVER_DISPLAY_NAME")
            .or(parsed.server_name)
            .unwrap_or_else(|| server_uid.clone());
        let server_package_id = env("SERVER_PACKAGE_ID")
            .or(parsed.server_package_id)
            .unwrap_or_else(|| server_uid.clone());
        let identity = Identity {
            domain: env("DOMAIN")
                .or(parsed.domain)
                .unwrap_or_else(|| "local.nanograph".to_owned()),
            server_name,
            server_uid,
            server_package_id,
            // `NANOCORE_ENDPOINT` is the SDKs' older name.
            nanocore_http_endpoint: env("NANOCORE_HTTP_ENDPOINT")
                .filter(|endpoint| !endpoint.is_empty())
                .or_else(|| env("NANOCORE_ENDPOINT"))
                .unwrap_or_default(),
        };

        let base = file.parent().unwrap_or(Path::new("."));
        let nodes_path = overrides
            .nodes_path
            .clone()
            .unwrap_or_else(|| base.join(parsed.nodes_path.unwrap_or_else(|| PathBuf::from("nodes"))));
        // Absolute, because file events name absolute paths and they are
        // compared with the scanned ones.
        let nodes_path = absolute(&nodes_path);
        let max_concurrent_executions = parsed.max_concurrent_executions.unwrap_or_else(default_concurrency);
        if max_concurrent_executions == 0 {
            return Err(ConfigError::Key {
                file: file.to_owned(),
                key: "max_concurrent_executions".to_owned(),
                message: "must be at least 1".to_owned(),
            });
        }
        let mut node_concurrency = std::collections::HashMap::new();
        for (uid, settings) in parsed.nodes.unwrap_or_default() {
            match settings.max_concurrent {
                Some(0) => {
                    return Err(ConfigError::Key {
                        file: file.to_owned(),
                        key: format!("nodes.{uid}.max_concurrent"),
                        message: "must be at least 1".to_owned(),
                    });
                }
                Some(limit) => {
                    node_concurrency.insert(uid, limit);
                }
                None => {}
            }
        }
        Ok(Self {
            identity,
            host: overrides
                .host
                .clone()
                .or(parsed.host)
                .unwrap_or_else(|| "127.0.0.1".to_owned()),
            port: overrides.port.or(env_port).or(parsed.port).unwrap_or(3017),
            nodes_path,
            auto_watch: parsed.auto_watch.unwrap_or(true),
            watch_debounce: Duration::from_millis(parsed.watch_debounce_time.unwrap_or(500)),
            max_concurrent_executions,
            max_request_bytes: parsed.max_request_bytes.unwrap_or(16 * 1024 * 1024),
            execution_timeout: parsed
                .execution_timeout_ms
                .filter(|ms| *ms > 0)
                .map(Duration::from_millis),
            build_sources: parsed.build_sources.unwrap_or(false),
            auth_token: env("NANO_SERVER_TOKEN")
                .or(parsed.auth_token)
                .filter(|token| !token.is_empty()),
            nanocore_token: env("NANOCORE_TOKEN").filter(|token| !token.is_empty()),
            max_queued_executions: parsed.max_queued_executions.unwrap_or(1024),
            max_message_bytes: parsed.max_message_bytes.unwrap_or(16 * 1024 * 1024),
            max_connections: parsed.max_connections.unwrap_or(1024),
            shutdown_grace: Duration::from_millis(parsed.shutdown_grace_ms.unwrap_or(10_000)),
            allow_insecure_permissions: parsed.allow_insecure_permissions.unwrap_or(false),
            max_queued_bytes: parsed.max_queued_bytes.unwrap_or(256 << 20),
            max_outbox_bytes: parsed.max_outbox_bytes.unwrap_or(8 << 20).max(64 << 10),
            max_http_connections: parsed.max_http_connections.unwrap_or(4096).max(1),
            // Slowloris: a header that takes longer than this closes the connection.
            header_read_timeout: Duration::from_millis(
                parsed.header_read_timeout_ms.unwrap_or(10_000).clamp(100, 30_000),
            ),
            idle_timeout: Duration::from_millis(parsed.idle_timeout_ms.unwrap_or(60_000).max(100)),
            allowed_origins: parsed
                .allowed_origins
                .unwrap_or_default()
                .into_iter()
                .map(|origin| origin.trim_end_matches('/').to_ascii_lowercase())
                .collect(),
            node_concurrency,
            isolation: overrides.isolation.or(parsed.isolation).unwrap_or(Isolation::Process),
            log_format: parsed.log_format.unwrap_or_default(),
            abort_grace: ms(parsed.abort_grace_ms, 5_000),
            worker_drain: ms(parsed.worker_drain_ms, 60_000),
            worker_memory_limit_mb: parsed.worker_memory_limit_mb.filter(|mb| *mb > 0),
            worker_start_timeout: ms(parsed.worker_start_timeout_ms, 10_000),
            worker_restart_initial: ms(parsed.worker_restart_initial_ms, 100),
            worker_restart_max: ms(parsed.worker_restart_max_ms, 30_000),
            worker_restart_wait: ms(parsed.worker_restart_wait_ms, 10_000),
            worker_restart_reset: ms(parsed.worker_restart_reset_ms, 60_000),
            swap_strategy: parsed.swap_strategy.unwrap_or(SwapStrategy::Overlap),
            stop_first_libraries: parsed
                .libraries
                .unwrap_or_default()
                .into_iter()
                .filter(|(_, settings)| settings.swap_strategy == Some(SwapStrategy::StopFirst))
                .map(|(path, _)| path)
                .collect(),
            notes,
            ui: parsed.ui.unwrap_or(true),
        })
    }

    /// The address to listen on, accepting bare IPv6 addresses too.
    pub fn listen_address(&self) -> String {
        match self.host.parse::<IpAddr>() {
            Ok(IpAddr::V6(ip)) => format!("[{ip}]:{}", self.port),
            _ => format!("{}:{}", self.host, self.port),
        }
    }
}

fn ms(value: Option<u64>, default: u64) -> Duration {
    Duration::from_millis(value.unwrap_or(default))
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

/// A small multiple of the cores: nodes often wait on I/O or sleep.
fn default_concurrency() -> usize {
    std::thread::available_parallelism().map_or(4, |n| n.get() * 4)
}

fn parse(text: &str, file: &Path) -> Result<FileConfig, ConfigError> {
    let syntax_error = |err: toml::de::Error| {
        let line = err
            .span()
            .map_or(0, |span| text[..span.start.min(text.len())].lines().count().max(1));
        ConfigError::Syntax {
            file: file.to_owned(),
            line,
            message: err.message().trim().to_owned(),
        }
    };
    let deserializer = toml::Deserializer::parse(text).map_err(syntax_error)?;
    serde_path_to_error::deserialize(deserializer)
        .map_err(|err| key_error(file, err.path().to_string(), err.inner().message().trim().to_owned()))
}

/// The error for `message` about the key at `path` (serde_path_to_error's
/// dotted path).
fn key_error(file: &Path, path: String, message: String) -> ConfigError {
    let key = if path == "." {
        // Unknown or missing keys are reported at the top level; the
        // message names the key.
        key_in_message(&message).unwrap_or_default()
    } else {
        path
    };
    ConfigError::Key {
        file: file.to_owned(),
        key,
        message,
    }
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

/// The SDKs' `nanoserver.json` keys (camelCase) and the keys of this server
/// they stand for. `domain` and `port` are spelled alike in both.
const SDK_KEYS: &[(&str, &str)] = &[
    ("serverDisplayName", "server_name"),
    ("serverUid", "server_uid"),
    ("serverPackageId", "server_package_id"),
    ("nodesPath", "nodes_path"),
    ("autoWatch", "auto_watch"),
    ("watchDebounceTime", "watch_debounce_time"),
];

/// Reads a `nanoserver.json` into the same keys `config.toml` has: SDK keys
/// renamed, this server's own kept, `language` and unknown keys dropped with
/// a note each (SDK projects carry keys of their own tools).
fn parse_json(text: &str, file: &Path, notes: &mut Vec<LoadNote>) -> Result<FileConfig, ConfigError> {
    let value: serde_json::Value = serde_json::from_str(text).map_err(|err| {
        let message = err.to_string();
        // serde_json appends the position, which the line already gives.
        let message = message.rsplit_once(" at line ").map_or(message.as_str(), |(m, _)| m);
        ConfigError::Syntax {
            file: file.to_owned(),
            line: err.line(),
            message: message.to_owned(),
        }
    })?;
    let serde_json::Value::Object(entries) = value else {
        return Err(ConfigError::Syntax {
            file: file.to_owned(),
            line: 1,
            message: "expected a JSON object of keys".to_owned(),
        });
    };
    let own_keys = file_config_keys();
    let mut keys = serde_json::Map::new();
    let mut unknown = Vec::new();
    for (key, value) in &entries {
        if let Some((sdk, own)) = SDK_KEYS.iter().find(|(sdk, _)| sdk == key) {
            if entries.contains_key(*own) {
                return Err(ConfigError::Key {
                    file: file.to_owned(),
                    key: (*sdk).to_owned(),
                    message: format!("also given as `{own}`; keep one of the two"),
                });
            }
            keys.insert((*own).to_owned(), value.clone());
        } else if key == "language" {
            notes.push(LoadNote::Info(format!(
                "{}: ignoring `language` ({value}): nano-server serves compiled Rust plugins",
                file.display()
            )));
        } else if own_keys.contains(&key.as_str()) {
            keys.insert(key.clone(), value.clone());
        } else {
            unknown.push(format!("`{key}`"));
        }
    }
    if !unknown.is_empty() {
        notes.push(LoadNote::Warning(format!(
            "{}: ignoring unknown key(s) {}: neither the SDKs' keys nor nano-server's (see README \"Configuration\")",
            file.display(),
            unknown.join(", ")
        )));
    }
    serde_path_to_error::deserialize(serde_json::Value::Object(keys)).map_err(|err| {
        // Named as the file spells it.
        let path = err.path().to_string();
        let (head, rest) = path
            .split_once('.')
            .map_or((path.as_str(), None), |(h, r)| (h, Some(r)));
        let head = SDK_KEYS
            .iter()
            .find(|(_, own)| *own == head)
            .map_or(head, |(sdk, _)| *sdk);
        let path = rest.map_or_else(|| head.to_owned(), |rest| format!("{head}.{rest}"));
        key_error(file, path, err.inner().to_string())
    })
}

/// The keys `FileConfig` accepts, as serde sees them (the list its derived
/// `Deserialize` hands to `deserialize_struct`), so it cannot drift from the
/// struct.
fn file_config_keys() -> &'static [&'static str] {
    use serde::de::{self, Visitor};

    struct Keys<'a>(&'a mut &'static [&'static str]);

    impl<'de> de::Deserializer<'de> for Keys<'_> {
        type Error = de::value::Error;

        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
            Err(de::Error::custom("only a struct's keys are asked for"))
        }

        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _: &'static str,
            fields: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Self::Error> {
            *self.0 = fields;
            Err(de::Error::custom("only the keys are wanted"))
        }

        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf option
            unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier ignored_any
        }
    }

    let mut keys: &'static [&'static str] = &[];
    let _ = FileConfig::deserialize(Keys(&mut keys));
    keys
}

/// The log filter from the environment: `RUST_LOG` when set, else the level
/// the SDKs read (`NANOSDK_LOG_LEVEL`, `NANOCORE_LOG_LEVEL`, `LOG_LEVEL`, the
/// first set) mapped onto tracing's (`WARNING` is `warn`, `CRITICAL` is
/// `error`; a name the SDKs do not know is `info`, as in the SDKs). `None`:
/// none is set.
pub fn log_filter_from_env() -> Option<String> {
    log_filter(|var| std::env::var(var).ok())
}

fn log_filter(env: impl Fn(&str) -> Option<String>) -> Option<String> {
    let set = |var: &str| env(var).filter(|value| !value.trim().is_empty());
    if let Some(filter) = set("RUST_LOG") {
        return Some(filter);
    }
    let level = ["NANOSDK_LOG_LEVEL", "NANOCORE_LOG_LEVEL", "LOG_LEVEL"]
        .into_iter()
        .find_map(set)?;
    let level = match level.trim().to_ascii_lowercase().as_str() {
        "trace" => "trace",
        "debug" => "debug",
        "warn" | "warning" => "warn",
        "error" | "critical" | "fatal" => "error",
        "off" | "none" | "silent" => "off",
        _ => "info", // also `success`, the SDKs' level between info and warn
    };
    Some(level.to_owned())
}

/// The first `quoted` word of a serde message such as "unknown field `prot`".
fn key_in_message(message: &str) -> Option<String> {
    let start = message.find('`')? + 1;
    let len = message[start..].find('`')?;
    Some(message[start..start + len].to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let env: Vec<(String, String)> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Config::from_toml(
            text,
            Path::new("/srv/nano/config.toml"),
            |var| env.iter().find(|(k, _)| k == var).map(|(_, v)| v.clone()),
            &Overrides::default(),
        )
    }

    #[test]
    fn defaults_and_relative_nodes_path() {
        let config = load(r#"server_uid = "s""#, &[]).unwrap();
        assert_eq!(config.port, 3017);
        assert_eq!(config.host, "127.0.0.1");
        assert_eq!(config.nodes_path, Path::new("/srv/nano/nodes"));
        let relative = Config::from_toml(
            "server_uid = \"s\"",
            Path::new("config.toml"),
            |_| None,
            &Overrides::default(),
        )
        .unwrap();
        assert!(relative.nodes_path.is_absolute(), "{}", relative.nodes_path.display());
        assert!(relative.nodes_path.ends_with("nodes"));
        assert_eq!(config.identity.server_name, "s");
        assert!(config.auto_watch);
        assert_eq!(config.watch_debounce, Duration::from_millis(500));
    }

    #[test]
    fn environment_overrides_file() {
        let config = load(
            "server_uid = \"s\"\nport = 1\ndomain = \"d\"",
            &[
                ("PORT", "4000"),
                ("DOMAIN", "env.d"),
                ("SERVER_DISPLAY_NAME", "Env Name"),
            ],
        )
        .unwrap();
        assert_eq!(config.port, 4000);
        assert_eq!(config.identity.domain, "env.d");
        assert_eq!(config.identity.server_name, "Env Name");
    }

    #[test]
    fn debug_output_never_shows_the_token() {
        let config = load("server_uid = \"s\"\nauth_token = \"hunter2-secret\"", &[]).unwrap();
        let shown = format!("{config:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("auth_token: \"<redacted>\""), "{shown}");
    }

    #[test]
    fn isolation_and_node_limits_are_read() {
        let config = load("server_uid = \"s\"", &[]).unwrap();
        assert_eq!(config.isolation, Isolation::Process);
        let config = load(
            "server_uid = \"s\"\nisolation = \"in-process\"\n[nodes.gpu]\nmax_concurrent = 1",
            &[],
        )
        .unwrap();
        assert_eq!(config.isolation, Isolation::InProcess);
        assert_eq!(config.node_concurrency.get("gpu"), Some(&1));
        let err = load("server_uid = \"s\"\n[nodes.gpu]\nmax_concurrent = 0", &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("nodes.gpu.max_concurrent"), "{err}");
        assert!(load("server_uid = \"s\"\nisolation = \"threads\"", &[]).is_err());
    }

    #[test]
    fn limits_have_defaults_and_the_token_comes_from_env_first() {
        let config = load("server_uid = \"s\"", &[]).unwrap();
        assert_eq!(config.auth_token, None);
        assert_eq!(config.max_message_bytes, 16 * 1024 * 1024);
        assert_eq!(config.max_request_bytes, 16 * 1024 * 1024);
        assert!(config.max_queued_executions > 0 && config.max_connections > 0);
        let config = load(
            "server_uid = \"s\"\nauth_token = \"file\"",
            &[("NANO_SERVER_TOKEN", "env")],
        )
        .unwrap();
        assert_eq!(config.auth_token.as_deref(), Some("env"));
        let config = load("server_uid = \"s\"\nauth_token = \"\"", &[]).unwrap();
        assert_eq!(config.auth_token, None, "an empty token means no token");
    }

    #[test]
    fn errors_name_the_key() {
        let err = load("port = \"x\"\nserver_uid = \"s\"", &[]).unwrap_err().to_string();
        assert!(err.contains("`port`"), "{err}");
        let err = load("server_uid = \"s\"\nprot = 1", &[]).unwrap_err().to_string();
        assert!(err.contains("`prot`"), "{err}");
        let err = load("port = 1", &[]).unwrap_err().to_string();
        assert!(err.contains("`server_uid`"), "{err}");
        let err = load("server_uid = \"s\"", &[("PORT", "http")]).unwrap_err().to_string();
        assert!(err.contains("PORT"), "{err}");
        for err in [
            load("server_uid = ", &[]).unwrap_err().to_string(),
            load("server_uid = \"s\"\nmax_concurrent_executions = 0", &[])
                .unwrap_err()
                .to_string(),
        ] {
            assert!(!err.contains('\n'), "one line: {err}");
        }
    }

    fn load_json(text: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let env: Vec<(String, String)> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Config::from_json(
            text,
            Path::new("/srv/py/nanoserver.json"),
            |var| env.iter().find(|(k, _)| k == var).map(|(_, v)| v.clone()),
            &Overrides::default(),
        )
    }

    #[test]
    fn nanoserver_json_reads_the_sdk_keys() {
        let config = load_json(
            r#"{"domain": "d", "serverDisplayName": "Py", "serverUid": "py-1", "serverPackageId": "pkg",
                "language": "python", "nodesPath": "my_nodes", "autoWatch": false, "watchDebounceTime": 250,
                "port": 4100}"#,
            &[],
        )
        .unwrap();
        assert_eq!(config.identity.domain, "d");
        assert_eq!(config.identity.server_name, "Py");
        assert_eq!(config.identity.server_uid, "py-1");
        assert_eq!(config.identity.server_package_id, "pkg");
        assert_eq!(config.nodes_path, Path::new("/srv/py/my_nodes"));
        assert!(!config.auto_watch);
        assert_eq!(config.watch_debounce, Duration::from_millis(250));
        assert_eq!(config.port, 4100);
        assert_eq!(config.notes.len(), 1, "{:?}", config.notes);
        assert!(matches!(&config.notes[0], LoadNote::Info(m) if m.contains("`language`")));
        // The environment still wins over the file.
        let config = load_json(
            r#"{"serverUid": "py-1", "port": 4100}"#,
            &[("SERVER_UID", "env"), ("PORT", "1")],
        )
        .unwrap();
        assert_eq!((config.identity.server_uid.as_str(), config.port), ("env", 1));
    }

    #[test]
    fn nanoserver_json_honours_own_keys_and_warns_about_unknown_ones() {
        let config = load_json(
            r#"{"serverUid": "s", "auth_token": "t", "isolation": "in-process", "nodes": {"gpu": {"max_concurrent": 1}},
                "pythonVersion": "3.11", "entry": "main.py"}"#,
            &[],
        )
        .unwrap();
        assert_eq!(config.auth_token.as_deref(), Some("t"));
        assert_eq!(config.isolation, Isolation::InProcess);
        assert_eq!(config.node_concurrency.get("gpu"), Some(&1));
        let warnings: Vec<&String> = config
            .notes
            .iter()
            .filter_map(|n| match n {
                LoadNote::Warning(m) => Some(m),
                LoadNote::Info(_) => None,
            })
            .collect();
        assert_eq!(warnings.len(), 1, "one warning for all: {warnings:?}");
        assert!(
            warnings[0].contains("`pythonVersion`") && warnings[0].contains("`entry`"),
            "{}",
            warnings[0]
        );
        assert!(warnings[0].contains("nanoserver.json"), "{}", warnings[0]);
    }

    #[test]
    fn nanoserver_json_errors_name_the_key_as_written() {
        let err = load_json(r#"{"serverUid": "s", "server_uid": "t"}"#, &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("`serverUid`") && err.contains("`server_uid`"), "{err}");
        let err = load_json(r#"{"serverUid": "s", "autoWatch": "yes"}"#, &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("key `autoWatch`") && err.contains("invalid type"), "{err}");
        let err = load_json(
            r#"{"serverUid": "s", "nodes": {"gpu": {"max_concurrent": "one"}}}"#,
            &[],
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("nodes.gpu.max_concurrent"), "{err}");
        let err = load_json(r#"{"domain": "d"}"#, &[]).unwrap_err().to_string();
        assert!(err.contains("`serverUid`"), "{err}");
        let err = load_json("{\n  \"serverUid\": \"s\",\n}", &[]).unwrap_err().to_string();
        assert!(err.contains("nanoserver.json: line 3"), "{err}");
        let err = load_json("[1]", &[]).unwrap_err().to_string();
        assert!(err.contains("JSON object"), "{err}");
        for err in [
            load_json("{", &[]).unwrap_err().to_string(),
            load_json(r#"{"serverUid": 5}"#, &[]).unwrap_err().to_string(),
        ] {
            assert!(!err.contains('\n') && err.contains("/srv/py/nanoserver.json"), "{err}");
        }
    }

    #[test]
    fn the_file_keys_are_the_structs() {
        let keys = file_config_keys();
        for key in [
            "server_uid",
            "auth_token",
            "isolation",
            "nodes",
            "libraries",
            "build_sources",
        ] {
            assert!(keys.contains(&key), "{key} in {keys:?}");
        }
        assert!(keys.len() >= 36, "{keys:?}");
        assert!(is_json(Path::new("x/nanoserver.JSON")) && !is_json(Path::new("config.toml")));
    }

    #[test]
    fn the_pages_are_served_unless_turned_off() {
        assert!(load("server_uid = \"s\"", &[]).unwrap().ui);
        assert!(!load("server_uid = \"s\"\nui = false", &[]).unwrap().ui);
    }

    #[test]
    fn nanocore_endpoint_is_an_alias_and_the_full_name_wins() {
        let endpoint = |env: &[(&str, &str)]| load("server_uid = \"s\"", env).unwrap().identity.nanocore_http_endpoint;
        assert_eq!(endpoint(&[("NANOCORE_ENDPOINT", "http://old")]), "http://old");
        assert_eq!(
            endpoint(&[
                ("NANOCORE_ENDPOINT", "http://old"),
                ("NANOCORE_HTTP_ENDPOINT", "http://new")
            ]),
            "http://new"
        );
        assert_eq!(endpoint(&[]), "");
    }

    #[test]
    fn the_log_filter_falls_back_to_the_sdk_level_names() {
        let filter =
            |env: &[(&str, &str)]| log_filter(|var| env.iter().find(|(k, _)| *k == var).map(|(_, v)| v.to_string()));
        assert_eq!(filter(&[]), None);
        assert_eq!(
            filter(&[("RUST_LOG", "nano_server=debug"), ("LOG_LEVEL", "error")]).as_deref(),
            Some("nano_server=debug")
        );
        assert_eq!(
            filter(&[("RUST_LOG", ""), ("LOG_LEVEL", "WARNING")]).as_deref(),
            Some("warn")
        );
        assert_eq!(
            filter(&[("LOG_LEVEL", "debug"), ("NANOSDK_LOG_LEVEL", "CRITICAL")]).as_deref(),
            Some("error")
        );
        assert_eq!(
            filter(&[("LOG_LEVEL", "debug"), ("NANOCORE_LOG_LEVEL", "Info")]).as_deref(),
            Some("info")
        );
        assert_eq!(filter(&[("LOG_LEVEL", "success")]).as_deref(), Some("info"));
        assert_eq!(filter(&[("LOG_LEVEL", "loud")]).as_deref(), Some("info"));
    }
}

#[cfg(test)]
mod properties {
    use std::path::Path;

    use proptest::prelude::*;

    use super::*;

    proptest! {
        /// Whatever the file holds, loading never panics, and an error is one
        /// line naming the file.
        #[test]
        fn any_config_text_gives_a_config_or_a_one_line_error(text in "(?s).{0,200}") {
            match Config::from_toml(&text, Path::new("/etc/nano/config.toml"), |_| None, &Overrides::default()) {
                Ok(config) => prop_assert!(config.nodes_path.is_absolute()),
                Err(err) => {
                    let message = err.to_string();
                    prop_assert!(!message.contains('\n'), "{}", message);
                    prop_assert!(message.contains("/etc/nano/config.toml"), "{}", message);
                }
            }
        }

        /// Known keys with values of the wrong type are named in the error.
        #[test]
        fn a_wrongly_typed_known_key_is_named(
            key in prop_oneof![Just("port"), Just("auto_watch"), Just("watch_debounce_time"), Just("max_concurrent_executions"), Just("host")],
            value in prop_oneof![Just("\"text\""), Just("[1, 2]"), Just("{ a = 1 }"), Just("1.5"), Just("true")],
        ) {
            let text = format!("server_uid = \"s\"\n{key} = {value}\n");
            if let Err(err) = Config::from_toml(&text, Path::new("c.toml"), |_| None, &Overrides::default()) {
                let message = err.to_string();
                prop_assert!(message.contains(&format!("`{key}`")), "{}", message);
            }
        }

        /// The same for `nanoserver.json`, with SDK keys among the values.
        #[test]
        fn any_json_object_gives_a_config_or_a_one_line_error(
            entries in proptest::collection::vec((
                prop_oneof![Just("serverUid".to_owned()), Just("server_uid".to_owned()), Just("autoWatch".to_owned()), Just("port".to_owned()), Just("nodes".to_owned()), "[a-z_]{1,8}"],
                prop_oneof![Just("\"s\""), Just("1"), Just("true"), Just("null"), Just("{}"), Just("[1]"), Just("{\"x\": {\"max_concurrent\": 2}}")],
            ), 0..6),
        ) {
            let body: Vec<String> = entries.iter().map(|(k, v)| format!("\"{k}\": {v}")).collect();
            let text = format!("{{{}}}", body.join(", "));
            match Config::from_json(&text, Path::new("/p/nanoserver.json"), |_| None, &Overrides::default()) {
                Ok(config) => prop_assert!(config.nodes_path.is_absolute()),
                Err(err) => {
                    let message = err.to_string();
                    prop_assert!(!message.contains('\n'), "{}", message);
                    prop_assert!(message.contains("/p/nanoserver.json"), "{}", message);
                }
            }
        }
    }
}
