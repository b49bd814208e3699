//! Mimics a future nano-plugin-abi whose `execute` takes different
//! arguments: same type names and module path, incompatible layout.

pub mod ffi {
    use abi_stable::{
        StableAbi, declare_root_module_statics, export_root_module,
        library::RootModule,
        package_version_strings,
        prefix_type::PrefixTypeTrait,
        sabi_types::VersionStrings,
        std_types::{RResult, RStr, RString},
    };

    #[repr(C)]
    #[derive(StableAbi)]
    #[sabi(kind(Prefix(prefix_ref = PluginModuleRef)))]
    pub struct PluginModule {
        pub definitions: extern "C" fn() -> RResult<RString, RString>,
        #[sabi(last_prefix_field)]
        pub execute: extern "C" fn(node_index: u64, request: RStr<'_>) -> RResult<RString, RString>,
    }

    impl RootModule for PluginModuleRef {
        declare_root_module_statics! {PluginModuleRef}
        const BASE_NAME: &'static str = "nano_plugin";
        const NAME: &'static str = "nano_plugin";
        const VERSION_STRINGS: VersionStrings = package_version_strings!();
    }

    extern "C" fn definitions() -> RResult<RString, RString> {
        RResult::ROk(r#"[{"uid":"foreign-node","name":"Foreign"}]"#.into())
    }

    extern "C" fn execute(_node_index: u64, _request: RStr<'_>) -> RResult<RString, RString> {
        RResult::ROk("{}".into())
    }

    #[export_root_module]
    pub fn root() -> PluginModuleRef {
        PluginModule { definitions, execute }.leak_into_prefix()
    }
}
