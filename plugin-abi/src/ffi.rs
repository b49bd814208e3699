//! The raw boundary between nano-server and a plugin library.
//!
//! Everything here is `#[repr(C)]` and checked by abi_stable when the host
//! loads a library: a plugin built against an incompatible version of this
//! crate is refused instead of being called with the wrong layout. Node
//! authors never touch this module; [`export_nodes!`](crate::export_nodes)
//! builds it for them.
//!
//! Data crosses as JSON text (`RStr` / `RString`): the host already holds the
//! wire frames as JSON, and JSON keeps the layout trivially stable.

use abi_stable::{
    StableAbi, declare_root_module_statics,
    library::RootModule,
    package_version_strings, sabi_trait,
    sabi_types::{RRef, VersionStrings},
    std_types::{RResult, RSlice, RStr, RString, RVec},
};

/// One execution request, as handed from the host to a plugin.
#[repr(C)]
#[derive(StableAbi, Clone, Copy)]
pub struct ExecuteCall<'a> {
    /// Index of the node in the library's definition list.
    pub node_index: u32,
    /// The workflow instance this execution belongs to.
    pub instance_id: RStr<'a>,
    /// JSON object: input port name → value (a list by convention).
    pub inputs: RStr<'a>,
    /// JSON array of parameter objects (`graphNode.parameters`).
    pub parameters: RStr<'a>,
    /// JSON of the whole graph node (`null` when the request had none).
    pub graph_node: RStr<'a>,
}

/// Callbacks the host offers to a running node.
#[sabi_trait]
pub trait HostCallbacks: Sync {
    /// Sends a NodeStatus (JSON object) to the caller of this execution.
    fn send_status(&self, status: RStr<'_>);

    /// True once the execution has been aborted (stop, disconnect, shutdown).
    #[sabi(last_prefix_field)]
    fn is_aborted(&self) -> bool;

    /// Since 0.1.2: one call to a host service (NanoCore's assets and
    /// resources), framed as [`crate::host_wire`] describes: `request` is a
    /// JSON [`crate::host_wire::Call`], `body` its bytes (an upload's data);
    /// the answer is JSON and bytes, or a JSON [`crate::host_wire::Failure`].
    /// Hosts built against 0.1.1 lack it: abi_stable then calls this
    /// default, an `unsupported` error.
    fn host_call(&self, request: RStr<'_>, body: RSlice<'_, u8>) -> RResult<HostAnswer, RString> {
        let _ = (request, body);
        RResult::RErr(crate::host_wire::Failure::unsupported().to_json().into())
    }
}

/// What a host service call answered: JSON, and bytes (a download's chunk).
#[repr(C)]
#[derive(StableAbi, Debug, Default)]
pub struct HostAnswer {
    pub json: RString,
    pub bytes: RVec<u8>,
}

/// The host callbacks as passed across the boundary.
pub type HostRef<'a> = HostCallbacks_TO<'a, RRef<'a, ()>>;

/// The root module every plugin library exports.
///
/// A prefix type: versions of this crate append fields after the last prefix
/// field (0.1.1 appended `shutdown`), and the host reads those as `Option`s,
/// so plugins built against an older 0.1.x keep loading.
#[repr(C)]
#[derive(StableAbi)]
#[sabi(kind(Prefix(prefix_ref = PluginModuleRef)))]
pub struct PluginModule {
    /// The nodes this library exports, as a JSON array of NodeDefinitions,
    /// or an error message (also when the plugin panicked building them).
    pub definitions: extern "C" fn() -> RResult<RString, RString>,

    /// Runs one node: the outputs as a JSON object, or the node's error
    /// message (also when it panicked).
    #[sabi(last_prefix_field)]
    pub execute: extern "C" fn(call: ExecuteCall<'_>, host: HostRef<'_>) -> RResult<RString, RString>,

    /// Since 0.1.1: called once when the server shuts down, after every
    /// execution ended or was aborted. The error lists the nodes whose hook
    /// failed or panicked. Libraries built against 0.1.0 lack it; the host
    /// reads it as `None` and skips them.
    pub shutdown: extern "C" fn() -> RResult<(), RString>,
}

impl RootModule for PluginModuleRef {
    declare_root_module_statics! {PluginModuleRef}
    const BASE_NAME: &'static str = "nano_plugin";
    const NAME: &'static str = "nano_plugin";
    const VERSION_STRINGS: VersionStrings = package_version_strings!();
}

/// The version of this crate, i.e. of the ABI a library was built against.
pub const ABI_VERSION: &str = env!("CARGO_PKG_VERSION");
