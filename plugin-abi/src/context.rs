//! What a node sees while it runs: typed inputs and parameters, status
//! helpers, the abort flag; and what it gives back: [`Outputs`] or a
//! [`NodeError`].

use std::{cell::OnceCell, fmt};

use serde::{Serialize, de::DeserializeOwned};
use serde_json::{Map, Value};

use crate::{
    definition::NodeDefinition,
    host::Host,
    services::{Assets, Resources, ServiceError},
};

/// The result of one execution.
pub type NodeResult = Result<Outputs, NodeError>;

/// A node's failure: the message the caller sees in the `error` status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeError {
    message: String,
}

impl NodeError {
    /// An error with this message.
    pub fn new(message: impl fmt::Display) -> Self {
        Self {
            message: message.to_string(),
        }
    }

    /// The error for an execution that stopped because it was aborted.
    pub fn aborted() -> Self {
        Self::new("Execution aborted")
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for NodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for NodeError {}

impl From<String> for NodeError {
    fn from(message: String) -> Self {
        Self { message }
    }
}

impl From<&str> for NodeError {
    fn from(message: &str) -> Self {
        Self::new(message)
    }
}

impl From<ServiceError> for NodeError {
    fn from(err: ServiceError) -> Self {
        Self::new(err.message())
    }
}

/// A node's outputs: each port maps to a list of values, per the protocol's
/// convention.
///
/// ```
/// use nano_plugin_abi::Outputs;
/// let out = Outputs::new().with("text", "HELLO").with_list("words", ["a", "b"]);
/// assert_eq!(out.to_json().unwrap(), r#"{"text":["HELLO"],"words":["a","b"]}"#);
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Outputs {
    ports: Map<String, Value>,
    error: Option<String>,
}

impl Outputs {
    /// No outputs.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets port `name` to the single value `value` (sent as `[value]`).
    pub fn with(self, name: impl Into<String>, value: impl Serialize) -> Self {
        let name = name.into();
        match serde_json::to_value(value) {
            Ok(value) => self.insert(name, Value::Array(vec![value])),
            Err(err) => self.fail(&name, err),
        }
    }

    /// Sets port `name` to a list of values.
    pub fn with_list<T: Serialize>(self, name: impl Into<String>, values: impl IntoIterator<Item = T>) -> Self {
        let name = name.into();
        let values: Result<Vec<Value>, _> = values.into_iter().map(serde_json::to_value).collect();
        match values {
            Ok(values) => self.insert(name, Value::Array(values)),
            Err(err) => self.fail(&name, err),
        }
    }

    /// The value of port `name`, as it will be sent.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.ports.get(name)
    }

    /// The outputs as a JSON object, or why a value could not be encoded.
    pub fn to_json(&self) -> Result<String, NodeError> {
        if let Some(error) = &self.error {
            return Err(NodeError::new(error));
        }
        serde_json::to_string(&self.ports).map_err(NodeError::new)
    }

    fn insert(mut self, name: String, value: Value) -> Self {
        self.ports.insert(name, value);
        self
    }

    fn fail(mut self, name: &str, err: serde_json::Error) -> Self {
        self.error
            .get_or_insert_with(|| format!("output '{name}' cannot be encoded as JSON: {err}"));
        self
    }
}

/// A status a node sends while it runs (see [`Context::send_status`]).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NodeStatus {
    /// `running`, `idle`, `missing`… (`complete` is sent by the server only).
    #[serde(rename = "type")]
    pub kind: StatusKind,
    /// Human-readable message.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Progress, e.g. step 2 of 5.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub progress: Option<Progress>,
}

/// The kinds of NodeStatus a node may send.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StatusKind {
    /// Nothing happening.
    Idle,
    /// Working.
    Running,
    /// Something the node needs is missing.
    Missing,
}

/// Progress of a running node.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Progress {
    /// Steps done.
    pub step: u64,
    /// Steps in all.
    pub total: u64,
}

/// Everything a node gets for one execution.
pub struct Context<'a> {
    instance_id: &'a str,
    inputs: Map<String, Value>,
    parameters: Vec<Value>,
    graph_node_json: &'a str,
    graph_node: OnceCell<Value>,
    definition: &'a NodeDefinition,
    host: &'a dyn Host,
}

impl<'a> Context<'a> {
    pub(crate) fn new(
        definition: &'a NodeDefinition,
        instance_id: &'a str,
        inputs_json: &str,
        parameters_json: &str,
        graph_node_json: &'a str,
        host: &'a dyn Host,
    ) -> Result<Self, NodeError> {
        let inputs = serde_json::from_str(inputs_json)
            .map_err(|e| NodeError::new(format!("inputs must be a JSON object: {e}")))?;
        let parameters = serde_json::from_str(parameters_json)
            .map_err(|e| NodeError::new(format!("parameters must be a JSON array: {e}")))?;
        Ok(Self {
            instance_id,
            inputs,
            parameters,
            graph_node_json,
            graph_node: OnceCell::new(),
            definition,
            host,
        })
    }

    /// The first value of input `name`, as `T`. Accepts the conventional
    /// list (`["x"]`) and a bare value (`"x"`).
    pub fn input<T: DeserializeOwned>(&self, name: &str) -> Result<T, NodeError> {
        self.input_opt(name)?
            .ok_or_else(|| NodeError::new(format!("missing input '{name}'")))
    }

    /// Like [`input`](Self::input), but `None` when the input is absent,
    /// `null` or an empty list.
    pub fn input_opt<T: DeserializeOwned>(&self, name: &str) -> Result<Option<T>, NodeError> {
        let value = match self.inputs.get(name) {
            None | Some(Value::Null) => return Ok(None),
            Some(Value::Array(items)) => match items.first() {
                None => return Ok(None),
                Some(first) => first,
            },
            Some(bare) => bare,
        };
        convert(value)
            .map(Some)
            .map_err(|e| NodeError::new(format!("input '{name}': {e}")))
    }

    /// Every value of input `name` (a bare value counts as a list of one;
    /// an absent input as an empty list).
    pub fn input_list<T: DeserializeOwned>(&self, name: &str) -> Result<Vec<T>, NodeError> {
        let items: &[Value] = match self.inputs.get(name) {
            None | Some(Value::Null) => &[],
            Some(Value::Array(items)) => items,
            Some(bare) => std::slice::from_ref(bare),
        };
        items
            .iter()
            .map(|v| convert(v).map_err(|e| NodeError::new(format!("input '{name}': {e}"))))
            .collect()
    }

    /// Parameter `name` as `T`: its `value` in the graph node, else its
    /// `default` there, else the default in this node's definition.
    pub fn param<T: DeserializeOwned>(&self, name: &str) -> Result<T, NodeError> {
        let from_graph = self
            .parameters
            .iter()
            .find(|p| p.get("name").and_then(Value::as_str) == Some(name))
            .and_then(|p| non_null(p.get("value")).or_else(|| non_null(p.get("default"))));
        let declared = self.definition.find_parameter(name);
        let value = from_graph
            .or_else(|| declared.and_then(|p| non_null(Some(&p.default)).or_else(|| non_null(Some(&p.value)))))
            .ok_or_else(|| {
                NodeError::new(match declared {
                    Some(_) => format!("parameter '{name}' has no value and no default"),
                    None => format!("unknown parameter '{name}'"),
                })
            })?;
        convert(value).map_err(|e| NodeError::new(format!("parameter '{name}': {e}")))
    }

    /// Sends a `running` status with a message.
    pub fn running(&self, message: impl Into<String>) {
        self.send_status(&NodeStatus {
            kind: StatusKind::Running,
            message: Some(message.into()),
            progress: None,
        });
    }

    /// Sends a `running` status with progress `step` of `total`.
    pub fn progress(&self, step: u64, total: u64) {
        self.send_status(&NodeStatus {
            kind: StatusKind::Running,
            message: Some(format!("Step {step}/{total}")),
            progress: Some(Progress { step, total }),
        });
    }

    /// Sends any status to the caller.
    pub fn send_status(&self, status: &NodeStatus) {
        if let Ok(json) = serde_json::to_string(status) {
            self.host.send_status(&json);
        }
    }

    /// True once the execution was aborted; stop working and return.
    pub fn is_aborted(&self) -> bool {
        self.host.is_aborted()
    }

    /// `Err(NodeError::aborted())` once the execution was aborted, for `?`.
    pub fn check_aborted(&self) -> Result<(), NodeError> {
        if self.is_aborted() {
            Err(NodeError::aborted())
        } else {
            Ok(())
        }
    }

    /// NanoCore's assets: resolve, stream, download, upload, list.
    pub fn assets(&self) -> Assets<'a> {
        Assets::new(self.host)
    }

    /// NanoCore's resources: allocate and free.
    pub fn resources(&self) -> Resources<'a> {
        Resources::new(self.host)
    }

    /// The workflow instance id.
    pub fn instance_id(&self) -> &str {
        self.instance_id
    }

    /// The whole graph node of the request (`Null` when there was none).
    pub fn graph_node(&self) -> &Value {
        self.graph_node
            .get_or_init(|| serde_json::from_str(self.graph_node_json).unwrap_or(Value::Null))
    }

    /// All inputs, raw.
    pub fn raw_inputs(&self) -> &Map<String, Value> {
        &self.inputs
    }

    /// This node's definition.
    pub fn definition(&self) -> &NodeDefinition {
        self.definition
    }
}

fn non_null(value: Option<&Value>) -> Option<&Value> {
    value.filter(|v| !v.is_null())
}

/// Converts a JSON value to `T`; a float with no fraction also converts to
/// an integer type, since UIs send `5.0` for whole numbers.
fn convert<T: DeserializeOwned>(value: &Value) -> Result<T, serde_json::Error> {
    T::deserialize(value).or_else(|err| match value.as_f64() {
        Some(f) if f.fract() == 0.0 && f.abs() < 9.0e15 && !value.is_i64() && !value.is_u64() => {
            T::deserialize(&Value::from(f as i64)).map_err(|_| err)
        }
        _ => Err(err),
    })
}
