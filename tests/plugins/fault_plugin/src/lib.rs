//! A plugin whose nodes fail on purpose, for the process-isolation tests.
//! `fault` picks its failure with the `kind` parameter; `fault-ok` is a
//! harmless node in the same library, to show it serves again after a
//! restart. With `allocate`, `fault` first reserves a NanoCore resource
//! of that id, which it never frees.

use std::time::Duration;

use nano_plugin_abi::prelude::*;

/// What the environment asks of this library while it loads: the value of
/// `NANO_TEST_LOAD_FAULT`, or the content of the file
/// `NANO_TEST_LOAD_FAULT_FILE` names (so a test can turn it on later).
fn load_fault() -> String {
    if let Ok(path) = std::env::var("NANO_TEST_LOAD_FAULT_FILE") {
        return std::fs::read_to_string(path).unwrap_or_default().trim().to_owned();
    }
    std::env::var("NANO_TEST_LOAD_FAULT").unwrap_or_default()
}

/// Runs when the library is mapped, before anything is called: crashes the
/// loading process when asked.
#[used]
#[unsafe(link_section = ".init_array")]
static CONSTRUCTOR: extern "C" fn() = constructor;

extern "C" fn constructor() {
    if load_fault() == "constructor" {
        // SAFETY: none; crashing is the point.
        unsafe { std::ptr::null_mut::<u64>().write_volatile(1) }
    }
}

pub struct Fault;

impl Node for Fault {
    fn definition(&self) -> NodeDefinition {
        match load_fault().as_str() {
            // SAFETY: none; crashing is the point.
            "definitions-segv" => unsafe { std::ptr::null_mut::<u64>().write_volatile(2) },
            "definitions-hang" => loop {
                std::thread::sleep(Duration::from_secs(3600));
            },
            _ => {}
        }
        NodeDefinition::new("fault", "Fault")
            .category("Test")
            .parameter(Parameter::text("kind", "sleep"))
            .parameter(Parameter::number("ms", 100))
            .parameter(Parameter::number("mb", 64))
            .parameter(Parameter::text("allocate", ""))
    }

    fn execute(&self, ctx: &Context) -> NodeResult {
        let kind: String = ctx.param("kind")?;
        let ms: u64 = ctx.param("ms")?;
        // A NanoCore resource to hold when failing, so tests see it freed.
        let allocate: String = ctx.param("allocate")?;
        if !allocate.is_empty() {
            ctx.resources().allocate(&Resource {
                resource_id: allocate,
                kind: "gpu".into(),
                name: "fault test model".into(),
                vram_usage: 1 << 30,
                ..Resource::default()
            })?;
        }
        ctx.running(format!("about to {kind}"));
        match kind.as_str() {
            // SAFETY: none; crashing is the point.
            "segv" => unsafe { std::ptr::null_mut::<u64>().write_volatile(7) },
            "abort" => std::process::abort(),
            "exit" => std::process::exit(3),
            "stack" => {
                std::hint::black_box(recurse(0));
            }
            "alloc" => {
                let mb: usize = ctx.param("mb")?;
                // Touched, so it is resident.
                let block = vec![1u8; mb << 20];
                std::hint::black_box(&block);
                std::thread::sleep(Duration::from_millis(ms));
            }
            "panic" => panic!("deliberate panic in a plugin built with panic = \"abort\""),
            "spin" => loop {
                // Never looks at the abort flag.
                std::thread::sleep(Duration::from_millis(20));
            },
            "sleep" => std::thread::sleep(Duration::from_millis(ms)),
            other => return Err(NodeError::new(format!("unknown kind `{other}`"))),
        }
        Ok(Outputs::new().with("result", "survived"))
    }
}

#[allow(unconditional_recursion)]
fn recurse(depth: u64) -> u64 {
    let frame = [depth; 128];
    std::hint::black_box(&frame);
    recurse(depth + 1) + frame[7]
}

pub struct FaultOk;

impl Node for FaultOk {
    fn definition(&self) -> NodeDefinition {
        NodeDefinition::new("fault-ok", "Fault OK").category("Test")
    }

    fn execute(&self, _ctx: &Context) -> NodeResult {
        Ok(Outputs::new().with("result", "ok"))
    }
}

nano_plugin_abi::export_nodes![Fault, FaultOk];
