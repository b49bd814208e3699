//! The Nano protocol as the load generators speak it: the `simple-text`
//! execution request (`uppercase = true`) for execution `n`, the final
//! status that answers it, and whether that answer is right.
//!
//! Shared by the closed-loop generator (`load.rs`) and the open-loop
//! overload scenario (`overload.rs`), so both send and check the same frames.

use hdrhistogram::Histogram;
use serde::Deserialize;

/// The input of execution `n` and the output a correct server returns.
pub fn text_of(n: u64) -> (String, String) {
    let text = format!("text number {n}");
    let upper = text.to_uppercase();
    (text, upper)
}

/// `request_execution` of `simple-text` (`uppercase = true`) for execution
/// `node_id` of `instance`.
pub fn request_frame(instance: &str, node_id: u64) -> String {
    let (text, _) = text_of(node_id);
    format!(
        r#"{{"type":"request_execution","instanceId":"{instance}","payload":{{"nodeId":{node_id},"nodeUid":"simple-text","inputs":{{"text":["{text}"]}},"graphNode":{{"id":{node_id},"parameters":[{{"name":"uppercase","value":true}}]}}}}}}"#
    )
}

/// The body of `POST /nodes/simple-text/execute` for execution `n`.
pub fn http_body(n: u64) -> String {
    let (text, _) = text_of(n);
    format!(r#"{{"inputs":{{"text":["{text}"]}},"parameters":{{"uppercase":true}}}}"#)
}

#[derive(Deserialize)]
struct Frame<'a> {
    #[serde(rename = "type", borrow)]
    kind: &'a str,
    #[serde(default)]
    payload: Option<Payload>,
}

#[derive(Deserialize)]
struct Payload {
    #[serde(rename = "nodeId")]
    node_id: Option<u64>,
    status: Option<StatusFrame>,
}

#[derive(Deserialize)]
struct StatusFrame {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    outputs: Option<TextOutputs>,
    #[serde(default)]
    message: Option<String>,
}

/// The outputs of a `simple-text` answer.
#[derive(Deserialize)]
pub struct TextOutputs {
    text: Option<Vec<String>>,
}

/// A final status (`complete` or `error`) of one execution.
pub struct Final {
    pub node_id: u64,
    /// `complete` or `error`.
    pub kind: String,
    pub message: Option<String>,
    outputs: Option<TextOutputs>,
}

impl Final {
    /// Whether this is the right answer to its execution.
    pub fn is_right(&self) -> bool {
        is_right(self.node_id, &self.kind, self.outputs.as_ref())
    }

    pub fn is_complete(&self) -> bool {
        self.kind == "complete"
    }
}

/// The final status a WebSocket text frame carries, if it carries one
/// (`node_status` with `complete` or `error` and a node id); `Err` when the
/// frame is not JSON of the expected shape.
pub fn final_status(text: &str) -> Result<Option<Final>, serde_json::Error> {
    let frame: Frame = serde_json::from_str(text)?;
    if frame.kind != "node_status" {
        return Ok(None);
    }
    let Some(Payload {
        node_id: Some(node_id),
        status: Some(status),
    }) = frame.payload
    else {
        return Ok(None);
    };
    if status.kind != "complete" && status.kind != "error" {
        return Ok(None);
    }
    Ok(Some(Final {
        node_id,
        kind: status.kind,
        message: status.message,
        outputs: status.outputs,
    }))
}

/// False for a frame that cannot carry a final status: one without the
/// string `"complete"` or `"error"` (the status's type) anywhere, such as a
/// `running` status. Lets a reader that must keep up skip the JSON parsing
/// of those; what it lets through still goes to [`final_status`].
pub fn may_be_final(text: &str) -> bool {
    text.contains("\"complete\"") || text.contains("\"error\"")
}

/// Whether a final status is the right answer to execution `n`.
pub fn is_right(n: u64, kind: &str, outputs: Option<&TextOutputs>) -> bool {
    let (_, upper) = text_of(n);
    kind == "complete" && outputs.and_then(|o| o.text.as_deref()) == Some(std::slice::from_ref(&upper))
}

/// A latency histogram in microseconds: 1 µs to 60 s, 3 significant digits.
pub fn histogram() -> Histogram<u64> {
    histogram_up_to(60)
}

/// A latency histogram in microseconds: 1 µs to `seconds`, 3 significant digits.
pub fn histogram_up_to(seconds: u64) -> Histogram<u64> {
    Histogram::new_with_bounds(1, seconds.max(1) * 1_000_000, 3).expect("valid histogram bounds")
}
