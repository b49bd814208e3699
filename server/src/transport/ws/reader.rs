//! A WebSocket session's reader: client frames in, each request dispatched
//! to the executor with a sink that queues its statuses in the session's
//! outbox.

use std::{
    sync::{Arc, Mutex},
    time::Instant,
};

use axum::extract::ws::{Message, WebSocket, close_code};
use futures_util::{StreamExt, stream::SplitStream};
use serde_json::value::RawValue;
use tokio::sync::{oneshot, watch};

use super::{ReaderEnd, SessionOutbox};
use crate::transport::Replaceable;
use crate::{
    execution::{Failure, Origin, Status, StatusSink},
    lock,
    protocol::{self, ClientMessage},
    state::ServerState,
};

/// What the reader of one session works with.
pub(super) struct Reader<'a> {
    pub(super) state: &'a ServerState,
    pub(super) connection: u64,
    pub(super) outbox: &'a Arc<SessionOutbox>,
    /// When the client last sent anything, for the writer's keepalive.
    pub(super) last_heard: &'a Mutex<Instant>,
}

impl Reader<'_> {
    /// Reads until the client leaves, the writer stops (`writer_done`) or
    /// the client is cut off for not reading (`cut_off`). While the client
    /// is more than `max_outbox_bytes` behind, nothing is read: TCP pushes
    /// back on it (a stop it sent meanwhile is handled when reading resumes).
    pub(super) async fn run(
        &self,
        mut receiver: SplitStream<WebSocket>,
        writer_done: &mut oneshot::Receiver<()>,
        mut cut_off: watch::Receiver<bool>,
    ) -> ReaderEnd {
        let connection = self.connection;
        let stalled = self.outbox.frames.stalled();
        tokio::pin!(stalled);
        loop {
            let next = async {
                self.outbox.frames.wait_for_room().await;
                receiver.next().await
            };
            let message = tokio::select! {
                message = next => match message {
                    Some(message) => message,
                    None => return ReaderEnd::Done,
                },
                () = &mut stalled => return ReaderEnd::CutOff,
                // The writer ends when the client stopped answering.
                _ = &mut *writer_done => return ReaderEnd::Done,
                _ = cut_off.wait_for(|cut_off| *cut_off) => return ReaderEnd::CutOff,
            };
            *lock(self.last_heard) = Instant::now();
            match message {
                Ok(Message::Text(text)) => self.dispatch(text.as_str()),
                Ok(Message::Binary(bytes)) => {
                    tracing::warn!(
                        connection,
                        len = bytes.len(),
                        "ignored a binary frame: the protocol uses text frames"
                    )
                }
                Ok(Message::Close(_)) => return ReaderEnd::Done,
                Ok(Message::Ping(_) | Message::Pong(_)) => {}
                Err(err) if is_too_big(&err) => {
                    tracing::warn!(connection, %err, max_message_bytes = self.state.limits.max_message_bytes, "message too big; closing with 1009");
                    self.outbox.close(close_code::SIZE, "message too big");
                    // Let the writer send the close frame before it stops.
                    let _ = (&mut *writer_done).await;
                    return ReaderEnd::Done;
                }
                Err(err) => {
                    tracing::warn!(connection, %err, "WebSocket read failed; closing the connection");
                    return ReaderEnd::Done;
                }
            }
        }
    }

    fn dispatch(&self, text: &str) {
        let (state, connection) = (self.state, self.connection);
        match protocol::decode(text) {
            Ok(ClientMessage::RequestExecution { node_id, request }) if state.is_shutting_down() => {
                self.sink(&request.instance_id, &node_id).send(Status::Error(
                    Failure::Internal,
                    "the server is shutting down".to_owned(),
                ));
            }
            Ok(ClientMessage::RequestExecution { node_id, request }) => {
                tracing::debug!(connection, instance = %request.instance_id, node = %request.node_uid, "request_execution");
                let sink = self.sink(&request.instance_id, &node_id);
                let origin = Origin {
                    transport: "websocket",
                    node_id: node_id.to_string(),
                    traceparent: None,
                };
                state.start_execution(connection, request, origin, sink);
            }
            Ok(ClientMessage::InvalidExecution {
                instance_id,
                node_id,
                reason,
            }) => {
                tracing::warn!(connection, instance = %instance_id, "rejected request_execution: {reason}");
                self.sink(&instance_id, &node_id)
                    .send(Status::Error(Failure::Node, reason));
            }
            Ok(ClientMessage::StopWorkflowInstance { instance_id }) => {
                let aborted = state.executor.stop_instance(&instance_id);
                tracing::info!(connection, instance = %instance_id, aborted = aborted.len(), "stop_workflow_instance");
                let ack = protocol::ack_stop(&state.identity, &instance_id, aborted.len());
                self.outbox.push(ack);
                // The final errors of the aborted executions follow the ack.
                drop(aborted);
            }
            Err(err) => {
                let preview: String = text.chars().take(120).collect();
                tracing::warn!(connection, %err, frame = %preview, "ignored a malformed frame");
            }
        }
    }

    fn sink(&self, instance_id: &str, node_id: &RawValue) -> Arc<ConnectionSink> {
        Arc::new(ConnectionSink {
            prefix: protocol::node_status_prefix(&self.state.identity, instance_id, node_id),
            outbox: Arc::clone(self.outbox),
            progress: Replaceable::default(),
        })
    }
}

/// Whether a read failed because the message exceeded `max_message_bytes`.
fn is_too_big(err: &axum::Error) -> bool {
    let text = err.to_string();
    text.contains("Space limit exceeded") || text.contains("too long") || text.contains("Message too long")
}

/// Sends the statuses of one execution to its connection.
struct ConnectionSink {
    prefix: String,
    outbox: Arc<SessionOutbox>,
    /// Its unsent progress frame, which the next one replaces while the
    /// client is behind.
    progress: Replaceable<Message>,
}

impl StatusSink for ConnectionSink {
    fn send(&self, status: Status) {
        let frame = protocol::node_status(&self.prefix, &status);
        // Progress (and every other update between the first `running` and
        // the final status) may be coalesced; those two never are.
        if let Status::Update(..) = status {
            self.outbox.push_progress(&self.progress, frame);
        } else {
            self.outbox.push(frame);
        }
    }
}
