//! Fuzzes the decoding of client frames, the first thing every WebSocket
//! message meets: any input is a message or a reason, never a panic, and
//! an accepted `request_execution` carries syntactically valid JSON parts
//! of the right kind (what the executor and the plugin parse again).
//!
//! Found on the first run: a number beyond f64's range (`23e33333`) is
//! valid JSON, and the decoder then checked syntax only, so the plugin's
//! parse failed after `running` had gone out. The decoder now checks
//! `inputs` and `graphNode` as `serde_json::Value` would parse them (numbers
//! in range, nesting bounded), so the invariant here is that they parse.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nano_server::protocol::{ClientMessage, decode};
use serde::de::IgnoredAny;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match decode(text) {
        Ok(ClientMessage::RequestExecution { request, node_id }) => {
            let valid = |json: &str| serde_json::from_str::<IgnoredAny>(json).is_ok();
            let parses = |json: &str| serde_json::from_str::<serde_json::Value>(json).is_ok();
            assert!(request.inputs.starts_with('{') && parses(&request.inputs));
            assert!(request.parameters.starts_with('[') && valid(&request.parameters));
            assert!(parses(&request.graph_node));
            assert!(valid(node_id.get()));
        }
        Ok(ClientMessage::InvalidExecution { reason, .. }) => assert!(!reason.is_empty()),
        Ok(ClientMessage::StopWorkflowInstance { .. }) | Err(_) => {}
    }
});
