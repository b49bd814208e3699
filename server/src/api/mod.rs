//! The plain HTTP API beside the Nano protocol: node definitions, execute
//! (JSON or Server-Sent Events), stop, health, metrics, OpenAPI; the
//! served set as events, the server's state and NanoCore's assets for the
//! browser pages (`events`, `server`, `assets`).
//!
//! Every handler is annotated for utoipa and registered through
//! utoipa-axum's `routes!`, which adds the route and its documentation
//! together: the OpenAPI document cannot drift from the router.

pub(crate) mod assets;
mod body;
pub(crate) mod events;
pub(crate) mod server;
mod sse;

use std::{sync::Arc, time::Instant};

use axum::{
    Extension, Json,
    body::Bytes,
    extract::{Path, State, rejection::BytesRejection},
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde_json::{Map, Value, json, value::RawValue};

use crate::{
    execution::{Executor, Failure, Origin, Status, StatusSink},
    protocol::unknown_node_message,
    state::ServerState,
    transport::{CLOSE_WITHIN, ConnectionHandle},
};

/// An error answer: `{"status": "error", "message": …}` with a status code.
#[derive(Debug)]
pub(crate) struct ApiError {
    code: StatusCode,
    message: String,
}

impl ApiError {
    pub(crate) fn new(code: StatusCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.code, Json(json!({"status": "error", "message": self.message}))).into_response()
    }
}

impl From<BytesRejection> for ApiError {
    fn from(rejection: BytesRejection) -> Self {
        let code = rejection.status();
        let message = if code == StatusCode::PAYLOAD_TOO_LARGE {
            "the request body is larger than max_request_bytes".to_owned()
        } else {
            rejection.body_text()
        };
        Self::new(code, message)
    }
}

/// A failed execution, as in the execute response.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
struct ErrorBody {
    /// Always `error`.
    status: String,
    /// What went wrong.
    message: String,
}

/// The body of `POST /nodes/{uid}/execute`.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
#[schema(example = json!({"inputs": {"text": ["hello"]}, "parameters": {"uppercase": true}}))]
struct ExecuteBody {
    /// Input port name → value (a list by convention, a bare value is accepted).
    inputs: Option<Map<String, Value>>,
    /// The protocol's list of `{name, value}` objects, or a `{name: value}` object.
    parameters: Option<Value>,
    /// Workflow instance id; generated when absent.
    #[schema(rename = "instanceId")]
    instance_id: Option<String>,
    /// Node id in the graph (number or string); `0` when absent.
    #[schema(rename = "nodeId")]
    node_id: Option<Value>,
}

/// A completed execution.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
struct ExecuteResult {
    /// Always `complete`.
    status: String,
    /// Output port name → list of values.
    outputs: Map<String, Value>,
    #[schema(rename = "instanceId")]
    instance_id: String,
    /// Milliseconds from admission to completion.
    #[schema(rename = "durationMs")]
    duration_ms: f64,
}

/// What a completed execution answers (`ExecuteResult` documents it). The
/// outputs go out as the node wrote them, not parsed into a `Value` tree.
#[derive(serde::Serialize)]
struct Completed<'a> {
    status: &'static str,
    outputs: &'a RawValue,
    #[serde(rename = "instanceId")]
    instance_id: &'a str,
    #[serde(rename = "durationMs")]
    duration_ms: f64,
}

/// The definitions of every node served.
#[utoipa::path(get, path = "/nodes", tag = "nodes",
    responses((status = 200, description = "NodeDefinitions, as in the handshake", body = Vec<Object>)))]
pub(crate) async fn list_nodes(State(state): State<ServerState>) -> Response {
    raw_json(state.registry.snapshot().definitions.get().to_owned())
}

/// The definition of one node.
#[utoipa::path(get, path = "/nodes/{uid}", tag = "nodes",
    params(("uid" = String, Path, description = "Node uid")),
    responses((status = 200, description = "The NodeDefinition", body = Object),
              (status = 404, description = "No node with that uid", body = ErrorBody)))]
pub(crate) async fn get_node(
    State(state): State<ServerState>,
    Path(uid): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let snapshot = state.registry.snapshot();
    let node = snapshot
        .get(&uid)
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, unknown_node_message(&uid)))?;
    Ok(Json(node.info().definition.clone()))
}

/// Runs a node. Answers once it finished, or, with `Accept:
/// text/event-stream`, streams one event per status (`running`…, then
/// `complete` or `error`). A client that disconnects aborts its execution.
#[utoipa::path(post, path = "/nodes/{uid}/execute", tag = "execute",
    params(("uid" = String, Path, description = "Node uid")),
    request_body(content = ExecuteBody, content_type = "application/json"),
    responses(
        (status = 200, description = "Completed (or, with Accept: text/event-stream, the status stream)", body = ExecuteResult),
        (status = 400, description = "Malformed JSON or wrong shapes", body = ErrorBody),
        (status = 404, description = "No node with that uid", body = ErrorBody),
        (status = 409, description = "Aborted", body = ErrorBody),
        (status = 413, description = "Body over max_request_bytes", body = ErrorBody),
        (status = 422, description = "The node's own error", body = ErrorBody),
        (status = 503, description = "Shutting down, or busy (max_queued_executions waiting)", body = ErrorBody),
        (status = 502, description = "The process running the node crashed (process isolation)", body = ErrorBody),
        (status = 504, description = "Ran past execution_timeout_ms", body = ErrorBody)))]
pub(crate) async fn execute(
    State(state): State<ServerState>,
    Path(uid): Path<String>,
    connection: Option<Extension<ConnectionHandle>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body?;
    let (request, node_id) = body::decode_execute_body(&uid, &body)?;
    tracing::Span::current().record("instance", tracing::field::display(&request.instance_id));
    if state.is_shutting_down() {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "the server is shutting down",
        ));
    }
    if state.registry.snapshot().get(&uid).is_none() {
        return Err(ApiError::new(StatusCode::NOT_FOUND, unknown_node_message(&uid)));
    }
    let instance_id = request.instance_id.clone();
    let owner = state.next_connection_id();
    let sse = wants_event_stream(&headers);
    let origin = Origin {
        transport: if sse { "sse" } else { "http" },
        node_id: node_id.to_string(),
        traceparent: headers
            .get("traceparent")
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned),
    };
    let mut guard = AbortOnDrop {
        executor: Arc::clone(&state.executor),
        owner,
        armed: true,
    };
    let started = Instant::now();
    if sse {
        let executor = Arc::clone(&state.executor);
        let on_overflow = Box::new(move || {
            drop(executor.abort_owner(owner));
            if let Some(Extension(connection)) = connection {
                connection.close_after(CLOSE_WITHIN);
            }
        });
        let (sink, statuses) =
            sse::StreamSink::new(state.limits.max_outbox_bytes, state.limits.client_stall, on_overflow);
        let sink = Arc::new(sink);
        state.start_execution(owner, request, origin, Arc::clone(&sink) as Arc<dyn StatusSink>);
        // A refusal is known at once (admission answers synchronously): it
        // gets its status code, as without the event stream, not a 200.
        if let Some((failure, message)) = sink.take_refusal() {
            guard.disarm();
            return Err(ApiError::new(failure_code(failure), message));
        }
        return Ok(sse::event_stream(statuses, guard, instance_id, node_id, state.limits.client_stall).into_response());
    }
    // A plain JSON answer needs only the final status: this task wakes once.
    let (sink, answer) = tokio::sync::oneshot::channel();
    state.start_execution(
        owner,
        request,
        origin,
        Arc::new(FinalSink(std::sync::Mutex::new(Some(sink)))),
    );
    let Ok(status) = answer.await else {
        return Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the execution ended without a final status",
        ));
    };
    guard.disarm();
    match status {
        Status::Complete(outputs, _) => Ok(Json(Completed {
            status: "complete",
            outputs: &outputs,
            instance_id: &instance_id,
            duration_ms: started.elapsed().as_secs_f64() * 1000.0,
        })
        .into_response()),
        Status::Error(failure, message) => Err(ApiError::new(failure_code(failure), message)),
        Status::Running | Status::Update(..) => unreachable!("FinalSink passes only final statuses"),
    }
}

fn failure_code(failure: Failure) -> StatusCode {
    match failure {
        Failure::Node => StatusCode::UNPROCESSABLE_ENTITY,
        Failure::UnknownNode => StatusCode::NOT_FOUND,
        Failure::Aborted => StatusCode::CONFLICT,
        Failure::TimedOut => StatusCode::GATEWAY_TIMEOUT,
        Failure::Crashed | Failure::Stalled => StatusCode::BAD_GATEWAY,
        Failure::Busy => StatusCode::SERVICE_UNAVAILABLE,
        Failure::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

fn wants_event_stream(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("text/event-stream"))
}

/// Aborts the execution if the caller goes away before its final status.
struct AbortOnDrop {
    executor: Arc<Executor>,
    owner: u64,
    armed: bool,
}

impl AbortOnDrop {
    /// The final status arrived: nothing to abort any more.
    fn disarm(&mut self) {
        self.armed = false;
    }
}

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        if self.armed && !self.executor.abort_owner(self.owner).is_empty() {
            tracing::info!("HTTP client went away; execution aborted");
        }
    }
}

/// Only the final status, for a JSON answer.
struct FinalSink(std::sync::Mutex<Option<tokio::sync::oneshot::Sender<Status>>>);

impl StatusSink for FinalSink {
    fn send(&self, status: Status) {
        if status.is_final() {
            let sender = crate::lock(&self.0).take();
            if let Some(sender) = sender {
                let _ = sender.send(status);
            }
        }
    }
}

/// Aborts every execution of an instance, whether started over HTTP or WebSocket.
#[utoipa::path(post, path = "/instances/{instance_id}/stop", tag = "execute",
    params(("instance_id" = String, Path, description = "Workflow instance id")),
    responses((status = 200, description = "How many executions were aborted", body = Object,
               example = json!({"aborted": 1}))))]
pub(crate) async fn stop_instance(State(state): State<ServerState>, Path(instance_id): Path<String>) -> Json<Value> {
    let aborted = state.executor.stop_instance(&instance_id).len();
    tracing::info!(instance = %instance_id, aborted, "stop over HTTP");
    Json(json!({"aborted": aborted}))
}

/// Liveness: the process answers.
#[utoipa::path(get, path = "/healthz", tag = "health",
    responses((status = 200, description = "Alive", body = Object, example = json!({"status": "ok"}))))]
pub(crate) async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// Readiness: nodes loaded, not shutting down, and not wedged.
#[utoipa::path(get, path = "/readyz", tag = "health",
    responses((status = 200, description = "Ready, or degraded (a worker is stalled or restarting: its nodes wait, the others run)", body = Object, example = json!({"status": "ready", "nodes": 3})),
              (status = 503, description = "Not ready: no node served, shutting down, or every slot held by nodes past their abort or timeout", body = Object)))]
pub(crate) async fn readyz(State(state): State<ServerState>) -> Response {
    let nodes = state.registry.snapshot().uids.len();
    let reason = if state.is_shutting_down() {
        Some("shutting down")
    } else if nodes == 0 {
        Some("no node is served")
    } else if !state.registry.any_up() {
        Some("no worker is up: every library's worker is down or failed")
    } else if state.executor.is_wedged() {
        Some("every execution slot is held by a node that ignored its abort or timeout")
    } else {
        None
    };
    match reason {
        None => {
            // Other nodes still run: 200, so one bad library does not take
            // the server out of a load balancer.
            let troubles = state.registry.troubles();
            if troubles.is_empty() {
                Json(json!({"status": "ready", "nodes": nodes})).into_response()
            } else {
                Json(json!({"status": "degraded", "reason": troubles.join("; "), "nodes": nodes})).into_response()
            }
        }
        Some(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "not ready", "reason": reason, "nodes": nodes})),
        )
            .into_response(),
    }
}

/// Metrics in the Prometheus text format.
#[utoipa::path(get, path = "/metrics", tag = "health", operation_id = "metrics",
    responses((status = 200, description = "Prometheus text exposition", content_type = "text/plain")))]
pub(crate) async fn render_metrics(State(state): State<ServerState>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        state.metrics.render(),
    )
        .into_response()
}

/// This document.
#[utoipa::path(get, path = "/openapi.json", tag = "health",
    responses((status = 200, description = "The OpenAPI 3 document of this API", body = Object)))]
pub(crate) async fn openapi(State(state): State<ServerState>) -> Response {
    raw_json(state.openapi_json())
}

fn raw_json(body: String) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}
