//! A node plugin for nano-server. Build it with `cargo build --release`,
//! put `target/release/libnode_template.so` in the server's `nodes/` folder,
//! and the node is served.

use nano_plugin_abi::prelude::*;

/// Splits a text into words, keeping those at least `min_length` long.
pub struct TemplateNode;

impl Node for TemplateNode {
    fn definition(&self) -> NodeDefinition {
        NodeDefinition::new("template-node", "Template Node")
            .category("Examples")
            .version("0.1.0")
            .description("Splits a text into words and counts them")
            .input(Port::new("text", "string").description("Text to split"))
            .output(Port::new("words", "string").description("The words, one value each"))
            .output(Port::new("count", "number").description("How many words"))
            .parameter(
                Parameter::number("min_length", 1)
                    .label("Minimum length")
                    .description("Shorter words are dropped")
                    .extra("min", 1),
            )
    }

    fn execute(&self, ctx: &Context) -> NodeResult {
        // Typed input: accepts ["some text"] and "some text".
        let text: String = ctx.input("text")?;
        // Typed parameter: the graph's value, else the default above.
        let min_length: usize = ctx.param("min_length")?;
        if min_length == 0 {
            // Errors are values: the caller gets an `error` status with this text.
            return Err(NodeError::new("min_length must be at least 1"));
        }

        let candidates: Vec<&str> = text.split_whitespace().collect();
        let total = candidates.len() as u64;
        let mut words = Vec::new();
        for (done, word) in candidates.into_iter().enumerate() {
            // Stop early when the workflow is stopped.
            ctx.check_aborted()?;
            if word.chars().count() >= min_length {
                words.push(word.to_owned());
            }
            ctx.progress(done as u64 + 1, total);
        }

        // Several outputs; each port carries a list.
        Ok(Outputs::new().with("count", words.len()).with_list("words", words))
    }
}

nano_plugin_abi::export_nodes![TemplateNode];

// `testing` comes from the `[dev-dependencies]` entry with `features = ["testing"]`.
#[cfg(test)]
mod tests {
    use super::*;
    use nano_plugin_abi::{serde_json::json, testing};

    #[test]
    fn splits_and_filters_words() {
        let run = testing::run(&TemplateNode, json!({"text": ["a bb ccc"]}), json!({"min_length": 2}));
        let out = run.outputs().unwrap();
        assert_eq!(out.get("words"), Some(&json!(["bb", "ccc"])));
        assert_eq!(out.get("count"), Some(&json!([2])));
        assert_eq!(run.statuses.len(), 3, "one progress status per word");
    }

    #[test]
    fn uses_the_default_parameter() {
        let run = testing::run(&TemplateNode, json!({"text": "a bb"}), json!({}));
        assert_eq!(run.outputs().unwrap().get("count"), Some(&json!([2])));
    }

    #[test]
    fn errors_are_values() {
        let run = testing::run(&TemplateNode, json!({}), json!({}));
        assert_eq!(run.result.unwrap_err().message(), "missing input 'text'");
        let run = testing::run(&TemplateNode, json!({"text": "x"}), json!({"min_length": 0}));
        assert!(run.result.is_err());
    }

    #[test]
    fn stops_when_aborted() {
        let run = testing::run_aborted(&TemplateNode, json!({"text": "a b"}), json!({}));
        assert_eq!(run.result.unwrap_err().message(), "Execution aborted");
    }
}
