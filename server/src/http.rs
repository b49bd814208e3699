//! The HTTP side of the server, on one port: `GET /` (status document or
//! the WebSocket upgrade), the HTTP API of [`crate::api`], the browser
//! pages of `crate::ui`, request logging, metrics and the body limit.

use std::{
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use axum::{
    Json, Router,
    extract::{
        DefaultBodyLimit, MatchedPath, Request, State, WebSocketUpgrade, ws::rejection::WebSocketUpgradeRejection,
    },
    http::{StatusCode, header},
    response::{IntoResponse, Response},
};
use tower_http::{trace::TraceLayer, validate_request::ValidateRequestHeaderLayer};
use utoipa::OpenApi;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    api::{self, ApiError},
    connection::RateLimitedCount,
    metrics,
    state::{Limits, ServerState},
    ui, ws,
};

#[derive(OpenApi)]
#[openapi(
    info(title = "nano-server", description = "Serves compiled node plugins over the Nano protocol and plain HTTP."),
    tags(
        (name = "nano", description = "The Nano protocol: status document and WebSocket"),
        (name = "nodes", description = "Node definitions"),
        (name = "execute", description = "Running and stopping nodes"),
        (name = "server", description = "Libraries, refusals, executions, workers and the last failures"),
        (name = "assets", description = "NanoCore's assets for the browser pages, through the server"),
        (name = "health", description = "Health, readiness, metrics, this document"),
    )
)]
struct ApiDoc;

/// The routes of the server, with the OpenAPI document built from them.
pub fn router(state: ServerState) -> Router {
    let max_request_bytes = state.limits.max_request_bytes;
    let router = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(root))
        .routes(routes!(api::list_nodes))
        .routes(routes!(api::get_node))
        .routes(routes!(api::execute))
        .routes(routes!(api::stop_instance))
        .routes(routes!(api::healthz))
        .routes(routes!(api::readyz))
        .routes(routes!(api::render_metrics))
        .routes(routes!(api::openapi))
        .routes(routes!(api::events::definition_events))
        .routes(routes!(api::server::libraries))
        .routes(routes!(api::server::server_report));
    // The pages, and the asset routes only they need: `ui = false` turns both off.
    let (router, document) = if state.setup.ui {
        let (router, document) = router
            .routes(routes!(api::assets::upload_asset))
            .routes(routes!(api::assets::presigned_asset))
            .split_for_parts();
        (router.merge(ui::router()), document)
    } else {
        router.split_for_parts()
    };
    state.set_openapi_json(document.to_json().expect("the OpenAPI document serialises"));
    router
        .route_layer(tower::layer::layer_fn(CountRequests))
        .fallback(not_found)
        .layer(ValidateRequestHeaderLayer::custom(require_token(
            state.limits.auth_token.clone(),
        )))
        .layer(ValidateRequestHeaderLayer::custom(same_site(Arc::clone(&state.limits))))
        .layer(DefaultBodyLimit::max(max_request_bytes))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(|request: &Request| {
                    tracing::info_span!(
                        "http",
                        method = %request.method(),
                        uri = %request.uri(),
                        instance = tracing::field::Empty,
                    )
                })
                .on_request(())
                .on_response(|response: &Response, latency: Duration, _span: &tracing::Span| {
                    tracing::debug!(
                        status = response.status().as_u16(),
                        latency_ms = latency.as_secs_f64() * 1000.0,
                        "response"
                    );
                }),
        )
        .with_state(state)
}

/// The Nano status document, or the WebSocket when the client asks to upgrade.
#[utoipa::path(get, path = "/", tag = "nano",
    responses((status = 200, description = "The status document (serverUid, nodeUIDs…)", body = Object),
              (status = 101, description = "WebSocket upgrade to the Nano protocol")))]
async fn root(
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
    State(state): State<ServerState>,
) -> Response {
    match upgrade {
        Ok(upgrade) => {
            let Some(open) = state.admit_websocket() else {
                tracing::warn!(
                    max_connections = state.limits.max_connections,
                    "refused a WebSocket: too many open"
                );
                return ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "too many open connections; try again later",
                )
                .into_response();
            };
            upgrade
                // tungstenite zeroes this much before every read, also one
                // that finds nothing: 128 KiB (its default) showed as 3% of
                // the server's CPU under load. Larger messages take more reads.
                .read_buffer_size(WS_READ_BUFFER)
                .max_message_size(state.limits.max_message_bytes)
                .max_frame_size(state.limits.max_message_bytes)
                .on_upgrade(move |socket| ws::serve(socket, state, open))
        }
        Err(_) => Json(crate::protocol::status_document(
            &state.identity,
            &state.registry.snapshot(),
        ))
        .into_response(),
    }
}

/// With `auth_token` set, everything but the health probes and the pages'
/// static files needs `Authorization: Bearer <token>`; compared in
/// constant time. (A `ValidateRequest` for tower-http's layer: unlike
/// `middleware::from_fn`, it boxes nothing per request.)
// tower-http's `ValidateRequest` wants `Result<(), Response>`.
#[allow(clippy::result_large_err)]
fn require_token(token: Option<Arc<str>>) -> impl Fn(&mut Request) -> Result<(), Response> + Clone {
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
        if bool::from(subtle::ConstantTimeEq::ct_eq(presented.as_bytes(), token.as_bytes())) {
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

/// What one read of a WebSocket takes at most.
const WS_READ_BUFFER: usize = 16 << 10;

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
fn same_site(limits: Arc<Limits>) -> impl Fn(&mut Request) -> Result<(), Response> + Clone {
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

/// Counts every routed request in `nano_http_requests_total` by route and
/// status. A plain tower service: `middleware::from_fn` boxes the inner
/// service and its future on every request, and with the token check it
/// cost 1.3 µs of the 13 µs an HTTP execution took (perf, A/B builds).
#[derive(Clone)]
struct CountRequests<S>(S);

impl<S> tower::Service<Request> for CountRequests<S>
where
    S: tower::Service<Request, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = Counted<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let route = request.extensions().get::<MatchedPath>().cloned();
        Counted {
            inner: self.0.call(request),
            route,
        }
    }
}

pin_project_lite::pin_project! {
    /// A routed request's response, counted when it is ready.
    struct Counted<F> {
        #[pin]
        inner: F,
        route: Option<MatchedPath>,
    }
}

impl<F, E> Future for Counted<F>
where
    F: Future<Output = Result<Response, E>>,
{
    type Output = Result<Response, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = std::task::ready!(this.inner.poll(cx));
        if let Ok(response) = &result {
            count_request(this.route.as_ref(), response.status());
        }
        Poll::Ready(result)
    }
}

fn count_request(matched: Option<&MatchedPath>, status: StatusCode) {
    let route = matched.map_or("unmatched", MatchedPath::as_str);
    // The common pair has its handle looked up once.
    match (route, status.as_u16()) {
        ("/nodes/{uid}/execute", 200) => metrics::hot().http_execute_ok.increment(1),
        _ => metrics::counter!(metrics::HTTP_REQUESTS, "route" => route.to_owned(), "status" => status.as_u16().to_string())
            .increment(1),
    }
}

async fn not_found(request: Request) -> ApiError {
    metrics::counter!(metrics::HTTP_REQUESTS, "route" => "unmatched", "status" => "404").increment(1);
    ApiError::new(
        StatusCode::NOT_FOUND,
        format!(
            "no route for {} {}; see /openapi.json",
            request.method(),
            request.uri().path()
        ),
    )
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
