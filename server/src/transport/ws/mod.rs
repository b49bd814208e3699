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

use super::outbox::{BoundedOutbox, CLOSE_WITHIN, CutOffRule, OutboxItem, Pushed};
use crate::{
    metrics, protocol,
    state::{OpenWebSocket, ServerState},
};

/// A ping goes out this often…
const PING_EVERY: Duration = Duration::from_secs(25);
/// …and a client that sent nothing for `PING_EVERY` + this is gone.
const PONG_WITHIN: Duration = Duration::from_millis(12_500);

/// Text frames count against `max_outbox_bytes`; close frames always go.
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

/// The frames queued for one connection: a client that sends requests and
/// never reads the answers is cut off past `max_outbox_bytes`, and its
/// unsent frames are dropped so the close frame goes next.
struct SessionOutbox {
    frames: BoundedOutbox<Message>,
    connection: u64,
}

impl SessionOutbox {
    /// Queues a text frame, unless the client is too far behind (then the
    /// frame is dropped and the connection will be closed).
    fn push(&self, text: String) {
        if self.frames.push(Message::Text(text.into())) == Pushed::CutOff {
            tracing::warn!(
                connection = self.connection,
                max_outbox_bytes = self.frames.max_bytes(),
                "client is not reading its messages ({} bytes unsent); closing with 1008 and aborting its executions",
                self.frames.queued_bytes()
            );
        }
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
    /// The client fell `max_outbox_bytes` behind.
    CutOff,
}

/// Runs one upgraded connection until the client goes away.
pub(super) async fn run_session(socket: WebSocket, state: ServerState, _open: OpenWebSocket) {
    let connection = state.next_connection_id();
    tracing::info!(connection, "WebSocket client connected");
    let (mut sender, receiver) = socket.split();
    let (frames, outgoing) = BoundedOutbox::new(state.limits.max_outbox_bytes, CutOffRule::DropQueued);
    let cut_off = frames.cut_off();
    let outbox = Arc::new(SessionOutbox { frames, connection });

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
