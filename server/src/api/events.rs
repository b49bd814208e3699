//! `GET /events/definitions`: changes to what is served, as Server-Sent
//! Events, for the browser pages and for scripts. At once, and then after
//! every change: a `definitions` event (the list `GET /nodes` answers) when
//! the served set changed, and a `libraries` event (what `GET /libraries`
//! answers) when the libraries or the refusals changed.
//!
//! Only the latest state matters to such a client, so the stream follows
//! the registry's revision counter (a `watch`), not its broadcast of
//! snapshots: a slow reader skips states instead of lagging behind.

use std::{convert::Infallible, sync::Arc, time::Duration};

use axum::{
    Extension,
    extract::State,
    http::StatusCode,
    response::sse::{Event, KeepAlive, Sse},
};
use futures_util::Stream;

use super::{ApiError, server::libraries_json};
use crate::{rate_limit::RateLimitedCount, registry::Snapshot, state::ServerState, transport::ConnectionHandle};

/// What one client was last sent.
struct Sent {
    snapshot: Option<Arc<Snapshot>>,
    libraries: String,
}

/// A stream of the definitions served and of the libraries (with the
/// refused ones), sent at once and again whenever they change.
#[utoipa::path(get, path = "/events/definitions", tag = "nodes",
    responses((status = 200, content_type = "text/event-stream",
        description = "Server-Sent Events: `definitions` (data: the NodeDefinitions, as `GET /nodes`) and \
                       `libraries` (data: as `GET /libraries`), first at once, then after each change. \
                       Ends when the server shuts down."),
        (status = 503, description = "Too many open event streams: max_event_streams, or \
                                      max_event_streams_per_address from this client", body = super::ErrorBody)))]
pub(crate) async fn definition_events(
    State(state): State<ServerState>,
    connection: Option<Extension<ConnectionHandle>>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let address = connection.map(|Extension(connection)| connection.remote());
    let open = state
        .event_streams
        .open(
            address,
            state.limits.max_event_streams,
            state.limits.max_event_streams_per_address,
        )
        .map_err(|refused| {
            static REFUSED_STREAMS: RateLimitedCount = RateLimitedCount::new();
            if let Some(refused_streams) = REFUSED_STREAMS.hit() {
                tracing::warn!(refused = refused_streams, client = ?address, "refused event streams: {refused}");
            }
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, refused.to_string())
        })?;
    let mut changes = state.registry.watch();
    changes.mark_changed();
    let closing = state.closing();
    let sent = Sent {
        snapshot: None,
        libraries: String::new(),
    };
    // `open` lives as long as the stream: its place is freed when it ends.
    let idle = state.limits.idle_timeout;
    let stream = futures_util::stream::unfold(
        (state, changes, closing, sent, Vec::<Event>::new(), open),
        move |(state, mut changes, mut closing, mut sent, mut pending, open)| async move {
            loop {
                if let Some(event) = pending.pop() {
                    return Some((Ok(event), (state, changes, closing, sent, pending, open)));
                }
                if *closing.borrow() {
                    return None;
                }
                tokio::select! {
                    changed = changes.changed() => changed.ok()?,
                    closed = closing.changed() => {
                        closed.ok()?;
                        continue;
                    }
                    // Idle this long: closed if the streams crowd the server.
                    () = tokio::time::sleep(idle) => {
                        if state.event_streams.crowded(state.limits.max_event_streams) {
                            tracing::debug!("closed an idle event stream: more than 3/4 of max_event_streams are open");
                            return None;
                        }
                        continue;
                    }
                }
                let snapshot = state.registry.snapshot();
                let libraries = libraries_json(&state);
                // Popped from the end: `definitions` goes first.
                if libraries != sent.libraries {
                    pending.push(Event::default().event("libraries").data(&libraries));
                    sent.libraries = libraries;
                }
                if !sent.snapshot.as_ref().is_some_and(|s| Arc::ptr_eq(s, &snapshot)) {
                    pending.push(Event::default().event("definitions").data(snapshot.definitions.get()));
                    sent.snapshot = Some(snapshot);
                }
            }
        },
    );
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}
