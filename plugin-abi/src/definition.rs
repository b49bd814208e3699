//! Node definitions: what a node tells the orchestrator about itself.
//!
//! These mirror the NodeDefinition of the Nano protocol. Every struct keeps
//! the fields it does not know in `extra`, so UI fields a newer orchestrator
//! adds round-trip untouched.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// What a node is: its uid, ports and parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeDefinition {
    /// Unique id of the node type, e.g. `simple-text`.
    pub uid: String,
    /// Display name.
    pub name: String,
    /// Category shown in the orchestrator's node list.
    #[serde(default)]
    pub category: String,
    /// Version of the node, free text (semver recommended).
    #[serde(default)]
    pub version: String,
    /// One-line description.
    #[serde(default)]
    pub description: String,
    /// Always `"server"` for nodes served by a node server.
    #[serde(rename = "type", default = "server_kind")]
    pub kind: String,
    /// Input ports.
    #[serde(default)]
    pub inputs: Vec<Port>,
    /// Output ports.
    #[serde(default)]
    pub outputs: Vec<Port>,
    /// Parameters, with their defaults.
    #[serde(default)]
    pub parameters: Vec<Parameter>,
    /// Any other field (UI hints such as `width`, `layout`…), kept verbatim.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

fn server_kind() -> String {
    "server".to_owned()
}

impl NodeDefinition {
    /// A definition with a uid and a display name; add the rest with the
    /// builder methods.
    pub fn new(uid: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            uid: uid.into(),
            name: name.into(),
            category: String::new(),
            version: "1.0.0".to_owned(),
            description: String::new(),
            kind: server_kind(),
            inputs: Vec::new(),
            outputs: Vec::new(),
            parameters: Vec::new(),
            extra: Map::new(),
        }
    }

    /// Sets the category.
    pub fn category(mut self, category: impl Into<String>) -> Self {
        self.category = category.into();
        self
    }

    /// Sets the version (default `1.0.0`).
    pub fn version(mut self, version: impl Into<String>) -> Self {
        self.version = version.into();
        self
    }

    /// Sets the description.
    pub fn description(mut self, description: impl Into<String>) -> Self {
        self.description = description.into();
        self
    }

    /// Adds an input port.
    pub fn input(mut self, port: Port) -> Self {
        self.inputs.push(port);
        self
    }

    /// Adds an output port.
    pub fn output(mut self, port: Port) -> Self {
        self.outputs.push(port);
        self
    }

    /// Adds a parameter.
    pub fn parameter(mut self, parameter: Parameter) -> Self {
        self.parameters.push(parameter);
        self
    }

    /// Sets any other field of the definition (e.g. `"width"`).
    pub fn extra(mut self, key: impl Into<String>, value: impl Into<Value>) -> Self {
        self.extra.insert(key.into(), value.into());
        self
    }

    /// The parameter called `name`, if the definition declares it.
    pub fn find_parameter(&self, name: &str) -> Option<&Parameter> {
        self.parameters.iter().find(|p| p.name == name)
    }
}

/// An input or output port.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Port {
    /// Port name, the key in `inputs` / outputs.
    pub name: String,
    /// Free-text type: `string`, `number`, `asset:image`…
    #[serde(rename = "type")]
    pub kind: String,
    /// Description shown in the UI.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Whether the port may be left unconnected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub optional: Option<bool>,
    /// Any other field (`preventCrossDomain`, `sizeHint`…), kept verbatim.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Port {
    /// A port with a name and a type.
    pub fn new(name: impl Into<String>, kind: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            kind: kind.into(),
            description: None,
            optional: None,
            extra: Map::new(),
        }
    }

    /// Sets the description.
    pub fn description(mut self, description: impl Into<String>) -> Self {
        self.description = Some(description.into());
        self
    }

    /// Marks the port optional.
    pub fn optional(mut self) -> Self {
        self.optional = Some(true);
        self
    }

    /// Sets any other field of the port.
    pub fn extra(mut self, key: impl Into<String>, value: impl Into<Value>) -> Self {
        self.extra.insert(key.into(), value.into());
        self
    }
}

/// A parameter the user sets on the node in the graph.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Parameter {
    /// Parameter name, the key nodes read it by.
    pub name: String,
    /// `number`, `text`, `slider`, `boolean`, `select`, `color`, `filepicker`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Current value (the default, in a definition).
    #[serde(default)]
    pub value: Value,
    /// Value used when the graph does not set one.
    #[serde(default)]
    pub default: Value,
    /// Label shown in the UI.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// Description shown in the UI.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Any other field (`min`, `max`, `options`…), kept verbatim.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Parameter {
    /// A parameter of any type with a default value.
    pub fn new(name: impl Into<String>, kind: impl Into<String>, default: impl Into<Value>) -> Self {
        let default = default.into();
        Self {
            name: name.into(),
            kind: kind.into(),
            value: default.clone(),
            default,
            label: None,
            description: None,
            extra: Map::new(),
        }
    }

    /// A `boolean` parameter.
    pub fn boolean(name: impl Into<String>, default: bool) -> Self {
        Self::new(name, "boolean", default)
    }

    /// A `number` parameter.
    pub fn number(name: impl Into<String>, default: impl Into<Value>) -> Self {
        Self::new(name, "number", default)
    }

    /// A `text` parameter.
    pub fn text(name: impl Into<String>, default: impl Into<String>) -> Self {
        Self::new(name, "text", default.into())
    }

    /// A `select` parameter; `options` are `(value, label)` pairs.
    pub fn select(name: impl Into<String>, default: impl Into<String>, options: &[(&str, &str)]) -> Self {
        let options: Vec<Value> = options
            .iter()
            .map(|(value, label)| serde_json::json!({ "value": value, "label": label }))
            .collect();
        Self::new(name, "select", default.into()).extra("options", options)
    }

    /// Sets the label.
    pub fn label(mut self, label: impl Into<String>) -> Self {
        self.label = Some(label.into());
        self
    }

    /// Sets the description.
    pub fn description(mut self, description: impl Into<String>) -> Self {
        self.description = Some(description.into());
        self
    }

    /// Sets any other field (`min`, `max`, `step`, `precision`…).
    pub fn extra(mut self, key: impl Into<String>, value: impl Into<Value>) -> Self {
        self.extra.insert(key.into(), value.into());
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_fields_round_trip_at_every_level() {
        let text = r#"{"uid":"u","name":"N","category":"C","version":"1","description":"d","type":"server",
            "inputs":[{"name":"i","type":"string","sizeHint":"large"}],"outputs":[],
            "parameters":[{"name":"p","type":"slider","value":1,"default":1,"min":0,"max":9}],
            "width":300,"layout":{"a":[1,2]}}"#;
        let def: NodeDefinition = serde_json::from_str(text).unwrap();
        let back: Value = serde_json::to_value(&def).unwrap();
        let original: Value = serde_json::from_str(text).unwrap();
        assert_eq!(back, original);
    }

    #[test]
    fn builder_produces_protocol_shape() {
        let def = NodeDefinition::new("x", "X")
            .category("Cat")
            .parameter(Parameter::boolean("flag", true).label("Flag"));
        let v = serde_json::to_value(&def).unwrap();
        assert_eq!(v["type"], "server");
        assert_eq!(v["parameters"][0]["default"], true);
        assert_eq!(v["parameters"][0]["value"], true);
        assert_eq!(v["parameters"][0]["label"], "Flag");
    }
}
