//! Server-Sent Events for `POST /nodes/{uid}/execute` with `Accept:
//! text/event-stream`: one event per status, named by its kind, the last
//! one `complete` or `error`.

use std::{
    convert::Infallible,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use axum::response::sse::{Event, KeepAlive, Sse};
use serde_json::Value;
use tokio::sync::mpsc;

use super::AbortOnDrop;
use crate::{
    execution::{Status, StatusSink},
    lock, protocol,
};

/// Every status of an execution, for the event stream, holding at most
/// `max_bytes` of statuses the client has not taken yet. Past that the
/// client is not reading: `on_overflow` runs once (it aborts the execution
/// and closes the connection) and further non-final statuses are dropped.
pub(super) struct StreamSink {
    statuses: mpsc::UnboundedSender<Status>,
    unsent: Arc<AtomicUsize>,
    max_bytes: usize,
    on_overflow: Mutex<Option<Box<dyn FnOnce() + Send>>>,
}

impl StreamSink {
    pub(super) fn new(
        max_bytes: usize,
        on_overflow: Box<dyn FnOnce() + Send>,
    ) -> (Self, mpsc::UnboundedReceiver<Status>, Arc<AtomicUsize>) {
        let (statuses, receiver) = mpsc::unbounded_channel();
        let unsent = Arc::new(AtomicUsize::new(0));
        let sink = Self {
            statuses,
            unsent: Arc::clone(&unsent),
            max_bytes,
            on_overflow: Mutex::new(Some(on_overflow)),
        };
        (sink, receiver, unsent)
    }
}

/// About how many bytes a status takes until it is written.
fn size(status: &Status) -> usize {
    const ENVELOPE: usize = 96;
    ENVELOPE
        + match status {
            Status::Running => 0,
            Status::Update(_, json) => json.len(),
            Status::Complete(outputs) => outputs.get().len(),
            Status::Error(_, message) => message.len(),
        }
}

impl StatusSink for StreamSink {
    fn send(&self, status: Status) {
        let len = size(&status);
        // The final status always goes (one per execution): the stream ends with it.
        let unsent = if status.is_final() {
            0
        } else {
            self.unsent.fetch_add(len, Ordering::SeqCst)
        };
        // As over WebSocket: one large status passes when nothing is queued.
        if !status.is_final() && unsent > 0 && unsent + len > self.max_bytes {
            self.unsent.fetch_sub(len, Ordering::SeqCst);
            let on_overflow = lock(&self.on_overflow).take();
            if let Some(on_overflow) = on_overflow {
                tracing::warn!(
                    max_outbox_bytes = self.max_bytes,
                    "event-stream client is not reading its events; aborting its execution and closing the connection"
                );
                on_overflow();
            }
            return;
        }
        if status.is_final() {
            self.unsent.fetch_add(len, Ordering::SeqCst);
        }
        let _ = self.statuses.send(status);
    }
}

/// The event stream of one execution; dropping it before the final status
/// (the client left) aborts the execution through `guard`.
pub(super) fn event_stream(
    statuses: mpsc::UnboundedReceiver<Status>,
    unsent: Arc<AtomicUsize>,
    guard: AbortOnDrop,
    instance_id: String,
    node_id: Value,
) -> Sse<impl futures_util::Stream<Item = Result<Event, Infallible>>> {
    let stream = futures_util::stream::unfold((statuses, guard, false), move |(mut statuses, mut guard, done)| {
        let (instance_id, node_id, unsent) = (instance_id.clone(), node_id.clone(), Arc::clone(&unsent));
        async move {
            if done {
                return None;
            }
            let status = statuses.recv().await?;
            unsent.fetch_sub(size(&status), Ordering::SeqCst);
            let last = status.is_final();
            if last {
                guard.disarm();
            }
            let event = Event::default()
                .event(status.kind())
                .data(protocol::sse_data(&instance_id, &node_id, &status));
            Some((Ok(event), (statuses, guard, last)))
        }
    });
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}
