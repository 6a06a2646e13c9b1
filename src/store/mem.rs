//! [`MemStore`]: the `storage: memory` store. Messages sit in a `BTreeMap` by sequence; every
//! query goes through the shared in-memory [`Index`].

use std::collections::BTreeMap;

use bytes::Bytes;

use super::index::{Index, PurgePlan};
use super::{check_seq, MsgStore, StoreError, StoreState, StoredMsg, SubjectState};

/// Bytes a message counts for: its subject, headers and payload plus a fixed 16.
fn mem_size(subject: &str, headers: Option<&[u8]>, payload: &[u8]) -> u64 {
    (subject.len() + headers.map_or(0, <[u8]>::len) + payload.len() + 16) as u64
}

/// A message store that lives entirely in RAM.
#[derive(Default)]
pub struct MemStore {
    msgs: BTreeMap<u64, StoredMsg>,
    index: Index,
    last_seq: u64,
    last_time: i64,
    applied: u64,
}

impl MemStore {
    /// An empty store whose first message will get sequence 1.
    pub fn new() -> MemStore {
        MemStore::default()
    }

    /// Removes everything below `floor`; moves the next sequence up to `floor` if higher.
    fn truncate_front(&mut self, floor: u64) -> u64 {
        let kept = self.msgs.split_off(&floor);
        self.msgs = kept;
        let removed = self.index.remove_below(floor, |_, _| {});
        self.last_seq = self.last_seq.max(floor.saturating_sub(1));
        removed
    }
}

impl MsgStore for MemStore {
    fn append(
        &mut self,
        subject: &str,
        headers: Option<&[u8]>,
        payload: &[u8],
        time: i64,
    ) -> Result<u64, StoreError> {
        if subject.is_empty() {
            return Err(StoreError::Invalid("empty subject".into()));
        }
        check_seq(self.last_seq + 1)?;
        let size = u32::try_from(mem_size(subject, headers, payload))
            .map_err(|_| StoreError::Invalid("message larger than 4 GiB".into()))?;
        let seq = self.last_seq + 1;
        self.index.insert(seq, subject, size, 0, time);
        self.msgs.insert(
            seq,
            StoredMsg {
                seq,
                time,
                subject: subject.to_string(),
                headers: headers.map(Bytes::copy_from_slice),
                payload: Bytes::copy_from_slice(payload),
            },
        );
        self.last_seq = seq;
        self.last_time = time;
        Ok(seq)
    }

    fn sync(&mut self) -> Result<(), StoreError> {
        Ok(())
    }

    fn mark_applied(&mut self, index: u64) {
        self.applied = self.applied.max(index);
    }

    fn applied_index(&self) -> u64 {
        self.applied
    }

    fn get(&self, seq: u64) -> Result<Option<StoredMsg>, StoreError> {
        Ok(self.msgs.get(&seq).cloned())
    }

    fn remove(&mut self, seq: u64) -> Result<bool, StoreError> {
        self.index.remove(seq);
        Ok(self.msgs.remove(&seq).is_some())
    }

    fn purge(
        &mut self,
        filter: Option<&str>,
        up_to_seq: Option<u64>,
        keep: Option<u64>,
    ) -> Result<u64, StoreError> {
        match self
            .index
            .plan_purge(filter, up_to_seq, keep, self.last_seq)
        {
            PurgePlan::Front(floor) => {
                check_seq(floor)?;
                Ok(self.truncate_front(floor))
            }
            PurgePlan::Seqs(seqs) => {
                let mut n = 0;
                for seq in seqs {
                    n += u64::from(self.remove(seq)?);
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
        Ok(self.truncate_front(floor))
    }

    fn set_first_seq(&mut self, seq: u64) -> Result<(), StoreError> {
        if seq <= self.last_seq {
            return Err(StoreError::Invalid(format!(
                "first sequence {seq} would reuse sequences (last is {})",
                self.last_seq
            )));
        }
        check_seq(seq)?;
        self.truncate_front(seq);
        Ok(())
    }

    fn skip_to(&mut self, next: u64) -> Result<(), StoreError> {
        super::check_skip(next, self.last_seq)?;
        self.last_seq = next - 1;
        Ok(())
    }

    fn recreate(&mut self) -> Result<(), StoreError> {
        *self = MemStore::new();
        Ok(())
    }

    fn first_seq(&self) -> u64 {
        self.index.first().map_or(self.last_seq + 1, |(s, _)| s)
    }

    fn last_seq(&self) -> u64 {
        self.last_seq
    }

    fn delete_all(self: Box<Self>) -> Result<(), StoreError> {
        Ok(())
    }
}
