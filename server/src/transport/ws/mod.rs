//! One WebSocket session: handshake, then requests in, statuses out.
//!
//! Reading and writing are separate tasks joined by an outbox, so a slow
//! execution never blocks reading the next frame, and every status of an
//! execution reaches only the connection that asked for it. The reader
//! (`reader`) dispatches requests; the writer (`writer`) sends what is
//! queued, the definition updates and the keepalive pings.

mod reader;
mod writer;

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use axum::extract::ws::{CloseFrame, Message, WebSocket, close_code};
use futures_util::{SinkExt, StreamExt};
use tokio::sync::oneshot;

use super::outbox::{BoundedOutbox, CLOSE_WITHIN, CutOffRule, OutboxItem, Replaceable};
use crate::{
    metrics, protocol,
    state::{OpenWebSocket, ServerState},
};

/// A ping goes out this often…
const PING_EVERY: Duration = Duration::from_secs(25);
/// …and a client that sent nothing for `PING_EVERY` + this is gone.
const PONG_WITHIN: Duration = Duration::from_millis(12_500);

/// Text frames count against `max_outbox_bytes`; a close frame goes even to
/// a client cut off.
impl OutboxItem for Message {
    fn bytes(&self) -> usize {
        match self {
            Message::Text(text) => text.len(),
            _ => 0,
        }
    }

    fn always_queued(&self) -> bool {
        !matches!(self, Message::Text(_))
    }
}

/// The frames queued for one connection. Past `max_outbox_bytes` its
/// requests are no longer read until it catches up; a client that takes
/// nothing for `client_stall_ms` meanwhile is cut off, and its unsent frames
/// are dropped so the close frame goes next.
struct SessionOutbox {
    frames: BoundedOutbox<Message>,
}

impl SessionOutbox {
    /// Queues a text frame (dropped once the client is cut off; the reader
    /// hears of a cut-off through the outbox's watch).
    fn push(&self, text: String) {
        let _ = self.frames.push(Message::Text(text.into()));
    }

    /// Queues a progress frame of one execution, which replaces its unsent
    /// predecessor (`hold`) while the client is behind.
    fn push_progress(&self, hold: &Replaceable<Message>, text: String) {
        let _ = self.frames.push_replaceable(hold, Message::Text(text.into()));
    }

    /// Queues a close frame: the writer sends it and stops.
    fn close(&self, code: u16, reason: &'static str) {
        let close = Message::Close(Some(CloseFrame {
            code,
            reason: reason.into(),
        }));
        let _ = self.frames.push(close);
    }
}

/// How the reader ended.
enum ReaderEnd {
    /// The client closed, left or failed, or the writer stopped.
    Done,
    /// The client took nothing for `client_stall_ms` while frames waited.
    CutOff,
}

/// Runs one upgraded connection until the client goes away.
pub(super) async fn run_session(socket: WebSocket, state: ServerState, _open: OpenWebSocket) {
    let connection = state.next_connection_id();
    tracing::info!(connection, "WebSocket client connected");
    let (mut sender, receiver) = socket.split();
    let (frames, outgoing) = BoundedOutbox::new(
        state.limits.max_outbox_bytes,
        state.limits.client_stall,
        CutOffRule::DropQueued,
    );
    let cut_off = frames.cut_off();
    let outbox = Arc::new(SessionOutbox { frames });

    // Subscribe before the handshake so no update can fall between the two.
    let updates = state.registry.subscribe();
    let handshake = protocol::handshake(&state.identity, &state.registry.snapshot());
    if sender.send(Message::Text(handshake.into())).await.is_err() {
        return;
    }
    let connections = metrics::gauge!(metrics::WS_CONNECTIONS);
    connections.increment(1.0);

    let last_heard = Arc::new(Mutex::new(Instant::now()));
    // Dropped when the writer ends, which tells the reader to stop too.
    let (writer_alive, mut writer_done) = oneshot::channel::<()>();
    let writer = writer::Writer {
        sender,
        outgoing,
        updates,
        closing: state.closing(),
        state: state.clone(),
        last_heard: Arc::clone(&last_heard),
        connection,
    };
    let writer = tokio::spawn(writer.run(writer_alive));

    let reader = reader::Reader {
        state: &state,
        connection,
        outbox: &outbox,
        last_heard: &last_heard,
    };
    let end = reader.run(receiver, &mut writer_done, cut_off).await;

    // Nobody is left to receive the results.
    let aborted = state.executor.abort_owner(connection).len();
    if let ReaderEnd::CutOff = end {
        tracing::warn!(
            connection,
            client_stall_ms = state.limits.client_stall.as_millis() as u64,
            unsent_bytes = outbox.frames.queued_bytes(),
            aborted,
            "client is not reading its messages (it took nothing for client_stall_ms while frames waited); closing with 1008 and aborting its executions"
        );
        // The unsent statuses are dropped and the close frame goes next, if
        // the client takes it within CLOSE_WITHIN; otherwise the TCP
        // connection is dropped with the writer.
        outbox.close(close_code::POLICY, "too slow: not reading its messages");
        let _ = tokio::time::timeout(CLOSE_WITHIN, &mut writer_done).await;
    }
    writer.abort();
    connections.decrement(1.0);
    tracing::info!(connection, aborted, "WebSocket client disconnected");
}
