//! The blocking side of a group's log: one file `raft-log` of CRC'd records (see `record`),
//! an in-memory index of where each live entry is, and the meta file beside it (see `meta`).
//! [`super::log::LogStore`] runs these calls on tokio's blocking threads.
//!
//! At open, a torn or damaged tail is cut (what follows the good records must be zeros:
//! preallocated space never written); records at or below the purge floor are dead and
//! skipped. A purge records the floor durably first; the dead prefix is then reclaimed by
//! rewriting the live records into a new file (renamed over the old one) once it is both
//! large and bigger than the live part, and at once when nothing is left alive.

use std::collections::VecDeque;
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
    /// The live entries, consecutive indexes from the front's.
    slots: VecDeque<Slot>,
    meta: LogMeta,
    reclaim_at: u64,
    buf: Vec<u8>,
}

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
        })
    }

    /// The last purged log id.
    pub(crate) fn purged(&self) -> Option<LogId> {
        self.meta.purged
    }

    /// The last entry's log id, or the purge floor when no entry is left.
    pub(crate) fn last(&self) -> Option<LogId> {
        self.slots.back().map(|s| s.log_id).or(self.meta.purged)
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
        let Some(first) = self.slots.front().map(|s| s.log_id.index) else {
            return Ok(Vec::new());
        };
        let from = (start.max(first) - first) as usize;
        let to = (end.saturating_sub(first) as usize).min(self.slots.len());
        if from >= to {
            return Ok(Vec::new());
        }
        let (lo, hi) = (self.slots[from].at, self.slots[to - 1].end());
        let mut bytes = vec![0u8; (hi - lo) as usize];
        self.file.read_exact_at(&mut bytes, lo)?;
        let mut out = Vec::with_capacity(to - from);
        for slot in self.slots.range(from..to) {
            let raw = &bytes[(slot.at - lo) as usize..(slot.end() - lo) as usize];
            let body = record::check(raw).ok_or_else(|| {
                LogError::Corrupt(format!("entry {} fails its checksum", slot.log_id.index))
            })?;
            out.push(super::decode(body).map_err(|e| LogError::Corrupt(e.to_string()))?);
        }
        Ok(out)
    }

    /// Writes `entries` after the last one and fdatasyncs them (one sync for all).
    pub(crate) fn append(&mut self, entries: &[Entry]) -> Result<(), LogError> {
        self.buf.clear();
        let mut next = self.last().map(|l| l.index + 1);
        let mut slots = Vec::with_capacity(entries.len());
        for entry in entries {
            let index = entry.get_log_id().index;
            if next.is_some_and(|n| n != index) && !self.slots.is_empty() {
                return Err(LogError::Hole {
                    expected: next.unwrap_or_default(),
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
            next = Some(index + 1);
        }
        if self.buf.is_empty() {
            return Ok(());
        }
        let end = self.size + self.buf.len() as u64;
        self.prealloc.ensure(&self.file, end);
        self.file.write_all_at(&self.buf, self.size)?;
        self.file.sync_data()?;
        self.size = end;
        self.slots.extend(slots);
        Ok(())
    }

    /// Drops the entries from `index` on, durably.
    pub(crate) fn truncate(&mut self, index: u64) -> Result<(), LogError> {
        let Some(first) = self.slots.front().map(|s| s.log_id.index) else {
            return Ok(());
        };
        let keep = index.saturating_sub(first) as usize;
        let Some(cut) = self.slots.get(keep).map(|s| s.at) else {
            return Ok(());
        };
        self.cut_file(cut)?;
        self.slots.truncate(keep);
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
        while self
            .slots
            .front()
            .is_some_and(|s| s.log_id.index <= upto.index)
        {
            self.slots.pop_front();
        }
        match self.slots.front().map(|s| s.at) {
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

    /// Saves the committed log id, durably.
    pub(crate) fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), LogError> {
        if self.meta.committed == committed {
            return Ok(());
        }
        let mut meta = self.meta.clone();
        meta.committed = committed;
        self.save_meta(meta)
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
        for slot in &mut self.slots {
            slot.at -= from;
        }
        Ok(())
    }
}

/// Builds the index of the live records (above `floor`), which must have consecutive indexes.
fn index(bytes: &[u8], found: &[Found], floor: Option<u64>) -> Result<VecDeque<Slot>, LogError> {
    let mut slots: VecDeque<Slot> = VecDeque::new();
    for f in found.iter().filter(|f| floor.is_none_or(|fl| f.index > fl)) {
        let expected = slots.back().map(|s| s.log_id.index + 1);
        if expected.is_some_and(|e| e != f.index) {
            return Err(LogError::Hole {
                expected: expected.unwrap_or_default(),
                got: f.index,
            });
        }
        let body = &bytes[f.at as usize + HEADER..f.end() as usize];
        let entry: Entry = super::decode(body).map_err(|e| LogError::Corrupt(e.to_string()))?;
        if entry.get_log_id().index != f.index {
            return Err(LogError::Corrupt(format!(
                "record {} holds entry {}",
                f.index,
                entry.get_log_id().index
            )));
        }
        slots.push_back(Slot {
            log_id: *entry.get_log_id(),
            at: f.at,
            len: f.len,
        });
    }
    Ok(slots)
}
