//! The bounded queue in front of a stream's task (and the API thread). std's bounded channel
//! allocates its whole capacity up front, which made every stream cost about 10 MB of memory
//! before its first message; this one is an unbounded tokio channel plus a counter, so memory
//! follows what is actually queued while the bound (back-pressure) stays the same. Senders are
//! synchronous; the receiver awaits (a stream's task) or blocks (the API thread).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{SendError, TrySendError};
use std::sync::Arc;

use tokio::sync::mpsc;

/// A queue of at most `capacity` items (for [`Tx::try_send`]).
pub(crate) fn queue<T>(capacity: usize) -> (Tx<T>, Rx<T>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let len = Arc::new(AtomicUsize::new(0));
    (
        Tx {
            tx,
            len: len.clone(),
            capacity,
        },
        Rx { rx, len },
    )
}

/// The sending side; cheap to clone.
pub(crate) struct Tx<T> {
    tx: mpsc::UnboundedSender<T>,
    len: Arc<AtomicUsize>,
    capacity: usize,
}

impl<T> Clone for Tx<T> {
    fn clone(&self) -> Self {
        Self {
            tx: self.tx.clone(),
            len: self.len.clone(),
            capacity: self.capacity,
        }
    }
}

impl<T> Tx<T> {
    /// Queues `v` unless the queue is full or closed.
    pub fn try_send(&self, v: T) -> Result<(), TrySendError<T>> {
        if self.len.fetch_add(1, Ordering::AcqRel) >= self.capacity {
            self.len.fetch_sub(1, Ordering::AcqRel);
            return Err(TrySendError::Full(v));
        }
        self.tx.send(v).map_err(|e| {
            self.len.fetch_sub(1, Ordering::AcqRel);
            TrySendError::Disconnected(e.0)
        })
    }

    /// Queues a control message (stop, delete, info) even past the bound: there are few.
    pub fn send(&self, v: T) -> Result<(), SendError<T>> {
        self.len.fetch_add(1, Ordering::AcqRel);
        self.tx.send(v).map_err(|e| {
            self.len.fetch_sub(1, Ordering::AcqRel);
            SendError(e.0)
        })
    }
}

/// The receiving side (one task or thread).
pub(crate) struct Rx<T> {
    rx: mpsc::UnboundedReceiver<T>,
    len: Arc<AtomicUsize>,
}

impl<T> Rx<T> {
    fn took(&self, v: Option<T>) -> Option<T> {
        if v.is_some() {
            self.len.fetch_sub(1, Ordering::AcqRel);
        }
        v
    }

    /// Waits for the next item; `None` once every sender is gone.
    pub async fn recv(&mut self) -> Option<T> {
        let v = self.rx.recv().await;
        self.took(v)
    }

    /// Blocks (outside any async runtime thread) for the next item.
    pub fn blocking_recv(&mut self) -> Option<T> {
        let v = self.rx.blocking_recv();
        self.took(v)
    }

    /// The next item, if one is queued.
    pub fn try_recv(&mut self) -> Option<T> {
        let v = self.rx.try_recv().ok();
        self.took(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bound_holds_and_frees_as_items_leave() {
        let (tx, mut rx) = queue(2);
        tx.try_send(1).unwrap();
        tx.try_send(2).unwrap();
        assert!(matches!(tx.try_send(3), Err(TrySendError::Full(3))));
        tx.send(4).unwrap();
        assert_eq!(rx.try_recv(), Some(1));
        assert!(matches!(tx.try_send(5), Err(TrySendError::Full(5))));
        assert_eq!(rx.blocking_recv(), Some(2));
        tx.try_send(6).unwrap();
        assert_eq!(rx.try_recv(), Some(4));
        assert_eq!(rx.try_recv(), Some(6));
        assert_eq!(rx.try_recv(), None);
        drop(rx);
        assert!(matches!(tx.try_send(7), Err(TrySendError::Disconnected(7))));
    }
}
