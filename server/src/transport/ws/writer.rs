//! A WebSocket session's writer: the frames queued in the outbox, the
//! definition updates of the registry and the keepalive pings out, and the
//! close frame at the end.

use std::{
    sync::{Arc, Mutex},
    time::Instant,
};

use axum::extract::ws::{CloseFrame, Message, WebSocket, close_code};
use futures_util::{SinkExt, stream::SplitSink};
use tokio::sync::{
    broadcast::{self, error::RecvError},
    oneshot, watch,
};

use super::{PING_EVERY, PONG_WITHIN};

/// What one flush carries at most.
const BATCH_BYTES: usize = 256 << 10;
use crate::{
    lock, protocol,
    registry::Snapshot,
    state::ServerState,
    transport::{OutboxItem, Outgoing},
};

/// What the writer of one session works with.
pub(super) struct Writer {
    pub(super) sender: SplitSink<WebSocket, Message>,
    pub(super) outgoing: Outgoing<Message>,
    pub(super) updates: broadcast::Receiver<Arc<Snapshot>>,
    /// Becomes `true` when the server shuts down.
    pub(super) closing: watch::Receiver<bool>,
    pub(super) state: ServerState,
    /// When the client last sent anything (the reader notes it).
    pub(super) last_heard: Arc<Mutex<Instant>>,
    pub(super) connection: u64,
}

/// Whether the writer goes on after a step.
enum Next {
    Continue,
    Stop,
}

impl Writer {
    /// Writes until the client is gone, a close frame was sent or the server
    /// shuts down; `_alive` is dropped then, which stops the reader.
    pub(super) async fn run(mut self, _alive: oneshot::Sender<()>) {
        // Keepalive, as the Python SDK does: a ping every 25 s; a client that
        // has sent nothing (not even a pong) for 25 + 12.5 s is gone.
        let mut keepalive = tokio::time::interval_at(tokio::time::Instant::now() + PING_EVERY, PING_EVERY);
        loop {
            let next = tokio::select! {
                _ = async { self.closing.wait_for(|closing| *closing).await.map(drop) } => {
                    self.close_for_shutdown().await;
                    Next::Stop
                }
                _ = keepalive.tick() => self.ping().await,
                frame = self.outgoing.recv() => match frame {
                    Some(frame) => self.write_ready(frame).await,
                    None => Next::Stop,
                },
                update = self.updates.recv() => match update {
                    Ok(snapshot) => self.send_text(protocol::definitions_update(&self.state.identity, &snapshot)).await,
                    // Behind by several updates: the latest full list covers them.
                    Err(RecvError::Lagged(_)) => {
                        let snapshot = self.state.registry.snapshot();
                        self.send_text(protocol::definitions_update(&self.state.identity, &snapshot)).await
                    }
                    Err(RecvError::Closed) => Next::Continue,
                },
            };
            if let Next::Stop = next {
                return;
            }
        }
    }

    /// Shutdown: what is queued (final statuses) goes first, then the close
    /// frame.
    async fn close_for_shutdown(&mut self) {
        while let Some(frame) = self.outgoing.try_recv() {
            if self.sender.send(frame).await.is_err() {
                break;
            }
        }
        let _ = self
            .sender
            .send(Message::Close(Some(CloseFrame {
                code: close_code::AWAY,
                reason: "server shutting down".into(),
            })))
            .await;
    }

    /// A ping, unless the client stopped answering them.
    async fn ping(&mut self) -> Next {
        let silent = lock(&self.last_heard).elapsed();
        if silent > PING_EVERY + PONG_WITHIN {
            tracing::info!(
                connection = self.connection,
                silent_s = silent.as_secs(),
                "client stopped answering pings; closing"
            );
            return Next::Stop;
        }
        self.send(Message::Ping(Default::default())).await
    }

    /// `first` and the frames queued behind it, up to [`BATCH_BYTES`].
    /// Under load many statuses are ready at once: they are fed, then
    /// written with one flush. (The bound keeps the outbox's count of what
    /// the client took honest: a batch is taken as it is written.)
    async fn write_ready(&mut self, first: Message) -> Next {
        if let Message::Close(close) = first {
            let _ = self.sender.send(Message::Close(close)).await;
            return Next::Stop;
        }
        let mut close = None;
        let mut batch = OutboxItem::bytes(&first);
        let mut fed = self.sender.feed(first).await;
        while fed.is_ok() && batch < BATCH_BYTES {
            match self.outgoing.try_recv() {
                Some(Message::Close(frame)) => {
                    close = Some(frame);
                    break;
                }
                Some(frame) => {
                    batch += OutboxItem::bytes(&frame);
                    fed = self.sender.feed(frame).await;
                }
                None => break,
            }
        }
        if fed.is_err() || self.sender.flush().await.is_err() {
            return Next::Stop;
        }
        // Behind, its requests are not read (so neither are its pongs):
        // taking frames is what shows it is alive.
        if self.outgoing.under_pressure() {
            *lock(&self.last_heard) = Instant::now();
        }
        if let Some(frame) = close {
            let _ = self.sender.send(Message::Close(frame)).await;
            return Next::Stop;
        }
        Next::Continue
    }

    async fn send_text(&mut self, text: String) -> Next {
        self.send(Message::Text(text.into())).await
    }

    async fn send(&mut self, message: Message) -> Next {
        match self.sender.send(message).await {
            Ok(()) => Next::Continue,
            Err(_) => Next::Stop,
        }
    }
}
