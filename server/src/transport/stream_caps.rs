//! Caps on open event streams (`GET /events/definitions`), in total and per
//! client address: an event stream holds its connection for as long as the
//! client likes, so without a cap one client opening thousands of idle ones
//! takes every connection (`max_http_connections`) and locks everyone out.

use std::{
    collections::HashMap,
    net::IpAddr,
    sync::{Arc, Mutex},
};

use crate::lock;

/// The open event streams, by client address.
#[derive(Debug, Default)]
pub(crate) struct StreamCaps {
    open: Mutex<Open>,
}

#[derive(Debug, Default)]
struct Open {
    total: usize,
    by_address: HashMap<IpAddr, usize>,
}

/// Why a stream was refused: which cap, at what value.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Refused {
    Total(usize),
    Address(usize),
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Total(max) => write!(
                f,
                "too many open event streams (max_event_streams = {max}); try again later"
            ),
            Self::Address(max) => write!(
                f,
                "too many open event streams from this address (max_event_streams_per_address = {max}); close some"
            ),
        }
    }
}

impl StreamCaps {
    /// Counts a stream from `address` as open until the guard drops, unless
    /// a cap is reached.
    pub(crate) fn open(
        self: &Arc<Self>,
        address: Option<IpAddr>,
        max_total: usize,
        max_per_address: usize,
    ) -> Result<OpenStream, Refused> {
        let mut open = lock(&self.open);
        if open.total >= max_total {
            return Err(Refused::Total(max_total));
        }
        if let Some(address) = address {
            let count = open.by_address.entry(address).or_default();
            if *count >= max_per_address {
                return Err(Refused::Address(max_per_address));
            }
            *count += 1;
        }
        open.total += 1;
        Ok(OpenStream {
            caps: Arc::clone(self),
            address,
        })
    }
}

impl StreamCaps {
    /// Whether more than three quarters of `max_total` streams are open:
    /// then idle ones are closed (a browser's `EventSource` reconnects by
    /// itself), so a crowd of idle streams makes room for active ones.
    pub(crate) fn crowded(&self, max_total: usize) -> bool {
        lock(&self.open).total * 4 > max_total * 3
    }
}

/// One open event stream, counted until dropped.
#[derive(Debug)]
pub(crate) struct OpenStream {
    caps: Arc<StreamCaps>,
    address: Option<IpAddr>,
}

impl Drop for OpenStream {
    fn drop(&mut self) {
        let mut open = lock(&self.caps.open);
        open.total -= 1;
        if let Some(address) = self.address
            && let Some(count) = open.by_address.get_mut(&address)
        {
            *count -= 1;
            if *count == 0 {
                open.by_address.remove(&address);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_are_capped_per_address_and_in_total_and_freed_when_dropped() {
        let caps = Arc::new(StreamCaps::default());
        let one: IpAddr = "127.0.0.1".parse().unwrap();
        let two: IpAddr = "127.0.0.2".parse().unwrap();
        let a = caps.open(Some(one), 3, 2).unwrap();
        let _b = caps.open(Some(one), 3, 2).unwrap();
        assert_eq!(caps.open(Some(one), 3, 2).unwrap_err(), Refused::Address(2));
        let _c = caps.open(Some(two), 3, 2).unwrap();
        assert_eq!(caps.open(Some(two), 3, 2).unwrap_err(), Refused::Total(3));
        drop(a);
        let _d = caps.open(Some(one), 3, 2).expect("a closed stream frees its place");
        assert_eq!(lock(&caps.open).by_address.len(), 2);
    }
}
