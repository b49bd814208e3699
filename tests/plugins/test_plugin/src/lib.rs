//! Nodes that exist only to test the server: one that panics (also in its
//! shutdown hook), one that echoes what it received (its definition carries
//! fields the protocol does not define; they must round-trip), one that
//! ignores abort and one that never returns.

use nano_plugin_abi::{prelude::*, serde_json::json};

pub struct Panics;

impl Node for Panics {
    fn definition(&self) -> NodeDefinition {
        NodeDefinition::new("test-panic", "Test Panic").category("Test")
    }

    fn execute(&self, _ctx: &Context) -> NodeResult {
        panic!("deliberate test panic");
    }

    fn shutdown(&self) -> Result<(), NodeError> {
        panic!("deliberate panic in a shutdown hook");
    }
}

pub struct Echo;

impl Node for Echo {
    fn definition(&self) -> NodeDefinition {
        NodeDefinition::new("test-echo", "Test Echo")
            .category("Test")
            .input(
                Port::new("value", "any")
                    .extra("sizeHint", "large")
                    .extra("x-port-extra", json!([1, 2])),
            )
            .output(Port::new("inputs", "any"))
            .parameter(Parameter::text("label", "fallback").extra("x-param-extra", true))
            .extra("x-custom", json!({"nested": {"kept": true}}))
            .extra("width", 321)
    }

    fn execute(&self, ctx: &Context) -> NodeResult {
        ctx.running("echoing");
        Ok(Outputs::new()
            .with("inputs", ctx.raw_inputs())
            .with("label", ctx.param::<String>("label")?)
            .with("instance", ctx.instance_id())
            .with("graphNodeId", &ctx.graph_node()["id"]))
    }

    /// Runs after `test-panic`'s hook panicked: one bad hook skips no other.
    fn shutdown(&self) -> Result<(), NodeError> {
        eprintln!("test-echo: shutdown hook ran");
        Ok(())
    }
}

/// Ignores the abort flag: works for `ms` milliseconds, then succeeds,
/// saying which thread of its process ran it (Linux); with `ms` 0 it
/// returns at once, without a status.
pub struct Stubborn;

impl Node for Stubborn {
    fn definition(&self) -> NodeDefinition {
        NodeDefinition::new("test-stubborn", "Test Stubborn")
            .category("Test")
            .parameter(Parameter::number("ms", 1000))
    }

    fn execute(&self, ctx: &Context) -> NodeResult {
        let ms: u64 = ctx.param("ms")?;
        // With `ms` 0 it returns at once, saying nothing: a trivial node.
        if ms > 0 {
            ctx.running("working, not listening");
            std::thread::sleep(std::time::Duration::from_millis(ms));
            ctx.running("still working");
        }
        // The OS's name of the thread (this library's own std does not know
        // the names its host gave its threads), read once per thread.
        thread_local! {
            static NAME: String = std::fs::read_to_string("/proc/thread-self/comm")
                .map(|name| name.trim().to_owned())
                .unwrap_or_default();
        }
        let thread = NAME.with(Clone::clone);
        Ok(Outputs::new().with("result", "finished anyway").with("thread", thread))
    }
}

/// Never returns, whatever happens.
pub struct Hangs;

impl Node for Hangs {
    fn definition(&self) -> NodeDefinition {
        NodeDefinition::new("test-hang", "Test Hang").category("Test")
    }

    fn execute(&self, ctx: &Context) -> NodeResult {
        ctx.running("hanging");
        loop {
            std::thread::sleep(std::time::Duration::from_secs(3600));
        }
    }
}

/// Sends `count` `running` statuses of about `size` bytes each (stopping
/// when aborted), then succeeds: a node whose caller may not keep up.
pub struct Chatty;

impl Node for Chatty {
    fn definition(&self) -> NodeDefinition {
        NodeDefinition::new("test-chatty", "Test Chatty")
            .category("Test")
            .parameter(Parameter::number("count", 100))
            .parameter(Parameter::number("size", 1024))
    }

    fn execute(&self, ctx: &Context) -> NodeResult {
        let count: u64 = ctx.param("count")?;
        let size: usize = ctx.param("size")?;
        let message = "x".repeat(size);
        for _ in 0..count {
            ctx.check_aborted()?;
            ctx.running(&message);
        }
        Ok(Outputs::new().with("result", count))
    }
}

nano_plugin_abi::export_nodes![Panics, Echo, Stubborn, Hangs, Chatty];
