//! The bounded queue in front of a stream thread (and the API thread). std's bounded channel
//! allocates its whole capacity up front, which made every stream cost about 10 MB of memory
//! before its first message; this one is an unbounded channel plus a counter, so memory
//! follows what is actually queued while the bound (back-pressure) stays the same.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, SendError, TryRecvError, TrySendError};
use std::sync::Arc;
use std::time::Duration;

/// A queue of at most `capacity` items (for [`Tx::try_send`]).
pub(crate) fn queue<T>(capacity: usize) -> (Tx<T>, Rx<T>) {
    let (tx, rx) = mpsc::channel();
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
    tx: mpsc::Sender<T>,
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
        self.tx.send(v).map_err(|SendError(v)| {
            self.len.fetch_sub(1, Ordering::AcqRel);
            TrySendError::Disconnected(v)
        })
    }

    /// Queues a control message (stop, delete, info) even past the bound: there are few.
    pub fn send(&self, v: T) -> Result<(), SendError<T>> {
        self.len.fetch_add(1, Ordering::AcqRel);
        self.tx.send(v).inspect_err(|_| {
            self.len.fetch_sub(1, Ordering::AcqRel);
        })
    }
}

/// The receiving side (one thread).
pub(crate) struct Rx<T> {
    rx: mpsc::Receiver<T>,
    len: Arc<AtomicUsize>,
}

impl<T> Rx<T> {
    fn took<E>(&self, r: Result<T, E>) -> Result<T, E> {
        if r.is_ok() {
            self.len.fetch_sub(1, Ordering::AcqRel);
        }
        r
    }

    /// Waits for the next item.
    pub fn recv(&self) -> Result<T, mpsc::RecvError> {
        let r = self.rx.recv();
        self.took(r)
    }

    /// Waits at most `timeout` for the next item.
    pub fn recv_timeout(&self, timeout: Duration) -> Result<T, RecvTimeoutError> {
        let r = self.rx.recv_timeout(timeout);
        self.took(r)
    }

    /// The next item, if one is queued.
    pub fn try_recv(&self) -> Result<T, TryRecvError> {
        let r = self.rx.try_recv();
        self.took(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bound_holds_and_frees_as_items_leave() {
        let (tx, rx) = queue(2);
        tx.try_send(1).unwrap();
        tx.try_send(2).unwrap();
        assert!(matches!(tx.try_send(3), Err(TrySendError::Full(3))));
        tx.send(4).unwrap();
        assert_eq!(rx.try_recv(), Ok(1));
        assert!(matches!(tx.try_send(5), Err(TrySendError::Full(5))));
        assert_eq!(rx.recv(), Ok(2));
        tx.try_send(6).unwrap();
        assert_eq!(rx.recv_timeout(Duration::from_millis(1)), Ok(4));
        assert_eq!(rx.try_recv(), Ok(6));
        drop(rx);
        assert!(matches!(tx.try_send(7), Err(TrySendError::Disconnected(7))));
    }
}
