//! The contract between **nano-server** and node plugins, and the API node
//! authors write against. It is the only crate a plugin needs.
//!
//! A plugin is a Rust `cdylib` that implements [`Node`] for each node it
//! serves and exports them with [`export_nodes!`]. nano-server loads it,
//! checks the ABI with abi_stable (a library built against an incompatible
//! version of this crate is refused, not called), and serves its nodes over
//! the Nano protocol.
//!
//! # A complete node
//!
//! ```
//! use nano_plugin_abi::prelude::*;
//!
//! /// Repeats a text `times` times, reporting progress.
//! pub struct Repeat;
//!
//! impl Node for Repeat {
//!     fn definition(&self) -> NodeDefinition {
//!         NodeDefinition::new("repeat-text", "Repeat Text")
//!             .category("Processing")
//!             .description("Repeats the input text")
//!             .input(Port::new("text", "string").description("Text to repeat"))
//!             .output(Port::new("text", "string"))
//!             .output(Port::new("length", "number"))
//!             .parameter(Parameter::number("times", 2).label("Times"))
//!     }
//!
//!     fn execute(&self, ctx: &Context) -> NodeResult {
//!         let text: String = ctx.input("text")?; // accepts ["hi"] and "hi"
//!         let times: u64 = ctx.param("times")?; // falls back to the default, 2
//!         if times > 1000 {
//!             return Err(NodeError::new("times must be at most 1000"));
//!         }
//!         let mut out = String::new();
//!         for step in 1..=times {
//!             ctx.check_aborted()?; // returns early once the caller stops us
//!             out.push_str(&text);
//!             ctx.progress(step, times);
//!         }
//!         Ok(Outputs::new().with("length", out.len()).with("text", out))
//!     }
//! }
//!
//! // In the plugin crate (crate-type = ["cdylib", "rlib"]):
//! // nano_plugin_abi::export_nodes![Repeat];
//!
//! // Unit-test it without a server (with the `testing` feature, see below):
//! # #[cfg(feature = "testing")] {
//! let run = nano_plugin_abi::testing::run(&Repeat, serde_json::json!({"text": "ab"}), serde_json::json!({}));
//! assert_eq!(run.outputs().unwrap().get("text"), Some(&serde_json::json!(["abab"])));
//! assert_eq!(run.statuses.len(), 2);
//! # }
//! ```
//!
//! # Testing a node: the `testing` feature
//!
//! `testing` runs a node in a unit test, without a server, against an
//! in-memory NanoCore. It sits behind the cargo feature `testing`, so a
//! plugin library does not ship it (nor the SHA-256 code its asset store
//! uses). A node crate enables it for its tests only, next to the plain
//! dependency:
//!
//! ```toml
//! [dependencies]
//! nano-plugin-abi = { path = "../nano-server/plugin-abi" }
//!
//! [dev-dependencies]
//! # The same crate, with the unit-test harness.
//! nano-plugin-abi = { path = "../nano-server/plugin-abi", features = ["testing"] }
//! ```
//!
//! Earlier builds of this crate compiled `testing` in unconditionally; a
//! node crate whose tests now fail with "unresolved import
//! `nano_plugin_abi::testing`" (rustc adds: "the item is gated behind the
//! `testing` feature") needs that `[dev-dependencies]` entry (in a
//! workspace: `nano-plugin-abi = { workspace = true, features = ["testing"] }`).
//! Nothing else changes: the ABI is the same, and libraries built either
//! way load in the same servers.
//!
//! # Rules for plugin crates
//!
//! - Build as `crate-type = ["cdylib"]` (add `"rlib"` to unit-test the nodes).
//! - **Never build a plugin with `panic = "abort"`.** [`export_nodes!`]
//!   catches panics at the boundary and turns them into an `error` status;
//!   with `abort` a panic would take the whole server down instead.
//! - Statuses go out in order: the server sends `running` first, then yours,
//!   then exactly one `complete` (with your [`Outputs`]) or `error` (with
//!   your [`NodeError`]). Do not send `complete` yourself.
//! - A library stays mapped for the life of the server process (unloading
//!   Rust libraries is unsound), so avoid large static allocations.

pub mod context;
pub mod definition;
#[doc(hidden)]
pub mod export;
// sabi_trait generates impls inside a const block; a known false alarm.
#[allow(non_local_definitions)]
pub mod ffi;
mod host;
pub mod host_wire;
pub mod services;
#[cfg(feature = "testing")]
pub mod testing;

pub use context::{Context, NodeError, NodeResult, NodeStatus, Outputs, Progress, StatusKind};
pub use definition::{NodeDefinition, Parameter, Port};
pub use ffi::ABI_VERSION;
/// Re-exported so plugins can build JSON without another dependency.
pub use serde_json;

/// A node type a plugin serves.
pub trait Node: Send + Sync + 'static {
    /// What the node is: uid, ports, parameters. Called once at load.
    fn definition(&self) -> NodeDefinition;

    /// Runs the node once. Called on a worker thread; may block.
    fn execute(&self, ctx: &Context) -> NodeResult;

    /// Releases what the node holds (connections, files, threads) when the
    /// server shuts down. Called once per loaded version of the library,
    /// after in-flight executions ended or were aborted (a node that never
    /// returned may still be running). Keep it short: the server waits for
    /// the hooks of all libraries for 2 s in total. An error or a panic is
    /// logged; the other hooks still run. The default does nothing.
    fn shutdown(&self) -> Result<(), NodeError> {
        Ok(())
    }
}

/// Everything a node implementation needs, for `use nano_plugin_abi::prelude::*`.
pub mod prelude {
    pub use crate::services::{AssetInfo, Resource, Upload};
    pub use crate::{Context, Node, NodeDefinition, NodeError, NodeResult, Outputs, Parameter, Port};
}

#[doc(hidden)]
pub mod __private {
    pub use crate::export::{NodeSet, Registered, root_module};
    pub use abi_stable::library::{__call_root_module_loader, CheckTypeLayout, LibHeader, RootModuleResult};
}

#[cfg(test)]
mod tests {
    #[test]
    fn export_macro_uses_abi_stables_loader_symbol() {
        assert_eq!(
            abi_stable::library::ROOT_MODULE_LOADER_NAME,
            "_1as_0lib_1header_0root_bmodule_bloader"
        );
    }
}
