//! Server-Sent Events for `POST /nodes/{uid}/execute` with `Accept:
//! text/event-stream`: one event per status, named by its kind, the last
//! one `complete` or `error`.

use std::{convert::Infallible, time::Duration};

use axum::response::sse::{Event, KeepAlive, Sse};
use serde_json::Value;
use tokio::sync::mpsc;

use super::AbortOnDrop;
use crate::{
    execution::{Status, StatusSink},
    protocol,
};

/// Every status of an execution, for the event stream.
pub(super) struct StreamSink(pub(super) mpsc::UnboundedSender<Status>);

impl StatusSink for StreamSink {
    fn send(&self, status: Status) {
        let _ = self.0.send(status);
    }
}

/// The event stream of one execution; dropping it before the final status
/// (the client left) aborts the execution through `guard`.
pub(super) fn event_stream(
    statuses: mpsc::UnboundedReceiver<Status>,
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
