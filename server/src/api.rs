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
use serde_json::{Map, Value, json, value::RawValue};
use tokio::sync::mpsc;

use crate::{
    execution::{ExecutionRequest, Executor, Failure, Status, StatusSink, unknown_node_message},
    state::ServerState,
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
    let owner = state.next_connection_id();
    let mut guard = AbortOnDrop {
        executor: Arc::clone(&state.executor),
        owner,
        armed: true,
    };
    let started = Instant::now();
    if wants_event_stream(&headers) {
        let (sink, statuses) = mpsc::unbounded_channel();
        state.executor.start(owner, request, Arc::new(StreamSink(sink)));
        return Ok(event_stream(statuses, guard, instance_id, node_id).into_response());
    }
    // A plain JSON answer needs only the final status: this task wakes once.
    let (sink, answer) = tokio::sync::oneshot::channel();
    state
        .executor
        .start(owner, request, Arc::new(FinalSink(std::sync::Mutex::new(Some(sink)))));
    let Ok(status) = answer.await else {
        return Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the execution ended without a final status",
        ));
    };
    guard.armed = false;
    match status {
        Status::Complete(outputs) => Ok(Json(Completed {
            status: "complete",
            outputs: &outputs,
            instance_id: &instance_id,
            duration_ms: started.elapsed().as_secs_f64() * 1000.0,
        })
        .into_response()),
        Status::Error(failure, message) => Err(ApiError::new(failure_code(failure), message)),
        Status::Update(_) => unreachable!("FinalSink passes only final statuses"),
    }
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

/// Every status of an execution, for the event stream.
struct StreamSink(mpsc::UnboundedSender<Status>);

impl StatusSink for StreamSink {
    fn send(&self, status: Status) {
        let _ = self.0.send(status);
    }
}

/// Only the final status, for a JSON answer.
struct FinalSink(std::sync::Mutex<Option<tokio::sync::oneshot::Sender<Status>>>);

impl StatusSink for FinalSink {
    fn send(&self, status: Status) {
        if status.is_final() {
            let sender = self.0.lock().unwrap_or_else(|e| e.into_inner()).take();
            if let Some(sender) = sender {
                let _ = sender.send(status);
            }
        }
    }
}

/// Any JSON value, checked through and thrown away: numbers are parsed
/// (so one beyond f64's range is refused, as `Value` would) and nesting is
/// limited, but nothing is allocated. `IgnoredAny` skips numbers unchecked.
struct CheckedJson;

impl<'de> serde::Deserialize<'de> for CheckedJson {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(CheckedJsonVisitor)
    }
}

struct CheckedJsonVisitor;

impl<'de> serde::de::Visitor<'de> for CheckedJsonVisitor {
    type Value = CheckedJson;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<CheckedJson, E> {
        Ok(CheckedJson)
    }

    fn visit_i64<E>(self, _: i64) -> Result<CheckedJson, E> {
        Ok(CheckedJson)
    }

    fn visit_u64<E>(self, _: u64) -> Result<CheckedJson, E> {
        Ok(CheckedJson)
    }

    fn visit_f64<E>(self, _: f64) -> Result<CheckedJson, E> {
        Ok(CheckedJson)
    }

    fn visit_str<E>(self, _: &str) -> Result<CheckedJson, E> {
        Ok(CheckedJson)
    }

    fn visit_unit<E>(self) -> Result<CheckedJson, E> {
        Ok(CheckedJson)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<CheckedJson, A::Error> {
        while seq.next_element::<CheckedJson>()?.is_some() {}
        Ok(CheckedJson)
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<CheckedJson, A::Error> {
        while map.next_entry::<serde::de::IgnoredAny, CheckedJson>()?.is_some() {}
        Ok(CheckedJson)
    }
}

/// The execute body's fields, borrowed from the body: `inputs` and
/// `parameters` go to the node as the caller wrote them.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ExecuteFields<'a> {
    #[serde(borrow, default)]
    inputs: Option<&'a RawValue>,
    #[serde(borrow, default)]
    parameters: Option<&'a RawValue>,
    #[serde(rename = "instanceId", default)]
    instance_id: Option<Value>,
    #[serde(rename = "nodeId", default)]
    node_id: Option<Value>,
}

/// A `parameters` list entry: an object with a string `name` (other fields pass through).
#[derive(serde::Deserialize)]
struct NamedParameter<'a> {
    #[serde(borrow)]
    #[allow(dead_code)]
    name: std::borrow::Cow<'a, str>,
}

/// One `{name, value}` object of the protocol's parameter list.
#[derive(serde::Serialize)]
struct Parameter<'a> {
    name: &'a str,
    value: &'a RawValue,
}

/// `graphNode` as the HTTP route makes it up: the node id, its uid and its parameters.
#[derive(serde::Serialize)]
struct GraphNode<'a> {
    id: &'a Value,
    uid: &'a str,
    parameters: &'a RawValue,
}

/// Validates the execute body, saying exactly what is wrong.
///
/// The body is read twice without building a `Value` tree: once to check
/// it is JSON (numbers in range, nesting bounded), once for the fields,
/// borrowing `inputs` and `parameters` as written.
fn parse_execute(uid: &str, body: &[u8]) -> Result<(ExecutionRequest, Value), ApiError> {
    let body: &[u8] = if body.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        body
    };
    serde_json::from_slice::<CheckedJson>(body)
        .map_err(|e| ApiError::bad_request(format!("the body is not valid JSON: {e}")))?;
    if body.trim_ascii_start().first() != Some(&b'{') {
        return Err(ApiError::bad_request("the body must be a JSON object"));
    }
    let fields: ExecuteFields<'_> = serde_json::from_slice(body).map_err(|e| {
        let message = e.to_string();
        // "unknown field `x`, expected one of …" / "duplicate field `x`"
        ApiError::bad_request(message.split(" at line ").next().unwrap_or(&message).to_owned())
    })?;
    let inputs = match fields.inputs {
        None => "{}".to_owned(),
        Some(raw) if raw.get().starts_with('{') => raw.get().to_owned(),
        Some(_) => {
            return Err(ApiError::bad_request(
                "`inputs` must be an object mapping input names to values",
            ));
        }
    };
    // Kept as a `RawValue` so `graphNode` embeds it without parsing it again.
    let parameters: Box<RawValue> = match fields.parameters.map(|raw| (raw, raw.get().as_bytes()[0])) {
        None => RawValue::from_string("[]".to_owned()).expect("`[]` is JSON"),
        Some((raw, b'{')) => {
            // `{name: value}`: the protocol's list, in name order.
            let map: std::collections::BTreeMap<std::borrow::Cow<'_, str>, &RawValue> =
                serde_json::from_str(raw.get()).map_err(|e| ApiError::bad_request(format!("`parameters`: {e}")))?;
            let list: Vec<Parameter<'_>> = map.iter().map(|(name, value)| Parameter { name, value }).collect();
            serde_json::value::to_raw_value(&list).expect("parameters serialise")
        }
        Some((raw, b'[')) => {
            if serde_json::from_str::<Vec<NamedParameter<'_>>>(raw.get()).is_err() {
                return Err(ApiError::bad_request(
                    "`parameters` as a list must hold objects with a string `name` (and a `value`)",
                ));
            }
            raw.to_owned()
        }
        Some(_) => {
            return Err(ApiError::bad_request(
                "`parameters` must be a list of {name, value} objects or an object of name -> value",
            ));
        }
    };
    let instance_id = match fields.instance_id {
        None | Some(Value::Null) => format!("http-{}", uuid::Uuid::new_v4()),
        Some(Value::String(id)) if !id.is_empty() => id,
        Some(_) => return Err(ApiError::bad_request("`instanceId` must be a non-empty string")),
    };
    let node_id = match fields.node_id {
        None | Some(Value::Null) => json!(0),
        Some(id @ (Value::Number(_) | Value::String(_))) => id,
        Some(_) => return Err(ApiError::bad_request("`nodeId` must be a number or a string")),
    };
    let graph_node = serde_json::to_string(&GraphNode {
        id: &node_id,
        uid,
        parameters: &parameters,
    })
    .expect("graphNode serialises");
    Ok((
        ExecutionRequest {
            instance_id,
            node_uid: uid.to_owned(),
            inputs,
            parameters: String::from(Box::<str>::from(parameters)),
            graph_node,
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
        // The list goes to the node as written.
        let (request, _) = parse_execute("n", br#"{"parameters": [{"name": "a", "value": 1}]}"#).unwrap();
        assert_eq!(request.parameters, r#"[{"name": "a", "value": 1}]"#);
        let graph_node: Value = serde_json::from_str(&request.graph_node).unwrap();
        assert_eq!(
            graph_node,
            json!({"id": 0, "uid": "n", "parameters": [{"name": "a", "value": 1}]})
        );
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
            (br#"{"inputs": {}, "inputs": {}}"#, "duplicate field `inputs`"),
            (br#"{"inputs": {"a": 1e999}}"#, "number out of range"),
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
