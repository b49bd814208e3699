//! One WebSocket connection: handshake, then requests in, statuses out.
//!
//! Reading and writing are separate tasks joined by a channel, so a slow
//! execution never blocks reading the next frame, and every status of an
//! execution reaches only the connection that asked for it.

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use axum::extract::ws::{CloseFrame, Message, WebSocket, close_code};
use futures_util::{SinkExt, StreamExt};
use serde_json::value::RawValue;
use tokio::sync::{broadcast::error::RecvError, mpsc};

use crate::{
    execution::{Failure, Origin, Status, StatusSink},
    metrics,
    protocol::{self, ClientMessage},
    state::{OpenWebSocket, ServerState},
};

/// A ping goes out this often…
const PING_EVERY: Duration = Duration::from_secs(25);
/// …and a client that sent nothing for `PING_EVERY` + this is gone.
const PONG_WITHIN: Duration = Duration::from_millis(12_500);

/// How long a client cut off for not reading gets to take its close frame
/// before its TCP connection is dropped.
const CLOSE_WITHIN: Duration = Duration::from_secs(5);

/// The frames queued for one connection, bounded in bytes: a client that
/// sends requests and never reads the answers cannot grow the server's
/// memory; past `max_outbox_bytes` it is cut off.
struct Outbox {
    frames: mpsc::UnboundedSender<Message>,
    /// Bytes queued and not yet written to the socket.
    bytes: AtomicUsize,
    max_bytes: usize,
    /// Set once, when the client fell `max_bytes` behind.
    overflowed: tokio::sync::watch::Sender<bool>,
    connection: u64,
}

impl Outbox {
    /// Queues a text frame, unless the client is too far behind (then the
    /// frame is dropped and the connection will be closed).
    fn push(&self, text: String) {
        let len = text.len();
        // One frame larger than the bound passes when nothing else is
        // queued (a large but legal answer); what grows is refused.
        let queued = self.bytes.fetch_add(len, Ordering::SeqCst);
        if queued > 0 && queued + len > self.max_bytes {
            self.bytes.fetch_sub(len, Ordering::SeqCst);
            if !self.overflowed.send_replace(true) {
                tracing::warn!(
                    connection = self.connection,
                    max_outbox_bytes = self.max_bytes,
                    "client is not reading its messages ({} bytes unsent); closing with 1008 and aborting its executions",
                    self.bytes.load(Ordering::SeqCst)
                );
            }
            return;
        }
        let _ = self.frames.send(Message::Text(text.into()));
    }

    /// Queues a control frame (not counted: close frames only).
    fn push_control(&self, message: Message) {
        let _ = self.frames.send(message);
    }

    /// A frame left the queue: whether to write it. Once the client is cut
    /// off, its unsent statuses are dropped so the close frame goes next.
    fn take(&self, message: &Message) -> bool {
        match message {
            Message::Text(text) => {
                self.bytes.fetch_sub(text.len(), Ordering::SeqCst);
                !*self.overflowed.borrow()
            }
            _ => true,
        }
    }
}

/// Serves one upgraded connection until the client goes away.
pub(crate) async fn serve(socket: WebSocket, state: ServerState, _open: OpenWebSocket) {
    let connection = state.next_connection_id();
    tracing::info!(connection, "WebSocket client connected");
    let (mut sender, mut receiver) = socket.split();
    let (frames, mut outgoing) = mpsc::unbounded_channel::<Message>();
    let outbox = Arc::new(Outbox {
        frames,
        bytes: AtomicUsize::new(0),
        max_bytes: state.limits.max_outbox_bytes,
        overflowed: tokio::sync::watch::channel(false).0,
        connection,
    });
    let mut overflowed = outbox.overflowed.subscribe();

    // Subscribe before the handshake so no update can fall between the two.
    let mut updates = state.registry.subscribe();
    let handshake = protocol::handshake(&state.identity, &state.registry.snapshot());
    if sender.send(Message::Text(handshake.into())).await.is_err() {
        return;
    }
    let connections = metrics::gauge!(metrics::WS_CONNECTIONS);
    connections.increment(1.0);

    // Keepalive, as the Python SDK does: a ping every 25 s; a client that
    // has sent nothing (not even a pong) for 25 + 12.5 s is gone.
    let last_heard = Arc::new(std::sync::Mutex::new(Instant::now()));
    let heard = Arc::clone(&last_heard);
    let writer_state = state.clone();
    let writer_outbox = Arc::clone(&outbox);
    // Dropped when the writer ends, which tells the reader to stop too.
    let (writer_alive, mut writer_done) = tokio::sync::oneshot::channel::<()>();
    let mut closing = state.closing();
    let writer = tokio::spawn(async move {
        let _alive = writer_alive;
        let mut keepalive = tokio::time::interval_at(tokio::time::Instant::now() + PING_EVERY, PING_EVERY);
        loop {
            let frame = tokio::select! {
                _ = async { closing.wait_for(|closing| *closing).await.map(drop) } => {
                    // Shutdown: what is queued (final statuses) goes first.
                    while let Ok(frame) = outgoing.try_recv() {
                        if writer_outbox.take(&frame) && sender.send(frame).await.is_err() {
                            break;
                        }
                    }
                    let _ = sender
                        .send(Message::Close(Some(CloseFrame {
                            code: close_code::AWAY,
                            reason: "server shutting down".into(),
                        })))
                        .await;
                    break;
                }
                _ = keepalive.tick() => {
                    let silent = heard.lock().map(|t| t.elapsed()).unwrap_or_default();
                    if silent > PING_EVERY + PONG_WITHIN {
                        tracing::info!(connection, silent_s = silent.as_secs(), "client stopped answering pings; closing");
                        break;
                    }
                    if sender.send(Message::Ping(Default::default())).await.is_err() {
                        break;
                    }
                    continue;
                }
                frame = outgoing.recv() => match frame {
                    Some(Message::Close(close)) => {
                        let _ = sender.send(Message::Close(close)).await;
                        break;
                    }
                    Some(frame) => {
                        // Under load many statuses are ready at once: queue
                        // them all, then write them with one flush.
                        let mut close = None;
                        let mut fed = if writer_outbox.take(&frame) { sender.feed(frame).await } else { Ok(()) };
                        while fed.is_ok() {
                            match outgoing.try_recv() {
                                Ok(Message::Close(frame)) => {
                                    close = Some(frame);
                                    break;
                                }
                                Ok(frame) if writer_outbox.take(&frame) => fed = sender.feed(frame).await,
                                Ok(_) => {}
                                Err(_) => break,
                            }
                        }
                        if fed.is_err() || sender.flush().await.is_err() {
                            break;
                        }
                        if let Some(frame) = close {
                            let _ = sender.send(Message::Close(frame)).await;
                            break;
                        }
                        continue;
                    }
                    None => break,
                },
                update = updates.recv() => match update {
                    Ok(snapshot) => protocol::definitions_update(&writer_state.identity, &snapshot),
                    // Behind by several updates: the latest full list covers them.
                    Err(RecvError::Lagged(_)) => {
                        protocol::definitions_update(&writer_state.identity, &writer_state.registry.snapshot())
                    }
                    Err(RecvError::Closed) => continue,
                },
            };
            if sender.send(Message::Text(frame.into())).await.is_err() {
                break;
            }
        }
    });

    let mut too_slow = false;
    loop {
        let message = tokio::select! {
            message = receiver.next() => match message {
                Some(message) => message,
                None => break,
            },
            // The writer ends when the client stopped answering.
            _ = &mut writer_done => break,
            _ = overflowed.wait_for(|overflowed| *overflowed) => {
                too_slow = true;
                break;
            }
        };
        if let Ok(mut heard) = last_heard.lock() {
            *heard = Instant::now();
        }
        match message {
            Ok(Message::Text(text)) => dispatch(&state, connection, &outbox, text.as_str()),
            Ok(Message::Binary(bytes)) => {
                tracing::warn!(
                    connection,
                    len = bytes.len(),
                    "ignored a binary frame: the protocol uses text frames"
                )
            }
            Ok(Message::Close(_)) => break,
            Ok(Message::Ping(_) | Message::Pong(_)) => {}
            Err(err) if is_too_big(&err) => {
                tracing::warn!(connection, %err, max_message_bytes = state.limits.max_message_bytes, "message too big; closing with 1009");
                outbox.push_control(Message::Close(Some(CloseFrame {
                    code: close_code::SIZE,
                    reason: "message too big".into(),
                })));
                // Let the writer send the close frame before it stops.
                let _ = (&mut writer_done).await;
                break;
            }
            Err(err) => {
                tracing::warn!(connection, %err, "WebSocket read failed; closing the connection");
                break;
            }
        }
    }

    // Nobody is left to receive the results.
    let aborted = state.executor.abort_owner(connection).len();
    if too_slow {
        // The unsent statuses are dropped and the close frame goes next, if
        // the client takes it within CLOSE_WITHIN; otherwise the TCP
        // connection is dropped with the writer.
        outbox.push_control(Message::Close(Some(CloseFrame {
            code: close_code::POLICY,
            reason: "too slow: not reading its messages".into(),
        })));
        let _ = tokio::time::timeout(CLOSE_WITHIN, &mut writer_done).await;
    }
    writer.abort();
    connections.decrement(1.0);
    tracing::info!(connection, aborted, "WebSocket client disconnected");
}

/// Whether a read failed because the message exceeded `max_message_bytes`.
fn is_too_big(err: &axum::Error) -> bool {
    let text = err.to_string();
    text.contains("Space limit exceeded") || text.contains("too long") || text.contains("Message too long")
}

fn dispatch(state: &ServerState, connection: u64, outbox: &Arc<Outbox>, text: &str) {
    match protocol::decode(text) {
        Ok(ClientMessage::RequestExecution { node_id, request }) if state.is_shutting_down() => {
            ConnectionSink::new(state, outbox, &request.instance_id, &node_id).send(Status::Error(
                Failure::Internal,
                "the server is shutting down".to_owned(),
            ));
        }
        Ok(ClientMessage::RequestExecution { node_id, request }) => {
            tracing::debug!(connection, instance = %request.instance_id, node = %request.node_uid, "request_execution");
            let sink = ConnectionSink::new(state, outbox, &request.instance_id, &node_id);
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
            ConnectionSink::new(state, outbox, &instance_id, &node_id).send(Status::Error(Failure::Node, reason));
        }
        Ok(ClientMessage::StopWorkflowInstance { instance_id }) => {
            let aborted = state.executor.stop_instance(&instance_id);
            tracing::info!(connection, instance = %instance_id, aborted = aborted.len(), "stop_workflow_instance");
            let ack = protocol::ack_stop(&state.identity, &instance_id, aborted.len());
            outbox.push(ack);
            // The final errors of the aborted executions follow the ack.
            drop(aborted);
        }
        Err(err) => {
            let preview: String = text.chars().take(120).collect();
            tracing::warn!(connection, %err, frame = %preview, "ignored a malformed frame");
        }
    }
}

/// Sends the statuses of one execution to its connection.
struct ConnectionSink {
    prefix: String,
    outbox: Arc<Outbox>,
}

impl ConnectionSink {
    fn new(state: &ServerState, outbox: &Arc<Outbox>, instance_id: &str, node_id: &RawValue) -> Arc<Self> {
        Arc::new(Self {
            prefix: protocol::node_status_prefix(&state.identity, instance_id, node_id),
            outbox: Arc::clone(outbox),
        })
    }
}

impl StatusSink for ConnectionSink {
    fn send(&self, status: Status) {
        // A closed outbox means the client left; its executions are aborted.
        self.outbox.push(protocol::node_status(&self.prefix, &status));
    }
}
