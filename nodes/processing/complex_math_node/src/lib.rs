//! `complex-math`: applies an arithmetic operation to `a` and `b`.

use nano_plugin_abi::{prelude::*, serde_json::Value};

pub struct ComplexMath;

impl Node for ComplexMath {
    fn definition(&self) -> NodeDefinition {
        NodeDefinition::new("complex-math", "Complex Math")
            .category("Processing")
            .version("1.0.0")
            .description("Applies an arithmetic operation to two numbers")
            .input(Port::new("a", "number").description("First operand"))
            .input(Port::new("b", "number").description("Second operand"))
            .output(Port::new("result", "number").description("Result of the operation"))
            .parameter(
                Parameter::select(
                    "operation",
                    "add",
                    &[
                        ("add", "Add"),
                        ("subtract", "Subtract"),
                        ("multiply", "Multiply"),
                        ("divide", "Divide"),
                        ("power", "Power"),
                    ],
                )
                .label("Operation"),
            )
    }

    fn execute(&self, ctx: &Context) -> NodeResult {
        let a: f64 = ctx.input("a")?;
        let b: f64 = ctx.input("b")?;
        let operation: String = ctx.param("operation")?;
        let result = match operation.as_str() {
            "add" => a + b,
            "subtract" => a - b,
            "multiply" => a * b,
            "divide" if b == 0.0 => return Err(NodeError::new("division by zero")),
            "divide" => a / b,
            "power" => a.powf(b),
            other => return Err(NodeError::new(format!("unknown operation '{other}'"))),
        };
        if !result.is_finite() {
            return Err(NodeError::new(format!(
                "{operation} of {a} and {b} is not a finite number"
            )));
        }
        Ok(Outputs::new().with("result", number(result)))
    }
}

/// Whole results are sent as integers (`42`, not `42.0`), as the Python SDK does.
fn number(x: f64) -> Value {
    if x.fract() == 0.0 && x.abs() < 9.0e15 {
        Value::from(x as i64)
    } else {
        Value::from(x)
    }
}

nano_plugin_abi::export_nodes![ComplexMath];

#[cfg(test)]
mod tests {
    use super::*;
    use nano_plugin_abi::{serde_json::json, testing};

    fn result(a: Value, b: Value, op: &str) -> Result<Value, String> {
        let run = testing::run(&ComplexMath, json!({"a": [a], "b": [b]}), json!({"operation": op}));
        run.result
            .map(|out| out.get("result").cloned().unwrap())
            .map_err(|e| e.to_string())
    }

    #[test]
    fn operations() {
        assert_eq!(result(json!(40), json!(2), "add"), Ok(json!([42])));
        assert_eq!(result(json!(40), json!(2), "subtract"), Ok(json!([38])));
        assert_eq!(result(json!(6), json!(7), "multiply"), Ok(json!([42])));
        assert_eq!(result(json!(7), json!(2), "divide"), Ok(json!([3.5])));
        assert_eq!(result(json!(2), json!(10), "power"), Ok(json!([1024])));
    }

    #[test]
    fn errors() {
        assert!(
            result(json!(1), json!(0), "divide")
                .unwrap_err()
                .contains("division by zero")
        );
        assert!(result(json!("x"), json!(0), "add").unwrap_err().contains("input 'a'"));
        assert!(result(json!(1), json!(1), "modulo").unwrap_err().contains("modulo"));
    }
}
