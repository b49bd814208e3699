//! The host side of the plugin callbacks (`HostCallbacks`): a node's own
//! statuses and its abort checks, answered by its [`Execution`], and its
//! NanoCore calls, answered by the [`Services`].

use std::sync::{
    Arc,
    atomic::{AtomicBool, Ordering},
};

use abi_stable::{
    sabi_trait::TD_Opaque,
    sabi_types::RRef,
    std_types::{RResult, RSlice, RStr, RString},
};
use nano_plugin_abi::ffi::{ExecuteCall, HostAnswer, HostCallbacks, HostCallbacks_TO, PluginModuleRef};
use serde::Deserialize;

use super::{Execution, ExecutionRequest, Status, UpdateKind};
use crate::nanocore::{Owner, Services};

impl HostCallbacks for Execution {
    fn send_status(&self, status: RStr<'_>) {
        self.node_status(status.as_str());
    }

    fn is_aborted(&self) -> bool {
        Execution::is_aborted(self)
    }
}

/// What an in-process library version needs to answer its nodes' NanoCore
/// calls: the services, and the runtime their HTTP calls run on.
pub(crate) struct HostServices {
    pub services: Arc<Services>,
    pub runtime: tokio::runtime::Handle,
}

/// One library version's identity for the services.
pub(crate) struct VersionInfo {
    pub id: u64,
    pub label: Arc<str>,
}

/// The callbacks of one in-process execution: statuses and aborts go to
/// its [`Execution`]; NanoCore calls block this (pool) thread on the
/// server's runtime.
pub(crate) struct InProcessHost<'a> {
    pub execution: &'a Execution,
    pub services: Option<&'a HostServices>,
    pub version: &'a VersionInfo,
    /// Whether it made a call (its streams must be released at its end).
    pub called: AtomicBool,
}

impl HostCallbacks for InProcessHost<'_> {
    fn send_status(&self, status: RStr<'_>) {
        self.execution.node_status(status.as_str());
    }

    fn is_aborted(&self) -> bool {
        self.execution.is_aborted()
    }

    fn host_call(&self, request: RStr<'_>, body: RSlice<'_, u8>) -> RResult<HostAnswer, RString> {
        let Some(host) = self.services else {
            return RResult::RErr(
                nano_plugin_abi::host_wire::Failure::new(
                    nano_plugin_abi::host_wire::ErrorKind::Unsupported,
                    "this command runs no NanoCore services",
                )
                .to_json()
                .into(),
            );
        };
        self.called.store(true, Ordering::Relaxed);
        let owner = Owner {
            version: self.version.id,
            label: Arc::clone(&self.version.label),
            execution: self.execution.id(),
        };
        let call = host.services.call(
            &owner,
            request.as_str(),
            bytes::Bytes::copy_from_slice(body.as_slice()),
            || self.execution.is_aborted(),
        );
        answer(host.runtime.block_on(call))
    }
}

impl InProcessHost<'_> {
    /// The execution is over: what its calls held goes.
    pub fn finish(&self) {
        if let (Some(host), true) = (self.services, self.called.load(Ordering::Relaxed)) {
            host.services.end_execution(self.version.id, self.execution.id());
        }
    }
}

/// A services answer as it crosses the boundary.
pub(crate) fn answer(outcome: Result<(String, bytes::Bytes), String>) -> RResult<HostAnswer, RString> {
    match outcome {
        Ok((json, bytes)) => RResult::ROk(HostAnswer {
            json: json.into(),
            // No copy: the chunk was built for this answer alone.
            bytes: Vec::from(bytes).into(),
        }),
        Err(failure) => RResult::RErr(failure.into()),
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
