//! The transports on the one port: the listener accepts TCP connections
//! (`listener`: caps and timeouts), the router answers HTTP behind the
//! access checks (`router`, `access`), and an upgraded connection becomes a
//! WebSocket session (`ws`). A WebSocket session and an event stream of
//! the HTTP API queue what they send in a `BoundedOutbox` each (`outbox`).

mod access;
mod listener;
mod outbox;
mod router;
mod stream_caps;
mod ws;

pub(crate) use listener::{ConnectionHandle, ConnectionLimits, accept_connections};
pub(crate) use outbox::{BoundedOutbox, CLOSE_WITHIN, CutOffRule, OutboxItem, Outgoing, Pushed, Replaceable};
pub(crate) use router::router;
pub(crate) use stream_caps::StreamCaps;
