//! The server's shared state: what every request handler and connection
//! sees (identity, registry, executor, limits), the count of open
//! WebSockets, and the shutdown flags.
//!
//! Both transports import it; it imports neither (`http` → `api`, `ws` →
//! `state` → `execution`, `registry`, `config`, `metrics`, `nanocore`).

use std::{
    path::PathBuf,
    sync::{
        Arc, OnceLock,
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
    },
    time::SystemTime,
};

use metrics_exporter_prometheus::PrometheusHandle;

use crate::{
    config::{Identity, Isolation},
    execution::{ExecutionRequest, Executor, Failure, Origin, Status, StatusSink},
    metrics,
    nanocore::Services,
    protocol,
    registry::NodeRegistry,
};

/// How this server runs, for the operator page and the routes the
/// browser pages use.
pub struct Setup {
    pub started: SystemTime,
    pub isolation: Isolation,
    /// The folder libraries are loaded from; paths are shown relative to it.
    pub nodes_path: PathBuf,
    /// Whether the pages under `/ui/` (and the asset routes they use) are served.
    pub ui: bool,
    /// NanoCore's API, reached with the server's token (never the browser's).
    pub services: Arc<Services>,
}

/// Limits and access rules of the transports. Its `Debug` output redacts
/// the token.
#[derive(Clone)]
pub struct Limits {
    pub auth_token: Option<Arc<str>>,
    pub max_message_bytes: usize,
    pub max_connections: usize,
    pub max_request_bytes: usize,
    /// Unsent bytes one WebSocket or event stream may hold.
    pub max_outbox_bytes: usize,
    /// Origins besides the server's own allowed to POST or open a WebSocket.
    pub allowed_origins: Vec<String>,
    /// Listening on a loopback address only: every request must name a
    /// loopback host.
    pub loopback_only: bool,
}

impl std::fmt::Debug for Limits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limits")
            .field("auth_token", &crate::config::redacted(self.auth_token.as_deref()))
            .field("max_message_bytes", &self.max_message_bytes)
            .field("max_connections", &self.max_connections)
            .field("max_request_bytes", &self.max_request_bytes)
            .field("max_outbox_bytes", &self.max_outbox_bytes)
            .field("allowed_origins", &self.allowed_origins)
            .field("loopback_only", &self.loopback_only)
            .finish()
    }
}

/// What every handler shares. Cloned for every request and middleware, so
/// it is one `Arc`.
#[derive(Clone)]
pub struct ServerState(Arc<SharedState>);

impl std::ops::Deref for ServerState {
    type Target = SharedState;

    fn deref(&self) -> &SharedState {
        &self.0
    }
}

/// The fields of [`ServerState`].
pub struct SharedState {
    pub identity: Arc<Identity>,
    pub registry: NodeRegistry,
    pub executor: Arc<Executor>,
    pub metrics: PrometheusHandle,
    pub limits: Arc<Limits>,
    pub setup: Setup,
    connections: Arc<AtomicU64>,
    open_websockets: Arc<AtomicUsize>,
    /// Flips to true when WebSockets should send their last frames and close.
    closing: tokio::sync::watch::Sender<bool>,
    shutting_down: Arc<AtomicBool>,
    openapi: Arc<OnceLock<String>>,
}

impl ServerState {
    pub fn new(
        identity: Identity,
        registry: NodeRegistry,
        executor: Arc<Executor>,
        limits: Limits,
        setup: Setup,
    ) -> Self {
        Self(Arc::new(SharedState {
            identity: Arc::new(identity),
            registry,
            executor,
            metrics: metrics::install(),
            limits: Arc::new(limits),
            setup,
            connections: Arc::new(AtomicU64::new(0)),
            open_websockets: Arc::new(AtomicUsize::new(0)),
            closing: tokio::sync::watch::channel(false).0,
            shutting_down: Arc::new(AtomicBool::new(false)),
            openapi: Arc::new(OnceLock::new()),
        }))
    }

    /// Starts an execution of the node `request` names, for `owner`; every
    /// status goes to `sink`, an unknown uid's error included.
    pub(crate) fn start_execution(
        &self,
        owner: u64,
        request: ExecutionRequest,
        origin: Origin,
        sink: Arc<dyn StatusSink>,
    ) {
        let snapshot = self.registry.snapshot();
        let Some(node) = snapshot.get(&request.node_uid) else {
            metrics::counter!(metrics::EXECUTIONS, "node" => metrics::UNKNOWN_NODE_LABEL, "outcome" => "unknown_node")
                .increment(1);
            sink.send(Status::Error(
                Failure::UnknownNode,
                protocol::unknown_node_message(&request.node_uid),
            ));
            return;
        };
        self.executor.start(owner, &node.target, request, origin, sink);
    }

    /// A fresh id for a connection or an HTTP execution (an "owner").
    pub(crate) fn next_connection_id(&self) -> u64 {
        self.connections.fetch_add(1, Ordering::Relaxed)
    }

    /// From now on: not ready, and no new executions.
    pub fn begin_shutdown(&self) {
        self.shutting_down.store(true, Ordering::SeqCst);
    }

    /// Tells every WebSocket to flush and close (1001, going away).
    pub fn close_websockets(&self) {
        self.closing.send_replace(true);
    }

    /// WebSockets open now.
    pub fn open_websockets(&self) -> usize {
        self.open_websockets.load(Ordering::SeqCst)
    }

    pub(crate) fn closing(&self) -> tokio::sync::watch::Receiver<bool> {
        self.closing.subscribe()
    }

    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::SeqCst)
    }

    /// Counts a WebSocket as open until the returned guard is dropped, or
    /// `None` when `max_connections` are open already.
    pub(crate) fn admit_websocket(&self) -> Option<OpenWebSocket> {
        let open = self.open_websockets.fetch_add(1, Ordering::SeqCst);
        let guard = OpenWebSocket(Arc::clone(&self.open_websockets));
        (open < self.limits.max_connections).then_some(guard)
    }

    pub(crate) fn openapi_json(&self) -> String {
        self.openapi.get().cloned().unwrap_or_default()
    }

    /// Keeps the OpenAPI document the router was built with (once).
    pub(crate) fn set_openapi_json(&self, document: String) {
        let _ = self.openapi.set(document);
    }
}

/// One open WebSocket, counted until dropped.
pub(crate) struct OpenWebSocket(Arc<AtomicUsize>);

impl Drop for OpenWebSocket {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}
