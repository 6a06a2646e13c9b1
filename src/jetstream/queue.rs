//! The bounded queue in front of a stream's task (and the API thread). std's bounded channel
//! allocates its whole capacity up front, which made every stream cost about 10 MB of memory
//! before its first message; this one is an unbounded channel plus a counter, so memory
//! follows what is actually queued while the bound (back-pressure) stays the same.
//!
//! Senders are synchronous. The receiver can await the next item (an idle stream's task holds
//! no thread), or block for it with a timeout (a busy stream lingers on its blocking thread
//! instead of paying a hand-off per batch), or block without one (the API thread).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, SendError, TryRecvError, TrySendError};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

/// A queue of at most `capacity` items (for [`Tx::try_send`]).
pub(crate) fn queue<T>(capacity: usize) -> (Tx<T>, Rx<T>) {
    let (tx, rx) = mpsc::channel();
    let shared = Arc::new(Shared {
        len: AtomicUsize::new(0),
        notify: Notify::new(),
        capacity,
        room: (Mutex::new(()), Condvar::new()),
        room_async: Notify::new(),
        closed: std::sync::atomic::AtomicBool::new(false),
    });
    (
        Tx {
            tx,
            shared: shared.clone(),
            capacity,
        },
        Rx { rx, shared },
    )
}

struct Shared {
    len: AtomicUsize,
    /// Wakes an awaiting receiver (a permit is kept if nobody waits yet).
    notify: Notify,
    capacity: usize,
    /// Signalled when an item leaves a full queue (for [`Tx::send_waiting`]).
    room: (Mutex<()>, Condvar),
    /// The same for [`Tx::room`], and when the receiver goes.
    room_async: Notify,
    /// The receiver is gone.
    closed: std::sync::atomic::AtomicBool,
}

/// The sending side; cheap to clone.
pub(crate) struct Tx<T> {
    tx: mpsc::Sender<T>,
    shared: Arc<Shared>,
    capacity: usize,
}

impl<T> Clone for Tx<T> {
    fn clone(&self) -> Self {
        Self {
            tx: self.tx.clone(),
            shared: self.shared.clone(),
            capacity: self.capacity,
        }
    }
}

impl<T> Tx<T> {
    /// Queues `v` unless the queue is full or closed.
    pub fn try_send(&self, v: T) -> Result<(), TrySendError<T>> {
        if self.shared.len.fetch_add(1, Ordering::AcqRel) >= self.capacity {
            self.shared.len.fetch_sub(1, Ordering::AcqRel);
            return Err(TrySendError::Full(v));
        }
        self.push(v)
            .map_err(|SendError(v)| TrySendError::Disconnected(v))
    }

    /// Like [`Tx::try_send`], but waits (blocking, at most `patience`) for room in a full
    /// queue; false if there was none in time or the queue is closed.
    pub fn send_waiting(&self, v: T, patience: Duration) -> bool {
        let deadline = Instant::now() + patience;
        let mut v = v;
        loop {
            match self.try_send(v) {
                Ok(()) => return true,
                Err(TrySendError::Disconnected(_)) => return false,
                Err(TrySendError::Full(back)) => v = back,
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            let (lock, cvar) = &self.shared.room;
            let guard = lock.lock().unwrap_or_else(|e| e.into_inner());
            if self.shared.len.load(Ordering::Acquire) >= self.capacity {
                // Bounded, so a wake-up lost between the check and the wait costs at most this.
                let wait = (deadline - now).min(Duration::from_millis(5));
                let _ = cvar.wait_timeout(guard, wait);
            }
        }
    }

    /// Resolves once the queue is below its bound (or its receiver is gone).
    pub fn room(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let (shared, capacity) = (self.shared.clone(), self.capacity);
        async move {
            loop {
                // Registered before the check, so a wake-up in between is not lost.
                let notified = shared.room_async.notified();
                if shared.len.load(Ordering::Acquire) < capacity
                    || shared.closed.load(Ordering::Acquire)
                {
                    return;
                }
                notified.await;
            }
        }
    }

    /// Queues a control message (stop, delete, info) even past the bound: there are few.
    pub fn send(&self, v: T) -> Result<(), SendError<T>> {
        self.shared.len.fetch_add(1, Ordering::AcqRel);
        self.push(v)
    }

    fn push(&self, v: T) -> Result<(), SendError<T>> {
        match self.tx.send(v) {
            Ok(()) => {
                self.shared.notify.notify_one();
                Ok(())
            }
            Err(e) => {
                self.shared.len.fetch_sub(1, Ordering::AcqRel);
                Err(e)
            }
        }
    }
}

/// The receiving side (one task or thread).
pub(crate) struct Rx<T> {
    rx: mpsc::Receiver<T>,
    shared: Arc<Shared>,
}

impl<T> Drop for Rx<T> {
    /// Publishers awaiting room stop waiting.
    fn drop(&mut self) {
        self.shared.closed.store(true, Ordering::Release);
        self.shared.room_async.notify_waiters();
    }
}

impl<T> Rx<T> {
    fn took<E>(&self, r: Result<T, E>) -> Result<T, E> {
        if r.is_ok() && self.shared.len.fetch_sub(1, Ordering::AcqRel) >= self.shared.capacity {
            let (lock, cvar) = &self.shared.room;
            drop(lock.lock().unwrap_or_else(|e| e.into_inner()));
            cvar.notify_all();
            self.shared.room_async.notify_waiters();
        }
        r
    }

    /// Awaits the next item; `None` once every sender is gone.
    pub async fn recv(&mut self) -> Option<T> {
        loop {
            match self.try_recv_inner() {
                Ok(v) => return Some(v),
                Err(TryRecvError::Disconnected) => return None,
                Err(TryRecvError::Empty) => self.shared.notify.notified().await,
            }
        }
    }

    /// Blocks (off the async runtime's threads) for the next item, at most `timeout`.
    pub fn recv_timeout(&mut self, timeout: Duration) -> Result<T, RecvTimeoutError> {
        let r = self.rx.recv_timeout(timeout);
        self.took(r)
    }

    /// Blocks (off the async runtime's threads) for the next item.
    pub fn blocking_recv(&mut self) -> Option<T> {
        let r = self.rx.recv();
        self.took(r).ok()
    }

    /// True if nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.shared.len.load(Ordering::Acquire) == 0
    }

    /// The next item, if one is queued.
    pub fn try_recv(&mut self) -> Option<T> {
        self.try_recv_inner().ok()
    }

    fn try_recv_inner(&mut self) -> Result<T, TryRecvError> {
        let r = self.rx.try_recv();
        self.took(r)
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
        assert_eq!(rx.recv_timeout(Duration::from_millis(1)), Ok(4));
        assert_eq!(rx.try_recv(), Some(6));
        assert_eq!(rx.try_recv(), None);
        drop(rx);
        assert!(matches!(tx.try_send(7), Err(TrySendError::Disconnected(7))));
    }

    /// A publisher held back awaits room instead of blocking: it resolves once an item leaves
    /// the queue it overfilled, and at once when the receiver is gone.
    #[tokio::test(flavor = "current_thread")]
    async fn room_is_awaited() {
        let (tx, mut rx) = queue(2);
        tx.try_send(1).unwrap();
        tx.try_send(2).unwrap();
        tx.send(3).unwrap();
        let mut room = Box::pin(tx.room());
        assert!(futures::poll!(&mut room).is_pending());
        assert_eq!(rx.try_recv(), Some(1));
        assert!(futures::poll!(&mut room).is_pending(), "still at the bound");
        assert_eq!(rx.try_recv(), Some(2));
        tokio::time::timeout(Duration::from_secs(5), room)
            .await
            .unwrap();
        tx.send(4).unwrap();
        tx.send(5).unwrap();
        let room = tx.room();
        drop(rx);
        tokio::time::timeout(Duration::from_secs(5), room)
            .await
            .unwrap();
    }

    #[test]
    fn a_waiting_sender_gets_in_when_room_is_made() {
        let (tx, mut rx) = queue(1);
        tx.try_send(1).unwrap();
        assert!(
            !tx.send_waiting(2, Duration::from_millis(20)),
            "no room, no wait forever"
        );
        let waiter = {
            let tx = tx.clone();
            std::thread::spawn(move || tx.send_waiting(3, Duration::from_secs(5)))
        };
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(rx.try_recv(), Some(1));
        assert!(waiter.join().unwrap());
        assert_eq!(rx.recv_timeout(Duration::from_secs(1)), Ok(3));
    }

    #[tokio::test]
    async fn an_awaiting_receiver_wakes_for_a_sync_send() {
        let (tx, mut rx) = queue(8);
        let sender = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            tx.try_send(42).unwrap();
            tx
        });
        let got = tokio::time::timeout(Duration::from_secs(5), rx.recv()).await;
        assert_eq!(got, Ok(Some(42)));
        drop(sender.join().unwrap());
        assert_eq!(rx.recv().await, None);
    }
}
