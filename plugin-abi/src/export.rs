//! Turning [`Node`]s into a plugin library: the glue behind
//! [`export_nodes!`](crate::export_nodes). Hidden from the docs; authors use
//! the macro.

use std::{
    any::Any,
    panic::{AssertUnwindSafe, catch_unwind},
};

use abi_stable::{
    prefix_type::PrefixTypeTrait,
    std_types::{RResult, RString},
};

use crate::{
    Node,
    context::{Context, NodeError},
    definition::NodeDefinition,
    ffi::{ExecuteCall, HostRef, PluginModule, PluginModuleRef},
    host::Host,
};

/// The nodes of one library, built once, with their definitions.
pub struct Registered {
    nodes: Vec<(Box<dyn Node>, NodeDefinition)>,
    definitions_json: Result<String, String>,
}

impl Registered {
    /// Builds the definitions of `nodes` (called once, lazily, under
    /// `catch_unwind`).
    pub fn new(nodes: Vec<Box<dyn Node>>) -> Self {
        let nodes: Vec<_> = nodes
            .into_iter()
            .map(|node| {
                let definition = node.definition();
                (node, definition)
            })
            .collect();
        let definitions: Vec<&NodeDefinition> = nodes.iter().map(|(_, d)| d).collect();
        let definitions_json = serde_json::to_string(&definitions).map_err(|e| e.to_string());
        Self {
            nodes,
            definitions_json,
        }
    }
}

/// Implemented by the type [`export_nodes!`](crate::export_nodes) generates.
pub trait NodeSet {
    /// The library's nodes.
    fn registered() -> &'static Registered;
}

/// The root module for the node set `N`.
pub fn root_module<N: NodeSet>() -> PluginModuleRef {
    PluginModule {
        definitions: definitions::<N>,
        execute: execute::<N>,
        shutdown: shutdown::<N>,
    }
    .leak_into_prefix()
}

extern "C" fn definitions<N: NodeSet>() -> RResult<RString, RString> {
    guarded(|| N::registered().definitions_json.clone().map_err(NodeError::from)).map(RString::from)
}

extern "C" fn execute<N: NodeSet>(call: ExecuteCall<'_>, host: HostRef<'_>) -> RResult<RString, RString> {
    guarded(|| {
        let (node, definition) = N::registered()
            .nodes
            .get(call.node_index as usize)
            .ok_or_else(|| NodeError::new(format!("no node at index {}", call.node_index)))?;
        let host = FfiHost(&host);
        let ctx = Context::new(
            definition,
            call.instance_id.as_str(),
            call.inputs.as_str(),
            call.parameters.as_str(),
            call.graph_node.as_str(),
            &host,
        )?;
        node.execute(&ctx)?.to_json()
    })
    .map(RString::from)
}

/// Calls every node's [`Node::shutdown`], each guarded on its own, so one
/// failing or panicking hook does not skip the others.
extern "C" fn shutdown<N: NodeSet>() -> RResult<(), RString> {
    let failures: Vec<String> = N::registered()
        .nodes
        .iter()
        .filter_map(|(node, definition)| match guarded(|| node.shutdown()) {
            RResult::ROk(()) => None,
            RResult::RErr(message) => Some(format!("{}: {message}", definition.uid)),
        })
        .collect();
    if failures.is_empty() {
        RResult::ROk(())
    } else {
        RResult::RErr(failures.join("; ").into())
    }
}

/// Runs `f`, turning its error or its panic into an error message: a panic
/// must never unwind across `extern "C"`.
fn guarded<T>(f: impl FnOnce() -> Result<T, NodeError>) -> RResult<T, RString> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(value)) => RResult::ROk(value),
        Ok(Err(err)) => RResult::RErr(err.message().into()),
        Err(payload) => RResult::RErr(format!("node panicked: {}", panic_message(&*payload)).into()),
    }
}

pub(crate) fn panic_message(payload: &(dyn Any + Send)) -> &str {
    payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(no message)")
}

struct FfiHost<'a, 'h>(&'a HostRef<'h>);

impl Host for FfiHost<'_, '_> {
    fn send_status(&self, status_json: &str) {
        self.0.send_status(status_json.into());
    }

    fn is_aborted(&self) -> bool {
        self.0.is_aborted()
    }

    fn call(&self, request: &str, body: &[u8]) -> Result<(String, Vec<u8>), String> {
        self.0
            .host_call(request.into(), body.into())
            .into_result()
            .map(|answer| (answer.json.into_string(), answer.bytes.into_vec()))
            .map_err(RString::into_string)
    }
}

/// Exports nodes from a plugin library. Use it once per crate, listing every
/// node (any expression whose type implements [`Node`](crate::Node)).
///
/// ```
/// use nano_plugin_abi::prelude::*;
///
/// struct Hello;
/// impl Node for Hello {
///     fn definition(&self) -> NodeDefinition {
///         NodeDefinition::new("hello", "Hello").output(Port::new("greeting", "string"))
///     }
///     fn execute(&self, _ctx: &Context) -> NodeResult {
///         Ok(Outputs::new().with("greeting", "hello"))
///     }
/// }
///
/// nano_plugin_abi::export_nodes![Hello];
/// # fn main() {}
/// ```
///
/// It emits the abi_stable root-module header (the equivalent of
/// `#[export_root_module]`, which cannot be used without a direct abi_stable
/// dependency) so a plugin needs no other crate than this one.
#[macro_export]
macro_rules! export_nodes {
    ($($node:expr),+ $(,)?) => {
        #[doc(hidden)]
        pub struct __NanoExportedNodes;

        impl $crate::__private::NodeSet for __NanoExportedNodes {
            fn registered() -> &'static $crate::__private::Registered {
                static REGISTERED: ::std::sync::LazyLock<$crate::__private::Registered> =
                    ::std::sync::LazyLock::new(|| {
                        $crate::__private::Registered::new(::std::vec![
                            $(::std::boxed::Box::new($node) as ::std::boxed::Box<dyn $crate::Node>),+
                        ])
                    });
                &REGISTERED
            }
        }

        // The symbol abi_stable's loader looks up; its name is checked
        // against abi_stable's own in this crate's tests.
        #[doc(hidden)]
        #[unsafe(no_mangle)]
        pub static _1as_0lib_1header_0root_bmodule_bloader: $crate::__private::LibHeader = {
            extern "C" fn erased_root_module() -> $crate::__private::RootModuleResult {
                $crate::__private::__call_root_module_loader(
                    $crate::__private::root_module::<__NanoExportedNodes>,
                )
            }
            // SAFETY: the constructor returns a `PluginModuleRef`, the type
            // named here, as abi_stable's own attribute macro requires.
            unsafe {
                $crate::__private::LibHeader::from_constructor::<$crate::ffi::PluginModuleRef>(
                    erased_root_module,
                    $crate::__private::CheckTypeLayout::Yes,
                )
            }
        };
    };
}
