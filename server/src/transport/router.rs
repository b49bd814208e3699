//! The router of the one port: `GET /` (status document or the WebSocket
//! upgrade), the HTTP API of [`crate::api`], the browser pages of
//! `crate::ui`, behind the access checks of [`super::access`], with request
//! logging, metrics and the body limit.

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
    http::StatusCode,
    response::{IntoResponse, Response},
};
use tower_http::{classify::ServerErrorsFailureClass, trace::TraceLayer, validate_request::ValidateRequestHeaderLayer};
use utoipa::OpenApi;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::{
    access::{require_token, same_site},
    ws,
};
use crate::{
    api::{self, ApiError},
    metrics,
    rate_limit::RateLimitedCount,
    state::ServerState,
    ui,
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
pub(crate) fn router(state: ServerState) -> Router {
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
                })
                .on_failure(log_failure),
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
                // A flood of refusals makes a line a second, with its count.
                static REFUSED_WEBSOCKETS: RateLimitedCount = RateLimitedCount::new();
                if let Some(refused) = REFUSED_WEBSOCKETS.hit() {
                    tracing::warn!(
                        max_connections = state.limits.max_connections,
                        refused,
                        "refused WebSockets: too many open"
                    );
                }
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
                .on_upgrade(move |socket| ws::run_session(socket, state, open))
        }
        Err(_) => Json(crate::protocol::status_document(
            &state.identity,
            &state.registry.snapshot(),
        ))
        .into_response(),
    }
}

/// What one read of a WebSocket takes at most.
const WS_READ_BUFFER: usize = 16 << 10;

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

/// A failed response. Busy, shutting down, a crashed or timed-out node
/// (502–504) are logged where they are decided, once (rate-limited where a
/// client can repeat them): here they are only debug, so a flood of refusals
/// makes no line each. A 500 or an error is the server's own fault: a warning.
fn log_failure(class: ServerErrorsFailureClass, latency: Duration, _span: &tracing::Span) {
    let latency_ms = latency.as_secs_f64() * 1000.0;
    match class {
        ServerErrorsFailureClass::StatusCode(code) if code != StatusCode::INTERNAL_SERVER_ERROR => {
            tracing::debug!(status = code.as_u16(), latency_ms, "response failed");
        }
        class => tracing::warn!(%class, latency_ms, "response failed"),
    }
}
