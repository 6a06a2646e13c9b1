//! Giving disk space back and remembering the index: unlinking segments whose messages are all
//! gone (after carrying their still-relevant deletion facts to `.del` files) and writing sled
//! checkpoints.

use std::collections::{BTreeMap, BTreeSet};

use super::file::{FileStore, SegMeta};
use super::meta::{Checkpoint, SegCatalog, Update, META_VERSION};
use super::record::Kind;
use super::segment::{fsync_dir, remove_if_present, seg_file};
use super::sidecar;
use super::StoreError;

impl FileStore {
    /// Unlinks the doomed segments; true if any went. Call only once the log is synced.
    pub(super) fn unlink_doomed(&mut self) -> Result<bool, StoreError> {
        let doomed = std::mem::take(&mut self.doomed);
        self.unlink_segments(doomed)
    }

    /// Unlinks those of `covered` still doomed (their removal records are synced; segments
    /// doomed by removals written since stay doomed until a sync covers them).
    pub(super) fn unlink_covered(&mut self, covered: &[u64]) -> Result<bool, StoreError> {
        let ours: BTreeSet<u64> = covered
            .iter()
            .copied()
            .filter(|f| self.doomed.remove(f))
            .collect();
        self.unlink_segments(ours)
    }

    fn unlink_segments(&mut self, doomed: BTreeSet<u64>) -> Result<bool, StoreError> {
        let doomed: Vec<u64> = doomed
            .into_iter()
            .filter(|f| *f != self.active.first && self.segs.get(f).is_some_and(|s| s.live == 0))
            .collect();
        if doomed.is_empty() {
            return Ok(false);
        }
        let gone = |f: &u64| doomed.binary_search(f).is_ok();
        // Deletions recorded in a doomed log about a surviving segment move to its .del file.
        let mut carry: BTreeMap<u64, Vec<(Kind, u64, i64)>> = BTreeMap::new();
        for seg in doomed.iter().filter_map(|f| self.segs.get(f)) {
            for &t in &seg.tombs {
                if let Some(target) = self.seg_of(t).filter(|t| !gone(t)) {
                    carry
                        .entry(target)
                        .or_default()
                        .push((Kind::Tombstone, t, 0));
                }
            }
            if seg.floor > 0 {
                for &target in self
                    .segs
                    .range(..seg.floor)
                    .map(|(f, _)| f)
                    .filter(|f| !gone(f))
                {
                    carry.entry(target).or_default().push((
                        Kind::Purge,
                        seg.floor,
                        seg.marker_time,
                    ));
                }
            }
        }
        for (target, facts) in &carry {
            if let Err(e) = sidecar::append_del(&seg_file(&self.seg_dir, *target, "del"), facts) {
                return Err(self.poison(e));
            }
        }
        for first in &doomed {
            self.readers.forget(*first);
            for ext in ["log", "idx", "del"] {
                if let Err(e) = remove_if_present(&seg_file(&self.seg_dir, *first, ext)) {
                    // Harmless: the next open finds the segment dead and tries again.
                    tracing::warn!(segment = first, error = %e, "could not unlink segment file");
                }
            }
        }
        if let Err(e) = fsync_dir(&self.seg_dir) {
            return Err(self.poison(e));
        }
        for first in doomed {
            self.segs.remove(&first);
            self.dirty.remove(&first);
            self.uncatalog.push(first);
        }
        Ok(true)
    }

    /// The catalogue entry of a sealed segment.
    fn catalog_entry(&self, seg: &SegMeta) -> SegCatalog {
        let n = seg.last + 1 - seg.first;
        let mut dead = vec![0u8; n.div_ceil(8) as usize];
        for i in 0..n {
            if self.index.get(seg.first + i).is_none() {
                dead[(i / 8) as usize] |= 1 << (i % 8);
            }
        }
        SegCatalog {
            last: seg.last,
            log_len: seg.log_len,
            dead,
        }
    }

    /// Writes a sled checkpoint. Every fact it records must already be durable in the logs.
    /// Failures are logged, not returned: sled is only a cache.
    pub(super) fn write_checkpoint(&mut self) {
        let Some(meta) = &self.meta else { return };
        let checkpoint = Checkpoint {
            version: META_VERSION,
            stream_id: self.stream_id,
            last_seq: self.last_seq,
            last_time: self.last_time,
            floor: self.floor,
        };
        let mut update = Update {
            removes: std::mem::take(&mut self.uncatalog),
            upserts: Vec::new(),
            subjects: self.index.subjects().len() as u64,
        };
        for first in std::mem::take(&mut self.dirty) {
            if let Some(seg) = self.segs.get(&first).filter(|s| s.sealed) {
                update.upserts.push((first, self.catalog_entry(seg)));
            }
        }
        if let Err(e) = meta.write(&checkpoint, update) {
            tracing::warn!(dir = %self.dir.display(), error = %e, "sled checkpoint failed");
        }
    }
}
