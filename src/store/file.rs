//! [`FileStore`]: the `storage: file` store — an append-only segment log, per-segment sidecars
//! and a sled index, arranged so that nothing acknowledged after `sync()` is ever lost.
//!
//! # On disk (one directory per stream)
//! ```text
//! segments/<first:020>.log   append-only records (see record.rs), rolled at segment_bytes
//! segments/<first:020>.idx   sidecar written + fsynced when the segment seals (sidecar.rs)
//! segments/<first:020>.del   deletion facts carried over from unlinked segments (rare)
//! index.sled/                checkpoint, sealed-segment catalogue, deletion bitmaps (meta.rs)
//! STREAM_ID                  random identity, echoed in sled's checkpoint
//! LOCK                       advisory lock held while the store is open (own sled only)
//! ```
//! The logs (with the `.del` files) are the truth; the `.idx` files and sled make opening
//! fast, and sled adds a second record of deletions.
//!
//! # Writes
//! - `append` encodes a message record into the active segment's buffer and updates the
//!   in-memory index. `sync` writes the buffer and `fdatasync`s the active segment: that is the
//!   durability point for every append, remove and purge before it (group commit).
//! - `remove` appends a tombstone; `purge`/`expire` of a prefix appends one purge record
//!   ("every seq below N is gone"); a filtered purge appends a tombstone per message. Nothing
//!   is rewritten. A sealed segment whose messages are all gone is unlinked at the next `sync`
//!   or roll (after the records that emptied it are durable); tombstones and floors in it that
//!   still concern surviving segments are first appended to those segments' `.del` files, so
//!   the deletions survive the loss of sled. When a purge empties the store, a fresh segment
//!   named after the next sequence replaces the old ones.
//! - Rolling (segment full, checked before each write; a segment without a message never
//!   rolls, so names stay unique): sync the active segment, write and fsync its `.idx`, create
//!   the next segment, fsync the directory, then write a sled checkpoint (catalogue entry and
//!   deletion bitmaps of changed segments). Sled is written only at rolls, unlinks, `open` and
//!   `checkpoint()` — never per append — and only with facts already durable in the logs.
//! - A write or fsync error poisons the store: it refuses work until reopened, because after a
//!   failed fsync the kernel may have dropped the dirty pages.
//!
//! # Reads
//! `get` finds the record through the index (segment + offset), reads it from the file or from
//! the write buffer, and checks framing, CRC and sequence. A bad record is `Err(Corrupt)` and
//! the sequence is dropped from the index (with a tombstone) at the next mutating call: it
//! counts as lost. [`FileStore::verify`] does this for every live record.
//!
//! # Memory
//! The index keeps 24 bytes per sequence between the first and last live message (in chunks
//! of 256 that are freed when empty) and, per subject with live messages, its name plus
//! 40 to 48 bytes (`subject_index.rs`); a subject with more than one live message also keeps
//! 8 bytes per message in a list. A million single-message subjects with 18-byte names take
//! about 100 bytes each in all.
//!
//! Recovery is described in `recovery.rs`.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use bytes::Bytes;
use rustc_hash::FxHashMap;

use super::index::Index;
use super::meta::MetaDb;
use super::record::{self, Kind};
use super::segment::{fsync_dir, seg_file, ActiveWriter, Readers};
use super::sidecar::{self, IdxEntry, SegImage, ABSENT};
use super::{check_seq, StoreError, StoredMsg};

/// Tuning for a [`FileStore`].
#[derive(Clone, Debug)]
pub struct FileStoreOptions {
    /// Roll to a new segment once the active one reaches this size (default 8 MiB; at most
    /// 1 GiB).
    pub segment_bytes: u64,
    /// Write the append buffer to the file once it holds this much (default 256 KiB).
    pub write_buffer_bytes: usize,
    /// sled's cache size (default 4 MiB).
    pub index_cache_bytes: u64,
    /// A sled database shared by many stores (each keeps a tree named after its identity);
    /// `None`: the store opens its own in `index.sled/`.
    pub shared_index: Option<sled::Db>,
}

impl Default for FileStoreOptions {
    fn default() -> Self {
        FileStoreOptions {
            segment_bytes: 8 << 20,
            write_buffer_bytes: 256 << 10,
            index_cache_bytes: 4 << 20,
            shared_index: None,
        }
    }
}

/// What the store tracks about one segment.
#[derive(Clone, Debug)]
pub(crate) struct SegMeta {
    pub(crate) first: u64,
    /// Last sequence covered (`first - 1` if none).
    pub(crate) last: u64,
    /// Live messages in it.
    pub(crate) live: u64,
    /// Has a valid `.idx` and a final length.
    pub(crate) sealed: bool,
    pub(crate) log_len: u64,
    /// Sequences deleted by tombstones in this segment's log.
    pub(crate) tombs: Vec<u64>,
    /// Highest purge floor in this segment's log, and the time it carried.
    pub(crate) floor: u64,
    pub(crate) marker_time: i64,
    /// Highest applied index recorded in this segment's log.
    pub(crate) applied: u64,
}

impl SegMeta {
    pub(crate) fn new(first: u64) -> SegMeta {
        SegMeta {
            first,
            last: first - 1,
            live: 0,
            sealed: false,
            log_len: 0,
            tombs: Vec::new(),
            floor: 0,
            marker_time: 0,
            applied: 0,
        }
    }
}

/// A stream's messages in segment files under one directory. See the module docs.
pub struct FileStore {
    pub(super) dir: PathBuf,
    pub(super) seg_dir: PathBuf,
    pub(super) opts: FileStoreOptions,
    pub(super) index: Index,
    pub(super) segs: BTreeMap<u64, SegMeta>,
    pub(super) active: ActiveWriter,
    pub(super) readers: Readers,
    pub(super) meta: Option<MetaDb>,
    pub(super) last_seq: u64,
    pub(super) last_time: i64,
    pub(super) floor: u64,
    /// The op index the owner marked applied (`MsgStore::mark_applied`), and the highest
    /// written to the log.
    pub(super) applied: u64,
    pub(super) applied_written: u64,
    /// Sealed segments whose catalogue entry in sled is missing or stale.
    pub(super) dirty: BTreeSet<u64>,
    /// Unlinked segments still in sled's catalogue.
    pub(super) uncatalog: Vec<u64>,
    /// Segments with no live message, unlinked at the next sync.
    pub(super) doomed: BTreeSet<u64>,
    /// Sequences `get` found damaged; dropped at the next mutating call.
    pub(super) corrupt: Mutex<Vec<u64>>,
    pub(super) poisoned: Option<String>,
    /// The stream's identity, also recorded in every sled checkpoint.
    pub(super) stream_id: u64,
    /// Held for the store's lifetime: the directory's lock.
    pub(super) _lock: super::dirlock::DirLock,
}

impl FileStore {
    /// The stream directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Segment files currently on disk (the active one included).
    pub fn segment_count(&self) -> usize {
        self.segs.len()
    }

    /// Reads every live record and checks it; damaged ones are reported as
    /// (segment, offset) and dropped (they count as lost, durably after `sync`).
    pub fn verify(&mut self) -> Result<Vec<(u64, u64)>, StoreError> {
        self.absorb_corrupt()?;
        let seqs: Vec<u64> = self.index.iter_from(0).map(|(s, _)| s).collect();
        let mut bad = Vec::new();
        for seq in seqs {
            match self.read_msg(seq) {
                Err(StoreError::Corrupt {
                    segment, offset, ..
                }) => bad.push((segment, offset)),
                Err(e) => return Err(e),
                Ok(_) => {}
            }
        }
        self.absorb_corrupt()?;
        Ok(bad)
    }

    pub(super) fn guard(&self) -> Result<(), StoreError> {
        match &self.poisoned {
            Some(why) => Err(StoreError::Poisoned(why.clone())),
            None => Ok(()),
        }
    }

    /// Marks the store unusable after a failed write/fsync and returns the error.
    pub(super) fn poison(&mut self, e: io::Error) -> StoreError {
        tracing::error!(dir = %self.dir.display(), error = %e, "file store write failed; store poisoned");
        self.poisoned = Some(e.to_string());
        StoreError::Io(e)
    }

    /// The segment holding `seq`, if any.
    pub(super) fn seg_of(&self, seq: u64) -> Option<u64> {
        self.segs
            .range(..=seq)
            .next_back()
            .filter(|(_, s)| s.last >= seq)
            .map(|(&f, _)| f)
    }

    fn active_meta(&mut self) -> &mut SegMeta {
        let first = self.active.first;
        self.segs
            .entry(first)
            .or_insert_with(|| SegMeta::new(first))
    }

    /// Drops the sequences `get` found damaged, with a tombstone each.
    pub(super) fn absorb_corrupt(&mut self) -> Result<(), StoreError> {
        let seqs = std::mem::take(&mut *self.corrupt.lock().unwrap_or_else(|p| p.into_inner()));
        for seq in seqs {
            self.remove_live(seq)?;
        }
        Ok(())
    }

    /// Rolls if the active segment is full and holds a message (names stay unique), then
    /// flushes the buffer if it is big enough.
    fn prepare_write(&mut self) -> Result<(), StoreError> {
        let has_msgs = self
            .segs
            .get(&self.active.first)
            .is_some_and(|s| s.last >= s.first);
        if self.active.len() >= self.opts.segment_bytes && has_msgs {
            self.roll_to(self.last_seq + 1)?;
        }
        if self.active.buffered() >= self.opts.write_buffer_bytes {
            if let Err(e) = self.active.flush() {
                return Err(self.poison(e));
            }
        }
        Ok(())
    }

    fn write_marker(&mut self, kind: Kind, seq: u64, time: i64) -> Result<(), StoreError> {
        self.prepare_write()?;
        self.active
            .append(|b| record::encode_marker(b, kind, seq, time));
        match kind {
            Kind::Tombstone => self.active_meta().tombs.push(seq),
            Kind::Purge => {
                let meta = self.active_meta();
                meta.floor = meta.floor.max(seq);
                meta.marker_time = meta.marker_time.max(time);
            }
            Kind::Applied => {
                let meta = self.active_meta();
                meta.applied = meta.applied.max(seq);
            }
            Kind::Msg => {}
        }
        Ok(())
    }

    /// Records the applied index marked since the last one written (before a sync, so the
    /// marker is durable with the changes it describes).
    pub(super) fn write_applied(&mut self) -> Result<(), StoreError> {
        if self.applied > self.applied_written {
            self.write_marker(Kind::Applied, self.applied, 0)?;
            self.applied_written = self.applied;
        }
        Ok(())
    }

    pub(super) fn append_msg(
        &mut self,
        subject: &str,
        headers: Option<&[u8]>,
        payload: &[u8],
        time: i64,
    ) -> Result<u64, StoreError> {
        self.guard()?;
        self.absorb_corrupt()?;
        if subject.is_empty() || subject.len() > usize::from(u16::MAX) {
            return Err(StoreError::Invalid(
                "subject must be 1..=65535 bytes".into(),
            ));
        }
        let len = record::msg_len(subject, headers, payload);
        if len > record::MAX_RECORD {
            return Err(StoreError::Invalid(format!(
                "record of {len} bytes is too large"
            )));
        }
        check_seq(self.last_seq + 1)?;
        self.prepare_write()?;
        let seq = self.last_seq + 1;
        let offset = u32::try_from(self.active.len())
            .ok()
            .filter(|&o| o != ABSENT)
            .ok_or_else(|| StoreError::Invalid("active segment exceeds 4 GiB".into()))?;
        self.active
            .append(|b| record::encode_msg(b, seq, time, subject, headers, payload));
        self.index.insert(seq, subject, len as u32, offset, time);
        let meta = self.active_meta();
        meta.last = seq;
        meta.live += 1;
        self.last_seq = seq;
        self.last_time = time;
        Ok(seq)
    }

    /// Removes a live sequence: index, tombstone, segment accounting.
    pub(super) fn remove_live(&mut self, seq: u64) -> Result<bool, StoreError> {
        if self.index.get(seq).is_none() {
            return Ok(false);
        }
        self.write_marker(Kind::Tombstone, seq, 0)?;
        self.index.remove(seq);
        if let Some(first) = self.seg_of(seq) {
            let is_active = first == self.active.first;
            if let Some(seg) = self.segs.get_mut(&first) {
                seg.live = seg.live.saturating_sub(1);
                if seg.sealed {
                    self.dirty.insert(first);
                }
                if seg.live == 0 && !is_active {
                    self.doomed.insert(first);
                }
            }
        }
        Ok(true)
    }

    /// Removes every live sequence below `floor` with one purge record; the next sequence
    /// becomes at least `floor`.
    pub(super) fn truncate_front(&mut self, floor: u64) -> Result<u64, StoreError> {
        self.guard()?;
        check_seq(floor)?;
        self.absorb_corrupt()?;
        let first_live = self.index.first().map_or(self.last_seq + 1, |(s, _)| s);
        if floor <= first_live && floor <= self.last_seq + 1 {
            return Ok(0);
        }
        self.write_marker(Kind::Purge, floor, self.last_time)?;
        let removed = self.index.remove_below(floor, |_, _| {});
        self.last_seq = self.last_seq.max(floor - 1);
        self.floor = self.floor.max(floor);
        let active = self.active.first;
        for (&first, seg) in self.segs.range_mut(..floor) {
            let live = self.index.count_range(seg.first, seg.last);
            if live != seg.live {
                seg.live = live;
                if seg.sealed {
                    self.dirty.insert(first);
                }
            }
            if live == 0 && first != active {
                self.doomed.insert(first);
            }
        }
        let active_live = self.segs.get(&active).map_or(0, |s| s.live);
        if active_live == 0 && active != self.last_seq + 1 {
            self.roll_to(self.last_seq + 1)?;
        }
        Ok(removed)
    }

    /// Seals the active segment (sync, `.idx`) and starts segment `next`.
    pub(super) fn roll_to(&mut self, next: u64) -> Result<(), StoreError> {
        let first = self.active.first;
        if let Err(e) = self.active.trim() {
            return Err(self.poison(e));
        }
        let log_len = self.active.len();
        let image = self.seal_image(first, log_len);
        let written = sidecar::write_idx(&seg_file(&self.seg_dir, first, "idx"), &image)
            .and_then(|()| ActiveWriter::create(&self.seg_dir, next))
            .and_then(|w| fsync_dir(&self.seg_dir).map(|()| w));
        let mut writer = match written {
            Ok(w) => w,
            Err(e) => return Err(self.poison(e)),
        };
        if self.floor >= next {
            // A fresh segment after a purge past the end: say so in it, too.
            let (floor, time) = (self.floor, self.last_time);
            writer.append(|b| record::encode_marker(b, Kind::Purge, floor, time));
        }
        self.active = writer;
        let mut fresh = SegMeta::new(next);
        if self.floor >= next {
            fresh.floor = self.floor;
            fresh.marker_time = self.last_time;
        }
        self.segs.insert(next, fresh);
        if self.applied_written > 0 {
            // Restated, so the active log always holds the newest marker (older segments
            // may be unlinked below).
            let applied = self.applied_written;
            self.active
                .append(|b| record::encode_marker(b, Kind::Applied, applied, 0));
            self.active_meta().applied = applied;
            if let Err(e) = self.active.sync() {
                return Err(self.poison(e));
            }
        }
        if let Some(seg) = self.segs.get_mut(&first) {
            seg.sealed = true;
            seg.log_len = log_len;
            if seg.live == 0 {
                self.doomed.insert(first);
            }
        }
        self.dirty.insert(first);
        self.unlink_doomed()?;
        self.write_checkpoint();
        Ok(())
    }

    /// The `.idx` content of segment `first`, from the in-memory index.
    pub(super) fn seal_image(&self, first: u64, log_len: u64) -> SegImage {
        let mut image = SegImage::new(first, log_len);
        let Some(seg) = self.segs.get(&first) else {
            return image;
        };
        let mut local: FxHashMap<u32, u32> = FxHashMap::default();
        image.entries.reserve_exact((seg.last + 1 - first) as usize);
        for seq in first..=seg.last {
            let entry = match self.index.get(seq) {
                Some(slot) => IdxEntry {
                    offset: slot.aux,
                    subject: *local
                        .entry(slot.subj)
                        .or_insert_with(|| image.push_subject(self.index.subject(&slot))),
                    size: slot.size,
                    time: slot.time,
                },
                None => IdxEntry {
                    offset: ABSENT,
                    subject: 0,
                    size: 0,
                    time: 0,
                },
            };
            image.entries.push(entry);
        }
        image.tombs = seg.tombs.clone();
        image.floor = seg.floor;
        image.marker_time = seg.marker_time;
        image.applied = seg.applied;
        image
    }

    /// Reads and verifies the message `seq`.
    pub(super) fn read_msg(&self, seq: u64) -> Result<Option<StoredMsg>, StoreError> {
        let Some(slot) = self.index.get(seq) else {
            return Ok(None);
        };
        let Some(segment) = self.seg_of(seq) else {
            return Ok(None);
        };
        let offset = u64::from(slot.aux);
        let len = slot.size as usize;
        let bytes = if segment == self.active.first && !self.active.is_flushed(offset) {
            self.active.read_buffered(offset, len)
        } else {
            // Below this the segment's bytes are written and never change.
            let valid_end = match self.segs.get(&segment) {
                Some(seg) if seg.sealed => seg.log_len,
                _ if segment == self.active.first => self.active.flushed(),
                _ => offset + len as u64,
            };
            match self
                .readers
                .read(&self.seg_dir, segment, offset, len, valid_end)
            {
                Ok(b) => Some(b),
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => None,
                Err(e) => return Err(StoreError::Io(e)),
            }
        };
        let decoded = match bytes {
            Some(b) => decode_msg(b, seq),
            None => Err("record extends past the end of the segment"),
        };
        decoded.map(Some).map_err(|reason| {
            tracing::error!(
                seq,
                segment,
                offset,
                reason,
                "corrupt record; sequence lost"
            );
            self.corrupt
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(seq);
            StoreError::Corrupt {
                segment,
                offset,
                reason: reason.to_string(),
            }
        })
    }
}

/// Turns verified record bytes into a message, sharing one buffer for headers and payload.
fn decode_msg(bytes: Vec<u8>, seq: u64) -> Result<StoredMsg, &'static str> {
    let rec = record::decode(&bytes).map_err(|_| "record fails its checks")?;
    if rec.kind != Kind::Msg || rec.seq != seq || rec.len != bytes.len() {
        return Err("record is not the expected message");
    }
    let subject = std::str::from_utf8(rec.subject)
        .map_err(|_| "subject is not UTF-8")?
        .to_string();
    let (time, headers_at, payload_at) = (rec.time, rec.headers_at, rec.payload_at);
    let has_headers = rec.headers.is_some();
    let buf = Bytes::from(bytes);
    Ok(StoredMsg {
        seq,
        time,
        subject,
        headers: has_headers.then(|| buf.slice(headers_at.0..headers_at.1)),
        payload: buf.slice(payload_at.0..payload_at.1),
    })
}
