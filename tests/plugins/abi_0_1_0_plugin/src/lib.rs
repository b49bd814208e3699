//! A verbatim copy of `nano_plugin_abi::ffi` as released in 0.1.0 (its
//! root module ends at `execute`), plus one node written against it.

// sabi_trait generates impls inside a const block; a known false alarm.
#[allow(non_local_definitions)]
pub mod ffi {
    use abi_stable::{
        StableAbi, declare_root_module_statics, export_root_module,
        library::RootModule,
        package_version_strings,
        prefix_type::PrefixTypeTrait,
        sabi_trait,
        sabi_types::{RRef, VersionStrings},
        std_types::{RResult, RStr, RString},
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
    }

    /// The host callbacks as passed across the boundary.
    pub type HostRef<'a> = HostCallbacks_TO<'a, RRef<'a, ()>>;

    /// The root module every plugin library exports.
    ///
    /// A prefix type: later versions of this crate may append fields after the
    /// last prefix field, and the host reads them as `Option`s, so plugins built
    /// against this version keep loading.
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
    }

    impl RootModule for PluginModuleRef {
        declare_root_module_statics! {PluginModuleRef}
        const BASE_NAME: &'static str = "nano_plugin";
        const NAME: &'static str = "nano_plugin";
        const VERSION_STRINGS: VersionStrings = package_version_strings!();
    }

    /// The version of this crate, i.e. of the ABI a library was built against.
    pub const ABI_VERSION: &str = env!("CARGO_PKG_VERSION");

    // --- the plugin itself, written against the layout above ---

    extern "C" fn definitions() -> RResult<RString, RString> {
        RResult::ROk(
            r#"[{"uid":"abi-0-1-0-node","name":"Built against 0.1.0","category":"Test","version":"0.1.0",
                "outputs":[{"name":"abi","type":"string"}]}]"#
                .into(),
        )
    }

    extern "C" fn execute(call: ExecuteCall<'_>, host: HostRef<'_>) -> RResult<RString, RString> {
        host.send_status(r#"{"type":"running","message":"old ABI, new server"}"#.into());
        let aborted = host.is_aborted();
        RResult::ROk(format!(r#"{{"abi":["0.1.0"],"aborted":[{aborted}],"instance":["{}"]}}"#, call.instance_id).into())
    }

    #[export_root_module]
    pub fn root() -> PluginModuleRef {
        PluginModule { definitions, execute }.leak_into_prefix()
    }
}
