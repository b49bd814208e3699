//! `progress-steps`: a slow node that reports progress and honours abort.

use std::{thread, time::Duration};

use nano_plugin_abi::prelude::*;

pub struct ProgressSteps;

impl Node for ProgressSteps {
    fn definition(&self) -> NodeDefinition {
        NodeDefinition::new("progress-steps", "Progress Steps")
            .category("Utility")
            .version("1.0.0")
            .description("Works through `steps` steps of `delay_ms` each, reporting progress")
            .output(Port::new("result", "string"))
            .parameter(Parameter::number("steps", 5).label("Steps").extra("min", 0))
            .parameter(
                Parameter::number("delay_ms", 100)
                    .label("Delay per step (ms)")
                    .extra("min", 0),
            )
    }

    fn execute(&self, ctx: &Context) -> NodeResult {
        let steps: u64 = ctx.param("steps")?;
        let delay_ms: u64 = ctx.param("delay_ms")?;
        for step in 1..=steps {
            ctx.check_aborted()?;
            thread::sleep(Duration::from_millis(delay_ms));
            ctx.progress(step, steps);
        }
        Ok(Outputs::new().with("result", "done"))
    }
}

nano_plugin_abi::export_nodes![ProgressSteps];

#[cfg(test)]
mod tests {
    use super::*;
    use nano_plugin_abi::{serde_json::json, testing};

    #[test]
    fn reports_each_step_then_done() {
        let run = testing::run(&ProgressSteps, json!({}), json!({"steps": 3, "delay_ms": 0}));
        assert_eq!(run.outputs().unwrap().get("result"), Some(&json!(["done"])));
        let steps: Vec<_> = run.statuses.iter().map(|s| s["progress"]["step"].clone()).collect();
        assert_eq!(steps, [json!(1), json!(2), json!(3)]);
    }

    #[test]
    fn stops_when_aborted() {
        let run = testing::run_aborted(&ProgressSteps, json!({}), json!({"steps": 3, "delay_ms": 0}));
        assert_eq!(run.result.unwrap_err().message(), "Execution aborted");
        assert!(run.statuses.is_empty());
    }
}
