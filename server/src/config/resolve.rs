//! From the file's keys, the environment and the flags to a [`Config`]: one
//! path for both file formats, so both get the same checks. Precedence:
//! flags, then environment, then file, then [`defaults`].

use std::{collections::HashMap, path::Path, time::Duration};

use super::{
    Admission, Config, ConfigError, Identity, Limits, LoadNote, NanoCore, Overrides, Process, Python, Secret,
    SwapStrategy, Telemetry, absolute, defaults, env::Env, file::FileConfig,
};

impl Config {
    /// `uid_key` is how the file spells `server_uid`, for the error when it
    /// is missing.
    pub(super) fn resolve(
        parsed: FileConfig,
        file: &Path,
        uid_key: &'static str,
        mut notes: Vec<LoadNote>,
        env: &Env<impl Fn(&str) -> Option<String>>,
        overrides: &Overrides,
    ) -> Result<Self, ConfigError> {
        let env_port = env.port()?;
        let auth_token = auth_token(&parsed, file, env, &mut notes)?;
        let identity = Identity::resolve(&parsed, file, uid_key, env)?;
        let base = file.parent().unwrap_or(Path::new("."));
        let nodes_path = overrides
            .nodes_path
            .clone()
            .unwrap_or_else(|| base.join(parsed.nodes_path.clone().unwrap_or_else(|| defaults::NODES_PATH.into())));
        let admission = Admission::resolve(&parsed, file)?;
        Ok(Self {
            identity,
            host: overrides
                .host
                .clone()
                .or_else(|| parsed.host.clone())
                .unwrap_or_else(|| defaults::HOST.to_owned()),
            port: overrides.port.or(env_port).or(parsed.port).unwrap_or(defaults::PORT),
            nodes_path: absolute(&nodes_path),
            auto_watch: parsed.auto_watch.unwrap_or(defaults::AUTO_WATCH),
            watch_debounce: ms(parsed.watch_debounce_time, defaults::WATCH_DEBOUNCE_MS),
            build_sources: parsed.build_sources.unwrap_or(defaults::BUILD_SOURCES),
            allow_insecure_permissions: parsed
                .allow_insecure_permissions
                .unwrap_or(defaults::ALLOW_INSECURE_PERMISSIONS),
            isolation: overrides.isolation.or(parsed.isolation).unwrap_or(defaults::ISOLATION),
            ui: parsed.ui.unwrap_or(defaults::UI),
            shutdown_grace: ms(parsed.shutdown_grace_ms, defaults::SHUTDOWN_GRACE_MS),
            limits: Limits::resolve(&parsed, auth_token),
            admission,
            process: Process::resolve(&parsed),
            telemetry: Telemetry {
                log_format: parsed.log_format.unwrap_or_default(),
                log_filter: env.log_filter(),
            },
            nanocore: NanoCore {
                token: env.nanocore_token(),
            },
            python: Python::resolve(&parsed, base, file)?,
            notes,
        })
    }
}

impl Identity {
    fn resolve(
        parsed: &FileConfig,
        file: &Path,
        uid_key: &'static str,
        env: &Env<impl Fn(&str) -> Option<String>>,
    ) -> Result<Self, ConfigError> {
        let server_uid = env
            .var("SERVER_UID")
            .or_else(|| parsed.server_uid.clone())
            .filter(|uid| !uid.trim().is_empty())
            .ok_or_else(|| ConfigError::Missing {
                file: file.to_owned(),
                key: uid_key,
            })?;
        let or_uid = |var: &str, key: &Option<String>| {
            env.var(var)
                .or_else(|| key.clone())
                .unwrap_or_else(|| server_uid.clone())
        };
        Ok(Self {
            domain: env
                .var("DOMAIN")
                .or_else(|| parsed.domain.clone())
                .unwrap_or_else(|| defaults::DOMAIN.to_owned()),
            server_name: or_uid("SERVER_DISPLAY_NAME", &parsed.server_name),
            server_package_id: or_uid("SERVER_PACKAGE_ID", &parsed.server_package_id),
            nanocore_http_endpoint: env.nanocore_endpoint(),
            server_uid,
        })
    }
}

impl Limits {
    fn resolve(parsed: &FileConfig, auth_token: Option<Secret>) -> Self {
        let (min_header_ms, max_header_ms) = defaults::HEADER_READ_TIMEOUT_BOUNDS_MS;
        Self {
            auth_token,
            max_request_bytes: parsed.max_request_bytes.unwrap_or(defaults::MAX_REQUEST_BYTES),
            max_message_bytes: parsed.max_message_bytes.unwrap_or(defaults::MAX_MESSAGE_BYTES),
            max_connections: parsed.max_connections.unwrap_or(defaults::MAX_CONNECTIONS),
            max_outbox_bytes: parsed
                .max_outbox_bytes
                .unwrap_or(defaults::MAX_OUTBOX_BYTES)
                .max(defaults::MIN_OUTBOX_BYTES),
            client_stall: Duration::from_millis(
                parsed
                    .client_stall_ms
                    .unwrap_or(defaults::CLIENT_STALL_MS)
                    .max(defaults::MIN_CLIENT_STALL_MS),
            ),
            allowed_origins: parsed
                .allowed_origins
                .iter()
                .flatten()
                .map(|origin| origin.trim_end_matches('/').to_ascii_lowercase())
                .collect(),
            max_http_connections: parsed
                .max_http_connections
                .unwrap_or(defaults::MAX_HTTP_CONNECTIONS)
                .max(1),
            max_event_streams: parsed.max_event_streams.unwrap_or(defaults::MAX_EVENT_STREAMS),
            max_event_streams_per_address: parsed
                .max_event_streams_per_address
                .unwrap_or(defaults::MAX_EVENT_STREAMS_PER_ADDRESS),
            header_read_timeout: Duration::from_millis(
                parsed
                    .header_read_timeout_ms
                    .unwrap_or(defaults::HEADER_READ_TIMEOUT_MS)
                    .clamp(min_header_ms, max_header_ms),
            ),
            idle_timeout: Duration::from_millis(
                parsed
                    .idle_timeout_ms
                    .unwrap_or(defaults::IDLE_TIMEOUT_MS)
                    .max(defaults::MIN_IDLE_TIMEOUT_MS),
            ),
        }
    }
}

/// The bearer token: `NANO_SERVER_TOKEN` over `auth_token`. Being empty
/// never turns authentication off by accident: an empty `auth_token` is
/// refused (leaving the key out is how to run without one), an empty
/// variable is ignored with a warning.
fn auth_token(
    parsed: &FileConfig,
    file: &Path,
    env: &Env<impl Fn(&str) -> Option<String>>,
    notes: &mut Vec<LoadNote>,
) -> Result<Option<Secret>, ConfigError> {
    let blank = |token: &String| token.trim().is_empty();
    if parsed.auth_token.as_ref().is_some_and(blank) {
        return Err(ConfigError::Key {
            file: file.to_owned(),
            key: "auth_token".to_owned(),
            message: "is empty; to run without authentication, leave the key out".to_owned(),
        });
    }
    let from_env = env.var("NANO_SERVER_TOKEN");
    if from_env.as_ref().is_some_and(blank) {
        let instead = if parsed.auth_token.is_some() {
            "the file's auth_token applies"
        } else {
            "authentication stays off"
        };
        notes.push(LoadNote::Warning(format!(
            "NANO_SERVER_TOKEN is set but empty: ignored, {instead}"
        )));
    }
    Ok(from_env
        .filter(|token| !blank(token))
        .or_else(|| parsed.auth_token.clone())
        .map(Secret::new))
}

impl Admission {
    /// Refuses a limit of 0, which would run nothing.
    fn resolve(parsed: &FileConfig, file: &Path) -> Result<Self, ConfigError> {
        let at_least_one = |key: String| ConfigError::Key {
            file: file.to_owned(),
            key,
            message: "must be at least 1".to_owned(),
        };
        let max_concurrent_executions = parsed
            .max_concurrent_executions
            .unwrap_or_else(defaults::max_concurrent_executions);
        if max_concurrent_executions == 0 {
            return Err(at_least_one("max_concurrent_executions".to_owned()));
        }
        let mut node_concurrency = HashMap::new();
        for (uid, settings) in parsed.nodes.iter().flatten() {
            match settings.max_concurrent {
                Some(0) => return Err(at_least_one(format!("nodes.{uid}.max_concurrent"))),
                Some(limit) => {
                    node_concurrency.insert(uid.clone(), limit);
                }
                None => {}
            }
        }
        Ok(Self {
            max_concurrent_executions,
            max_queued_executions: parsed.max_queued_executions.unwrap_or(defaults::MAX_QUEUED_EXECUTIONS),
            max_queued_bytes: parsed.max_queued_bytes.unwrap_or(defaults::MAX_QUEUED_BYTES),
            node_concurrency,
            execution_timeout: parsed
                .execution_timeout_ms
                .filter(|ms| *ms > 0)
                .map(Duration::from_millis),
        })
    }
}

impl Process {
    fn resolve(parsed: &FileConfig) -> Self {
        Self {
            abort_grace: ms(parsed.abort_grace_ms, defaults::ABORT_GRACE_MS),
            worker_drain: ms(parsed.worker_drain_ms, defaults::WORKER_DRAIN_MS),
            worker_memory_limit_mb: parsed.worker_memory_limit_mb.filter(|mb| *mb > 0),
            worker_start_timeout: ms(parsed.worker_start_timeout_ms, defaults::WORKER_START_TIMEOUT_MS),
            worker_restart_initial: ms(parsed.worker_restart_initial_ms, defaults::WORKER_RESTART_INITIAL_MS),
            worker_restart_max: ms(parsed.worker_restart_max_ms, defaults::WORKER_RESTART_MAX_MS),
            worker_restart_wait: ms(parsed.worker_restart_wait_ms, defaults::WORKER_RESTART_WAIT_MS),
            worker_heartbeat: match parsed.worker_heartbeat_ms.unwrap_or(defaults::WORKER_HEARTBEAT_MS) {
                0 => None,
                ms => Some(Duration::from_millis(ms.max(defaults::MIN_WORKER_HEARTBEAT_MS))),
            },
            worker_restart_reset: ms(parsed.worker_restart_reset_ms, defaults::WORKER_RESTART_RESET_MS),
            swap_strategy: parsed.swap_strategy.unwrap_or(defaults::SWAP_STRATEGY),
            stop_first_libraries: parsed
                .libraries
                .iter()
                .flatten()
                .filter(|(_, settings)| settings.swap_strategy == Some(SwapStrategy::StopFirst))
                .map(|(path, _)| path.clone())
                .collect(),
        }
    }
}

impl Python {
    /// Refuses `workers` outside 1..=[`defaults::MAX_PYTHON_WORKERS`].
    fn resolve(parsed: &FileConfig, base: &Path, file: &Path) -> Result<Self, ConfigError> {
        let interpreter = parsed.python.as_ref().and_then(|python| python.interpreter.clone());
        let workers = parsed
            .python
            .as_ref()
            .and_then(|python| python.workers)
            .unwrap_or(defaults::PYTHON_WORKERS);
        if !(1..=defaults::MAX_PYTHON_WORKERS).contains(&workers) {
            return Err(ConfigError::Key {
                file: file.to_owned(),
                key: "python.workers".to_owned(),
                message: format!(
                    "must be from 1 to {} (worker processes per Python library), not {workers}",
                    defaults::MAX_PYTHON_WORKERS
                ),
            });
        }
        Ok(Self {
            workers,
            group: parsed
                .python
                .as_ref()
                .and_then(|python| python.group)
                .unwrap_or_default(),
            project_root: absolute(base),
            // A bare name is looked up on PATH; a path is the file's.
            interpreter: interpreter.map(|path| {
                if path.components().count() > 1 {
                    absolute(&base.join(path))
                } else {
                    path
                }
            }),
        })
    }
}

/// `value` ms, else `default` ms.
fn ms(value: Option<u64>, default: u64) -> Duration {
    Duration::from_millis(value.unwrap_or(default))
}
