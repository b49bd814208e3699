//! A status: what the caller of an execution hears, in order: `running`,
//! the node's own, then exactly one `complete` or `error`. Typed here; every
//! wire encoding lives in [`crate::protocol`].

use serde_json::value::RawValue;

/// A NodeStatus on its way to the caller; [`crate::protocol`] encodes it.
#[derive(Debug, Clone)]
pub enum Status {
    /// The status every execution starts with.
    Running,
    /// A node's own non-final status: its kind, and the NodeStatus object as
    /// the node wrote it.
    Update(UpdateKind, String),
    /// The final success, with the outputs (a JSON object from a native
    /// node, any JSON value from a language SDK's) and the node's own
    /// message, if it gave one (else the SDKs' "Execution finished.").
    Complete(Box<RawValue>, Option<Box<str>>),
    /// The final failure: why, and the message.
    Error(Failure, String),
}

/// The kinds of non-final status a node may send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpdateKind {
    Running,
    Idle,
    Missing,
}

/// Why an execution failed; transports map it to their own codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The node returned an error (or panicked).
    Node,
    /// No node with that uid is served.
    UnknownNode,
    /// Stopped by the caller, a disconnect or shutdown.
    Aborted,
    /// Ran past `execution_timeout_ms`.
    TimedOut,
    /// The process running the node died (process isolation).
    Crashed,
    /// The process running the node stopped answering its heartbeat and
    /// was replaced (process isolation).
    Stalled,
    /// Refused: `max_queued_executions` are already waiting.
    Busy,
    /// The server could not run it.
    Internal,
}

impl Failure {
    /// Label for metrics and logs.
    pub fn label(self) -> &'static str {
        match self {
            Self::Node => "error",
            Self::UnknownNode => "unknown_node",
            Self::Aborted => "aborted",
            Self::TimedOut => "timeout",
            Self::Crashed => "crashed",
            Self::Stalled => "stalled",
            Self::Busy => "busy",
            Self::Internal => "internal",
        }
    }
}

impl Status {
    pub(super) fn error(failure: Failure, message: impl Into<String>) -> Self {
        Self::Error(failure, message.into())
    }

    /// The status's `type`, also the name of its Server-Sent Event.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Running | Self::Update(UpdateKind::Running, _) => "running",
            Self::Update(UpdateKind::Idle, _) => "idle",
            Self::Update(UpdateKind::Missing, _) => "missing",
            Self::Complete(..) => "complete",
            Self::Error(..) => "error",
        }
    }

    /// Whether this status ends the execution.
    pub fn is_final(&self) -> bool {
        matches!(self, Self::Complete(..) | Self::Error(..))
    }
}

/// Receives the statuses of one execution, in order.
pub trait StatusSink: Send + Sync + 'static {
    fn send(&self, status: Status);
}

/// The message for an execution stopped before it completed.
pub const ABORTED: &str = "Execution aborted";
