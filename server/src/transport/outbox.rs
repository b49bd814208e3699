//! A bounded outbox: what the server has queued for one client and the
//! client has not taken yet, bounded in bytes, so a client that asks and
//! never reads cannot grow the server's memory. Past `max_bytes` what would
//! grow the queue is refused and the client is cut off, once; its
//! transport's [`CutOffRule`] says what still reaches it.
//!
//! Both transports use it: a WebSocket session for its frames, an event
//! stream for its statuses. The accounting (bytes in on `push`, out when
//! taken) lives here alone, so another answer to a full outbox (stop reading
//! the connection, coalesce progress) is one more rule read against
//! `queued_bytes`, not a third copy of the mechanism.

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use tokio::sync::{mpsc, watch};

/// How long a client cut off for not reading gets to take what is still
/// delivered to it (its close frame, its final status) before its TCP
/// connection is dropped.
pub(crate) const CLOSE_WITHIN: Duration = Duration::from_secs(5);

/// What an outbox holds: a frame or a status.
pub(crate) trait OutboxItem {
    /// About how many bytes it holds until it is written: what the bound counts.
    fn bytes(&self) -> usize;
    /// Whether it is queued whatever the bound: a close frame, a final
    /// status (one each, so they cannot grow the queue).
    fn always_queued(&self) -> bool;
}

/// What reaches a client once it is cut off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CutOffRule {
    /// Only what is always queued: everything else still queued is dropped,
    /// so the close frame goes next (WebSocket).
    DropQueued,
    /// Everything already queued: the stream still ends with its final
    /// status (Server-Sent Events).
    DeliverQueued,
}

/// The answer to [`BoundedOutbox::push`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub(crate) enum Pushed {
    Queued,
    /// Refused; the client was cut off before.
    Refused,
    /// Refused, and this cut the client off: the caller acts on it once
    /// (logs, aborts the client's executions, closes its connection).
    CutOff,
}

/// The count both halves keep.
#[derive(Debug)]
struct Accounting {
    /// Bytes queued and not yet taken.
    queued: AtomicUsize,
    max_bytes: usize,
    rule: CutOffRule,
    /// Set once, when the client fell `max_bytes` behind.
    cut_off: watch::Sender<bool>,
}

/// The queue's way in, shared by whatever sends to the client.
#[derive(Debug)]
pub(crate) struct BoundedOutbox<T> {
    items: mpsc::UnboundedSender<T>,
    accounting: Arc<Accounting>,
}

/// The queue's way out, to the task that writes to the client.
#[derive(Debug)]
pub(crate) struct Outgoing<T> {
    items: mpsc::UnboundedReceiver<T>,
    accounting: Arc<Accounting>,
}

impl<T: OutboxItem> BoundedOutbox<T> {
    pub(crate) fn new(max_bytes: usize, rule: CutOffRule) -> (Self, Outgoing<T>) {
        let (sender, receiver) = mpsc::unbounded_channel();
        let accounting = Arc::new(Accounting {
            queued: AtomicUsize::new(0),
            max_bytes,
            rule,
            cut_off: watch::channel(false).0,
        });
        let outgoing = Outgoing {
            items: receiver,
            accounting: Arc::clone(&accounting),
        };
        (
            Self {
                items: sender,
                accounting,
            },
            outgoing,
        )
    }

    /// Queues `item`, unless the client is too far behind.
    pub(crate) fn push(&self, item: T) -> Pushed {
        let accounting = &*self.accounting;
        let len = item.bytes();
        let queued = accounting.queued.fetch_add(len, Ordering::SeqCst);
        // One item larger than the bound passes when nothing else is queued
        // (a large but legal answer); what grows the queue is refused.
        if !item.always_queued() && queued > 0 && queued + len > accounting.max_bytes {
            accounting.queued.fetch_sub(len, Ordering::SeqCst);
            return if accounting.cut_off.send_replace(true) {
                Pushed::Refused
            } else {
                Pushed::CutOff
            };
        }
        // A closed queue means the client left; its executions are aborted.
        let _ = self.items.send(item);
        Pushed::Queued
    }

    /// Bytes queued and not yet taken.
    pub(crate) fn queued_bytes(&self) -> usize {
        self.accounting.queued.load(Ordering::SeqCst)
    }

    pub(crate) fn max_bytes(&self) -> usize {
        self.accounting.max_bytes
    }

    /// Becomes `true` when the client is cut off.
    pub(crate) fn cut_off(&self) -> watch::Receiver<bool> {
        self.accounting.cut_off.subscribe()
    }
}

impl<T: OutboxItem> Outgoing<T> {
    /// The next item to deliver, waiting for one; `None` once every
    /// [`BoundedOutbox`] is gone. (Cancel-safe: an item is only taken off
    /// the queue when it is returned or dropped by the rule.)
    pub(crate) async fn recv(&mut self) -> Option<T> {
        loop {
            let item = self.items.recv().await?;
            if self.take(&item) {
                return Some(item);
            }
        }
    }

    /// The next item to deliver, if one is queued now.
    pub(crate) fn try_recv(&mut self) -> Option<T> {
        loop {
            let item = self.items.try_recv().ok()?;
            if self.take(&item) {
                return Some(item);
            }
        }
    }

    /// An item left the queue: whether to deliver it.
    fn take(&self, item: &T) -> bool {
        let accounting = &*self.accounting;
        accounting.queued.fetch_sub(item.bytes(), Ordering::SeqCst);
        match accounting.rule {
            CutOffRule::DropQueued => item.always_queued() || !*accounting.cut_off.borrow(),
            CutOffRule::DeliverQueued => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `bytes` long; `last` is always queued (a close frame, a final status).
    #[derive(Debug, PartialEq, Eq)]
    struct Item {
        bytes: usize,
        last: bool,
    }

    impl OutboxItem for Item {
        fn bytes(&self) -> usize {
            self.bytes
        }

        fn always_queued(&self) -> bool {
            self.last
        }
    }

    fn item(bytes: usize) -> Item {
        Item { bytes, last: false }
    }

    fn last(bytes: usize) -> Item {
        Item { bytes, last: true }
    }

    #[test]
    fn one_item_larger_than_the_bound_passes_when_nothing_is_queued() {
        let (outbox, mut outgoing) = BoundedOutbox::new(100, CutOffRule::DropQueued);
        assert_eq!(outbox.push(item(500)), Pushed::Queued);
        assert_eq!(outbox.queued_bytes(), 500);
        assert_eq!(outgoing.try_recv(), Some(item(500)));
        assert_eq!(outbox.queued_bytes(), 0, "taking an item releases its bytes");
        assert_eq!(
            outbox.push(item(500)),
            Pushed::Queued,
            "and the next large one passes again"
        );
    }

    #[test]
    fn what_grows_past_the_bound_is_refused_and_cuts_off_once() {
        let (outbox, _outgoing) = BoundedOutbox::new(100, CutOffRule::DropQueued);
        let cut_off = outbox.cut_off();
        assert_eq!(outbox.push(item(60)), Pushed::Queued);
        assert!(!*cut_off.borrow());
        assert_eq!(outbox.push(item(60)), Pushed::CutOff);
        assert!(*cut_off.borrow());
        assert_eq!(outbox.queued_bytes(), 60, "a refused item is not counted");
        assert_eq!(outbox.push(item(60)), Pushed::Refused, "the client is cut off once");
        assert_eq!(outbox.push(item(40)), Pushed::Queued, "what fits is still queued");
    }

    #[test]
    fn a_cut_off_websocket_gets_only_its_close_frame() {
        let (outbox, mut outgoing) = BoundedOutbox::new(100, CutOffRule::DropQueued);
        assert_eq!(outbox.push(item(60)), Pushed::Queued);
        assert_eq!(outbox.push(item(30)), Pushed::Queued);
        assert_eq!(outbox.push(item(60)), Pushed::CutOff);
        assert_eq!(outbox.push(last(0)), Pushed::Queued);
        assert_eq!(outgoing.try_recv(), Some(last(0)), "the queued items are dropped");
        assert_eq!(outgoing.try_recv(), None);
        assert_eq!(outbox.queued_bytes(), 0, "dropped items release their bytes");
    }

    #[test]
    fn a_cut_off_event_stream_still_ends_with_its_final_status() {
        let (outbox, mut outgoing) = BoundedOutbox::new(100, CutOffRule::DeliverQueued);
        assert_eq!(outbox.push(item(60)), Pushed::Queued);
        assert_eq!(outbox.push(item(60)), Pushed::CutOff);
        assert_eq!(
            outbox.push(last(500)),
            Pushed::Queued,
            "the final status passes the bound"
        );
        assert_eq!(outbox.queued_bytes(), 560);
        assert_eq!(outgoing.try_recv(), Some(item(60)), "what was queued is delivered");
        assert_eq!(outgoing.try_recv(), Some(last(500)));
        assert_eq!(outbox.queued_bytes(), 0);
    }

    #[test]
    fn the_way_out_ends_when_every_way_in_is_gone() {
        let (outbox, mut outgoing) = BoundedOutbox::new(100, CutOffRule::DeliverQueued);
        assert_eq!(outbox.push(item(1)), Pushed::Queued);
        drop(outbox);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a runtime");
        runtime.block_on(async {
            assert_eq!(outgoing.recv().await, Some(item(1)));
            assert_eq!(outgoing.recv().await, None);
        });
    }
}
