//! A plugin whose node panics while building its definition: the server
//! must refuse the library and keep serving the others.

use nano_plugin_abi::prelude::*;

pub struct BrokenDefinition;

impl Node for BrokenDefinition {
    fn definition(&self) -> NodeDefinition {
        panic!("deliberate panic while building the definition");
    }

    fn execute(&self, _ctx: &Context) -> NodeResult {
        Ok(Outputs::new())
    }
}

nano_plugin_abi::export_nodes![BrokenDefinition];
