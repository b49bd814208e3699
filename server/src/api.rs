//! The plain HTTP API beside the Nano protocol: node definitions, execute
//! (JSON or Server-Sent Events), stop, health, metrics, OpenAPI.
//!
//! Every handler is annotated for utoipa and registered through
//! utoipa-axum's `routes!`, which adds the route and its documentation
//! together: the OpenAPI document cannot drift from the router.

use std::{
    convert::Infallible,
    sync::Arc,
    time::{Duration, Instant},
};

use axum::{
    Json,
    body::Bytes,
    extract::{Path, State, rejection::BytesRejection},
    http::{HeaderMap, StatusCode, header},
    response::{
        IntoResponse, Response,
        sse::{Event, KeepAlive, Sse},
    },
};
use serde_json::{Map, Value, json};
use tokio::sync::mpsc;

use crate::{
    execution::{ExecutionRequest, Executor, Failure, Status, StatusSink, unknown_node_message},
    http::ServerState,
};

/// An error answer: `{"status": "error", "message": …}` with a status code.
#[derive(Debug)]
pub struct ApiError {
    code: StatusCode,
    message: String,
}

impl ApiError {
    pub fn new(code: StatusCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    fn bad_request(message: impl Into<String>) -> Self {
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

/// The definitions of every node served.
#[utoipa::path(get, path = "/nodes", tag = "nodes",
    responses((status = 200, description = "NodeDefinitions, as in the handshake", body = Vec<Object>)))]
pub async fn list_nodes(State(state): State<ServerState>) -> Response {
    raw_json(state.registry.snapshot().definitions.get().to_owned())
}

/// The definition of one node.
#[utoipa::path(get, path = "/nodes/{uid}", tag = "nodes",
    params(("uid" = String, Path, description = "Node uid")),
    responses((status = 200, description = "The NodeDefinition", body = Object),
              (status = 404, description = "No node with that uid", body = ErrorBody)))]
pub async fn get_node(State(state): State<ServerState>, Path(uid): Path<String>) -> Result<Json<Value>, ApiError> {
    let snapshot = state.registry.snapshot();
    let node = snapshot
        .get(&uid)
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, unknown_node_message(&uid)))?;
    Ok(Json(node.library.nodes[node.index as usize].definition.clone()))
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
        (status = 504, description = "Ran past execution_timeout_ms", body = ErrorBody)))]
pub async fn execute(
    State(state): State<ServerState>,
    Path(uid): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body?;
    let (request, node_id) = parse_execute(&uid, &body)?;
    tracing::Span::current().record("instance", tracing::field::display(&request.instance_id));
    if state.is_shutting_down() {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "the server is shutting down",
        ));
    }
    if !state.executor.serves(&uid) {
        return Err(ApiError::new(StatusCode::NOT_FOUND, unknown_node_message(&uid)));
    }
    let instance_id = request.instance_id.clone();
    let streaming = wants_event_stream(&headers);
    // A plain JSON answer needs only the final status: not waking this task
    // for the others saves a thread hand-over per execution.
    let (sink, mut statuses) = ChannelSink::new(streaming);
    let owner = state.next_connection_id();
    let guard = AbortOnDrop {
        executor: Arc::clone(&state.executor),
        owner,
        armed: true,
    };
    let started = Instant::now();
    state.executor.start(owner, request, sink);

    if streaming {
        return Ok(event_stream(statuses, guard, instance_id, node_id).into_response());
    }
    let mut guard = guard;
    while let Some(status) = statuses.recv().await {
        if !status.is_final() {
            continue;
        }
        guard.armed = false;
        return match status {
            Status::Complete(outputs) => Ok(Json(json!({
                "status": "complete",
                "outputs": outputs,
                "instanceId": instance_id,
                "durationMs": started.elapsed().as_secs_f64() * 1000.0,
            }))
            .into_response()),
            Status::Error(failure, message) => Err(ApiError::new(failure_code(failure), message)),
            Status::Update(_) => unreachable!("updates are not final"),
        };
    }
    Err(ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "the execution ended without a final status",
    ))
}

fn failure_code(failure: Failure) -> StatusCode {
    match failure {
        Failure::Node => StatusCode::UNPROCESSABLE_ENTITY,
        Failure::UnknownNode => StatusCode::NOT_FOUND,
        Failure::Aborted => StatusCode::CONFLICT,
        Failure::TimedOut => StatusCode::GATEWAY_TIMEOUT,
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

fn event_stream(
    statuses: mpsc::UnboundedReceiver<Status>,
    guard: AbortOnDrop,
    instance_id: String,
    node_id: Value,
) -> Sse<impl futures_util::Stream<Item = Result<Event, Infallible>>> {
    let stream = futures_util::stream::unfold((statuses, guard, false), move |(mut statuses, mut guard, done)| {
        let (instance_id, node_id) = (instance_id.clone(), node_id.clone());
        async move {
            if done {
                return None;
            }
            let status = statuses.recv().await?;
            let last = status.is_final();
            if last {
                guard.armed = false;
            }
            let json = status.to_json();
            let kind = match &status {
                Status::Complete(_) => "complete",
                Status::Error(..) => "error",
                Status::Update(_) => serde_json::from_str::<Value>(&json)
                    .ok()
                    .and_then(|v| v["type"].as_str().map(str::to_owned))
                    .map_or("running", |t| {
                        if t == "idle" {
                            "idle"
                        } else if t == "missing" {
                            "missing"
                        } else {
                            "running"
                        }
                    }),
            };
            let data = format!(
                r#"{{"instanceId":{},"nodeId":{node_id},"status":{json}}}"#,
                json!(instance_id)
            );
            Some((Ok(Event::default().event(kind).data(data)), (statuses, guard, last)))
        }
    });
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}

/// Aborts the execution if the caller goes away before its final status.
struct AbortOnDrop {
    executor: Arc<Executor>,
    owner: u64,
    armed: bool,
}

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        if self.armed && !self.executor.abort_owner(self.owner).is_empty() {
            tracing::info!("HTTP client went away; execution aborted");
        }
    }
}

struct ChannelSink {
    statuses: mpsc::UnboundedSender<Status>,
    /// Whether non-final statuses are wanted (SSE) or dropped (JSON).
    updates: bool,
}

impl ChannelSink {
    fn new(updates: bool) -> (Arc<Self>, mpsc::UnboundedReceiver<Status>) {
        let (statuses, rx) = mpsc::unbounded_channel();
        (Arc::new(Self { statuses, updates }), rx)
    }
}

impl StatusSink for ChannelSink {
    fn send(&self, status: Status) {
        if self.updates || status.is_final() {
            let _ = self.statuses.send(status);
        }
    }
}

/// Validates the execute body, saying exactly what is wrong.
fn parse_execute(uid: &str, body: &[u8]) -> Result<(ExecutionRequest, Value), ApiError> {
    let value: Value = if body.iter().all(u8::is_ascii_whitespace) {
        json!({})
    } else {
        serde_json::from_slice(body).map_err(|e| ApiError::bad_request(format!("the body is not valid JSON: {e}")))?
    };
    let Value::Object(mut body) = value else {
        return Err(ApiError::bad_request("the body must be a JSON object"));
    };
    if let Some(key) = body
        .keys()
        .find(|k| !["inputs", "parameters", "instanceId", "nodeId"].contains(&k.as_str()))
    {
        return Err(ApiError::bad_request(format!(
            "unknown field `{key}`; expected inputs, parameters, instanceId, nodeId"
        )));
    }
    let inputs = match body.remove("inputs") {
        None | Some(Value::Null) => "{}".to_owned(),
        Some(inputs @ Value::Object(_)) => inputs.to_string(),
        Some(_) => {
            return Err(ApiError::bad_request(
                "`inputs` must be an object mapping input names to values",
            ));
        }
    };
    let parameters = match body.remove("parameters") {
        None | Some(Value::Null) => "[]".to_owned(),
        Some(Value::Object(map)) => Value::Array(
            map.into_iter()
                .map(|(name, value)| json!({"name": name, "value": value}))
                .collect(),
        )
        .to_string(),
        Some(Value::Array(list)) => {
            let valid = list.iter().all(|p| p.get("name").is_some_and(Value::is_string));
            if !valid {
                return Err(ApiError::bad_request(
                    "`parameters` as a list must hold objects with a string `name` (and a `value`)",
                ));
            }
            Value::Array(list).to_string()
        }
        Some(_) => {
            return Err(ApiError::bad_request(
                "`parameters` must be a list of {name, value} objects or an object of name -> value",
            ));
        }
    };
    let instance_id = match body.remove("instanceId") {
        None | Some(Value::Null) => format!("http-{}", uuid::Uuid::new_v4()),
        Some(Value::String(id)) if !id.is_empty() => id,
        Some(_) => return Err(ApiError::bad_request("`instanceId` must be a non-empty string")),
    };
    let node_id = match body.remove("nodeId") {
        None | Some(Value::Null) => json!(0),
        Some(id @ (Value::Number(_) | Value::String(_))) => id,
        Some(_) => return Err(ApiError::bad_request("`nodeId` must be a number or a string")),
    };
    let graph_node = json!({"id": node_id, "uid": uid, "parameters": serde_json::from_str::<Value>(&parameters).unwrap_or_default()});
    Ok((
        ExecutionRequest {
            instance_id,
            node_uid: uid.to_owned(),
            inputs,
            parameters,
            graph_node: graph_node.to_string(),
        },
        node_id,
    ))
}

/// Aborts every execution of an instance, whether started over HTTP or WebSocket.
#[utoipa::path(post, path = "/instances/{instance_id}/stop", tag = "execute",
    params(("instance_id" = String, Path, description = "Workflow instance id")),
    responses((status = 200, description = "How many executions were aborted", body = Object,
               example = json!({"aborted": 1}))))]
pub async fn stop_instance(State(state): State<ServerState>, Path(instance_id): Path<String>) -> Json<Value> {
    let aborted = state.executor.stop_instance(&instance_id).len();
    tracing::info!(instance = %instance_id, aborted, "stop over HTTP");
    Json(json!({"aborted": aborted}))
}

/// Liveness: the process answers.
#[utoipa::path(get, path = "/healthz", tag = "health",
    responses((status = 200, description = "Alive", body = Object, example = json!({"status": "ok"}))))]
pub async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// Readiness: nodes loaded and not shutting down.
#[utoipa::path(get, path = "/readyz", tag = "health",
    responses((status = 200, description = "Ready", body = Object, example = json!({"status": "ready", "nodes": 3})),
              (status = 503, description = "Not ready: no node served, or shutting down", body = Object)))]
pub async fn readyz(State(state): State<ServerState>) -> Response {
    let nodes = state.registry.snapshot().uids.len();
    let reason = if state.is_shutting_down() {
        Some("shutting down")
    } else if nodes == 0 {
        Some("no node is served")
    } else {
        None
    };
    match reason {
        None => Json(json!({"status": "ready", "nodes": nodes})).into_response(),
        Some(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "not ready", "reason": reason, "nodes": nodes})),
        )
            .into_response(),
    }
}

/// Metrics in the Prometheus text format.
#[utoipa::path(get, path = "/metrics", tag = "health",
    responses((status = 200, description = "Prometheus text exposition", content_type = "text/plain")))]
pub async fn metrics(State(state): State<ServerState>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        state.metrics.render(),
    )
        .into_response()
}

/// This document.
#[utoipa::path(get, path = "/openapi.json", tag = "health",
    responses((status = 200, description = "The OpenAPI 3 document of this API", body = Object)))]
pub async fn openapi(State(state): State<ServerState>) -> Response {
    raw_json(state.openapi_json())
}

fn raw_json(body: String) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_may_be_an_object_or_the_protocol_list() {
        let (request, _) = parse_execute("n", br#"{"parameters": {"a": 1}}"#).unwrap();
        assert_eq!(request.parameters, r#"[{"name":"a","value":1}]"#);
        let (request, _) = parse_execute("n", br#"{"parameters": [{"name": "a", "value": 1}]}"#).unwrap();
        assert_eq!(request.parameters, r#"[{"name":"a","value":1}]"#);
    }

    #[test]
    fn wrong_shapes_say_what_is_wrong() {
        for (body, needle) in [
            (&b"{"[..], "not valid JSON"),
            (b"[]", "JSON object"),
            (br#"{"inputs": 3}"#, "`inputs`"),
            (br#"{"parameters": "x"}"#, "`parameters`"),
            (br#"{"parameters": [1]}"#, "`parameters`"),
            (br#"{"instanceId": 3}"#, "`instanceId`"),
            (br#"{"nodeId": {}}"#, "`nodeId`"),
            (br#"{"input": {}}"#, "unknown field `input`"),
        ] {
            let err = parse_execute("n", body).unwrap_err();
            assert_eq!(err.code, StatusCode::BAD_REQUEST);
            assert!(
                err.message.contains(needle),
                "{} → {}",
                String::from_utf8_lossy(body),
                err.message
            );
        }
    }

    #[test]
    fn defaults_fill_in() {
        let (request, node_id) = parse_execute("n", b"").unwrap();
        assert_eq!(request.inputs, "{}");
        assert!(request.instance_id.starts_with("http-"));
        assert_eq!(node_id, json!(0));
    }
}
