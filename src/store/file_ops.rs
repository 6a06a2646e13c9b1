//! The [`MsgStore`] implementation of [`FileStore`]: thin glue between the trait and the
//! store's internals in `file.rs` and the shared index.

use std::fs;

use super::file::FileStore;
use super::index::PurgePlan;
use super::{MsgStore, PendingSync, StoreError, StoreState, StoredMsg, SubjectState};

impl MsgStore for FileStore {
    fn append(
        &mut self,
        subject: &str,
        headers: Option<&[u8]>,
        payload: &[u8],
        time: i64,
    ) -> Result<u64, StoreError> {
        self.append_msg(subject, headers, payload, time)
    }

    fn sync(&mut self) -> Result<(), StoreError> {
        self.guard()?;
        self.absorb_corrupt()?;
        self.write_applied()?;
        if let Err(e) = self.active.sync() {
            return Err(self.poison(e));
        }
        if self.unlink_doomed()? {
            self.write_checkpoint();
        }
        Ok(())
    }

    fn begin_sync(&mut self) -> Result<PendingSync, StoreError> {
        self.guard()?;
        self.absorb_corrupt()?;
        self.write_applied()?;
        let (file, covered) = self.active.begin_sync().map_err(|e| self.poison(e))?;
        let doomed = self.doomed.iter().copied().collect();
        let at = (self.active.first, covered);
        Ok(PendingSync::new(file, at, self.last_seq, doomed))
    }

    fn end_sync(
        &mut self,
        pending: PendingSync,
        synced: std::io::Result<()>,
    ) -> Result<u64, StoreError> {
        if let Err(e) = synced {
            return Err(self.poison(e));
        }
        self.guard()?;
        let (seg, covered) = pending.covers();
        self.active.synced_upto(seg, covered);
        if self.unlink_covered(&pending.doomed)? {
            self.write_checkpoint();
        }
        Ok(pending.seq())
    }

    fn mark_applied(&mut self, index: u64) {
        self.applied = self.applied.max(index);
    }

    fn applied_index(&self) -> u64 {
        self.applied
    }

    fn checkpoint(&mut self) -> Result<(), StoreError> {
        self.sync()?;
        // At rest (shutdown), the active log is exactly as long as its records.
        if let Err(e) = self.active.trim() {
            return Err(self.poison(e));
        }
        self.write_checkpoint();
        Ok(())
    }

    fn get(&self, seq: u64) -> Result<Option<StoredMsg>, StoreError> {
        self.read_msg(seq)
    }

    fn remove(&mut self, seq: u64) -> Result<bool, StoreError> {
        self.guard()?;
        self.absorb_corrupt()?;
        self.remove_live(seq)
    }

    fn purge(
        &mut self,
        filter: Option<&str>,
        up_to_seq: Option<u64>,
        keep: Option<u64>,
    ) -> Result<u64, StoreError> {
        self.guard()?;
        match self
            .index
            .plan_purge(filter, up_to_seq, keep, self.last_seq)
        {
            PurgePlan::Front(floor) => self.truncate_front(floor),
            PurgePlan::Seqs(seqs) => {
                self.absorb_corrupt()?;
                let mut n = 0;
                for seq in seqs {
                    n += u64::from(self.remove_live(seq)?);
                }
                Ok(n)
            }
        }
    }

    super::index_queries!();

    fn expire_older_than(&mut self, cutoff_time: i64) -> Result<u64, StoreError> {
        let floor = self
            .index
            .first_at_or_after(cutoff_time)
            .unwrap_or(self.last_seq + 1);
        self.truncate_front(floor)
    }

    fn set_first_seq(&mut self, seq: u64) -> Result<(), StoreError> {
        if seq <= self.last_seq {
            return Err(StoreError::Invalid(format!(
                "first sequence {seq} would reuse sequences (last is {})",
                self.last_seq
            )));
        }
        self.truncate_front(seq).map(|_| ())
    }

    fn skip_to(&mut self, next: u64) -> Result<(), StoreError> {
        self.guard()?;
        super::check_skip(next, self.last_seq)?;
        if next == self.last_seq + 1 {
            return Ok(());
        }
        if self.index.first().is_none() {
            // Nothing live: a purge past the end says it durably.
            return self.truncate_front(next).map(|_| ());
        }
        // Sequences run consecutively within a segment: the gap is between two.
        self.roll_to(next)?;
        self.last_seq = next - 1;
        Ok(())
    }

    fn first_seq(&self) -> u64 {
        self.index.first().map_or(self.last_seq + 1, |(s, _)| s)
    }

    fn last_seq(&self) -> u64 {
        self.last_seq
    }

    fn delete_all(self: Box<Self>) -> Result<(), StoreError> {
        let dir = self.dir.clone();
        let mut this = self;
        // A tree in a shared sled goes with the store; a store's own sled with its directory.
        if let Some(meta) = this.meta.take() {
            meta.drop_shared()?;
        }
        // Close every file handle before removing the directory. The identity goes first, so
        // a half-finished removal never leaves a sled that a new stream would trust.
        drop(this);
        super::segment::remove_if_present(&dir.join("STREAM_ID"))?;
        super::segment::fsync_dir(&dir)?;
        match fs::remove_dir_all(&dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(StoreError::Io(e)),
            _ => Ok(()),
        }
    }
}
