//! A bounded outbox: what the server has queued for one client and the
//! client has not taken yet. A client that falls behind is slowed, not cut
//! off:
//!
//! - **Backpressure.** Past `max_bytes` unsent, the connection's reader
//!   stops reading requests ([`BoundedOutbox::wait_for_room`]) until the
//!   client took enough to be back under half of it; TCP then pushes back on
//!   the client.
//! - **Coalescing.** From half of `max_bytes` on ("under pressure"), a
//!   replaceable item (a progress status) does not queue behind its unsent
//!   predecessor of the same execution: it replaces it in place
//!   ([`BoundedOutbox::push_replaceable`]). What is never replaced (an
//!   execution's first status, its final one) keeps its place, so nothing is
//!   reordered and at most one replaceable item per execution waits.
//! - **The stall rule.** Only a client that takes nothing for `stall` while
//!   something waits for it is cut off, once; its transport's
//!   [`CutOffRule`] says what still reaches it. (The writer takes what waits
//!   as soon as the connection has room, so an item left waiting that long
//!   means the client's socket stayed full: it is not reading.)
//!
//! Both transports use it: a WebSocket session for its frames, an event
//! stream for its statuses. The accounting (bytes in on `push`, out when
//! taken) lives here alone.

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use tokio::sync::{Notify, mpsc, watch};

use crate::lock;

/// How long a client cut off for not reading gets to take what is still
/// delivered to it (its close frame, its final status) before its TCP
/// connection is dropped.
pub(crate) const CLOSE_WITHIN: Duration = Duration::from_secs(5);

/// What an outbox holds: a frame or a status.
pub(crate) trait OutboxItem {
    /// About how many bytes it holds until it is written: what the bound counts.
    fn bytes(&self) -> usize;
    /// Whether it is delivered even to a client cut off under
    /// [`CutOffRule::DropQueued`]: a close frame, a final status.
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

/// The answer to a push.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub(crate) enum Pushed {
    Queued,
    /// Not queued: the client was cut off before.
    Refused,
    /// Queued (or refused), and this found the client stalled and cut it
    /// off: the caller acts on it once (logs, aborts the client's
    /// executions, closes its connection).
    CutOff,
}

/// The count both halves keep.
#[derive(Debug)]
struct Accounting {
    /// Bytes queued and not yet taken.
    queued: AtomicUsize,
    max_bytes: usize,
    stall: Duration,
    rule: CutOffRule,
    /// When the writer last took an item, or when the queue last went from
    /// empty to not (a client is not idle while nothing waits for it), in
    /// ms since `epoch`.
    last_taken_ms: AtomicU64,
    epoch: Instant,
    /// Wakes a reader waiting for room.
    drained: Notify,
    /// Set once, when the client stalled.
    cut_off: watch::Sender<bool>,
}

impl Accounting {
    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// Since when the client has taken nothing.
    fn idle_for(&self) -> Duration {
        Duration::from_millis(self.now_ms().saturating_sub(self.last_taken_ms.load(Ordering::Relaxed)))
    }

    fn under_pressure(&self) -> bool {
        self.queued.load(Ordering::SeqCst) >= self.max_bytes / 2
    }

    /// Cuts the client off if it stalled; whether this call did.
    fn cut_off_if_stalled(&self) -> bool {
        self.queued.load(Ordering::SeqCst) > 0 && self.idle_for() >= self.stall && !self.cut_off.send_replace(true)
    }

    fn is_cut_off(&self) -> bool {
        *self.cut_off.borrow()
    }

    /// Counts `bytes` in; the stall clock starts when the queue was empty.
    fn add(&self, bytes: usize) {
        if self.queued.fetch_add(bytes, Ordering::SeqCst) == 0 {
            self.last_taken_ms.store(self.now_ms(), Ordering::Relaxed);
        }
    }
}

/// The unsent replaceable item of one execution: queued once, its value
/// replaced until the writer takes it.
#[derive(Debug)]
pub(crate) struct Latest<T>(Mutex<Option<T>>);

/// What travels through the queue: an item, or the place of a replaceable one.
#[derive(Debug)]
enum Queued<T> {
    Item(T),
    Latest(Arc<Latest<T>>),
}

/// An execution's hold on its unsent replaceable item, kept by its sink.
#[derive(Debug)]
pub(crate) struct Replaceable<T>(Mutex<Option<Arc<Latest<T>>>>);

impl<T> Default for Replaceable<T> {
    fn default() -> Self {
        Self(Mutex::new(None))
    }
}

/// The queue's way in, shared by whatever sends to the client.
#[derive(Debug)]
pub(crate) struct BoundedOutbox<T> {
    items: mpsc::UnboundedSender<Queued<T>>,
    accounting: Arc<Accounting>,
}

/// The queue's way out, to the task that writes to the client.
#[derive(Debug)]
pub(crate) struct Outgoing<T> {
    items: mpsc::UnboundedReceiver<Queued<T>>,
    accounting: Arc<Accounting>,
}

impl<T: OutboxItem> BoundedOutbox<T> {
    /// An outbox that pauses its reader past `max_bytes` and cuts off a
    /// client that takes nothing for `stall` while something waits.
    pub(crate) fn new(max_bytes: usize, stall: Duration, rule: CutOffRule) -> (Self, Outgoing<T>) {
        let (sender, receiver) = mpsc::unbounded_channel();
        let accounting = Arc::new(Accounting {
            queued: AtomicUsize::new(0),
            max_bytes,
            stall,
            rule,
            last_taken_ms: AtomicU64::new(0),
            epoch: Instant::now(),
            drained: Notify::new(),
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

    /// Queues `item` (an execution's first or final status, a frame).
    pub(crate) fn push(&self, item: T) -> Pushed {
        let accounting = &*self.accounting;
        if accounting.is_cut_off() && accounting.rule == CutOffRule::DropQueued && !item.always_queued() {
            return Pushed::Refused;
        }
        accounting.add(item.bytes());
        // A closed queue means the client left; its executions are aborted.
        let _ = self.items.send(Queued::Item(item));
        self.after_push()
    }

    /// Queues `item`, which a later replaceable item of the same execution
    /// (`hold`) may replace while it is unsent and the client is under
    /// pressure.
    pub(crate) fn push_replaceable(&self, hold: &Replaceable<T>, item: T) -> Pushed {
        let accounting = &*self.accounting;
        if accounting.is_cut_off() && accounting.rule == CutOffRule::DropQueued {
            return Pushed::Refused;
        }
        let mut hold = lock(&hold.0);
        // Its predecessor still waits: this one takes its place.
        if let Some(latest) = hold.as_ref() {
            let mut value = lock(&latest.0);
            if let Some(older) = value.as_ref() {
                accounting.queued.fetch_add(item.bytes(), Ordering::SeqCst);
                accounting.queued.fetch_sub(older.bytes(), Ordering::SeqCst);
                *value = Some(item);
                drop(value);
                return self.after_push();
            }
        }
        accounting.add(item.bytes());
        if accounting.under_pressure() {
            let latest = Arc::new(Latest(Mutex::new(Some(item))));
            *hold = Some(Arc::clone(&latest));
            let _ = self.items.send(Queued::Latest(latest));
        } else {
            *hold = None;
            let _ = self.items.send(Queued::Item(item));
        }
        drop(hold);
        self.after_push()
    }

    fn after_push(&self) -> Pushed {
        if self.accounting.cut_off_if_stalled() {
            Pushed::CutOff
        } else {
            Pushed::Queued
        }
    }

    /// Returns once the client is back under half of `max_bytes` (at once
    /// when it is not past `max_bytes`): the reader of its requests waits
    /// here, so TCP pushes back on a client that sends faster than it
    /// reads. (Cancel-safe; a client that stalls meanwhile is found by
    /// [`stalled`](Self::stalled).)
    pub(crate) async fn wait_for_room(&self) {
        let accounting = &*self.accounting;
        if accounting.queued.load(Ordering::SeqCst) <= accounting.max_bytes {
            return;
        }
        tracing::debug!(
            queued = accounting.queued.load(Ordering::SeqCst),
            "client behind: reading paused"
        );
        loop {
            let drained = accounting.drained.notified();
            tokio::pin!(drained);
            drained.as_mut().enable();
            if accounting.queued.load(Ordering::SeqCst) <= accounting.max_bytes / 2 {
                return;
            }
            drained.await;
        }
    }

    /// Resolves once the client is cut off: when it took nothing for the
    /// stall limit while something waited (this cuts it off then), or when
    /// a push found it so. Owns what it needs, so it can run in a task of its
    /// own as long as the client's stream lives.
    pub(crate) fn stalled(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let accounting = Arc::clone(&self.accounting);
        async move {
            loop {
                if accounting.is_cut_off() {
                    return;
                }
                let wait = if accounting.queued.load(Ordering::SeqCst) > 0 {
                    accounting.stall.saturating_sub(accounting.idle_for())
                } else {
                    accounting.stall
                };
                tokio::time::sleep(wait.max(Duration::from_millis(10))).await;
                accounting.cut_off_if_stalled();
            }
        }
    }

    /// Bytes queued and not yet taken.
    pub(crate) fn queued_bytes(&self) -> usize {
        self.accounting.queued.load(Ordering::SeqCst)
    }

    pub(crate) fn stall(&self) -> Duration {
        self.accounting.stall
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
            let queued = self.items.recv().await?;
            if let Some(item) = self.take(queued) {
                return Some(item);
            }
        }
    }

    /// The next item to deliver, if one is queued now.
    pub(crate) fn try_recv(&mut self) -> Option<T> {
        loop {
            let queued = self.items.try_recv().ok()?;
            if let Some(item) = self.take(queued) {
                return Some(item);
            }
        }
    }

    /// Whether the client is at least half of `max_bytes` behind.
    pub(crate) fn under_pressure(&self) -> bool {
        self.accounting.under_pressure()
    }

    /// An item left the queue: what to deliver of it.
    fn take(&self, queued: Queued<T>) -> Option<T> {
        let accounting = &*self.accounting;
        let item = match queued {
            Queued::Item(item) => item,
            // (Empty only if it was dropped below, by a concurrent take.)
            Queued::Latest(latest) => lock(&latest.0).take()?,
        };
        let left = accounting.queued.fetch_sub(item.bytes(), Ordering::SeqCst) - item.bytes();
        accounting.last_taken_ms.store(accounting.now_ms(), Ordering::Relaxed);
        if left <= accounting.max_bytes / 2 {
            accounting.drained.notify_waiters();
        }
        match accounting.rule {
            CutOffRule::DropQueued => (item.always_queued() || !accounting.is_cut_off()).then_some(item),
            CutOffRule::DeliverQueued => Some(item),
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

    const LONG: Duration = Duration::from_secs(3600);

    #[test]
    fn nothing_is_refused_for_size_and_taking_releases_the_bytes() {
        let (outbox, mut outgoing) = BoundedOutbox::new(100, LONG, CutOffRule::DropQueued);
        for _ in 0..5 {
            assert_eq!(outbox.push(item(500)), Pushed::Queued);
        }
        assert_eq!(outbox.queued_bytes(), 2500);
        assert!(outgoing.under_pressure());
        assert_eq!(outgoing.try_recv(), Some(item(500)));
        assert_eq!(outbox.queued_bytes(), 2000, "taking an item releases its bytes");
    }

    #[test]
    fn under_pressure_a_replaceable_item_replaces_its_unsent_predecessor_in_place() {
        let (outbox, mut outgoing) = BoundedOutbox::new(100, LONG, CutOffRule::DropQueued);
        let progress = Replaceable::default();
        // Not under pressure: queued one after the other.
        assert_eq!(outbox.push(item(1)), Pushed::Queued);
        assert_eq!(outbox.push_replaceable(&progress, item(2)), Pushed::Queued);
        assert_eq!(outbox.push(item(60)), Pushed::Queued);
        // Under pressure (63 >= 50): the next ones share one place...
        for bytes in 3..=9 {
            assert_eq!(outbox.push_replaceable(&progress, item(bytes)), Pushed::Queued);
        }
        assert_eq!(
            outbox.queued_bytes(),
            1 + 2 + 60 + 9,
            "one place, counted at its latest size"
        );
        // ...before the final item, which keeps its order.
        assert_eq!(outbox.push(last(4)), Pushed::Queued);
        let taken: Vec<Item> = std::iter::from_fn(|| outgoing.try_recv()).collect();
        assert_eq!(taken, [item(1), item(2), item(60), item(9), last(4)]);
        assert_eq!(outbox.queued_bytes(), 0);
        // Once taken, the next one is queued anew.
        assert_eq!(outbox.push_replaceable(&progress, item(10)), Pushed::Queued);
        assert_eq!(outgoing.try_recv(), Some(item(10)));
    }

    #[test]
    fn a_client_that_takes_nothing_for_the_stall_limit_while_something_waits_is_cut_off() {
        let (outbox, mut outgoing) = BoundedOutbox::new(100, Duration::ZERO, CutOffRule::DropQueued);
        let cut_off = outbox.cut_off();
        assert_eq!(
            outbox.push(last(0)),
            Pushed::Queued,
            "nothing waits (0 bytes): never stalled"
        );
        assert!(!*cut_off.borrow());
        assert_eq!(outgoing.try_recv(), Some(last(0)));
        assert_eq!(outbox.push(item(60)), Pushed::CutOff);
        assert!(*cut_off.borrow());
        assert_eq!(outbox.push(item(1)), Pushed::Refused, "cut off once; then refused");
        assert_eq!(outbox.push(last(0)), Pushed::Queued, "the close frame still goes");
        assert_eq!(outgoing.try_recv(), Some(last(0)), "the queued items are dropped");
        assert_eq!(outgoing.try_recv(), None);
        assert_eq!(outbox.queued_bytes(), 0, "dropped items release their bytes");
    }

    #[test]
    fn a_cut_off_event_stream_still_ends_with_its_final_status() {
        let (outbox, mut outgoing) = BoundedOutbox::new(100, Duration::ZERO, CutOffRule::DeliverQueued);
        assert_eq!(outbox.push(item(60)), Pushed::CutOff);
        assert_eq!(outbox.push(last(500)), Pushed::Queued, "the final status passes");
        assert_eq!(outgoing.try_recv(), Some(item(60)), "what was queued is delivered");
        assert_eq!(outgoing.try_recv(), Some(last(500)));
        assert_eq!(outbox.queued_bytes(), 0);
    }

    #[test]
    fn reading_waits_past_the_bound_until_half_is_taken_and_a_stall_is_found_by_time() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("a runtime");
        runtime.block_on(async {
            let (outbox, mut outgoing) = BoundedOutbox::new(100, LONG, CutOffRule::DropQueued);
            outbox.wait_for_room().await;
            for _ in 0..4 {
                assert_eq!(outbox.push(item(30)), Pushed::Queued);
            }
            let outbox = Arc::new(outbox);
            let waiting = tokio::spawn({
                let outbox = Arc::clone(&outbox);
                async move { outbox.wait_for_room().await }
            });
            tokio::task::yield_now().await;
            assert!(!waiting.is_finished(), "120 > 100: the reader waits");
            for left in [90, 60] {
                outgoing.try_recv();
                tokio::task::yield_now().await;
                assert!(!waiting.is_finished(), "{left} is not yet back under half");
            }
            outgoing.try_recv();
            waiting.await.unwrap();

            let (stalling, mut taking) = BoundedOutbox::new(100, Duration::from_millis(50), CutOffRule::DropQueued);
            for _ in 0..4 {
                let _ = stalling.push(item(30));
            }
            let stalled = tokio::spawn(stalling.stalled());
            tokio::time::sleep(Duration::from_millis(30)).await;
            taking.try_recv();
            tokio::time::sleep(Duration::from_millis(30)).await;
            assert!(!*stalling.cut_off().borrow(), "a take 30 ms ago: not stalled");
            stalled.await.unwrap();
            assert!(*stalling.cut_off().borrow(), "nothing taken for 50 ms: cut off");
        });
    }

    #[test]
    fn the_way_out_ends_when_every_way_in_is_gone() {
        let (outbox, mut outgoing) = BoundedOutbox::new(100, LONG, CutOffRule::DeliverQueued);
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
