//! Back-pressure from an internal subscriber to the connection that published into it. A
//! subscriber that cannot take more right now (a stream whose queue is full) still takes the
//! message, past its bound, and hands the publishing connection a [`Hold`]: a future that
//! resolves once it has room. The connection's reader awaits its holds before it reads more
//! from its socket, so a fast publisher is slowed to what the stream stores, no message is
//! dropped, and no runtime thread blocks. What a subscriber takes past its bound is at most
//! one read buffer's worth of messages per connection.
//!
//! The delivery that finds the subscriber full runs synchronously inside the reader's
//! processing of a read buffer, on the reader's thread: holds are collected in a thread-local
//! between [`Scope::enter`] and [`Scope::take`], and [`can_hold`] tells a subscriber whether
//! anyone will await them (a publisher outside a reader, such as a stream's own thread, is
//! not in a scope and must wait in place).

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;

/// Resolves when the subscriber that handed it out has room again.
pub type Hold = Pin<Box<dyn Future<Output = ()> + Send>>;

thread_local! {
    static IN_SCOPE: Cell<bool> = const { Cell::new(false) };
    static HELD: RefCell<Vec<Hold>> = const { RefCell::new(Vec::new()) };
}

/// True if the current delivery runs inside a publisher's [`Scope`], which awaits holds.
pub fn can_hold() -> bool {
    IN_SCOPE.with(Cell::get)
}

/// Hands the publisher in scope a hold to await before it publishes more. Without a scope
/// (see [`can_hold`]) the hold is dropped.
pub fn hold(h: Hold) {
    if can_hold() {
        HELD.with(|held| held.borrow_mut().push(h));
    }
}

/// A publisher's synchronous stretch of deliveries whose holds it awaits afterwards.
pub(crate) struct Scope(());

impl Scope {
    /// Starts collecting holds on this thread.
    pub(crate) fn enter() -> Scope {
        IN_SCOPE.with(|s| s.set(true));
        Scope(())
    }

    /// Ends the scope; the holds handed out in it (usually none).
    pub(crate) fn take(self) -> Vec<Hold> {
        drop(self);
        HELD.with(|held| std::mem::take(&mut *held.borrow_mut()))
    }
}

impl Drop for Scope {
    fn drop(&mut self) {
        IN_SCOPE.with(|s| s.set(false));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_are_collected_only_inside_a_scope() {
        hold(Box::pin(async {}));
        let scope = Scope::enter();
        assert!(can_hold());
        hold(Box::pin(async {}));
        hold(Box::pin(async {}));
        assert_eq!(scope.take().len(), 2);
        assert!(!can_hold());
        assert!(Scope::enter().take().is_empty(), "none left over");
    }
}
