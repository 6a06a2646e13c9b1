//! JetStream message storage: one store per stream, synchronous, owned by the stream's task.
//!
//! The store keeps a stream's messages and answers the queries JetStream needs (by sequence, by
//! subject, by time, pending counts). Two implementations share one trait, [`MsgStore`]:
//!
//! - [`MemStore`] (`storage: memory`): everything in RAM.
//! - [`FileStore`] (`storage: file`): an append-only segment log plus a sled index, built so
//!   that an appended message is never lost once [`MsgStore::sync`] has returned.
//!
//! Nothing here is async and nothing locks on the hot path (both stores are `Send + Sync`; the
//! file store's read-handle cache sits behind a small mutex): the stream task calls the store
//! directly, appends a batch, calls `sync()` once (group commit) and then acknowledges.
//!
//! # API
//!
//! ```text
//! trait MsgStore: Send
//!   append(&mut, subject, headers: Option<&[u8]>, payload, time) -> Result<u64>  next seq, not yet durable
//!   sync(&mut) -> Result<()>                     every append/remove/purge so far is durable
//!   begin_sync(&mut) -> Result<PendingSync>, end_sync(&mut, PendingSync, io::Result<()>) -> Result<u64>
//!                                                the same sync in two halves, so the fdatasync
//!                                                (PendingSync::wait) can run unborrowed while
//!                                                the owner appends more; end_sync returns the
//!                                                sequence now durable (the commit watermark)
//!   checkpoint(&mut) -> Result<()>               sync + persist the index (call before shutdown)
//!   mark_applied(&mut, index), applied_index(&) -> u64   "ops applied through index", recorded
//!                                                in the log with the next sync
//!   get(&, seq) -> Result<Option<StoredMsg>>     CRC-verified; a damaged record is Err(Corrupt)
//!                                                and is dropped (lost) at the next mutating call
//!   remove(&mut, seq) -> Result<bool>            delete one message (no rewrite)
//!   purge(&mut, filter, up_to_seq, keep) -> Result<u64>   see `MsgStore::purge`
//!   state(&) -> StoreState
//!   subject_state(&, subject) -> Option<SubjectState>      exact subject
//!   last_seq_for_subject(&, subject) -> Option<u64>
//!   subjects_matching(&, filter) -> Vec<(String, SubjectState)>   wildcards allowed
//!   next_seq_matching(&, start, filter) -> Option<u64>   first live seq >= start
//!   count_matching(&, start, filter) -> u64              live msgs with seq >= start
//!   seq_for_time(&, time) -> u64                 first live seq with time >= given
//!   expire_older_than(&mut, cutoff) -> Result<u64>      max_age
//!   set_first_seq(&mut, seq) -> Result<()>       empties the store; next append gets `seq`
//!   first_seq(&) / last_seq(&) -> u64
//!   delete_all(Box<Self>) -> Result<()>          removes the stream's files
//!
//! MemStore::new() -> MemStore
//! FileStore::open(dir, FileStoreOptions) -> Result<(FileStore, RecoveryReport)>
//!   FileStoreOptions { segment_bytes: 8 MiB, write_buffer_bytes: 256 KiB,
//!                      index_cache_bytes: 4 MiB }
//! FileStore::verify(&mut) -> Result<Vec<(u64, u64)>>   CRC-scrub every live record
//! FileStore::dir(&) / segment_count(&)
//! subject_matches(filter, subject) -> bool
//! ```
//!
//! Sequences start at 1 and are never reused. Filters use NATS wildcards (`*` one token, `>`
//! the rest); `None` and `">"` mean "every subject" and take the fast unfiltered paths.
//!
//! Durability contract (file store): once `sync()` returns, every earlier append, remove and
//! purge survives a crash. Dropping a `FileStore` is a crash as far as unsynced work goes; call
//! `checkpoint()` before dropping at shutdown so the next open replays nothing but the active
//! segment. After an I/O error on the write path the store is poisoned (`StoreError::Poisoned`)
//! until reopened. A directory can be open in one store at a time.
//!
//! # Layout
//! - [`subjects`]: wildcard matching.
//! - `index`, `subject_index`: the in-memory index both stores share (per-sequence slots,
//!   per-subject sequence lists).
//! - `mem`: [`MemStore`].
//! - `record`: the on-disk record framing, CRC and the resynchronising scanner.
//! - `sidecar`: the sealed-segment `.idx` files and the `.del` carry-over files.
//! - `segment`: file naming, the active segment's writer, the read-handle cache.
//! - `meta`: the sled database (checkpoint, segment catalogue, deletion bitmaps, subject count).
//! - `shared`: [`SharedStore`], a store one thread writes while others read (direct gets).
//! - `file`: [`FileStore`] internals, `file_ops`: its [`MsgStore`] impl, `reclaim`: unlinking
//!   dead segments and sled checkpoints, `recovery`: [`FileStore::open`].
//!
//! - `tests`, `tests_file`, `tests_damage`: shared behaviour of both stores, file-store
//!   specifics (crashes, torn tails, corruption, lost sled), random directory damage;
//!   `tests_index`: the in-memory index (a child of `index`).
//!
//! The on-disk layout is described in `file.rs`, the record format in `record.rs`, the
//! sidecars in `sidecar.rs`, sled's content in `meta.rs` and recovery in `recovery.rs`.

/// Opens the sled database a server's file stores share (`FileStoreOptions::shared_index`),
/// recreating it once if it is damaged (everything in it can be rebuilt from the logs).
pub fn open_shared_index(path: &std::path::Path) -> Result<sled::Db, StoreError> {
    const CACHE: u64 = 16 << 20;
    meta::open_db(path, CACHE).or_else(|e| {
        // Held by another handle (a server still shutting down): not damage, nothing to delete.
        if e.to_string().contains("could not acquire lock") {
            return Err(e);
        }
        tracing::warn!(path = %path.display(), error = %e, "shared sled index damaged; recreating");
        let _ = std::fs::remove_dir_all(path);
        meta::open_db(path, CACHE)
    })
}

mod dirlock;
mod file;
mod file_ops;
mod index;
mod mem;
mod meta;
mod prealloc;
mod reclaim;
mod record;
mod recovery;
mod segment;
mod shared;
mod sidecar;
mod subject_index;
pub mod subjects;

use bytes::Bytes;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_damage;
#[cfg(test)]
mod tests_file;

pub(crate) use dirlock::DirLock;
pub use file::{FileStore, FileStoreOptions};
pub use mem::MemStore;
pub(crate) use prealloc::Prealloc;
pub use segment::PendingSync;
pub use shared::{SharedStore, StoreReader};
pub use subjects::subject_matches;

/// The highest sequence a store hands out; purges and `set_first_seq` beyond it are refused,
/// so sequence arithmetic never overflows.
pub const MAX_SEQ: u64 = 1 << 62;

/// Refuses a sequence the store could not continue from.
pub(crate) fn check_seq(seq: u64) -> Result<(), StoreError> {
    if seq > MAX_SEQ {
        return Err(StoreError::Invalid(format!(
            "sequence {seq} is above {MAX_SEQ}"
        )));
    }
    Ok(())
}

/// The read-only `MsgStore` queries that both stores answer straight from their `index::Index`
/// (`self.index`, `self.last_seq`, `self.last_time`).
macro_rules! index_queries {
    () => {
        fn state(&self) -> StoreState {
            self.index.state(self.last_seq, self.last_time)
        }

        fn subject_state(&self, subject: &str) -> Option<SubjectState> {
            self.index.subject_state(subject)
        }

        fn last_seq_for_subject(&self, subject: &str) -> Option<u64> {
            self.index.last_seq_for_subject(subject)
        }

        fn subjects_matching(&self, filter: &str) -> Vec<(String, SubjectState)> {
            self.index.subjects_matching(filter)
        }

        fn next_seq_matching(&self, start_seq: u64, filter: Option<&str>) -> Option<u64> {
            self.index.next_matching(start_seq, filter)
        }

        fn count_matching(&self, start_seq: u64, filter: Option<&str>) -> u64 {
            self.index.count_matching(start_seq, filter)
        }

        fn seq_for_time(&self, time: i64) -> u64 {
            self.index
                .first_at_or_after(time)
                .unwrap_or(self.last_seq + 1)
        }
    };
}
pub(crate) use index_queries;

/// One stored message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredMsg {
    /// Stream sequence.
    pub seq: u64,
    /// Unix time in nanoseconds, as given to `append`.
    pub time: i64,
    /// The subject it was published to.
    pub subject: String,
    /// The raw header block (`NATS/1.0\r\n...`), if the message had one.
    pub headers: Option<Bytes>,
    /// The payload.
    pub payload: Bytes,
}

/// A stream's totals, as reported in stream info.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StoreState {
    /// Live messages.
    pub msgs: u64,
    /// Bytes of live messages: `subject + headers + payload + 16` per message in memory, the
    /// record length (`subject + headers + payload + 42`) on file.
    pub bytes: u64,
    /// First live sequence; `last_seq + 1` when the store is empty.
    pub first_seq: u64,
    /// Time of the first live message; 0 when empty.
    pub first_time: i64,
    /// Highest sequence ever assigned (it survives purges and removals).
    pub last_seq: u64,
    /// Time of the last appended message (it survives purges).
    pub last_time: i64,
    /// Sequences between `first_seq` and `last_seq` that are not live.
    pub num_deleted: u64,
    /// Distinct subjects with live messages.
    pub num_subjects: u64,
    /// Optional detail; the stores leave it empty.
    pub deleted: Vec<u64>,
}

/// Live messages on one subject.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct SubjectState {
    /// Its first live sequence.
    pub first_seq: u64,
    /// Its last live sequence.
    pub last_seq: u64,
    /// How many live messages it has.
    pub msgs: u64,
}

/// What `FileStore::open` found and repaired.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Bytes cut from the end of the active segment (a torn, never-synced tail).
    pub truncated_bytes: u64,
    /// Damaged regions skipped while scanning: (segment first seq, byte offset).
    pub corrupt_records: Vec<(u64, u64)>,
    /// Sequences whose records were damaged and are therefore gone.
    pub lost_seqs: Vec<u64>,
    /// Records read from segment logs (the unindexed tail); sealed segments with a valid
    /// `.idx` sidecar are not rescanned.
    pub replayed_records: u64,
    /// Sealed segments loaded from their `.idx` sidecar.
    pub segments_from_sidecar: u64,
    /// Segment logs scanned record by record.
    pub segments_scanned: u64,
    /// True when the sled index was missing, unreadable or inconsistent and was rebuilt.
    pub index_rebuilt: bool,
}

/// Store errors.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// An I/O error on the stream's files.
    #[error("store i/o error: {0}")]
    Io(#[from] std::io::Error),
    /// A record failed its checks (CRC, framing or sequence) and is not served.
    #[error("corrupt record in segment {segment} at offset {offset}: {reason}")]
    Corrupt {
        /// First sequence (file name) of the segment.
        segment: u64,
        /// Byte offset of the record in the segment.
        offset: u64,
        /// What was wrong.
        reason: String,
    },
    /// The sled index failed.
    #[error("store index error: {0}")]
    Index(String),
    /// The caller asked for something the store cannot do (oversized record, seq reuse).
    #[error("invalid store request: {0}")]
    Invalid(String),
    /// An earlier write or fsync failed; the store refuses further work until reopened
    /// (after a failed fsync the kernel may have dropped the dirty pages, so retrying could
    /// report durability that does not exist).
    #[error("store is unusable after an earlier i/o failure: {0}")]
    Poisoned(String),
}

/// A stream's message store. See the module docs for the contract of each call.
pub trait MsgStore: Send {
    /// Appends a message with the next sequence and returns it. Not durable until `sync`.
    fn append(
        &mut self,
        subject: &str,
        headers: Option<&[u8]>,
        payload: &[u8],
        time: i64,
    ) -> Result<u64, StoreError>;

    /// Makes every change so far durable (one `fdatasync` of the active segment) and reclaims
    /// segments whose messages are all gone.
    fn sync(&mut self) -> Result<(), StoreError>;

    /// The first half of a `sync` that lets the caller wait for the disk without holding the
    /// store: buffered bytes are written and the returned [`PendingSync`] is the `fdatasync`
    /// still to do. The owner may go on appending before it calls `end_sync` with the wait's
    /// result; what it appended after `begin_sync` is not covered. One sync at a time is in
    /// flight. The default syncs at once and leaves nothing to wait for.
    fn begin_sync(&mut self) -> Result<PendingSync, StoreError> {
        self.sync()?;
        Ok(PendingSync::done(self.last_seq()))
    }

    /// Completes a sync begun with `begin_sync`, given how its `PendingSync::wait` went, and
    /// returns the last sequence it made durable; segments whose removals it covered are
    /// reclaimed. A failure poisons the store like a failed `sync`.
    fn end_sync(
        &mut self,
        pending: PendingSync,
        synced: std::io::Result<()>,
    ) -> Result<u64, StoreError> {
        synced?;
        Ok(pending.seq())
    }

    /// Marks the stream's ops applied through `index`: the store records it with the next
    /// sync, in the same log as the changes, so after a crash [`MsgStore::applied_index`] is
    /// an index whose changes (and all before it) survived. Replaying the ops after it on what
    /// survived is idempotent (appends carry their sequence).
    fn mark_applied(&mut self, index: u64);

    /// The highest applied index recorded (0 if none).
    fn applied_index(&self) -> u64;

    /// `sync` plus persisting the index, so the next open replays nothing. Call at shutdown.
    fn checkpoint(&mut self) -> Result<(), StoreError> {
        self.sync()
    }

    /// The live message with this sequence. A record that fails its CRC is `Err(Corrupt)`
    /// and counts as lost from the next mutating call on.
    fn get(&self, seq: u64) -> Result<Option<StoredMsg>, StoreError>;

    /// Deletes one message; false if it was not live. Durable after `sync`.
    fn remove(&mut self, seq: u64) -> Result<bool, StoreError>;

    /// Removes messages and returns how many. `filter` selects subjects (wildcards allowed;
    /// `None`/`">"` = all), `up_to_seq` limits removal to sequences below it, `keep` spares
    /// the newest N (per subject when a filter is given, overall otherwise). With no filter
    /// and no `keep`, `up_to_seq` above `last_seq + 1` also moves the next sequence up to it;
    /// with nothing given everything goes and the next sequence continues from
    /// `last_seq + 1`.
    fn purge(
        &mut self,
        filter: Option<&str>,
        up_to_seq: Option<u64>,
        keep: Option<u64>,
    ) -> Result<u64, StoreError>;

    /// Totals.
    fn state(&self) -> StoreState;

    /// Live messages on exactly this subject.
    fn subject_state(&self, subject: &str) -> Option<SubjectState>;

    /// The newest live sequence on exactly this subject.
    fn last_seq_for_subject(&self, subject: &str) -> Option<u64>;

    /// Every subject matching `filter`, with its state, in no particular order.
    fn subjects_matching(&self, filter: &str) -> Vec<(String, SubjectState)>;

    /// The first live sequence >= `start_seq` whose subject matches `filter`.
    fn next_seq_matching(&self, start_seq: u64, filter: Option<&str>) -> Option<u64>;

    /// How many live messages with sequence >= `start_seq` match `filter` (num_pending).
    fn count_matching(&self, start_seq: u64, filter: Option<&str>) -> u64;

    /// The first live sequence whose time is >= `time`, or `last_seq + 1` if none. Assumes
    /// times grow with sequences, as they do when the stream stamps them.
    fn seq_for_time(&self, time: i64) -> u64;

    /// Removes messages from the front while they are older than `cutoff_time` (max_age).
    fn expire_older_than(&mut self, cutoff_time: i64) -> Result<u64, StoreError>;

    /// Empties the store and makes `seq` the next sequence. `seq` must be above `last_seq`.
    fn set_first_seq(&mut self, seq: u64) -> Result<(), StoreError>;

    /// Makes `next` the next sequence without removing anything: the sequences between are a
    /// gap of deleted messages. `next` must be above `last_seq`. A gap that no append follows
    /// is not kept across a reopen (a replica rebuilding a stream from a snapshot, which it
    /// rebuilds again at every start, is the user).
    fn skip_to(&mut self, next: u64) -> Result<(), StoreError>;

    /// Deletes everything and starts over as an empty store at sequence 1.
    fn recreate(&mut self) -> Result<(), StoreError> {
        Err(StoreError::Invalid(
            "this store cannot be recreated in place".into(),
        ))
    }

    /// First live sequence (`last_seq + 1` when empty).
    fn first_seq(&self) -> u64;

    /// Highest sequence assigned.
    fn last_seq(&self) -> u64;

    /// Deletes the store and everything it keeps on disk.
    fn delete_all(self: Box<Self>) -> Result<(), StoreError>;

    /// Drops what is in memory and reopens the store from disk, recovering the state its
    /// last successful `sync` made durable: the way out after a failed write or sync poisoned
    /// it. Stores with nothing on disk have nothing to recover and keep their state.
    fn reopen(&mut self) -> Result<(), StoreError> {
        Ok(())
    }
}

/// Refuses a `skip_to(next)` that would not move the next sequence forward.
pub(crate) fn check_skip(next: u64, last_seq: u64) -> Result<(), StoreError> {
    if next <= last_seq {
        return Err(StoreError::Invalid(format!(
            "next sequence {next} would reuse sequences (last is {last_seq})"
        )));
    }
    check_seq(next)
}
