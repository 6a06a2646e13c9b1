//! Atomic batch publish (`allow_atomic`, nats-server 2.12): messages carrying
//! `Nats-Batch-Id` and `Nats-Batch-Sequence` (1, 2, ...) are staged, leader-local and in
//! memory, until one carries `Nats-Batch-Commit: 1` (it is part of the batch) or `eob` (it is
//! not). The commit checks every message as one publish would be checked, against the stream
//! plus what the batch itself adds (ids, expectations, discard-new limits); then all of them
//! are appended in one runner batch, covered by one `fdatasync`, or none is. A batch left
//! idle for 10 s, or with a gap in its sequence, is abandoned. A crash while the batch's
//! records are written can leave only a prefix of them on disk; that prefix was never
//! acknowledged and carries no commit header, and [`Stream::drop_torn_batch`] removes it when
//! the stream opens.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use super::{Decision, Op, Stream};
use crate::jetstream::config::Discard;
use crate::jetstream::errors::ApiError;
use crate::jetstream::headers;

pub(crate) const BATCH_ID: &str = "Nats-Batch-Id";
const BATCH_SEQ: &str = "Nats-Batch-Sequence";
const BATCH_COMMIT: &str = "Nats-Batch-Commit";
/// Most messages in one batch.
const MAX_SIZE: u64 = 1000;
/// Most batches open at once on a stream.
const MAX_OPEN: usize = 50;
/// How long a batch may wait for its next message.
const IDLE: Duration = Duration::from_secs(10);

/// One staged message.
struct Staged {
    subject: String,
    headers: Option<Vec<u8>>,
    payload: Vec<u8>,
}

/// A batch being staged.
struct Open {
    msgs: Vec<Staged>,
    touched: Instant,
}

/// The open batches of a stream (leader-local: a new leader starts with none).
#[derive(Default)]
pub(crate) struct Batches {
    open: HashMap<String, Open>,
}

/// What a batch message turned into.
pub(crate) enum Staging {
    /// Staged; its request is answered with an empty message.
    Staged,
    /// The commit: these appends, in order, all or none, and the batch's size.
    Commit(Vec<Op>, u64),
}

impl Stream {
    /// Takes one message of atomic batch `id`.
    pub(crate) fn stage_batch(
        &mut self,
        id: &str,
        subject: &str,
        hdrs: &[u8],
        payload: &[u8],
    ) -> Result<Staging, ApiError> {
        if !self.config.allow_atomic {
            return Err(err(10174, "atomic publish is disabled"));
        }
        if id.len() > 64 {
            return Err(err(10179, "atomic publish batch ID is invalid"));
        }
        let Some(seq) = headers::get(hdrs, BATCH_SEQ).and_then(|s| s.parse::<u64>().ok()) else {
            return Err(err(10175, "atomic publish sequence is missing"));
        };
        let commit = headers::get(hdrs, BATCH_COMMIT);
        let eob = commit == Some("eob");
        let size = if eob { seq.saturating_sub(1) } else { seq };
        let now = Instant::now();
        self.batches
            .open
            .retain(|_, b| now.duration_since(b.touched) < IDLE);
        if !self.batches.open.contains_key(id) {
            if seq != 1 {
                return Err(if size > MAX_SIZE {
                    too_large()
                } else {
                    incomplete()
                });
            }
            if self.batches.open.len() >= MAX_OPEN {
                return Err(ApiError {
                    code: 429,
                    err_code: 10210,
                    description: "atomic publish too many inflight".into(),
                });
            }
            let open = Open {
                msgs: Vec::new(),
                touched: now,
            };
            self.batches.open.insert(id.to_string(), open);
        }
        if commit.is_some_and(|c| c != "1" && c != "eob") {
            self.batches.open.remove(id);
            return Err(err(10200, "atomic publish batch commit is invalid"));
        }
        let Some(open) = self.batches.open.get_mut(id) else {
            return Err(incomplete());
        };
        if seq != open.msgs.len() as u64 + 1 || (seq == 1 && eob) {
            self.batches.open.remove(id);
            return Err(incomplete());
        }
        if size > MAX_SIZE {
            self.batches.open.remove(id);
            return Err(too_large());
        }
        open.touched = now;
        if !eob {
            open.msgs.push(Staged {
                subject: subject.to_string(),
                headers: Some(hdrs.to_vec()),
                payload: payload.to_vec(),
            });
        }
        if commit.is_none() {
            return Ok(Staging::Staged);
        }
        let Some(open) = self.batches.open.remove(id) else {
            return Err(incomplete());
        };
        let mut msgs = open.msgs;
        if eob {
            // The last stored message carries the commit, as if it had been sent with it.
            if let Some(last) = msgs.last_mut() {
                let h = last.headers.as_deref();
                last.headers = Some(headers::append(h, &[(BATCH_COMMIT, "1")]));
            }
        }
        let count = msgs.len() as u64;
        let ops = self.check_batch(msgs)?;
        Ok(Staging::Commit(ops, count))
    }

    /// Checks a whole batch as its publishes would be checked one after the other; the appends
    /// to apply, in order, with the sequences they will take.
    fn check_batch(&mut self, msgs: Vec<Staged>) -> Result<Vec<Op>, ApiError> {
        let base = self.store.last_seq();
        let state = self.store.state();
        let mut ids = HashSet::new();
        let mut written = HashSet::new();
        let mut ops = Vec::with_capacity(msgs.len());
        let (mut msgs_added, mut bytes_added) = (0u64, 0u64);
        let mut rolled_up = false;
        for (i, m) in msgs.into_iter().enumerate() {
            let h = m.headers.as_deref().unwrap_or_default();
            let get = |k: &str| headers::get(h, k);
            if get(headers::EXPECTED_LAST_MSG_ID).is_some() {
                return Err(err(
                    10177,
                    &format!(
                        "atomic publish unsupported header used: {}",
                        headers::EXPECTED_LAST_MSG_ID
                    ),
                ));
            }
            if let Some(id) = get(headers::MSG_ID).filter(|id| !id.is_empty()) {
                if !ids.insert(id.to_string()) || self.is_duplicate(id) {
                    return Err(err(
                        10201,
                        "atomic publish batch contains duplicate message id",
                    ));
                }
            }
            if let Some(want) = get(headers::EXPECTED_LAST_SEQ).filter(|_| i > 0) {
                // Checked against the sequence before it in the batch; even when it matches,
                // only the first message may expect one.
                let before = base + i as u64;
                if want.parse::<u64>().ok() != Some(before) {
                    return Err(ApiError::wrong_last_sequence(before));
                }
                return Err(wrong_last_sequence());
            }
            if get(headers::EXPECTED_LAST_SUBJ_SEQ).is_some() {
                let on = get(headers::EXPECTED_LAST_SUBJ_SEQ_SUBJ).unwrap_or(&m.subject);
                // What an earlier message of the batch wrote or rolled up would make the
                // expectation fail only once applied: refused now, as a whole.
                if written.contains(on) || rolled_up {
                    return Err(wrong_last_sequence());
                }
            }
            if self.config.allow_msg_counter && !written.contains(&m.subject) {
                // A broken counter would fail in apply, after earlier messages were stored.
                self.counted(&m.subject, m.headers.as_deref())?;
            }
            if self.config.discard == Discard::New {
                let cfg = &self.config;
                if cfg.max_msgs > 0 && (state.msgs + msgs_added) as i64 >= cfg.max_msgs {
                    return Err(ApiError::stream_msgs_exceeded());
                }
                let size = (m.subject.len() + h.len() + m.payload.len()) as u64;
                if cfg.max_bytes > 0 && (state.bytes + bytes_added + size) as i64 > cfg.max_bytes {
                    return Err(ApiError::stream_bytes_exceeded());
                }
            }
            let mut op = match self.check_publish(&m.subject, m.headers.as_deref(), &m.payload)? {
                Decision::Append(op) => op,
                Decision::Duplicate(_) => {
                    return Err(err(
                        10201,
                        "atomic publish batch contains duplicate message id",
                    ))
                }
            };
            // Each takes the sequence after the one before it in the batch.
            if let Op::Append { seq, .. } = &mut op {
                *seq = base + 1 + i as u64;
            }
            msgs_added += 1;
            bytes_added += (m.subject.len() + h.len() + m.payload.len()) as u64;
            rolled_up |= get(headers::ROLLUP) == Some("all");
            written.insert(m.subject);
            ops.push(op);
        }
        Ok(ops)
    }

    /// Removes what a crash left of a batch whose records were only partly written: the
    /// trailing messages of one batch id, numbered 1, 2, ... n without a break, none carrying
    /// the commit (they were never acknowledged: a batch is acknowledged after all of it,
    /// the commit included, is fsynced). Anything else is left alone.
    pub(super) fn drop_torn_batch(&mut self) {
        let mut torn = Vec::new();
        let mut id: Option<String> = None;
        let mut seq = self.store.last_seq();
        while seq > 0 {
            let Ok(Some(m)) = self.store.get(seq) else {
                return;
            };
            let h = m.headers.as_deref().unwrap_or_default();
            let this = batch_id(Some(h)).map(str::to_string);
            let number = headers::get(h, BATCH_SEQ).and_then(|n| n.parse::<u64>().ok());
            let (Some(this), Some(number)) = (this, number) else {
                return;
            };
            if headers::get(h, BATCH_COMMIT).is_some() || id.as_ref().is_some_and(|i| *i != this) {
                return;
            }
            // Counting down to 1 without a gap.
            if torn
                .last()
                .is_some_and(|&(_, n): &(u64, u64)| n != number + 1)
            {
                return;
            }
            id = Some(this);
            torn.push((seq, number));
            if number == 1 {
                break;
            }
            seq -= 1;
        }
        if torn.last().map(|&(_, n)| n) != Some(1) {
            return;
        }
        for (seq, _) in torn {
            if let Err(e) = self.store.remove(seq) {
                tracing::error!(stream = %self.config.name, seq, "torn batch not removed: {e}");
                return;
            }
            tracing::warn!(stream = %self.config.name, seq, "removed a message of a batch a crash left uncommitted");
        }
    }
}

impl Stream {
    fn is_duplicate(&self, id: &str) -> bool {
        self.duplicate_of(id, crate::jetstream::time::now_nanos())
            .is_some()
    }
}

/// The batch id a publish names, if it is part of an atomic batch.
pub(crate) fn batch_id(hdrs: Option<&[u8]>) -> Option<&str> {
    hdrs.and_then(|h| headers::get(h, BATCH_ID))
        .filter(|id| !id.is_empty())
}

fn err(err_code: u32, text: &str) -> ApiError {
    ApiError::new(400, err_code, text)
}

fn incomplete() -> ApiError {
    err(10176, "atomic publish batch is incomplete")
}

fn too_large() -> ApiError {
    err(
        10199,
        &format!("atomic publish batch is too large: {MAX_SIZE}"),
    )
}

fn wrong_last_sequence() -> ApiError {
    err(10164, "wrong last sequence")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jetstream::config::StreamConfig;
    use crate::store::{MemStore, MsgStore};

    fn config() -> StreamConfig {
        let cfg: StreamConfig =
            serde_json::from_str(r#"{"name":"A","subjects":["a.>"],"allow_atomic":true}"#).unwrap();
        cfg.normalize().unwrap()
    }

    fn hdrs(id: &str, seq: u64, commit: bool) -> Vec<u8> {
        let seq = seq.to_string();
        let mut pairs = vec![(BATCH_ID, id), (BATCH_SEQ, seq.as_str())];
        if commit {
            pairs.push((BATCH_COMMIT, "1"));
        }
        headers::build(None, &pairs)
    }

    /// What a crash mid-commit can leave: a committed batch, then the first records of the
    /// next one without its commit. Opening the stream removes those, and only those.
    #[test]
    fn a_torn_batch_is_removed_when_the_stream_opens() {
        let mut store = MemStore::new();
        store.append("a.0", None, b"plain", 1).unwrap();
        store
            .append("a.1", Some(&hdrs("b1", 1, false)), b"x", 2)
            .unwrap();
        store
            .append("a.2", Some(&hdrs("b1", 2, true)), b"x", 3)
            .unwrap();
        store
            .append("a.3", Some(&hdrs("b2", 1, false)), b"x", 4)
            .unwrap();
        store
            .append("a.4", Some(&hdrs("b2", 2, false)), b"x", 5)
            .unwrap();
        let s = Stream::new(config(), 1, Box::new(store), None);
        let st = s.store.state();
        assert_eq!(st.msgs, 3, "{st:?}");
        assert!(s.store.get(3).unwrap().is_some());
        assert!(s.store.get(4).unwrap().is_none());
        assert!(s.store.get(5).unwrap().is_none());
    }

    /// Only a tail numbered 1..n without a break is a torn batch: an empty id, a tail that
    /// does not start at 1, or one with a gap is left alone.
    #[test]
    fn anything_but_a_torn_batch_is_kept() {
        let cases: [&[(&str, u64)]; 3] = [
            &[("", 1), ("", 2)],
            &[("b", 2), ("b", 3)],
            &[("b", 1), ("b", 3)],
        ];
        for tail in cases {
            let mut store = MemStore::new();
            for (i, (id, n)) in tail.iter().enumerate() {
                let h = hdrs(id, *n, false);
                store.append("a.x", Some(&h), b"x", i as i64).unwrap();
            }
            let s = Stream::new(config(), 1, Box::new(store), None);
            assert_eq!(s.store.state().msgs, tail.len() as u64, "{tail:?}");
        }
    }

    #[test]
    fn a_committed_batch_is_kept() {
        let mut store = MemStore::new();
        store
            .append("a.1", Some(&hdrs("b1", 1, false)), b"x", 1)
            .unwrap();
        store
            .append("a.2", Some(&hdrs("b1", 2, true)), b"x", 2)
            .unwrap();
        let s = Stream::new(config(), 1, Box::new(store), None);
        assert_eq!(s.store.state().msgs, 2);
    }
}
