//! `config.toml`: every key the file may hold, each documented here, where
//! it is defined (its default is in `defaults.rs`); unknown keys are an
//! error, not silently ignored. `nanoserver.json` is read into the same keys
//! (`sdk.rs`).

use std::{collections::BTreeMap, path::Path, path::PathBuf};

use serde::Deserialize;

#[cfg(doc)]
use super::defaults;
use super::{ConfigError, Isolation, SwapStrategy};

/// The keys of `config.toml`. Their order is the order serde lists them in
/// an "unknown field" error.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileConfig {
    /// Domain grouping servers (env `DOMAIN`). Default [`defaults::DOMAIN`].
    pub domain: Option<String>,
    /// Display name (env `SERVER_DISPLAY_NAME`). Default: `server_uid`.
    pub server_name: Option<String>,
    /// Unique id of this server (env `SERVER_UID`). Required.
    pub server_uid: Option<String>,
    /// Package id (env `SERVER_PACKAGE_ID`). Default: `server_uid`.
    pub server_package_id: Option<String>,
    /// Address to listen on (flag `--host`). Default [`defaults::HOST`].
    pub host: Option<String>,
    /// Port (env `PORT`, flag `--port`; `0` picks a free port). Default
    /// [`defaults::PORT`].
    pub port: Option<u16>,
    /// Folder scanned for libraries, relative to the file's folder (flag
    /// `--nodes-path`). Default [`defaults::NODES_PATH`].
    pub nodes_path: Option<PathBuf>,
    /// Watch `nodes_path` and hot-swap libraries as they change. Default
    /// [`defaults::AUTO_WATCH`].
    pub auto_watch: Option<bool>,
    /// Debounce of the watcher, in ms. Default [`defaults::WATCH_DEBOUNCE_MS`].
    pub watch_debounce_time: Option<u64>,
    /// Executions running at once (at least 1); more wait their turn, each in
    /// its node's own queue. A node with nothing running may still start one
    /// (its fair slot: see `execution::admission`). Default
    /// [`defaults::max_concurrent_executions`].
    pub max_concurrent_executions: Option<usize>,
    /// Largest HTTP request body (413 beyond). Default
    /// [`defaults::MAX_REQUEST_BYTES`].
    pub max_request_bytes: Option<usize>,
    /// An execution running longer is aborted with an error (HTTP 504); `0`
    /// or absent: no limit.
    pub execution_timeout_ms: Option<u64>,
    /// Build node crates under `nodes_path` at start and when their sources
    /// change, then hot-swap the result. Default [`defaults::BUILD_SOURCES`].
    pub build_sources: Option<bool>,
    /// When set (env `NANO_SERVER_TOKEN` wins unless empty), the WebSocket
    /// and every HTTP route but `/healthz`, `/readyz` and the pages' static
    /// files need `Authorization: Bearer <token>`. Empty is refused: to run
    /// without authentication, leave the key out.
    pub auth_token: Option<String>,
    /// Executions that may wait for a slot; beyond, new ones are refused as
    /// busy. Default [`defaults::MAX_QUEUED_EXECUTIONS`].
    pub max_queued_executions: Option<usize>,
    /// Largest WebSocket message (close 1009 beyond). Default
    /// [`defaults::MAX_MESSAGE_BYTES`].
    pub max_message_bytes: Option<usize>,
    /// WebSocket connections open at once; more are refused with 503.
    /// Default [`defaults::MAX_CONNECTIONS`].
    pub max_connections: Option<usize>,
    /// After SIGINT, SIGTERM or SIGHUP, how long executions in flight may
    /// finish before they are aborted. Default [`defaults::SHUTDOWN_GRACE_MS`].
    pub shutdown_grace_ms: Option<u64>,
    /// Load libraries (and folders above them) writable by group or others.
    /// Default [`defaults::ALLOW_INSECURE_PERMISSIONS`].
    pub allow_insecure_permissions: Option<bool>,
    /// Bytes of requests waiting for a slot; beyond, refused as busy.
    /// Default [`defaults::MAX_QUEUED_BYTES`].
    pub max_queued_bytes: Option<usize>,
    /// Backpressure: past this many unsent bytes a WebSocket's requests are
    /// not read until its client catches up; from half of it on, progress
    /// statuses are coalesced. Default [`defaults::MAX_OUTBOX_BYTES`], at
    /// least [`defaults::MIN_OUTBOX_BYTES`].
    pub max_outbox_bytes: Option<usize>,
    /// A client that takes nothing for this long while frames wait for it
    /// (its socket stays full) is cut off (close frame 1008, its executions
    /// aborted). Default [`defaults::CLIENT_STALL_MS`].
    pub client_stall_ms: Option<u64>,
    /// TCP connections open at once, upgraded WebSockets included (at least
    /// 1; capped below the open-files limit). Default
    /// [`defaults::MAX_HTTP_CONNECTIONS`].
    pub max_http_connections: Option<usize>,
    /// Event streams (`GET /events/definitions`) open at once, in total;
    /// beyond, 503. Default [`defaults::MAX_EVENT_STREAMS`].
    pub max_event_streams: Option<usize>,
    /// Event streams one client address may hold open; beyond, 503, so one
    /// client cannot hold every connection with idle streams. Default
    /// [`defaults::MAX_EVENT_STREAMS_PER_ADDRESS`].
    pub max_event_streams_per_address: Option<usize>,
    /// How long a connection may take to send a request's headers. Default
    /// [`defaults::HEADER_READ_TIMEOUT_MS`], within
    /// [`defaults::HEADER_READ_TIMEOUT_BOUNDS_MS`].
    pub header_read_timeout_ms: Option<u64>,
    /// How long an idle keep-alive connection is kept. Default
    /// [`defaults::IDLE_TIMEOUT_MS`], at least [`defaults::MIN_IDLE_TIMEOUT_MS`].
    pub idle_timeout_ms: Option<u64>,
    /// Origins (`"https://app.example"`) besides the server's own whose pages
    /// may POST or open the WebSocket. Default: none.
    pub allowed_origins: Option<Vec<String>>,
    /// `[nodes.<uid>]`: settings of one node.
    pub nodes: Option<BTreeMap<String, NodeSettings>>,
    /// Where plugin code runs (flag `--isolation`). Default
    /// [`defaults::ISOLATION`].
    pub isolation: Option<Isolation>,
    /// `"text"` or `"json"` log lines on stderr (flag `--log-format` wins).
    /// Default `"text"`.
    pub log_format: Option<crate::telemetry::LogFormat>,
    /// Process isolation: an aborted node that has not returned after this
    /// frees its slot and loses its worker. Default [`defaults::ABORT_GRACE_MS`].
    pub abort_grace_ms: Option<u64>,
    /// Process isolation: how long a replaced or retired worker may finish its
    /// executions. Default [`defaults::WORKER_DRAIN_MS`].
    pub worker_drain_ms: Option<u64>,
    /// Process isolation: a worker whose resident memory passes this is
    /// ended; `0` or absent: no limit.
    pub worker_memory_limit_mb: Option<u64>,
    /// Process isolation: a worker must start and report its definitions
    /// within this. Default [`defaults::WORKER_START_TIMEOUT_MS`].
    pub worker_start_timeout_ms: Option<u64>,
    /// Process isolation: the first restart delay after a crash, doubling up
    /// to `worker_restart_max_ms`. Default [`defaults::WORKER_RESTART_INITIAL_MS`].
    pub worker_restart_initial_ms: Option<u64>,
    /// Process isolation: the longest restart delay. Default
    /// [`defaults::WORKER_RESTART_MAX_MS`].
    pub worker_restart_max_ms: Option<u64>,
    /// Process isolation: how long an execution waits for a restarting worker
    /// before it gets an error. Default [`defaults::WORKER_RESTART_WAIT_MS`].
    pub worker_restart_wait_ms: Option<u64>,
    /// Process isolation: a worker that leaves a ping unanswered this long
    /// is replaced and its executions fail as stalled; `0`: no heartbeat.
    /// Default [`defaults::WORKER_HEARTBEAT_MS`].
    pub worker_heartbeat_ms: Option<u64>,
    /// Process isolation: a worker up this long without a crash resets the
    /// restart delay. Default [`defaults::WORKER_RESTART_RESET_MS`].
    pub worker_restart_reset_ms: Option<u64>,
    /// Process isolation: how a new version replaces the old one. Default
    /// [`defaults::SWAP_STRATEGY`].
    pub swap_strategy: Option<SwapStrategy>,
    /// `[libraries."<path relative to nodes_path>"]`: settings of one library.
    pub libraries: Option<BTreeMap<String, LibrarySettings>>,
    /// Serve the browser pages under `/ui/` and the asset routes they use.
    /// Default [`defaults::UI`].
    pub ui: Option<bool>,
    /// `[python]`: how Python SDK `node.py` libraries are run.
    pub python: Option<PythonSection>,
}

/// `[python]`: how Python SDK `node.py` libraries are run.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PythonSection {
    /// The interpreter every Python worker runs: a path (relative to the
    /// file's folder) or a name looked up on `PATH`. Default: the library
    /// folder's `.venv/bin/python`, else the project's, else `python3` on
    /// `PATH`.
    pub interpreter: Option<PathBuf>,
    /// Worker processes per Python library, each running its own
    /// interpreter (parallelism the GIL does not allow in one): from 1 to
    /// [`defaults::MAX_PYTHON_WORKERS`]. Default [`defaults::PYTHON_WORKERS`].
    pub workers: Option<usize>,
    /// Which `node.py` files share a worker process: `library`, `pack`
    /// or `project`. Default `pack`.
    pub group: Option<crate::execution::PythonGroup>,
}

/// `[nodes.<uid>]`: settings of one node.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct NodeSettings {
    /// Executions of this node running at once (at least 1; e.g. 1 for a GPU
    /// node that must run alone); the others wait in its own queue. Default:
    /// `max_concurrent_executions`.
    pub max_concurrent: Option<usize>,
}

/// `[libraries."<path relative to nodes_path>"]`: settings of one library.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct LibrarySettings {
    /// Overrides `swap_strategy` for this library.
    pub swap_strategy: Option<SwapStrategy>,
}

/// Parses TOML `text`, read from `file`.
pub(super) fn parse(text: &str, file: &Path) -> Result<FileConfig, ConfigError> {
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
pub(super) fn key_error(file: &Path, path: String, message: String) -> ConfigError {
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

/// The first `quoted` word of a serde message such as "unknown field `prot`".
fn key_in_message(message: &str) -> Option<String> {
    let start = message.find('`')? + 1;
    let len = message[start..].find('`')?;
    Some(message[start..start + len].to_owned())
}

/// The keys `FileConfig` accepts, as serde sees them (the list its derived
/// `Deserialize` hands to `deserialize_struct`), so it cannot drift from the
/// struct.
pub(super) fn file_config_keys() -> &'static [&'static str] {
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
