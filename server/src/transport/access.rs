//! Who may use the server: with `auth_token` set, the bearer token; and
//! always, no request a web page on another site could make a browser send
//! (cross-site POSTs and WebSocket upgrades, DNS rebinding).

use std::sync::Arc;

use axum::{
    extract::Request,
    http::{StatusCode, header},
    response::{IntoResponse, Response},
};

use crate::{api::ApiError, rate_limit::RateLimitedCount, state::Limits};

/// With `auth_token` set, everything but the health probes and the pages'
/// static files needs `Authorization: Bearer <token>`; compared in
/// constant time. (A `ValidateRequest` for tower-http's layer: unlike
/// `middleware::from_fn`, it boxes nothing per request.)
// tower-http's `ValidateRequest` wants `Result<(), Response>`.
#[allow(clippy::result_large_err)]
pub(super) fn require_token(
    token: Option<crate::config::Secret>,
) -> impl Fn(&mut Request) -> Result<(), Response> + Clone {
    move |request: &mut Request| {
        let Some(token) = &token else { return Ok(()) };
        if matches!(request.uri().path(), "/healthz" | "/readyz") {
            return Ok(());
        }
        // The pages' static files: the page asks for the token and sends it
        // with every data call.
        let path = request.uri().path();
        if request.method() == axum::http::Method::GET && (path == "/ui" || path.starts_with("/ui/")) {
            return Ok(());
        }
        let presented = request
            .headers()
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        if token.matches(presented) {
            return Ok(());
        }
        if let Some(count) = REFUSED_TOKENS.hit() {
            tracing::warn!(
                path = %request.uri().path(),
                refused = count,
                "refused {count} request(s) without the right bearer token (logged at most once a second)"
            );
        }
        let mut response = ApiError::new(
            StatusCode::UNAUTHORIZED,
            "missing or wrong `Authorization: Bearer` token",
        )
        .into_response();
        response.headers_mut().insert(
            axum::http::header::WWW_AUTHENTICATE,
            axum::http::HeaderValue::from_static("Bearer"),
        );
        Err(response)
    }
}

/// 401s, for a log line at most once a second (a client hammering with a
/// wrong token must not flood the log).
static REFUSED_TOKENS: RateLimitedCount = RateLimitedCount::new();

/// Refusals of cross-site requests, likewise.
static REFUSED_SITES: RateLimitedCount = RateLimitedCount::new();

/// Refuses with 403 what a web page on another site (or a DNS name
/// rebound to this address) could make a browser send:
/// - when listening on loopback only, a request whose `Host` is not a
///   loopback name or address;
/// - a POST or a WebSocket upgrade whose `Origin` is present and is neither
///   the server's own origin (`http(s)://` + the `Host` asked for) nor one
///   of `allowed_origins`.
///
/// Clients that are not browsers send no `Origin`, and are not affected.
#[allow(clippy::result_large_err)]
pub(super) fn same_site(limits: Arc<Limits>) -> impl Fn(&mut Request) -> Result<(), Response> + Clone {
    move |request: &mut Request| {
        let headers = request.headers();
        let host = headers
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
            .or_else(|| request.uri().authority().map(|a| a.as_str().to_owned()));
        if limits.loopback_only
            && let Some(host) = &host
            && !is_loopback_host(host)
        {
            return Err(refuse_site(
                request,
                format!("this server listens on loopback only; `Host: {host}` is not a loopback name or address"),
            ));
        }
        let upgrade = headers
            .get(header::UPGRADE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
        if (request.method() == axum::http::Method::POST || upgrade)
            && let Some(origin) = headers.get(header::ORIGIN)
        {
            let origin = origin.to_str().unwrap_or("").trim_end_matches('/').to_ascii_lowercase();
            let own = host.as_deref().is_some_and(|host| {
                let host = host.to_ascii_lowercase();
                origin == format!("http://{host}") || origin == format!("https://{host}")
            });
            if !own && !limits.allowed_origins.contains(&origin) {
                return Err(refuse_site(
                    request,
                    format!("cross-site request from origin `{origin}` refused; add it to allowed_origins to allow it"),
                ));
            }
        }
        Ok(())
    }
}

fn refuse_site(request: &Request, message: String) -> Response {
    if let Some(count) = REFUSED_SITES.hit() {
        tracing::warn!(path = %request.uri().path(), refused = count, "{message}");
    }
    ApiError::new(StatusCode::FORBIDDEN, message).into_response()
}

/// Whether `host` (a `Host` header: name or address, with or without a
/// port) names this machine's loopback: `localhost`, `*.localhost`, or a
/// loopback address.
fn is_loopback_host(host: &str) -> bool {
    let name = if let Some(rest) = host.strip_prefix('[') {
        rest.split(']').next().unwrap_or("")
    } else {
        match host.rsplit_once(':') {
            Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
            _ => host,
        }
    };
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    name == "localhost"
        || name.ends_with(".localhost")
        || name.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts() {
        for host in [
            "localhost",
            "localhost:3017",
            "127.0.0.1",
            "127.0.0.1:80",
            "127.1.2.3:1",
            "[::1]:3017",
            "[::1]",
            "app.localhost:9",
            "LOCALHOST.",
        ] {
            assert!(is_loopback_host(host), "{host}");
        }
        for host in [
            "example.com",
            "example.com:3017",
            "10.0.0.1:3017",
            "[::2]:1",
            "localhost.evil.com",
            "127.0.0.1.nip.io",
        ] {
            assert!(!is_loopback_host(host), "{host}");
        }
    }
}
