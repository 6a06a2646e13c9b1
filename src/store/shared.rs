//! A store shared between its one writer (the stream's thread) and any number of readers (the
//! connection tasks answering direct gets without a hop to that thread).
//!
//! [`SharedStore::new`] wraps a store and returns the owner, a [`SharedStore`] that implements
//! [`MsgStore`] and is what the stream holds, and [`StoreReader`]s cloned from it. Every call
//! takes a read or write lock around the inner store, so a reader sees the store between two
//! of the owner's calls, never in the middle of one (`sync` is two calls, with the `fdatasync`
//! between them done unlocked). Dropping the owner closes the store (the
//! inner store is dropped then, whatever readers still exist; they find it closed).
//!
//! One stream operation can be several store calls (an append, then a rollup's purge or a
//! limit's removal), so a reader can briefly see the state between them, e.g. a rolled-up
//! subject's old messages next to the rollup; it never sees a half-applied call.

use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use super::{MsgStore, PendingSync, StoreError, StoreState, StoredMsg, SubjectState};

type Inner = Arc<RwLock<Option<Box<dyn MsgStore + Sync>>>>;

/// Opens the store again from disk (see [`SharedStore::reopen_with`]).
pub type Opener = Box<dyn Fn() -> Result<Box<dyn MsgStore + Sync>, StoreError> + Send>;

/// The owning handle: the store itself, as far as the stream is concerned.
pub struct SharedStore {
    inner: Inner,
    opener: Option<Opener>,
}

/// A read-only handle for another thread or task.
#[derive(Clone)]
pub struct StoreReader {
    inner: Inner,
}

fn closed() -> StoreError {
    StoreError::Invalid("the store is closed".into())
}

impl SharedStore {
    /// Wraps `store`.
    pub fn new(store: Box<dyn MsgStore + Sync>) -> SharedStore {
        SharedStore {
            inner: Arc::new(RwLock::new(Some(store))),
            opener: None,
        }
    }

    /// Sets how [`MsgStore::reopen`] opens the store again: the old one is closed first (a
    /// directory is open in one store at a time), so until the opener succeeds readers find
    /// the store closed.
    pub fn reopen_with(mut self, opener: Opener) -> SharedStore {
        self.opener = Some(opener);
        self
    }

    /// A handle that can read the store from elsewhere while the owner lives.
    pub fn reader(&self) -> StoreReader {
        StoreReader {
            inner: self.inner.clone(),
        }
    }

    fn read(&self) -> RwLockReadGuard<'_, Option<Box<dyn MsgStore + Sync>>> {
        self.inner.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Option<Box<dyn MsgStore + Sync>>> {
        self.inner.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `f` on the inner store with the write lock held.
    fn with_mut<T>(
        &mut self,
        f: impl FnOnce(&mut (dyn MsgStore + Sync)) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        match self.write().as_deref_mut() {
            Some(s) => f(s),
            None => Err(closed()),
        }
    }

    /// Runs `f` on the inner store with the read lock held; `None` once closed.
    fn with<T>(&self, f: impl FnOnce(&(dyn MsgStore + Sync)) -> T) -> Option<T> {
        self.read().as_deref().map(f)
    }
}

impl Drop for SharedStore {
    fn drop(&mut self) {
        let inner = self.write().take();
        drop(inner);
    }
}

impl StoreReader {
    /// Runs `f` on the store with the read lock held; `None` once the owner has closed it.
    pub fn with<T>(&self, f: impl FnOnce(&dyn MsgStore) -> T) -> Option<T> {
        let guard = self.inner.read().unwrap_or_else(|e| e.into_inner());
        guard.as_deref().map(|s| f(s))
    }

    /// Like [`StoreReader::with`], but `None` instead of waiting when the owner holds the lock
    /// (a segment roll or checkpoint can hold it across several fsyncs): for callers on an
    /// async runtime's threads, which have somewhere else to send the work.
    pub fn try_with<T>(&self, f: impl FnOnce(&dyn MsgStore) -> T) -> Option<T> {
        let guard = match self.inner.try_read() {
            Ok(g) => g,
            Err(std::sync::TryLockError::Poisoned(e)) => e.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => return None,
        };
        guard.as_deref().map(|s| f(s))
    }
}

impl MsgStore for SharedStore {
    fn append(
        &mut self,
        subject: &str,
        headers: Option<&[u8]>,
        payload: &[u8],
        time: i64,
    ) -> Result<u64, StoreError> {
        self.with_mut(|s| s.append(subject, headers, payload, time))
    }

    /// Waits for the disk with the lock released, so direct gets are not held up by fsyncs.
    fn sync(&mut self) -> Result<(), StoreError> {
        let pending = self.begin_sync()?;
        let synced = pending.wait();
        self.end_sync(pending, synced).map(|_| ())
    }

    fn begin_sync(&mut self) -> Result<PendingSync, StoreError> {
        self.with_mut(|s| s.begin_sync())
    }

    fn end_sync(
        &mut self,
        pending: PendingSync,
        synced: std::io::Result<()>,
    ) -> Result<u64, StoreError> {
        self.with_mut(|s| s.end_sync(pending, synced))
    }

    fn checkpoint(&mut self) -> Result<(), StoreError> {
        self.with_mut(|s| s.checkpoint())
    }

    fn mark_applied(&mut self, index: u64) {
        let _ = self.with_mut(|s| {
            s.mark_applied(index);
            Ok(())
        });
    }

    fn applied_index(&self) -> u64 {
        self.with(|s| s.applied_index()).unwrap_or(0)
    }

    fn get(&self, seq: u64) -> Result<Option<StoredMsg>, StoreError> {
        self.with(|s| s.get(seq)).unwrap_or_else(|| Err(closed()))
    }

    fn remove(&mut self, seq: u64) -> Result<bool, StoreError> {
        self.with_mut(|s| s.remove(seq))
    }

    fn purge(
        &mut self,
        filter: Option<&str>,
        up_to_seq: Option<u64>,
        keep: Option<u64>,
    ) -> Result<u64, StoreError> {
        self.with_mut(|s| s.purge(filter, up_to_seq, keep))
    }

    fn state(&self) -> StoreState {
        self.with(|s| s.state()).unwrap_or_default()
    }

    fn subject_state(&self, subject: &str) -> Option<SubjectState> {
        self.with(|s| s.subject_state(subject)).flatten()
    }

    fn last_seq_for_subject(&self, subject: &str) -> Option<u64> {
        self.with(|s| s.last_seq_for_subject(subject)).flatten()
    }

    fn subjects_matching(&self, filter: &str) -> Vec<(String, SubjectState)> {
        self.with(|s| s.subjects_matching(filter))
            .unwrap_or_default()
    }

    fn next_seq_matching(&self, start_seq: u64, filter: Option<&str>) -> Option<u64> {
        self.with(|s| s.next_seq_matching(start_seq, filter))
            .flatten()
    }

    fn count_matching(&self, start_seq: u64, filter: Option<&str>) -> u64 {
        self.with(|s| s.count_matching(start_seq, filter))
            .unwrap_or(0)
    }

    fn seq_for_time(&self, time: i64) -> u64 {
        self.with(|s| s.seq_for_time(time)).unwrap_or(0)
    }

    fn expire_older_than(&mut self, cutoff_time: i64) -> Result<u64, StoreError> {
        self.with_mut(|s| s.expire_older_than(cutoff_time))
    }

    fn set_first_seq(&mut self, seq: u64) -> Result<(), StoreError> {
        self.with_mut(|s| s.set_first_seq(seq))
    }

    fn skip_to(&mut self, next: u64) -> Result<(), StoreError> {
        self.with_mut(|s| s.skip_to(next))
    }

    /// With an opener, the store is deleted and opened again empty; otherwise the inner store
    /// recreates itself (a memory store can).
    fn recreate(&mut self) -> Result<(), StoreError> {
        let Some(opener) = &self.opener else {
            return self.with_mut(|s| s.recreate());
        };
        let mut guard = self.inner.write().unwrap_or_else(|e| e.into_inner());
        if let Some(old) = guard.take() {
            old.delete_all()?;
        }
        *guard = Some(opener()?);
        Ok(())
    }

    fn first_seq(&self) -> u64 {
        self.with(|s| s.first_seq()).unwrap_or(0)
    }

    fn last_seq(&self) -> u64 {
        self.with(|s| s.last_seq()).unwrap_or(0)
    }

    fn reopen(&mut self) -> Result<(), StoreError> {
        let Some(opener) = &self.opener else {
            return self.with_mut(|s| s.reopen());
        };
        let mut guard = self.inner.write().unwrap_or_else(|e| e.into_inner());
        drop(guard.take());
        *guard = Some(opener()?);
        Ok(())
    }

    fn delete_all(self: Box<Self>) -> Result<(), StoreError> {
        let inner = self.write().take();
        match inner {
            Some(s) => s.delete_all(),
            None => Err(closed()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemStore;

    #[test]
    fn readers_see_the_owners_writes_and_a_closed_store_after_drop() {
        let mut owner = SharedStore::new(Box::new(MemStore::new()));
        let reader = owner.reader();
        let seq = owner.append("kv.a", None, b"1", 1).unwrap();
        let got = reader
            .with(|s| s.get(seq).unwrap().unwrap().payload)
            .unwrap();
        assert_eq!(&got[..], b"1");
        assert_eq!(
            reader.with(|s| s.last_seq_for_subject("kv.a")),
            Some(Some(seq))
        );
        drop(owner);
        assert!(reader.with(|s| s.last_seq()).is_none());
    }

    #[test]
    fn reopen_recovers_what_was_synced() {
        use crate::store::{FileStore, FileStoreOptions};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_path_buf();
        let open = move || -> Result<Box<dyn MsgStore + Sync>, StoreError> {
            Ok(Box::new(
                FileStore::open(&path, FileStoreOptions::default())?.0,
            ))
        };
        let mut owner = SharedStore::new(open().unwrap()).reopen_with(Box::new(open));
        let reader = owner.reader();
        owner.append("s", None, b"kept", 1).unwrap();
        owner.sync().unwrap();
        owner.append("s", None, b"not synced", 2).unwrap();
        owner.reopen().unwrap();
        assert_eq!(owner.state().msgs, 1, "only the synced append survives");
        assert_eq!(reader.with(|s| s.last_seq()), Some(1));
        assert_eq!(owner.append("s", None, b"next", 3).unwrap(), 2);
    }

    #[test]
    fn a_sync_with_the_lock_released_is_still_durable() {
        use crate::store::{FileStore, FileStoreOptions};
        let dir = tempfile::tempdir().unwrap();
        let open = || {
            FileStore::open(dir.path(), FileStoreOptions::default())
                .unwrap()
                .0
        };
        let mut owner = SharedStore::new(Box::new(open()));
        for i in 0..3u8 {
            owner.append("s", None, &[i], i64::from(i)).unwrap();
        }
        owner.sync().unwrap();
        // Dropped without a checkpoint: a crash as far as the store is concerned.
        drop(owner);
        let store = open();
        assert_eq!(store.state().msgs, 3);
        assert_eq!(&store.get(3).unwrap().unwrap().payload[..], &[2]);
    }
}
