//! Server-Sent Events for `POST /nodes/{uid}/execute` with `Accept:
//! text/event-stream`: one event per status, named by its kind, the last
//! one `complete` or `error`.

use std::{convert::Infallible, sync::Mutex, time::Duration};

use axum::response::sse::{Event, KeepAlive, Sse};
use serde_json::Value;

use super::AbortOnDrop;
use crate::{
    execution::{Failure, Status, StatusSink},
    lock, protocol,
    transport::{BoundedOutbox, CutOffRule, OutboxItem, Outgoing, Pushed},
};

/// Every status of an execution, for the event stream, holding at most
/// `max_bytes` of statuses the client has not taken yet. Past that the
/// client is not reading: `on_overflow` runs once (it aborts the execution
/// and closes the connection) and further non-final statuses are dropped;
/// what is queued, and the final status, still go.
pub(super) struct StreamSink {
    statuses: BoundedOutbox<Status>,
    on_overflow: Mutex<Option<Box<dyn FnOnce() + Send>>>,
    /// A refusal that came before any other status (busy, or a node that
    /// went away): answered as a plain HTTP error, not as a stream.
    refusal: Mutex<Option<Refusal>>,
    /// Whether a status came yet.
    started: std::sync::atomic::AtomicBool,
}

/// An execution refused before it started: its failure and message.
pub(super) type Refusal = (Failure, String);

impl StreamSink {
    pub(super) fn new(max_bytes: usize, on_overflow: Box<dyn FnOnce() + Send>) -> (Self, Outgoing<Status>) {
        let (statuses, outgoing) = BoundedOutbox::new(max_bytes, CutOffRule::DeliverQueued);
        let sink = Self {
            statuses,
            on_overflow: Mutex::new(Some(on_overflow)),
            refusal: Mutex::new(None),
            started: std::sync::atomic::AtomicBool::new(false),
        };
        (sink, outgoing)
    }

    /// The refusal, when the execution was refused before anything else
    /// happened (busy, unknown node): the caller answers it with its HTTP
    /// status instead of opening the stream.
    pub(super) fn take_refusal(&self) -> Option<Refusal> {
        lock(&self.refusal).take()
    }
}

/// The final status always goes (one per execution): the stream ends with it.
impl OutboxItem for Status {
    /// About how many bytes a status takes until it is written.
    fn bytes(&self) -> usize {
        const ENVELOPE: usize = 96;
        ENVELOPE
            + match self {
                Status::Running => 0,
                Status::Update(_, json) => json.len(),
                Status::Complete(outputs, _) => outputs.get().len(),
                Status::Error(_, message) => message.len(),
            }
    }

    fn always_queued(&self) -> bool {
        self.is_final()
    }
}

impl StatusSink for StreamSink {
    fn send(&self, status: Status) {
        let first = !self.started.swap(true, std::sync::atomic::Ordering::Relaxed);
        if let (true, Status::Error(failure @ (Failure::Busy | Failure::UnknownNode), message)) = (first, &status) {
            *lock(&self.refusal) = Some((*failure, message.clone()));
        }
        if self.statuses.push(status) == Pushed::CutOff {
            let on_overflow = lock(&self.on_overflow).take();
            if let Some(on_overflow) = on_overflow {
                tracing::warn!(
                    max_outbox_bytes = self.statuses.max_bytes(),
                    "event-stream client is not reading its events; aborting its execution and closing the connection"
                );
                on_overflow();
            }
        }
    }
}

/// The event stream of one execution; dropping it before the final status
/// (the client left) aborts the execution through `guard`.
pub(super) fn event_stream(
    statuses: Outgoing<Status>,
    guard: AbortOnDrop,
    instance_id: String,
    node_id: Value,
) -> Sse<impl futures_util::Stream<Item = Result<Event, Infallible>>> {
    let stream = futures_util::stream::unfold((statuses, guard, false), move |(mut statuses, mut guard, done)| {
        let (instance_id, node_id) = (instance_id.clone(), node_id.clone());
        async move {
            if done {
                return None;
            }
            let status = statuses.recv().await?;
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
