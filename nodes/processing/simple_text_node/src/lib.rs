//! `simple-text`: returns its text input, upper-cased when asked.

use nano_plugin_abi::prelude::*;

pub struct SimpleText;

impl Node for SimpleText {
    fn definition(&self) -> NodeDefinition {
        NodeDefinition::new("simple-text", "Simple Text")
            .category("Processing")
            .version("1.0.0")
            .description("Returns the text, upper-cased if `uppercase` is set")
            .input(Port::new("text", "string").description("Text to process"))
            .output(Port::new("text", "string").description("Processed text"))
            .parameter(
                Parameter::boolean("uppercase", false)
                    .label("Uppercase")
                    .description("Convert the text to upper case"),
            )
    }

    fn execute(&self, ctx: &Context) -> NodeResult {
        let text: String = ctx.input("text")?;
        let uppercase: bool = ctx.param("uppercase")?;
        let text = if uppercase { text.to_uppercase() } else { text };
        Ok(Outputs::new().with("text", text))
    }
}

nano_plugin_abi::export_nodes![SimpleText];

#[cfg(test)]
mod tests {
    use super::*;
    use nano_plugin_abi::{serde_json::json, testing};

    #[test]
    fn upper_cases_only_when_asked() {
        let run = testing::run(&SimpleText, json!({"text": ["hello"]}), json!({}));
        assert_eq!(run.outputs().unwrap().get("text"), Some(&json!(["hello"])));
        let run = testing::run(&SimpleText, json!({"text": "hello"}), json!({"uppercase": true}));
        assert_eq!(run.outputs().unwrap().get("text"), Some(&json!(["HELLO"])));
    }

    #[test]
    fn rejects_non_string_text() {
        let run = testing::run(&SimpleText, json!({"text": [42]}), json!({}));
        let err = run.result.unwrap_err();
        assert!(err.message().contains("input 'text'"), "{err}");
    }
}
