// Shared by swap_v1 and swap_v2: each defines VERSION and ONLY_UID first.
use nano_plugin_abi::prelude::*;

/// Present in both versions; answers with the version that ran it.
pub struct Versioned;

impl Node for Versioned {
    fn definition(&self) -> NodeDefinition {
        NodeDefinition::new("swap-node", "Swap Node")
            .category("Test")
            .version(VERSION)
            .parameter(Parameter::number("ms", 0))
    }

    fn execute(&self, ctx: &Context) -> NodeResult {
        let ms: u64 = ctx.param("ms")?;
        std::thread::sleep(std::time::Duration::from_millis(ms));
        Ok(Outputs::new().with("version", VERSION))
    }

    /// Every loaded version has its own statics, so each one's hook runs.
    fn shutdown(&self) -> Result<(), NodeError> {
        eprintln!("swap-node {VERSION}: shutdown hook ran");
        Ok(())
    }
}

/// Exported by one version only.
pub struct OnlyHere;

impl Node for OnlyHere {
    fn definition(&self) -> NodeDefinition {
        NodeDefinition::new(ONLY_UID, "Only Here").category("Test").version(VERSION)
    }

    fn execute(&self, _ctx: &Context) -> NodeResult {
        Ok(Outputs::new().with("version", VERSION))
    }
}

nano_plugin_abi::export_nodes![Versioned, OnlyHere];
