//! Server-Sent Events for `POST /nodes/{uid}/execute` with `Accept:
//! text/event-stream`: one event per status, named by its kind, the last
//! one `complete` or `error`.

use std::{
    convert::Infallible,
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::response::sse::{Event, KeepAlive, Sse};
use serde_json::Value;

use super::AbortOnDrop;
use crate::{
    execution::{Failure, Status, StatusSink},
    lock, protocol,
    transport::{BoundedOutbox, CutOffRule, OutboxItem, Outgoing, Pushed, Replaceable},
};

/// Every status of an execution, for the event stream. A client behind
/// (half of `max_outbox_bytes` unsent) gets its progress coalesced: the
/// latest unsent one replaces the older; its first and final statuses always
/// go, in order. A client that takes nothing for `client_stall_ms` while
/// statuses wait for it is not reading: `on_overflow` runs once (it aborts the execution
/// and closes the connection); what is queued, and the final status, still go.
pub(super) struct StreamSink {
    statuses: BoundedOutbox<Status>,
    progress: Replaceable<Status>,
    on_overflow: Arc<OnOverflow>,
    /// A refusal that came before any other status (busy, or a node that
    /// went away): answered as a plain HTTP error, not as a stream.
    refusal: Mutex<Option<Refusal>>,
    /// Whether a status came yet.
    started: std::sync::atomic::AtomicBool,
}

/// What to do, once, with a client that stopped reading.
type OnOverflow = Mutex<Option<Box<dyn FnOnce() + Send>>>;

/// The event stream's side: the statuses to send, and what finds a client
/// that stopped taking them.
pub(super) struct StreamStatuses {
    outgoing: Outgoing<Status>,
    stalled: std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>,
    on_overflow: Arc<OnOverflow>,
}

/// Runs `on_overflow` if nobody did yet.
fn overflowed(on_overflow: &OnOverflow, stall: Duration) {
    let on_overflow = lock(on_overflow).take();
    if let Some(on_overflow) = on_overflow {
        tracing::warn!(
            client_stall_ms = stall.as_millis() as u64,
            "event-stream client is not reading its events (it took nothing for client_stall_ms while events waited); aborting its execution and closing the connection"
        );
        on_overflow();
    }
}

/// An execution refused before it started: its failure and message.
pub(super) type Refusal = (Failure, String);

impl StreamSink {
    pub(super) fn new(
        max_bytes: usize,
        stall: Duration,
        on_overflow: Box<dyn FnOnce() + Send>,
    ) -> (Self, StreamStatuses) {
        let (statuses, outgoing) = BoundedOutbox::new(max_bytes, stall, CutOffRule::DeliverQueued);
        let on_overflow = Arc::new(Mutex::new(Some(on_overflow)));
        let stream = StreamStatuses {
            outgoing,
            stalled: Box::pin(statuses.stalled()),
            on_overflow: Arc::clone(&on_overflow),
        };
        let sink = Self {
            statuses,
            progress: Replaceable::default(),
            on_overflow,
            refusal: Mutex::new(None),
            started: std::sync::atomic::AtomicBool::new(false),
        };
        (sink, stream)
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
        let pushed = if let Status::Update(..) = status {
            self.statuses.push_replaceable(&self.progress, status)
        } else {
            self.statuses.push(status)
        };
        if pushed == Pushed::CutOff {
            overflowed(&self.on_overflow, self.statuses.stall());
        }
    }
}

/// The event stream of one execution; dropping it before the final status
/// (the client left) aborts the execution through `guard`.
pub(super) fn event_stream(
    statuses: StreamStatuses,
    guard: AbortOnDrop,
    instance_id: String,
    node_id: Value,
    stall: Duration,
) -> Sse<impl futures_util::Stream<Item = Result<Event, Infallible>>> {
    let StreamStatuses {
        outgoing,
        stalled,
        on_overflow,
    } = statuses;
    // A client that stops taking events is found even when no status comes
    // any more (the node finished, its final status waits): the watch lives
    // as long as the stream, through `alive`.
    let (alive, gone) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        tokio::select! {
            _ = gone => {}
            () = stalled => overflowed(&on_overflow, stall),
        }
    });
    let state = (outgoing, guard, false, alive);
    let stream = futures_util::stream::unfold(state, move |(mut statuses, mut guard, done, alive)| {
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
            Some((Ok(event), (statuses, guard, last, alive)))
        }
    });
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}
