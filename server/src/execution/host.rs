//! The host side of the plugin callbacks (`HostCallbacks`): a node's own
//! statuses and its abort checks, answered by its [`Execution`].

use abi_stable::{sabi_trait::TD_Opaque, sabi_types::RRef, std_types::RStr};
use nano_plugin_abi::ffi::{ExecuteCall, HostCallbacks, HostCallbacks_TO, PluginModuleRef};
use serde::Deserialize;

use super::{Execution, ExecutionRequest, Status, UpdateKind};

impl HostCallbacks for Execution {
    fn send_status(&self, status: RStr<'_>) {
        self.node_status(status.as_str());
    }

    fn is_aborted(&self) -> bool {
        Execution::is_aborted(self)
    }
}

impl Execution {
    /// A status the node sent (a NodeStatus object as JSON): forwarded when
    /// it is one a node may send (`running`, `idle`, `missing`), else
    /// dropped and logged. From any backend.
    pub fn node_status(&self, json: &str) {
        #[derive(Deserialize)]
        struct Kind<'a> {
            #[serde(rename = "type", borrow)]
            kind: &'a str,
        }
        let kind = match serde_json::from_str::<Kind<'_>>(json) {
            Ok(Kind { kind: "running" }) => UpdateKind::Running,
            Ok(Kind { kind: "idle" }) => UpdateKind::Idle,
            Ok(Kind { kind: "missing" }) => UpdateKind::Missing,
            Ok(Kind { kind }) => {
                tracing::warn!(
                    kind,
                    "dropped a `{kind}` status sent by a node: nodes return outputs or errors instead"
                );
                return;
            }
            Err(err) => {
                tracing::warn!(%err, "dropped a malformed status sent by a node");
                return;
            }
        };
        self.forward(Status::Update(kind, json.to_owned()));
    }
}

/// Calls node `node_index` of `module` on this thread until it returns.
/// Never panics: the plugin side catches panics and returns them as errors.
pub(crate) fn call_node<H: HostCallbacks>(
    module: PluginModuleRef,
    node_index: u32,
    request: &ExecutionRequest,
    execution: &H,
) -> Result<String, String> {
    let call = ExecuteCall {
        node_index,
        instance_id: request.instance_id.as_str().into(),
        inputs: request.inputs.as_str().into(),
        parameters: request.parameters.as_str().into(),
        graph_node: request.graph_node.as_str().into(),
    };
    let host = HostCallbacks_TO::from_ptr(RRef::new(execution), TD_Opaque);
    (module.execute())(call, host)
        .into_result()
        .map(Into::into)
        .map_err(Into::into)
}
