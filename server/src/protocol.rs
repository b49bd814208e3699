//! The Nano wire protocol: every JSON the server reads from a client or
//! writes to one. Client frames and execute bodies in (one constructor makes
//! an [`ExecutionRequest`] for both transports), server frames, `node_status`
//! payloads and Server-Sent Event data out. `docs/PROTOCOL.md` describes it.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::{
    config::Identity,
    execution::{ExecutionRequest, Status},
    registry::Snapshot,
};

/// A frame from the client that the server acts on.
#[derive(Debug)]
pub enum ClientMessage {
    RequestExecution {
        node_id: Box<RawValue>,
        request: ExecutionRequest,
    },
    /// A request_execution that names its execution but is otherwise wrong:
    /// the caller gets an `error` status saying why.
    InvalidExecution {
        instance_id: String,
        node_id: Box<RawValue>,
        reason: String,
    },
    StopWorkflowInstance {
        instance_id: String,
    },
}

/// Why a frame was ignored.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FrameError {
    #[error("not a JSON object: {0}")]
    NotJson(String),
    #[error("no `type` field")]
    NoType,
    #[error("unknown message type `{0}`")]
    UnknownType(String),
    #[error("`{kind}` frame without a valid `{field}`")]
    MissingField { kind: &'static str, field: &'static str },
}

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(rename = "type", borrow)]
    kind: Option<Cow<'a, str>>,
    #[serde(rename = "instanceId", borrow)]
    instance_id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    payload: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct ExecutionPayload<'a> {
    #[serde(rename = "nodeId", borrow)]
    node_id: Option<&'a RawValue>,
    #[serde(rename = "nodeUid", borrow)]
    node_uid: Option<Cow<'a, str>>,
    #[serde(rename = "graphNode", borrow)]
    graph_node: Option<&'a RawValue>,
    #[serde(borrow)]
    inputs: Option<&'a RawValue>,
}

/// The part of a request's `graphNode` the server reads.
#[derive(Deserialize)]
struct GraphNodeParameters<'a> {
    #[serde(borrow)]
    parameters: Option<&'a RawValue>,
}

/// Decodes one text frame.
pub fn decode(text: &str) -> Result<ClientMessage, FrameError> {
    let envelope: Envelope<'_> = serde_json::from_str(text).map_err(|e| FrameError::NotJson(e.to_string()))?;
    let kind = envelope.kind.ok_or(FrameError::NoType)?;
    match kind.as_ref() {
        "request_execution" => decode_execution(envelope.instance_id, envelope.payload),
        "stop_workflow_instance" => Ok(ClientMessage::StopWorkflowInstance {
            instance_id: envelope
                .instance_id
                .ok_or(FrameError::MissingField {
                    kind: "stop_workflow_instance",
                    field: "instanceId",
                })?
                .into_owned(),
        }),
        other => Err(FrameError::UnknownType(other.chars().take(64).collect())),
    }
}

fn decode_execution(
    instance_id: Option<Cow<'_, str>>,
    payload: Option<&RawValue>,
) -> Result<ClientMessage, FrameError> {
    let missing = |field| FrameError::MissingField {
        kind: "request_execution",
        field,
    };
    let instance_id = instance_id.ok_or(missing("instanceId"))?.into_owned();
    let payload: ExecutionPayload<'_> = payload
        .and_then(|raw| serde_json::from_str(raw.get()).ok())
        .ok_or(missing("payload"))?;
    let node_id = payload
        .node_id
        .filter(|id| matches!(id.get().as_bytes().first(), Some(b'0'..=b'9' | b'-' | b'"')))
        .ok_or(missing("payload.nodeId"))?
        .to_owned();
    let node_uid = payload.node_uid.ok_or(missing("payload.nodeUid"))?.into_owned();

    let invalid = |reason: &str| ClientMessage::InvalidExecution {
        instance_id: instance_id.clone(),
        node_id: node_id.clone(),
        reason: reason.to_owned(),
    };
    let (graph_node, parameters) = match payload.graph_node.map(RawValue::get) {
        None | Some("null") => ("null", None),
        Some(obj) if obj.starts_with('{') => {
            let Ok(graph) = serde_json::from_str::<GraphNodeParameters<'_>>(obj) else {
                return Ok(invalid("`graphNode` is not a valid object"));
            };
            match graph.parameters.map(RawValue::get) {
                None | Some("null") => (obj, None),
                Some(list) if list.starts_with('[') => (obj, graph.parameters),
                Some(_) => return Ok(invalid("`graphNode.parameters` must be a list")),
            }
        }
        Some(_) => return Ok(invalid("`graphNode` must be an object")),
    };
    match execution_request(
        instance_id.clone(),
        node_uid,
        payload.inputs,
        parameters,
        graph_node.to_owned(),
    ) {
        Ok(request) => Ok(ClientMessage::RequestExecution { node_id, request }),
        Err(reason) => Ok(invalid(&reason)),
    }
}

/// Makes the request both transports run, checking what the node will
/// parse: `inputs` an object, `parameters` a list, and `inputs` and
/// `graph_node` (which holds the parameters) free of nesting beyond
/// serde_json's recursion limit and of numbers beyond f64's range, so such a
/// request is refused before anything runs. `None` inputs or parameters
/// mean none given.
pub(crate) fn execution_request(
    instance_id: String,
    node_uid: String,
    inputs: Option<&RawValue>,
    parameters: Option<&RawValue>,
    graph_node: String,
) -> Result<ExecutionRequest, String> {
    let inputs = match inputs.map(RawValue::get) {
        None | Some("null") => "{}",
        Some(obj) if obj.starts_with('{') => obj,
        Some(_) => return Err("`inputs` must be an object mapping input names to values".to_owned()),
    };
    let parameters = match parameters.map(RawValue::get) {
        None | Some("null") => "[]",
        Some(list) if list.starts_with('[') => list,
        Some(_) => return Err("`parameters` must be a list of {name, value} objects".to_owned()),
    };
    check_json(inputs).map_err(|e| format!("`inputs`: {e}"))?;
    check_json(&graph_node).map_err(|e| format!("`graphNode`: {e}"))?;
    Ok(ExecutionRequest {
        instance_id,
        node_uid,
        inputs: inputs.to_owned(),
        parameters: parameters.to_owned(),
        graph_node,
    })
}

/// Checks JSON text as `serde_json::Value` would parse it (numbers in
/// range, nesting bounded) without allocating anything.
pub(crate) fn check_json(json: &str) -> Result<(), serde_json::Error> {
    serde_json::from_str::<CheckedJson>(json).map(drop)
}

/// The `GET /` status document.
pub fn status_document(identity: &Identity, snapshot: &Snapshot) -> serde_json::Value {
    serde_json::json!({
        "message": "Nano node server is running",
        "domain": identity.domain,
        "serverName": identity.server_name,
        "serverDisplayName": identity.server_name,
        "serverUid": identity.server_uid,
        "serverPackageId": identity.server_package_id,
        "nanocoreHttpEndpoint": identity.nanocore_http_endpoint,
        "loadedNodes": snapshot.uids.len(),
        "nodeUIDs": snapshot.uids,
    })
}

#[derive(Serialize)]
struct ServerFrame<'a, P: Serialize> {
    #[serde(rename = "type")]
    kind: &'a str,
    #[serde(rename = "serverUid")]
    server_uid: &'a str,
    #[serde(rename = "serverPackageId", skip_serializing_if = "Option::is_none")]
    server_package_id: Option<&'a str>,
    #[serde(rename = "instanceId", skip_serializing_if = "Option::is_none")]
    instance_id: Option<&'a str>,
    payload: P,
}

fn encode<P: Serialize>(frame: &ServerFrame<'_, P>) -> String {
    serde_json::to_string(frame).expect("server frames always serialise")
}

/// The first frame on every WebSocket.
pub fn handshake(identity: &Identity, snapshot: &Snapshot) -> String {
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Payload<'a> {
        domain: &'a str,
        name: &'a str,
        server_display_name: &'a str,
        server_uid: &'a str,
        server_package_id: &'a str,
        nanocore_http_endpoint: &'a str,
        node_definitions: &'a RawValue,
    }
    encode(&ServerFrame {
        kind: "handshake",
        server_uid: &identity.server_uid,
        server_package_id: Some(&identity.server_package_id),
        instance_id: None,
        payload: Payload {
            domain: &identity.domain,
            name: &identity.server_name,
            server_display_name: &identity.server_name,
            server_uid: &identity.server_uid,
            server_package_id: &identity.server_package_id,
            nanocore_http_endpoint: &identity.nanocore_http_endpoint,
            node_definitions: &snapshot.definitions,
        },
    })
}

/// The full definition list, after the served set changed.
pub fn definitions_update(identity: &Identity, snapshot: &Snapshot) -> String {
    #[derive(Serialize)]
    struct Payload<'a> {
        #[serde(rename = "nodeDefinitions")]
        node_definitions: &'a RawValue,
    }
    encode(&ServerFrame {
        kind: "definitions_update",
        server_uid: &identity.server_uid,
        server_package_id: Some(&identity.server_package_id),
        instance_id: None,
        payload: Payload {
            node_definitions: &snapshot.definitions,
        },
    })
}

/// The reply to `stop_workflow_instance`.
pub fn ack_stop(identity: &Identity, instance_id: &str, aborted: usize) -> String {
    #[derive(Serialize)]
    struct Payload {
        success: bool,
        message: String,
    }
    encode(&ServerFrame {
        kind: "ack_stop_workflow",
        server_uid: &identity.server_uid,
        server_package_id: None,
        instance_id: Some(instance_id),
        payload: Payload {
            success: true,
            message: format!("Aborted {aborted} active node(s) for instance {instance_id}"),
        },
    })
}

/// The start of every `node_status` frame of one execution, up to the
/// status object; computed once per execution.
pub fn node_status_prefix(identity: &Identity, instance_id: &str, node_id: &RawValue) -> String {
    let quote = |s: &str| serde_json::to_string(s).expect("strings always serialise");
    format!(
        r#"{{"type":"node_status","serverUid":{},"instanceId":{},"payload":{{"nodeId":{},"status":"#,
        quote(&identity.server_uid),
        quote(instance_id),
        node_id.get()
    )
}

/// A complete `node_status` frame.
pub(crate) fn node_status(prefix: &str, status: &Status) -> String {
    let status = status_object(status);
    let mut frame = String::with_capacity(prefix.len() + status.len() + 2);
    frame.push_str(prefix);
    frame.push_str(&status);
    frame.push_str("}}");
    frame
}

/// The NodeStatus object of a status, as JSON. The fixed messages are the
/// Python SDK's, so orchestrators see the same.
pub(crate) fn status_object(status: &Status) -> Cow<'_, str> {
    match status {
        Status::Running => Cow::Borrowed(r#"{"type":"running","message":"Starting execution..."}"#),
        Status::Update(_, json) => Cow::Borrowed(json),
        Status::Complete(outputs, None) => Cow::Owned(format!(
            r#"{{"type":"complete","message":"Execution finished.","outputs":{}}}"#,
            outputs.get()
        )),
        Status::Complete(outputs, Some(message)) => Cow::Owned(format!(
            r#"{{"type":"complete","message":{},"outputs":{}}}"#,
            serde_json::Value::from(&**message),
            outputs.get()
        )),
        Status::Error(_, message) => Cow::Owned(serde_json::json!({"type": "error", "message": message}).to_string()),
    }
}

/// The `data` of one Server-Sent Event of `POST /nodes/{uid}/execute`:
/// `{"instanceId", "nodeId", "status"}`; the event's name is `status.kind()`.
pub(crate) fn sse_data(instance_id: &str, node_id: &serde_json::Value, status: &Status) -> String {
    format!(
        r#"{{"instanceId":{},"nodeId":{node_id},"status":{}}}"#,
        serde_json::Value::from(instance_id),
        status_object(status)
    )
}

/// The error for a uid nobody serves (the Python SDK's wording, which
/// orchestrators may match on).
pub(crate) fn unknown_node_message(uid: &str) -> String {
    format!("Node definition not found: {uid}")
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

#[cfg(test)]
mod tests {
    use super::*;

    fn expect_ignored(text: &str) -> FrameError {
        match decode(text) {
            Err(err) => err,
            Ok(msg) => panic!("{text} decoded as {msg:?}"),
        }
    }

    #[test]
    fn malformed_frames_are_rejected_with_a_reason() {
        assert!(matches!(expect_ignored("hello"), FrameError::NotJson(_)));
        assert!(matches!(expect_ignored("[1,2]"), FrameError::NotJson(_)));
        assert_eq!(expect_ignored("{}"), FrameError::NoType);
        assert_eq!(
            expect_ignored(r#"{"type":"dance"}"#),
            FrameError::UnknownType("dance".into())
        );
        assert!(matches!(expect_ignored(r#"{"type":7}"#), FrameError::NotJson(_)));
        for frame in [
            r#"{"type":"request_execution","payload":{"nodeId":1,"nodeUid":"x"}}"#,
            r#"{"type":"request_execution","instanceId":"i"}"#,
            r#"{"type":"request_execution","instanceId":"i","payload":{"nodeUid":"x"}}"#,
            r#"{"type":"request_execution","instanceId":"i","payload":{"nodeId":{},"nodeUid":"x"}}"#,
            r#"{"type":"request_execution","instanceId":"i","payload":{"nodeId":1}}"#,
            r#"{"type":"stop_workflow_instance"}"#,
        ] {
            assert!(
                matches!(expect_ignored(frame), FrameError::MissingField { .. }),
                "{frame}"
            );
        }
    }

    #[test]
    fn request_execution_takes_parameters_from_the_graph_node() {
        let frame = r#"{"type":"request_execution","instanceId":"i","payload":{"nodeId":12,"nodeUid":"n",
            "graphNode":{"id":12,"parameters":[{"name":"p","value":1}],"x":0},"inputs":{"a":[1]}}}"#;
        let Ok(ClientMessage::RequestExecution { node_id, request }) = decode(frame) else {
            panic!("not decoded");
        };
        assert_eq!(node_id.get(), "12");
        assert_eq!(request.parameters, r#"[{"name":"p","value":1}]"#);
        assert_eq!(request.inputs, r#"{"a":[1]}"#);
        assert!(request.graph_node.contains(r#""x":0"#));
    }

    #[test]
    fn addressable_but_wrong_requests_get_a_reason() {
        let frame =
            r#"{"type":"request_execution","instanceId":"i","payload":{"nodeId":"n1","nodeUid":"n","inputs":[1]}}"#;
        let Ok(ClientMessage::InvalidExecution { node_id, reason, .. }) = decode(frame) else {
            panic!("expected InvalidExecution");
        };
        assert_eq!(node_id.get(), r#""n1""#);
        assert!(reason.contains("inputs"));
    }

    #[test]
    fn node_status_frame_is_valid_json() {
        let identity = Identity {
            domain: "d".into(),
            server_name: "n".into(),
            server_uid: "s\"q".into(),
            server_package_id: "p".into(),
            nanocore_http_endpoint: String::new(),
        };
        let id = RawValue::from_string("7".into()).unwrap();
        let frame = node_status(&node_status_prefix(&identity, "inst", &id), &Status::Running);
        let v: serde_json::Value = serde_json::from_str(&frame).unwrap();
        assert_eq!(v["payload"]["nodeId"], 7);
        assert_eq!(v["serverUid"], "s\"q");
        assert_eq!(v["payload"]["status"]["type"], "running");
    }

    #[test]
    fn nesting_and_huge_numbers_are_refused_before_anything_runs() {
        let deep = format!("{}1{}", "[".repeat(5_000), "]".repeat(5_000));
        for (inputs, needle) in [
            (format!(r#"{{"a":{deep}}}"#), "recursion limit exceeded"),
            (r#"{"a":23e33333}"#.to_owned(), "number out of range"),
        ] {
            let frame = format!(
                r#"{{"type":"request_execution","instanceId":"i","payload":{{"nodeId":1,"nodeUid":"n","inputs":{inputs}}}}}"#
            );
            let Ok(ClientMessage::InvalidExecution { reason, .. }) = decode(&frame) else {
                panic!("expected InvalidExecution for {needle}");
            };
            assert!(reason.contains(needle), "{reason}");
        }
        let graph = r#"{"type":"request_execution","instanceId":"i","payload":{"nodeId":1,"nodeUid":"n","graphNode":{"parameters":[{"name":"p","value":1e999}]}}}"#;
        assert!(matches!(decode(graph), Ok(ClientMessage::InvalidExecution { .. })));
    }
}

#[cfg(test)]
mod properties {
    use proptest::prelude::*;
    use serde_json::{Value, json};

    use super::*;

    /// Any JSON value, nested a few levels.
    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(Value::from),
            ".{0,12}".prop_map(Value::from),
        ];
        leaf.prop_recursive(4, 32, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::from),
                prop::collection::hash_map("[a-zA-Z]{1,8}", inner, 0..6)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        /// Arbitrary text never panics the decoder: it is a message or a reason.
        #[test]
        fn decoding_arbitrary_text_never_panics(text in ".{0,200}") {
            let _ = decode(&text);
        }

        /// Arbitrary JSON shaped like a frame never panics, and whatever is
        /// accepted carries what it was given.
        #[test]
        fn decoding_frame_shaped_json_never_panics(
            kind in prop_oneof![Just("request_execution"), Just("stop_workflow_instance"), Just("other")],
            instance in proptest::option::of(json_value()),
            payload in proptest::option::of(json_value()),
        ) {
            let mut frame = json!({"type": kind});
            if let Some(instance) = instance { frame["instanceId"] = instance; }
            if let Some(payload) = payload { frame["payload"] = payload; }
            if let Ok(ClientMessage::RequestExecution { request, .. }) = decode(&frame.to_string()) {
                prop_assert_eq!(Some(request.instance_id.as_str()), frame["instanceId"].as_str());
                prop_assert!(serde_json::from_str::<serde_json::Map<String, Value>>(&request.inputs).is_ok());
                prop_assert!(serde_json::from_str::<Vec<Value>>(&request.parameters).is_ok());
            }
        }

        /// A well-formed request always decodes to the same execution.
        #[test]
        fn well_formed_requests_round_trip(
            instance in "[a-z0-9-]{1,20}",
            node_id in any::<u32>(),
            uid in "[a-z-]{1,20}",
            inputs in prop::collection::hash_map("[a-z]{1,6}", json_value(), 0..4),
        ) {
            let inputs = Value::Object(inputs.into_iter().collect());
            let frame = json!({"type": "request_execution", "instanceId": instance,
                "payload": {"nodeId": node_id, "nodeUid": uid, "inputs": inputs,
                            "graphNode": {"id": node_id, "parameters": [{"name": "p", "value": 1}]}}});
            match decode(&frame.to_string()) {
                Ok(ClientMessage::RequestExecution { node_id: id, request }) => {
                    prop_assert_eq!(id.get(), node_id.to_string());
                    prop_assert_eq!(&request.instance_id, &instance);
                    prop_assert_eq!(&request.node_uid, &uid);
                    prop_assert_eq!(serde_json::from_str::<Value>(&request.inputs).unwrap(), inputs);
                }
                other => prop_assert!(false, "not decoded: {:?}", other),
            }
        }
    }
}
