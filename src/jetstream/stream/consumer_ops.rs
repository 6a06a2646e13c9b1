//! The consumer side of [`Stream::apply`]: acks and the retention they drive (interest and
//! work-queue streams drop a message once no consumer still wants it; an interest stream drops a
//! new message no consumer is interested in), and the journal that makes consumer ops durable:
//! queued by `apply`, written and fsynced by the runner with its batch, replayed at load,
//! compacted into consumer snapshots.

use super::{codec, Applied, Op, Stream};
use crate::jetstream::config::Retention;
use crate::jetstream::consumer::AckKind;
use crate::jetstream::errors::ApiError;
use crate::jetstream::journal::Journal;
use crate::store::StoreError;

impl Stream {
    /// Applies an `Ack`: the consumer settles what it covers, then retention removes what no
    /// consumer still wants.
    pub(super) fn apply_ack(
        &mut self,
        consumer: &str,
        seq: u64,
        kind: AckKind,
    ) -> Result<Applied, StoreError> {
        let Some(c) = self.consumers.get_mut(consumer) else {
            return Ok(Applied::Acked {
                settled: Vec::new(),
                removed: false,
            });
        };
        let settled = c.apply_ack(seq, kind);
        let removed = self.retire_acked(&settled)?;
        Ok(Applied::Acked { settled, removed })
    }

    /// A replicated stream's leader settles an ack in its own consumers at once; the store
    /// changes only when the ack commits (see [`Stream::apply`]).
    pub(super) fn settle_live(&mut self, consumer: &str, seq: u64, kind: AckKind) -> Applied {
        let settled = self
            .consumers
            .get_mut(consumer)
            .map(|c| c.apply_ack(seq, kind))
            .unwrap_or_default();
        Applied::Acked {
            settled,
            removed: false,
        }
    }

    /// Applies a `ConsumerReset`. As on nats-server, messages a reset skips stay in an interest
    /// or work-queue stream (only acks retire them).
    pub(super) fn apply_reset(&mut self, consumer: &str, seq: u64) -> Result<Applied, ApiError> {
        if let Some(c) = self.consumers.get_mut(consumer) {
            c.apply_reset(seq);
        }
        Ok(Applied::Done)
    }

    /// Removes messages every interested consumer has acknowledged (interest and workqueue
    /// retention).
    fn retire_acked(&mut self, seqs: &[u64]) -> Result<bool, StoreError> {
        if self.config.retention == Retention::Limits || seqs.is_empty() {
            return Ok(false);
        }
        let mut removed = false;
        for &seq in seqs {
            let Ok(Some(msg)) = self.store.get(seq) else {
                continue;
            };
            let still_wanted = self.consumers.values().any(|c| {
                c.matches(&msg.subject)
                    && (c.state().pending.contains_key(&seq) || c.state().sseq < seq)
            });
            if !still_wanted {
                removed |= self.store.remove(seq)?;
            }
        }
        Ok(removed)
    }

    /// True for an interest stream none of whose consumers wants `subj`.
    pub fn uninterested(&self, subj: &str) -> bool {
        self.config.retention == Retention::Interest
            && !self.consumers.values().any(|c| c.matches(subj))
    }

    /// For interest retention: drops a just-stored message no consumer is interested in.
    pub(super) fn drop_uninterested(&mut self, seq: u64, subj: &str) -> Result<(), StoreError> {
        if self.uninterested(subj) {
            self.store.remove(seq)?;
        }
        Ok(())
    }

    /// Opens the journal (file streams) and replays into the loaded consumers every entry
    /// their snapshots do not include.
    pub(super) fn replay_journal(&mut self) {
        let Some(dir) = self.dir.clone() else { return };
        let (mut journal, entries) = match Journal::open(&dir.join("consumers.log")) {
            Ok(j) => j,
            Err(e) => {
                tracing::error!(stream = %self.config.name, "consumer journal unreadable: {e}; consumers keep their snapshots");
                return;
            }
        };
        let newest = self
            .consumers
            .values()
            .map(|c| c.applied)
            .max()
            .unwrap_or(0);
        journal.skip_to(newest);
        // Indexes go on after the journal's (locally the op counter restarts from there).
        self.applied = self.applied.max(journal.last());
        for (index, bytes) in entries {
            let op = match codec::decode(&bytes) {
                Ok(op) if super::is_journaled(&op) => op,
                Ok(_) | Err(_) => {
                    tracing::error!(stream = %self.config.name, index, "journal entry is not a consumer op; skipped");
                    continue;
                }
            };
            let name = match &op {
                Op::Ack { consumer, .. }
                | Op::Delivered { consumer, .. }
                | Op::ConsumerReset { consumer, .. } => consumer.clone(),
                _ => continue,
            };
            let Some(c) = self.consumers.get(&name) else {
                continue;
            };
            if c.applied >= index {
                continue;
            }
            if let Err(e) = self.apply_op(op) {
                tracing::error!(stream = %self.config.name, index, "journal replay: {}", e.description);
            }
            if let Some(c) = self.consumers.get_mut(&name) {
                c.applied = index;
            }
        }
        for c in self.consumers.values_mut() {
            c.rearm();
        }
        self.journal = Some(journal);
    }

    /// Writes the queued journal entries; with `durable`, fsyncs them too. Once the journal is
    /// big, snapshots the consumers durably and empties it.
    pub fn write_journal(&mut self, durable: bool) -> std::io::Result<()> {
        let Some(journal) = &mut self.journal else {
            return Ok(());
        };
        if durable {
            journal.sync()?;
        } else {
            journal.write()?;
        }
        if journal.wants_compaction() {
            self.compact_journal()?;
        }
        Ok(())
    }

    /// Snapshots every consumer durably, then empties the journal.
    pub fn compact_journal(&mut self) -> std::io::Result<()> {
        if self.journal.is_none() {
            return Ok(());
        }
        for c in self.consumers.values_mut() {
            c.dirty = true;
        }
        self.persist_consumers()?;
        match &mut self.journal {
            Some(j) => j.reset(),
            None => Ok(()),
        }
    }

    /// The journal index the consumers' state includes (what a snapshot records).
    pub(super) fn journal_index(&self) -> u64 {
        self.journal.as_ref().map_or(0, Journal::last)
    }
}
