//! The blocking side of a group's log: one file `raft-log` of CRC'd records (see `record`),
//! an in-memory index of where each live entry is, and the meta file beside it (see `meta`).
//! [`super::log::LogStore`] runs these calls on tokio's blocking threads.
//!
//! At open, a torn or damaged tail is cut (what follows the good records must be zeros:
//! preallocated space never written); records at or below the purge floor are dead and
//! skipped. A purge records the floor durably first; the dead prefix is then reclaimed by
//! rewriting the live records into a new file (renamed over the old one) once it is both
//! large and bigger than the live part, and at once when nothing is left alive.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use openraft::RaftLogId;

use super::log::LogError;
use super::meta::{self, LogMeta, LOG_META};
use super::record::{self, Found, HEADER};
use super::{Entry, LogId};
use crate::store::Prealloc;

/// Name of the log file in a group's directory.
pub(crate) const LOG_FILE: &str = "raft-log";
const LOG_TMP: &str = "raft-log.tmp";
/// A dead prefix is reclaimed once it is at least this big (and bigger than the live part).
pub(crate) const RECLAIM_AT: u64 = 8 << 20;

/// Where one live entry is.
#[derive(Debug, Clone, Copy)]
struct Slot {
    log_id: LogId,
    at: u64,
    len: u32,
}

impl Slot {
    fn end(&self) -> u64 {
        self.at + HEADER as u64 + u64::from(self.len)
    }
}

/// An open log file and its index.
pub(crate) struct LogFile {
    dir: PathBuf,
    file: File,
    /// Bytes of records in the file (the rest, to `prealloc.allocated()`, is zeros).
    size: u64,
    prealloc: Prealloc,
    /// The live entries by index, in file order. openraft writes consecutive indexes; an
    /// append must only go above the last (its storage test suite leaves gaps).
    slots: BTreeMap<u64, Slot>,
    meta: LogMeta,
    reclaim_at: u64,
    buf: Vec<u8>,
    /// When the committed log id was last written (it is written at most every
    /// [`COMMITTED_EVERY`]; in between, the one in memory is newer).
    committed_saved: Option<std::time::Instant>,
}

/// How often a moving committed log id is written. Raft needs no durable commit index (a
/// restarted member learns it from the leader); the one on disk only lets a restarted member
/// apply what it already knew was committed before it hears from a leader.
const COMMITTED_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

impl LogFile {
    /// Opens (or creates) the log in `dir`; see the module doc for what is cut.
    pub(crate) fn open(dir: &Path, reclaim_at: u64) -> Result<LogFile, LogError> {
        fs::create_dir_all(dir)?;
        let meta = match meta::read_checked(dir, LOG_META)? {
            Some(bytes) => super::decode(&bytes).map_err(|e| LogError::Corrupt(e.to_string()))?,
            None => LogMeta::default(),
        };
        match fs::remove_file(dir.join(LOG_TMP)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e.into()),
            _ => {}
        }
        let path = dir.join(LOG_FILE);
        let existed = path.exists();
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)?;
        if !existed {
            meta::sync_dir(dir)?;
        }
        let bytes = fs::read(&path)?;
        let (found, good) = record::scan(&bytes);
        let mut prealloc = Prealloc::new(bytes.len() as u64);
        if bytes[good..].iter().any(|b| *b != 0) {
            tracing::error!(path = %path.display(), "raft log damaged at byte {good}; the rest is cut");
            file.set_len(good as u64)?;
            file.sync_data()?;
            prealloc.cut(good as u64);
        }
        let floor = meta.purged.map(|p| p.index);
        let slots = index(&bytes, &found, floor)?;
        Ok(LogFile {
            dir: dir.to_path_buf(),
            file,
            size: good as u64,
            prealloc,
            slots,
            meta,
            reclaim_at,
            buf: Vec::new(),
            committed_saved: None,
        })
    }

    /// The last purged log id.
    pub(crate) fn purged(&self) -> Option<LogId> {
        self.meta.purged
    }

    /// The last entry's log id, or the purge floor when no entry is left.
    pub(crate) fn last(&self) -> Option<LogId> {
        self.slots
            .last_key_value()
            .map(|(_, s)| s.log_id)
            .or(self.meta.purged)
    }

    /// The saved vote.
    pub(crate) fn vote(&self) -> Option<super::Vote> {
        self.meta.vote
    }

    /// The saved committed log id.
    pub(crate) fn committed(&self) -> Option<LogId> {
        self.meta.committed
    }

    /// Bytes of records in the file (dead prefix included).
    pub(crate) fn size(&self) -> u64 {
        self.size
    }

    /// The live entries with indexes in `start..end`, in order.
    pub(crate) fn read(&self, start: u64, end: u64) -> Result<Vec<Entry>, LogError> {
        if start >= end {
            return Ok(Vec::new());
        }
        let slots: Vec<&Slot> = self.slots.range(start..end).map(|(_, s)| s).collect();
        let (Some(first), Some(last)) = (slots.first(), slots.last()) else {
            return Ok(Vec::new());
        };
        let (lo, hi) = (first.at, last.end());
        let mut bytes = vec![0u8; (hi - lo) as usize];
        self.file.read_exact_at(&mut bytes, lo)?;
        let mut out = Vec::with_capacity(slots.len());
        for slot in slots {
            let raw = &bytes[(slot.at - lo) as usize..(slot.end() - lo) as usize];
            let body = record::check(raw).ok_or_else(|| {
                LogError::Corrupt(format!("entry {} fails its checksum", slot.log_id.index))
            })?;
            out.push(super::decode(body).map_err(|e| LogError::Corrupt(e.to_string()))?);
        }
        Ok(out)
    }

    /// Writes `entries` after the last one and fdatasyncs them (one sync for all).
    #[cfg(test)]
    pub(crate) fn append(&mut self, entries: &[Entry]) -> Result<(), LogError> {
        self.append_synced(entries, true)
    }

    /// Writes `entries`; with `sync`, fdatasyncs before returning (without, the caller syncs
    /// through [`LogFile::sync_handle`] before it reports them flushed).
    pub(crate) fn append_synced(&mut self, entries: &[Entry], sync: bool) -> Result<(), LogError> {
        self.buf.clear();
        let mut next = self.last().map_or(0, |l| l.index + 1);
        let mut slots = Vec::with_capacity(entries.len());
        for entry in entries {
            let index = entry.get_log_id().index;
            if index < next && (!self.slots.is_empty() || !slots.is_empty()) {
                return Err(LogError::Order {
                    after: next - 1,
                    got: index,
                });
            }
            let body = super::encode(entry).map_err(|e| LogError::Corrupt(e.to_string()))?;
            let at = self.size + self.buf.len() as u64;
            record::frame(index, &body, &mut self.buf).ok_or(LogError::TooLarge(body.len()))?;
            slots.push(Slot {
                log_id: *entry.get_log_id(),
                at,
                len: body.len() as u32,
            });
            next = index + 1;
        }
        if self.buf.is_empty() {
            return Ok(());
        }
        let end = self.size + self.buf.len() as u64;
        self.prealloc.ensure(&self.file, end);
        self.file.write_all_at(&self.buf, self.size)?;
        if sync {
            self.file.sync_data()?;
        }
        self.size = end;
        self.slots
            .extend(slots.into_iter().map(|s| (s.log_id.index, s)));
        Ok(())
    }

    /// Drops the entries from `index` on, durably.
    pub(crate) fn truncate(&mut self, index: u64) -> Result<(), LogError> {
        let Some(cut) = self.slots.range(index..).next().map(|(_, s)| s.at) else {
            return Ok(());
        };
        self.cut_file(cut)?;
        self.slots.split_off(&index);
        Ok(())
    }

    /// Drops the entries up to and including `upto`: the floor is saved first, then the dead
    /// prefix may be reclaimed.
    pub(crate) fn purge(&mut self, upto: LogId) -> Result<(), LogError> {
        if self.meta.purged.is_some_and(|p| p.index >= upto.index) {
            return Ok(());
        }
        let mut meta = self.meta.clone();
        meta.purged = Some(upto);
        self.save_meta(meta)?;
        self.slots = self.slots.split_off(&(upto.index + 1));
        match self.slots.first_key_value().map(|(_, s)| s.at) {
            None => self.cut_file(0),
            Some(dead) if dead >= self.reclaim_at && dead >= self.size - dead => self.reclaim(dead),
            Some(_) => Ok(()),
        }
    }

    /// Saves the vote, durably.
    pub(crate) fn save_vote(&mut self, vote: super::Vote) -> Result<(), LogError> {
        let mut meta = self.meta.clone();
        meta.vote = Some(vote);
        self.save_meta(meta)
    }

    /// Takes the committed log id; writes it (durably) if the last write is older than
    /// [`COMMITTED_EVERY`], so a busy group does not pay three fsyncs per commit. What is on
    /// disk is never ahead of what is committed.
    pub(crate) fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), LogError> {
        if self.note_committed(committed) {
            return Ok(());
        }
        let mut meta = self.meta.clone();
        meta.committed = committed;
        self.committed_saved = Some(std::time::Instant::now());
        self.save_meta(meta)
    }

    /// Takes the committed log id in memory when no write of it is due (true), as
    /// [`LogFile::save_committed`] would; false when it must be written.
    pub(crate) fn note_committed(&mut self, committed: Option<LogId>) -> bool {
        if self.meta.committed == committed {
            return true;
        }
        if self
            .committed_saved
            .is_some_and(|t| t.elapsed() < COMMITTED_EVERY)
        {
            self.meta.committed = committed;
            return true;
        }
        false
    }

    /// A handle on the log file for an fdatasync outside the lock.
    pub(crate) fn sync_handle(&self) -> std::io::Result<File> {
        self.file.try_clone()
    }

    fn save_meta(&mut self, meta: LogMeta) -> Result<(), LogError> {
        let bytes = super::encode(&meta).map_err(|e| LogError::Corrupt(e.to_string()))?;
        meta::write_atomic(&self.dir, LOG_META, &bytes)?;
        self.meta = meta;
        Ok(())
    }

    /// Cuts the file to `len` bytes, durably.
    fn cut_file(&mut self, len: u64) -> Result<(), LogError> {
        self.file.set_len(len)?;
        self.file.sync_data()?;
        self.prealloc.cut(len);
        self.size = len;
        Ok(())
    }

    /// Rewrites the records from byte `from` on into a new file that replaces the log.
    fn reclaim(&mut self, from: u64) -> Result<(), LogError> {
        let mut live = vec![0u8; (self.size - from) as usize];
        self.file.read_exact_at(&mut live, from)?;
        let tmp = self.dir.join(LOG_TMP);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)?;
        file.write_all_at(&live, 0)?;
        file.sync_all()?;
        fs::rename(&tmp, self.dir.join(LOG_FILE))?;
        meta::sync_dir(&self.dir)?;
        tracing::debug!(
            reclaimed = from,
            "raft log rewritten without its purged prefix"
        );
        self.file = file;
        self.size = live.len() as u64;
        self.prealloc = Prealloc::new(self.size);
        for slot in self.slots.values_mut() {
            slot.at -= from;
        }
        Ok(())
    }
}

/// Builds the index of the live records (above `floor`), whose indexes must rise.
fn index(
    bytes: &[u8],
    found: &[Found],
    floor: Option<u64>,
) -> Result<BTreeMap<u64, Slot>, LogError> {
    let mut slots = BTreeMap::new();
    let mut last: Option<u64> = None;
    for f in found.iter().filter(|f| floor.is_none_or(|fl| f.index > fl)) {
        if let Some(after) = last.filter(|l| *l >= f.index) {
            return Err(LogError::Order {
                after,
                got: f.index,
            });
        }
        let body = &bytes[f.at as usize + HEADER..f.end() as usize];
        let entry: Entry = super::decode(body).map_err(|e| LogError::Corrupt(e.to_string()))?;
        let log_id = *entry.get_log_id();
        if log_id.index != f.index {
            let msg = format!("record {} holds entry {}", f.index, log_id.index);
            return Err(LogError::Corrupt(msg));
        }
        let slot = Slot {
            log_id,
            at: f.at,
            len: f.len,
        };
        slots.insert(f.index, slot);
        last = Some(f.index);
    }
    Ok(slots)
}
