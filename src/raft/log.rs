//! A group's Raft log for openraft ([`RaftLogStorage`] and [`RaftLogReader`]): the file
//! format and recovery are in `log_file`; this is the async glue. Every file operation runs
//! on tokio's blocking threads. `append` writes and returns; it reports the entries flushed
//! only after an fdatasync that started after they were written (one sync at a time covers
//! every append waiting: group commit). `save_vote`, `truncate` and `purge` are durable when
//! they return; `save_committed` writes at most once a second (a stale commit index is safe).
//! The newest entries are also kept in memory ([`Tail`]), so replication and apply read
//! them without a file read. The store is cheap to clone: the log reader openraft asks for
//! is a clone.

use std::collections::VecDeque;
use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{AnyError, ErrorSubject, ErrorVerb, LogState, RaftLogReader, StorageIOError};

use super::log_file::{LogFile, RECLAIM_AT};
use super::{Entry, LogId, StorageError, TypeConfig, Vote};

/// Errors of the log files.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// A file operation failed.
    #[error("raft log I/O: {0}")]
    Io(#[from] std::io::Error),
    /// A record or the meta file passed its checksum but cannot be decoded, or is
    /// inconsistent with the others.
    #[error("raft log corrupt: {0}")]
    Corrupt(String),
    /// An entry's index is not above the last one's (an overwrite needs a truncate first).
    #[error("raft log order: entry {got} after entry {after}")]
    Order {
        /// The last index.
        after: u64,
        /// The index given.
        got: u64,
    },
    /// An entry over 4 GiB.
    #[error("raft log entry of {0} bytes is too large")]
    TooLarge(usize),
    /// A blocking task failed (panicked or was cancelled at shutdown).
    #[error("raft log task failed: {0}")]
    Task(String),
}

/// The log of one group. Clones share it.
#[derive(Clone)]
pub struct LogStore {
    file: Arc<Mutex<LogFile>>,
    flush: Arc<Mutex<Flush>>,
    tail: Arc<Mutex<Tail>>,
}

/// The newest entries, kept in memory: replication and apply read what was just appended
/// without a trip to a blocking thread and the file.
#[derive(Default)]
struct Tail {
    entries: VecDeque<Entry>,
    bytes: usize,
}

/// Most entries the tail keeps.
const TAIL_ENTRIES: usize = 1024;
/// The tail drops its oldest entries beyond this many payload bytes.
const TAIL_BYTES: usize = 8 << 20;

impl Tail {
    fn push(&mut self, entries: &[Entry]) {
        for e in entries {
            // Appends follow each other (a rewrite comes after a truncate, which clears).
            if self
                .entries
                .back()
                .is_some_and(|b| b.log_id.index + 1 != e.log_id.index)
            {
                self.clear();
            }
            self.bytes += size(e);
            self.entries.push_back(e.clone());
        }
        while self.entries.len() > TAIL_ENTRIES || self.bytes > TAIL_BYTES {
            match self.entries.pop_front() {
                Some(e) => self.bytes -= size(&e),
                None => break,
            }
        }
    }

    fn drop_through(&mut self, index: u64) {
        while self
            .entries
            .front()
            .is_some_and(|e| e.log_id.index <= index)
        {
            if let Some(e) = self.entries.pop_front() {
                self.bytes -= size(&e);
            }
        }
    }

    fn clear(&mut self) {
        self.entries.clear();
        self.bytes = 0;
    }

    /// Entries `start..end` if the tail holds all of them (`end` past the last: up to it).
    fn read(&self, start: u64, end: u64) -> Option<Vec<Entry>> {
        let first = self.entries.front()?.log_id.index;
        let last = self.entries.back()?.log_id.index;
        if start < first || start > last.saturating_add(1) {
            return None;
        }
        let from = usize::try_from(start - first).ok()?;
        let to = usize::try_from(end.min(last.saturating_add(1)).max(start) - first).ok()?;
        Some(self.entries.range(from..to).cloned().collect())
    }
}

fn size(e: &Entry) -> usize {
    match &e.payload {
        openraft::EntryPayload::Normal(p) => p.len(),
        _ => 0,
    }
}

/// Appends written but not yet reported flushed: one fdatasync covers every append written
/// before it started (group commit), while openraft goes on appending.
#[derive(Default)]
struct Flush {
    waiting: Vec<LogFlushed<TypeConfig>>,
    running: bool,
}

impl LogStore {
    /// Opens the log in `dir` (created if needed), cutting a damaged tail.
    pub async fn open(dir: &Path) -> Result<LogStore, LogError> {
        Self::open_reclaiming_at(dir, RECLAIM_AT).await
    }

    /// Like [`LogStore::open`], rewriting the file once a purged prefix reaches `reclaim_at`
    /// bytes (and outweighs the live part).
    pub async fn open_reclaiming_at(dir: &Path, reclaim_at: u64) -> Result<LogStore, LogError> {
        let dir = dir.to_path_buf();
        let file = blocking(move || LogFile::open(&dir, reclaim_at)).await?;
        Ok(LogStore {
            file: Arc::new(Mutex::new(file)),
            flush: Arc::default(),
            tail: Arc::default(),
        })
    }

    /// Bytes of records in the log file (dead prefix included): for tests and metrics.
    pub fn file_size(&self) -> u64 {
        lock(&self.file).size()
    }

    /// Runs `f` on the file on a blocking thread.
    /// Reports an append flushed after an fdatasync that starts after it was written; one
    /// sync runs at a time and covers every append waiting when it starts.
    fn flush_later(&self, callback: LogFlushed<TypeConfig>) {
        let mut flush = self.flush.lock().unwrap_or_else(|e| e.into_inner());
        flush.waiting.push(callback);
        if flush.running {
            return;
        }
        flush.running = true;
        let (file, state) = (self.file.clone(), self.flush.clone());
        tokio::task::spawn_blocking(move || loop {
            let batch = {
                let mut flush = state.lock().unwrap_or_else(|e| e.into_inner());
                if flush.waiting.is_empty() {
                    flush.running = false;
                    return;
                }
                std::mem::take(&mut flush.waiting)
            };
            // The handle is taken under the lock and synced outside it: appends go on
            // writing while the disk syncs (holding the lock here serialized them).
            let handle = lock(&file).sync_handle();
            let synced = handle
                .and_then(|f| f.sync_data())
                .map_err(|e| e.to_string());
            for cb in batch {
                cb.log_io_completed(synced.clone().map_err(std::io::Error::other));
            }
        });
    }

    async fn run<T, F>(&self, f: F) -> Result<T, LogError>
    where
        T: Send + 'static,
        F: FnOnce(&mut LogFile) -> Result<T, LogError> + Send + 'static,
    {
        let file = self.file.clone();
        blocking(move || f(&mut lock(&file))).await
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the file's lock leaves its in-memory index as it was before the
    // call finished; every change to it comes after its file operation succeeded.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

async fn blocking<T, F>(f: F) -> Result<T, LogError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, LogError> + Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| LogError::Task(e.to_string()))?
}

fn io_err(subject: ErrorSubject<u64>, verb: ErrorVerb, e: LogError) -> StorageError {
    StorageIOError::new(subject, verb, AnyError::new(&e)).into()
}

/// `range` as `start..end`.
fn bounds(range: &impl RangeBounds<u64>) -> (u64, u64) {
    let start = match range.start_bound() {
        Bound::Included(s) => *s,
        Bound::Excluded(s) => s.saturating_add(1),
        Bound::Unbounded => 0,
    };
    let end = match range.end_bound() {
        Bound::Included(e) => e.saturating_add(1),
        Bound::Excluded(e) => *e,
        Bound::Unbounded => u64::MAX,
    };
    (start, end)
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        let (start, end) = bounds(&range);
        if let Some(entries) = lock(&self.tail).read(start, end) {
            return Ok(entries);
        }
        self.run(move |f| f.read(start, end))
            .await
            .map_err(|e| io_err(ErrorSubject::Logs, ErrorVerb::Read, e))
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let file = lock(&self.file);
        Ok(LogState {
            last_purged_log_id: file.purged(),
            last_log_id: file.last(),
        })
    }

    async fn get_log_reader(&mut self) -> LogStore {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError> {
        let vote = *vote;
        self.run(move |f| f.save_vote(vote))
            .await
            .map_err(|e| io_err(ErrorSubject::Vote, ErrorVerb::Write, e))
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError> {
        Ok(lock(&self.file).vote())
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        // Most calls only note it in memory (a write is due once a second): no thread hop.
        if lock(&self.file).note_committed(committed) {
            return Ok(());
        }
        self.run(move |f| f.save_committed(committed))
            .await
            .map_err(|e| io_err(ErrorSubject::Store, ErrorVerb::Write, e))
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        Ok(lock(&self.file).committed())
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let entries: Vec<Entry> = entries.into_iter().collect();
        let tail = self.tail.clone();
        let written = self
            .run(move |f| {
                f.append_synced(&entries, false)?;
                lock(&tail).push(&entries);
                Ok(())
            })
            .await;
        match written {
            Ok(()) => {
                self.flush_later(callback);
                Ok(())
            }
            Err(e) => {
                callback.log_io_completed(Err(std::io::Error::other(e.to_string())));
                Err(io_err(ErrorSubject::Logs, ErrorVerb::Write, e))
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        lock(&self.tail).clear();
        self.run(move |f| f.truncate(log_id.index))
            .await
            .map_err(|e| io_err(ErrorSubject::Logs, ErrorVerb::Delete, e))
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        lock(&self.tail).drop_through(log_id.index);
        self.run(move |f| f.purge(log_id))
            .await
            .map_err(|e| io_err(ErrorSubject::Logs, ErrorVerb::Delete, e))
    }
}

#[cfg(test)]
mod tail_tests {
    use openraft::{CommittedLeaderId, EntryPayload};

    use super::*;

    fn entries(term: u64, from: u64, to: u64) -> Vec<Entry> {
        (from..=to)
            .map(|i| Entry {
                log_id: LogId::new(CommittedLeaderId::new(term, 1), i),
                payload: EntryPayload::Normal(vec![b'x'; 1000]),
            })
            .collect()
    }

    fn indexes(entries: Option<Vec<Entry>>) -> Option<Vec<u64>> {
        entries.map(|v| v.iter().map(|e| e.log_id.index).collect())
    }

    #[test]
    fn the_tail_serves_only_ranges_it_holds_whole() {
        let mut tail = Tail::default();
        assert!(tail.read(1, 2).is_none());
        tail.push(&entries(1, 1, 10));
        assert_eq!(indexes(tail.read(3, 6)), Some(vec![3, 4, 5]));
        assert_eq!(indexes(tail.read(9, u64::MAX)), Some(vec![9, 10]));
        assert_eq!(indexes(tail.read(11, 20)), Some(vec![]));
        assert_eq!(indexes(tail.read(5, 5)), Some(vec![]));
        assert!(tail.read(12, 20).is_none());
        tail.drop_through(4);
        assert!(
            tail.read(4, 6).is_none(),
            "purged entries come from the file"
        );
        assert_eq!(indexes(tail.read(5, 7)), Some(vec![5, 6]));
        // A gap (a rewrite not preceded by a truncate) empties it rather than mislead.
        tail.push(&entries(2, 20, 21));
        assert!(tail.read(5, 7).is_none());
        assert_eq!(indexes(tail.read(20, 22)), Some(vec![20, 21]));
    }

    #[test]
    fn the_tail_stays_bounded() {
        let mut tail = Tail::default();
        tail.push(&entries(1, 1, (TAIL_ENTRIES + 50) as u64));
        assert_eq!(tail.entries.len(), TAIL_ENTRIES);
        assert!(tail.read(1, 3).is_none());
        let mut big = Tail::default();
        let mut e = entries(1, 1, 3);
        for x in &mut e {
            x.payload = EntryPayload::Normal(vec![0; TAIL_BYTES / 2]);
        }
        big.push(&e);
        assert!(big.bytes <= TAIL_BYTES);
        assert_eq!(indexes(big.read(3, 4)), Some(vec![3]));
    }
}
