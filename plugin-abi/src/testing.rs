//! Run a node in a unit test, without a server.
//!
//! ```
//! use nano_plugin_abi::{prelude::*, testing};
//! use serde_json::json;
//!
//! struct Echo;
//! impl Node for Echo {
//!     fn definition(&self) -> NodeDefinition {
//!         NodeDefinition::new("echo", "Echo").parameter(Parameter::boolean("loud", false))
//!     }
//!     fn execute(&self, ctx: &Context) -> NodeResult {
//!         ctx.running("echoing");
//!         let text: String = ctx.input("text")?;
//!         let loud: bool = ctx.param("loud")?;
//!         Ok(Outputs::new().with("text", if loud { text.to_uppercase() } else { text }))
//!     }
//! }
//!
//! let run = testing::run(&Echo, json!({"text": ["hi"]}), json!({"loud": true}));
//! assert_eq!(run.outputs().unwrap().get("text"), Some(&json!(["HI"])));
//! assert_eq!(run.statuses[0]["message"], "echoing");
//! ```

use std::{
    panic::{AssertUnwindSafe, catch_unwind},
    sync::{
        Mutex,
        atomic::{AtomicBool, Ordering},
    },
};

use serde_json::{Value, json};

use crate::{
    Node,
    context::{Context, Host, NodeResult},
    export::panic_message,
};

/// What a test run of a node produced.
#[derive(Debug)]
pub struct TestRun {
    /// What `execute` returned (a panic becomes an error, as in the server).
    pub result: NodeResult,
    /// Every status the node sent, in order.
    pub statuses: Vec<Value>,
}

impl TestRun {
    /// The outputs, panicking with the node's error if it failed.
    pub fn outputs(&self) -> Result<&crate::Outputs, &crate::NodeError> {
        self.result.as_ref()
    }
}

/// Runs `node` with `inputs` (a JSON object) and `params` (an object
/// `{"name": value}` or the protocol's list of parameter objects).
pub fn run(node: &dyn Node, inputs: Value, params: Value) -> TestRun {
    run_with_abort(node, inputs, params, false)
}

/// Like [`run`], with the abort flag already set.
pub fn run_aborted(node: &dyn Node, inputs: Value, params: Value) -> TestRun {
    run_with_abort(node, inputs, params, true)
}

fn run_with_abort(node: &dyn Node, inputs: Value, params: Value, aborted: bool) -> TestRun {
    let parameters = match params {
        Value::Object(map) => Value::Array(
            map.into_iter()
                .map(|(name, value)| json!({"name": name, "value": value}))
                .collect(),
        ),
        other => other,
    };
    let host = Collector {
        statuses: Mutex::new(Vec::new()),
        aborted: AtomicBool::new(aborted),
    };
    let definition = node.definition();
    let result = catch_unwind(AssertUnwindSafe(|| {
        let ctx = Context::new(
            &definition,
            "test-instance",
            &inputs.to_string(),
            &parameters.to_string(),
            "null",
            &host,
        )?;
        node.execute(&ctx)
    }))
    .unwrap_or_else(|payload| Err(format!("node panicked: {}", panic_message(&*payload)).into()));
    TestRun {
        result,
        statuses: host.statuses.into_inner().unwrap_or_default(),
    }
}

/// Runs `node` the way the export glue does (JSON text in, JSON text out),
/// as a plain Rust call: everything but the boundary crossing. The baseline
/// of the ABI micro-benchmark; statuses the node sends are dropped.
pub fn execute_json(
    node: &dyn Node,
    definition: &crate::NodeDefinition,
    inputs: &str,
    parameters: &str,
) -> Result<String, crate::NodeError> {
    let ctx = Context::new(definition, "bench-instance", inputs, parameters, "null", &Discard)?;
    node.execute(&ctx)?.to_json()
}

struct Discard;

impl Host for Discard {
    fn send_status(&self, _status_json: &str) {}

    fn is_aborted(&self) -> bool {
        false
    }
}

struct Collector {
    statuses: Mutex<Vec<Value>>,
    aborted: AtomicBool,
}

impl Host for Collector {
    fn send_status(&self, status_json: &str) {
        if let (Ok(mut statuses), Ok(status)) = (self.statuses.lock(), serde_json::from_str(status_json)) {
            statuses.push(status);
        }
    }

    fn is_aborted(&self) -> bool {
        self.aborted.load(Ordering::SeqCst)
    }
}
