//! The environment, as the orchestrator (or an SDK's tooling) sets it. Every
//! variable the server reads at start is named here:
//! `PORT`, `SERVER_UID`, `SERVER_DISPLAY_NAME`, `SERVER_PACKAGE_ID`,
//! `DOMAIN` (over the file's keys); `NANO_SERVER_TOKEN` (over `auth_token`,
//! unless empty); `NANOCORE_HTTP_ENDPOINT` (or the SDKs' older
//! `NANOCORE_ENDPOINT`) and `NANOCORE_TOKEN`; the log filter's `RUST_LOG`,
//! else `NANOSDK_LOG_LEVEL`, `NANOCORE_LOG_LEVEL`, `LOG_LEVEL`. (`OTEL_*`
//! are read by `telemetry`.)

use super::{ConfigError, Secret};

/// Looks variables up; injected, so tests need not touch the process
/// environment.
pub(super) struct Env<F>(pub F);

impl<F: Fn(&str) -> Option<String>> Env<F> {
    pub fn var(&self, name: &str) -> Option<String> {
        (self.0)(name)
    }

    /// `PORT`, which must be a port number when set.
    pub fn port(&self) -> Result<Option<u16>, ConfigError> {
        let Some(port) = self.var("PORT") else { return Ok(None) };
        port.trim().parse::<u16>().map(Some).map_err(|e| ConfigError::Env {
            var: "PORT",
            message: format!("`{port}` is not a port number: {e}"),
        })
    }

    /// `NANOCORE_HTTP_ENDPOINT`, else the SDKs' older `NANOCORE_ENDPOINT`,
    /// else empty (no NanoCore).
    pub fn nanocore_endpoint(&self) -> String {
        self.var("NANOCORE_HTTP_ENDPOINT")
            .filter(|endpoint| !endpoint.is_empty())
            .or_else(|| self.var("NANOCORE_ENDPOINT"))
            .unwrap_or_default()
    }

    /// `NANOCORE_TOKEN`: NanoCore's bearer token; empty is none.
    pub fn nanocore_token(&self) -> Option<Secret> {
        self.var("NANOCORE_TOKEN")
            .filter(|token| !token.is_empty())
            .map(Secret::new)
    }

    pub fn log_filter(&self) -> Option<String> {
        log_filter(&self.0)
    }
}

/// The log filter: `RUST_LOG` when set, else the level the SDKs read
/// (`NANOSDK_LOG_LEVEL`, `NANOCORE_LOG_LEVEL`, `LOG_LEVEL`, the first set)
/// mapped onto tracing's (`WARNING` is `warn`, `CRITICAL` is `error`; a name
/// the SDKs do not know is `info`, as in the SDKs). `None`: none is set.
pub(super) fn log_filter(env: impl Fn(&str) -> Option<String>) -> Option<String> {
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
