//! The body of `POST /nodes/{uid}/execute`, decoded into the
//! [`ExecutionRequest`] the WebSocket produces too (through
//! [`protocol::execution_request`]), with a 400 that says what is wrong.

use std::{borrow::Cow, collections::BTreeMap};

use serde_json::{Value, json, value::RawValue};

use super::ApiError;
use crate::{execution::ExecutionRequest, protocol};

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
    name: Cow<'a, str>,
}

/// One `{name, value}` object of the protocol's parameter list, made from
/// the `{name: value}` form.
#[derive(serde::Serialize)]
struct ParameterEntry<'a> {
    name: &'a str,
    value: &'a RawValue,
}

/// `graphNode` as the HTTP route makes it up: the node id, its uid and its
/// parameters (over WebSocket the orchestrator sends its own).
#[derive(serde::Serialize)]
struct MadeUpGraphNode<'a> {
    id: &'a Value,
    uid: &'a str,
    parameters: &'a RawValue,
}

/// Decodes the execute body, saying exactly what is wrong; also returns
/// the node id (`0` when absent) the event stream echoes.
///
/// No `Value` tree is built for `inputs` or `parameters`: they are borrowed
/// as written and checked (numbers in range, nesting bounded) by
/// [`protocol::execution_request`].
pub(super) fn decode_execute_body(uid: &str, body: &[u8]) -> Result<(ExecutionRequest, Value), ApiError> {
    let body: &[u8] = if body.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        body
    };
    let not_json = |e: serde_json::Error| ApiError::bad_request(format!("the body is not valid JSON: {e}"));
    if body.trim_ascii_start().first() != Some(&b'{') {
        // (serde would take a list for the struct's fields.)
        return Err(match std::str::from_utf8(body).map(protocol::check_json) {
            Ok(Err(e)) => not_json(e),
            _ => ApiError::bad_request("the body must be a JSON object"),
        });
    }
    let fields: ExecuteFields<'_> = serde_json::from_slice(body).map_err(|e| {
        if e.is_syntax() || e.is_eof() {
            return not_json(e);
        }
        let message = e.to_string();
        // "unknown field `x`, expected one of …" / "duplicate field `x`"
        ApiError::bad_request(message.split(" at line ").next().unwrap_or(&message).to_owned())
    })?;
    // Kept as a `RawValue` so `graphNode` embeds it without parsing it again.
    let parameters: Box<RawValue> = match fields.parameters.map(|raw| (raw, raw.get().as_bytes()[0])) {
        None => RawValue::from_string("[]".to_owned()).expect("`[]` is JSON"),
        Some((raw, b'{')) => {
            // `{name: value}`: the protocol's list, in name order.
            let map: BTreeMap<Cow<'_, str>, &RawValue> =
                serde_json::from_str(raw.get()).map_err(|e| ApiError::bad_request(format!("`parameters`: {e}")))?;
            let list: Vec<ParameterEntry<'_>> =
                map.iter().map(|(name, value)| ParameterEntry { name, value }).collect();
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
    let graph_node = serde_json::to_string(&MadeUpGraphNode {
        id: &node_id,
        uid,
        parameters: &parameters,
    })
    .expect("graphNode serialises");
    let request = protocol::execution_request(
        instance_id,
        uid.to_owned(),
        fields.inputs,
        Some(&parameters),
        graph_node,
    )
    .map_err(ApiError::bad_request)?;
    Ok((request, node_id))
}

#[cfg(test)]
mod tests {
    use axum::http::StatusCode;

    use super::*;

    #[test]
    fn parameters_may_be_an_object_or_the_protocol_list() {
        let (request, _) = decode_execute_body("n", br#"{"parameters": {"a": 1}}"#).unwrap();
        assert_eq!(request.parameters, r#"[{"name":"a","value":1}]"#);
        // The list goes to the node as written.
        let (request, _) = decode_execute_body("n", br#"{"parameters": [{"name": "a", "value": 1}]}"#).unwrap();
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
            (br#"{"parameters": {"a": 1e999}}"#, "number out of range"),
        ] {
            let err = decode_execute_body("n", body).unwrap_err();
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
        let (request, node_id) = decode_execute_body("n", b"").unwrap();
        assert_eq!(request.inputs, "{}");
        assert!(request.instance_id.starts_with("http-"));
        assert_eq!(node_id, json!(0));
    }
}
