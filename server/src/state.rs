//! The server's shared state: what every request handler and connection
//! sees (identity, registry, executor, limits), the count of open
//! WebSockets, and the shutdown flags.
//!
//! Both transports import it; it imports neither (`transport::router` →
//! `api`, `transport::ws` → `state` → `execution`, `registry`, `config`,
//! `metrics`, `nanocore`).

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
    config::{self, Identity, Isolation, Secret},
    execution::{ExecutionRequest, Executor, Failure, Origin, Status, StatusSink},
    metrics,
    nanocore::Services,
    protocol,
    registry::NodeRegistry,
    transport::StreamCaps,
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

/// Limits and access rules of the transports: the configured ones (see
/// [`config::Limits`]) and what binding told.
#[derive(Debug, Clone)]
pub struct Limits {
    pub auth_token: Option<Secret>,
    pub max_message_bytes: usize,
    pub max_connections: usize,
    pub max_request_bytes: usize,
    /// Unsent bytes past which a WebSocket's requests are no longer read.
    pub max_outbox_bytes: usize,
    /// A client behind that takes nothing for this long is cut off.
    pub client_stall: std::time::Duration,
    /// Origins besides the server's own allowed to POST or open a WebSocket.
    pub allowed_origins: Vec<String>,
    /// Listening on a loopback address only: every request must name a
    /// loopback host.
    pub loopback_only: bool,
    pub max_event_streams: usize,
    pub max_event_streams_per_address: usize,
    /// An event stream that sent nothing for this long is closed while more
    /// than three quarters of `max_event_streams` are open.
    pub idle_timeout: std::time::Duration,
}

impl Limits {
    /// The transports' share of `config`, for a server listening on
    /// loopback only or not and accepting `max_http_connections` TCP
    /// connections.
    ///
    /// Long-lived connections leave a reserve for the rest: WebSockets may
    /// take at most half of `max_http_connections`, event streams a
    /// quarter, so at least a quarter is always there for executions and
    /// health checks whatever the other two keys say.
    pub fn new(config: &config::Limits, loopback_only: bool, max_http_connections: usize) -> Self {
        let reserve = |key: &str, configured: usize, share: usize| {
            let cap = (max_http_connections / share).max(1);
            if configured > cap {
                tracing::info!(
                    configured,
                    used = cap,
                    max_http_connections,
                    "{key} lowered to 1/{share} of max_http_connections: long-lived connections leave room for requests"
                );
            }
            configured.min(cap)
        };
        Self {
            auth_token: config.auth_token.clone(),
            max_message_bytes: config.max_message_bytes,
            max_connections: reserve("max_connections", config.max_connections, 2),
            max_request_bytes: config.max_request_bytes,
            max_outbox_bytes: config.max_outbox_bytes,
            client_stall: config.client_stall,
            allowed_origins: config.allowed_origins.clone(),
            loopback_only,
            max_event_streams: reserve("max_event_streams", config.max_event_streams, 4),
            max_event_streams_per_address: config.max_event_streams_per_address,
            idle_timeout: config.idle_timeout,
        }
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
    /// Open event streams, capped in total and per address.
    pub event_streams: Arc<StreamCaps>,
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
            event_streams: Arc::default(),
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
