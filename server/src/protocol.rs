//! The Nano wire protocol: decoding client frames, encoding server frames.
//! See PROTOCOL.md of the project (`GET /` and the WebSocket on `/`).

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::{config::Identity, execution::ExecutionRequest, registry::Snapshot};

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

#[derive(Deserialize)]
struct GraphNode<'a> {
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
    let inputs = match payload.inputs.map(RawValue::get) {
        None | Some("null") => "{}",
        Some(obj) if obj.starts_with('{') => obj,
        Some(_) => {
            return Ok(invalid("`inputs` must be an object mapping input names to values"));
        }
    };
    let (graph_node, parameters) = match payload.graph_node.map(RawValue::get) {
        None | Some("null") => ("null", "[]"),
        Some(obj) if obj.starts_with('{') => {
            let Ok(graph) = serde_json::from_str::<GraphNode<'_>>(obj) else {
                return Ok(invalid("`graphNode` is not a valid object"));
            };
            match graph.parameters.map(RawValue::get) {
                None | Some("null") => (obj, "[]"),
                Some(list) if list.starts_with('[') => (obj, list),
                Some(_) => return Ok(invalid("`graphNode.parameters` must be a list")),
            }
        }
        Some(_) => return Ok(invalid("`graphNode` must be an object")),
    };
    Ok(ClientMessage::RequestExecution {
        node_id,
        request: ExecutionRequest {
            instance_id,
            node_uid,
            inputs: inputs.to_owned(),
            parameters: parameters.to_owned(),
            graph_node: graph_node.to_owned(),
        },
    })
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
pub fn node_status(prefix: &str, status_json: &str) -> String {
    let mut frame = String::with_capacity(prefix.len() + status_json.len() + 2);
    frame.push_str(prefix);
    frame.push_str(status_json);
    frame.push_str("}}");
    frame
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
        let frame = node_status(&node_status_prefix(&identity, "inst", &id), r#"{"type":"running"}"#);
        let v: serde_json::Value = serde_json::from_str(&frame).unwrap();
        assert_eq!(v["payload"]["nodeId"], 7);
        assert_eq!(v["serverUid"], "s\"q");
        assert_eq!(v["payload"]["status"]["type"], "running");
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
