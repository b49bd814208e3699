//! The HTTP side of the server: `GET /` and the WebSocket upgrade on `/`.

use std::sync::{
    Arc,
    atomic::{AtomicU64, Ordering},
};

use axum::{
    Json, Router,
    extract::{State, WebSocketUpgrade, ws::rejection::WebSocketUpgradeRejection},
    response::{IntoResponse, Response},
    routing::get,
};

use crate::{config::Identity, execution::Executor, registry::NodeRegistry, ws};

/// Largest WebSocket message accepted.
pub const MAX_MESSAGE_BYTES: usize = 16 * 1024 * 1024;

/// What every handler shares.
#[derive(Clone)]
pub struct ServerState {
    pub identity: Arc<Identity>,
    pub registry: NodeRegistry,
    pub executor: Arc<Executor>,
    connections: Arc<AtomicU64>,
}

impl ServerState {
    pub fn new(identity: Identity, registry: NodeRegistry, executor: Arc<Executor>) -> Self {
        Self {
            identity: Arc::new(identity),
            registry,
            executor,
            connections: Arc::new(AtomicU64::new(0)),
        }
    }

    pub(crate) fn next_connection_id(&self) -> u64 {
        self.connections.fetch_add(1, Ordering::Relaxed)
    }
}

/// The routes of the server.
pub fn router(state: ServerState) -> Router {
    Router::new().route("/", get(root)).with_state(state)
}

/// `GET /`: the WebSocket when the client asks to upgrade, else the status document.
async fn root(
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
    State(state): State<ServerState>,
) -> Response {
    match upgrade {
        Ok(upgrade) => upgrade
            .max_message_size(MAX_MESSAGE_BYTES)
            .on_upgrade(move |socket| ws::serve(socket, state)),
        Err(_) => Json(crate::protocol::status_document(
            &state.identity,
            &state.registry.snapshot(),
        ))
        .into_response(),
    }
}
