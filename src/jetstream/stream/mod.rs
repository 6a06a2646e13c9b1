//! One stream: its configuration, its store, its consumers and the de-duplication window.
//!
//! Every state change goes through [`Stream::apply_at`] with an [`Op`] and its log index, the
//! unit a replication layer will later agree on ([`Stream::apply`] is the local log); publish
//! checks ([`Stream::check_publish`]) decide which op a publish becomes, or which error it
//! gets, without changing anything. Derived state (dedup,
//! TTL, expiry) is in `derived`, the consumer ops (deliveries, acks and the retention they
//! drive) in `consumer_ops` (journaled by `jetstream::journal`), consumer snapshots on disk in
//! `persist`, republish in `republish`, message schedules in `schedule`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

mod atomic;
/// The replicated log's entry format (today the consumer journal's; the Raft log's next).
pub(crate) mod codec;
mod consumer_ops;
mod counter;
mod derived;
#[cfg(test)]
mod determinism_tests;
mod persist;
mod republish;
mod schedule;
mod snapshot;
mod sourced;

pub(crate) use atomic::{batch_id, Staging};
pub(crate) use derived::parse_ttl;
use derived::Dedup;
pub(crate) use persist::{sync_dir, write_file, StreamMeta};
pub(crate) use sourced::Position;

use crate::jetstream::config::{ConsumerConfig, Discard, StreamConfig};
use crate::jetstream::consumer::{AckKind, Consumer, Deliveries};
use crate::jetstream::errors::ApiError;
use crate::jetstream::headers;
use crate::jetstream::time::now_nanos;
use crate::store::MsgStore;

/// A state change of a stream. Applying the same ops in the same order to the same starting
/// state gives the same stream: this is what Raft replicates.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) enum Op {
    /// Store a message as `seq`: the sequence the proposer assigned (the applied state's
    /// next). Apply refuses any other (a proposer that ran ahead of a refused op), except one
    /// already stored, which it skips (a replay).
    Append {
        seq: u64,
        subject: String,
        headers: Option<Vec<u8>>,
        payload: Vec<u8>,
        time: i64,
        msg_id: Option<String>,
        rollup: Option<Rollup>,
        /// What the publisher expects of the stream; apply refuses the append otherwise.
        expect: Expect,
    },
    /// Delete one message.
    Delete { seq: u64 },
    /// Purge messages.
    Purge {
        filter: Option<String>,
        seq: Option<u64>,
        keep: Option<u64>,
    },
    /// Remove messages older than this time (max_age).
    Expire { before: i64 },
    /// Remove the messages whose per-message TTL passed at `now` (apply pops the TTL index).
    ExpireTtl { now: i64 },
    /// Replace the configuration.
    UpdateConfig(Box<StreamConfig>),
    /// Add or replace a consumer; `created` is stamped by whoever proposes the op (apply
    /// reads no clock).
    ConsumerCreate {
        name: String,
        config: Box<ConsumerConfig>,
        created: i64,
    },
    /// Remove a consumer.
    ConsumerDelete { name: String },
    /// A consumer's acknowledgement of `seq` (with `ack_policy: all`, of everything up to it).
    Ack {
        consumer: String,
        seq: u64,
        kind: AckKind,
    },
    /// What a consumer's delivery pump handed out.
    Delivered {
        consumer: String,
        deliveries: Deliveries,
    },
    /// A consumer starts again at stream sequence `seq`: nothing pending, nothing delivered
    /// (`$JS.API.CONSUMER.RESET`).
    ConsumerReset { consumer: String, seq: u64 },
}

impl Op {
    /// The message an `Append` stores, as republish sees it.
    pub(crate) fn appended(&self) -> Option<crate::server::Message> {
        match self {
            Op::Append {
                subject,
                headers,
                payload,
                ..
            } => Some(crate::server::Message {
                subject: subject.clone(),
                reply: None,
                headers: headers.clone().map(Into::into),
                payload: payload.clone().into(),
                trace: Default::default(),
            }),
            _ => None,
        }
    }
}

/// A publish's conditions on the stream (`Nats-Expected-Last-Sequence`, `-Last-Subject-Sequence`
/// with `-Last-Subject-Sequence-Subject`, `-Last-Msg-Id`): checked inside apply against the
/// applied state, so every replica accepts or refuses the same append.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Expect {
    pub last_seq: Option<u64>,
    pub last_subject_seq: Option<u64>,
    /// The subject `last_subject_seq` is about; the message's own when absent.
    pub last_subject: Option<String>,
    pub last_msg_id: Option<String>,
}

/// What a rollup header asked for.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) enum Rollup {
    /// Keep only this message on its subject.
    Subject,
    /// Keep only this message in the stream.
    All,
}

/// Result of applying an op.
#[derive(Debug)]
pub(crate) enum Applied {
    Stored(u64),
    /// A message id seen inside the duplicate window: nothing stored, the earlier sequence.
    Duplicate(u64),
    Deleted(bool),
    Purged(u64),
    /// An ack settled these sequences; `removed` if retention removed messages for it.
    Acked {
        settled: Vec<u64>,
        removed: bool,
    },
    Done,
    /// Already applied (an index at or below the applied one, or an append of a stored
    /// sequence): nothing changed.
    Skipped,
}

/// Who a message to store comes from (what it is checked for).
#[derive(Clone, Copy, PartialEq, Eq)]
enum From {
    /// A client's publish.
    Client,
    /// A schedule firing (its schedule headers are the server's own).
    Scheduler,
    /// A source (checked by its origin stream already; it carries `Nats-Stream-Source`).
    Source,
}

/// What a publish turns into.
pub(crate) enum Decision {
    /// Append with this op.
    Append(Op),
    /// Duplicate of an earlier message: ack with that sequence.
    Duplicate(u64),
}

/// The pub ack JSON.
#[derive(Serialize)]
pub(crate) struct PubAck<'a> {
    pub stream: &'a str,
    pub seq: u64,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub duplicate: bool,
    /// The JetStream domain, when one is configured.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub domain: Option<&'a str>,
    /// A counter stream's new total.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub val: Option<String>,
}

/// A stream and everything it owns.
pub(crate) struct Stream {
    pub config: StreamConfig,
    pub created: i64,
    pub store: Box<dyn MsgStore>,
    pub consumers: BTreeMap<String, Consumer>,
    pub dir: Option<PathBuf>,
    dedup: Dedup,
    last_msg_id: Option<String>,
    /// Per-message TTL expiries: (expires at, seq).
    ttl: std::collections::BTreeSet<(i64, u64)>,
    /// Sequences found damaged at recovery (reported in stream info as `lost`).
    pub lost: Vec<u64>,
    /// The journal of consumer ops (file streams, once their consumers are loaded).
    journal: Option<crate::jetstream::journal::Journal>,
    /// Index of the last op applied (the replicated log's index; locally, a counter).
    applied: u64,
    /// A replicated stream (a Raft group's machine): only the group's entries are numbered.
    /// Its consumer ops are applied at once to the leader's `consumers` (what it delivers
    /// from), queued in `outbox` to be proposed, and applied to `committed` when the group
    /// commits them (on every replica), from which a new leader takes its consumers.
    pub replicated: bool,
    /// A replicated stream's consumers as its group's log has them.
    committed: BTreeMap<String, Consumer>,
    /// Consumer ops applied to the leader's consumers, not yet proposed.
    outbox: Vec<Op>,
    /// Atomic batches being staged (leader-local).
    batches: atomic::Batches,
    /// Message schedules (derived from the log) and those fired, not yet applied.
    schedules: schedule::Schedules,
    /// The config's `subject_transform`, compiled.
    transform: Option<crate::protocol::transform::Transform>,
    /// Per source (by index name), the last origin sequence stored (derived from the log).
    sources_applied: BTreeMap<String, sourced::Position>,
    /// Whether they changed since they were last saved, and when that was.
    sources_changed: bool,
    sources_saved: Option<std::time::Instant>,
    /// What the mirror's and sources' links report (stream info), when they run here.
    pub sourcing: std::sync::Arc<crate::jetstream::sourcing::Status>,
}

impl Stream {
    pub fn new(
        config: StreamConfig,
        created: i64,
        store: Box<dyn MsgStore>,
        dir: Option<PathBuf>,
    ) -> Self {
        // Ops are numbered on from the last index the store recorded as applied.
        let applied = store.applied_index();
        let mut s = Self {
            config,
            created,
            store,
            consumers: BTreeMap::new(),
            dir,
            dedup: Dedup::new(),
            last_msg_id: None,
            ttl: std::collections::BTreeSet::new(),
            lost: Vec::new(),
            journal: None,
            applied,
            replicated: false,
            committed: BTreeMap::new(),
            outbox: Vec::new(),
            batches: atomic::Batches::default(),
            schedules: schedule::Schedules::default(),
            transform: None,
            sources_applied: BTreeMap::new(),
            sources_changed: false,
            sources_saved: None,
            sourcing: Default::default(),
        };
        s.transform = s.config.subject_transform();
        if s.config.allow_atomic {
            s.drop_torn_batch();
        }
        let from = s.load_derived();
        s.rebuild_dedup(from);
        s.rebuild_ttl(from);
        s.rebuild_schedules(from);
        s.rebuild_sourced(from);
        s.load_sourced();
        s
    }

    pub fn name(&self) -> &str {
        &self.config.name
    }

    /// The consumers clients see (listed and counted): not the `direct` ones a mirror or
    /// source reads through, as on nats-server.
    pub fn public_consumers(&self) -> impl Iterator<Item = &Consumer> {
        self.consumers.values().filter(|c| !c.config.direct)
    }

    /// A publish as the stream takes it in: its subject transformed by `subject_transform`
    /// (when it matches the transform's source), before anything else looks at it.
    pub fn take_in(&self, m: &mut crate::server::Message) {
        if let Some(to) = self.transform.as_ref().and_then(|t| t.apply(&m.subject)) {
            m.subject = to;
        }
    }

    /// The answer to a publish the stream refused: the error with the stream's name and
    /// sequence 0, as nats-server answers it.
    pub fn pub_error(&self, e: &ApiError) -> Vec<u8> {
        let body = serde_json::json!({ "error": e, "stream": self.name(), "seq": 0 });
        serde_json::to_vec(&body).unwrap_or_default()
    }

    /// The pub ack of a publish stored (or found a duplicate) as `seq`.
    pub fn pub_ack(&self, seq: u64, duplicate: bool, domain: Option<&str>) -> Vec<u8> {
        let ack = PubAck {
            stream: self.name(),
            seq,
            duplicate,
            domain,
            val: (!duplicate).then(|| self.counter_value(seq)).flatten(),
        };
        serde_json::to_vec(&ack).unwrap_or_default()
    }

    /// Checks a publish against the stream's rules and expectations; returns the op to apply.
    pub fn check_publish(
        &mut self,
        subj: &str,
        hdrs: Option<&[u8]>,
        payload: &[u8],
    ) -> Result<Decision, ApiError> {
        self.check_publish_from(subj, hdrs, payload, From::Client)
    }

    /// [`Stream::check_publish`] for a message a schedule fired (its schedule headers are the
    /// server's own, not checked as a client's).
    pub fn check_scheduled(&mut self, m: &crate::server::Message) -> Result<Decision, ApiError> {
        self.check_publish_from(
            &m.subject,
            m.headers.as_deref(),
            &m.payload,
            From::Scheduler,
        )
    }

    fn check_publish_from(
        &mut self,
        subj: &str,
        hdrs: Option<&[u8]>,
        payload: &[u8],
        from: From,
    ) -> Result<Decision, ApiError> {
        let cfg = &self.config;
        if cfg.sealed {
            return Err(ApiError::sealed());
        }
        let size = payload.len() + hdrs.map_or(0, <[u8]>::len);
        if cfg.max_msg_size >= 0 && size as i64 > cfg.max_msg_size {
            return Err(ApiError::message_too_large());
        }
        counter::check(cfg.allow_msg_counter, hdrs, payload)?;
        let get = |k: &str| hdrs.and_then(|h| headers::get(h, k));
        let now = now_nanos();
        let msg_id = get(headers::MSG_ID).filter(|s| !s.is_empty());
        // The same checks run again inside apply against the applied state; here they are the
        // leader's fast path (an answer without an op).
        if let Some(seq) = msg_id.and_then(|id| self.duplicate_of(id, now)) {
            return Ok(Decision::Duplicate(seq));
        }
        if let Some(expected) = get(headers::EXPECTED_STREAM) {
            if expected != cfg.name {
                return Err(ApiError::expected_stream_mismatch());
            }
        }
        if get(headers::EXPECTED_LAST_SUBJ_SEQ_SUBJ).is_some()
            && get(headers::EXPECTED_LAST_SUBJ_SEQ).is_none()
        {
            return Err(ApiError {
                code: 400,
                err_code: 10193,
                description: "missing sequence for expected last sequence per subject".into(),
            });
        }
        let expect = Expect {
            last_seq: get(headers::EXPECTED_LAST_SEQ)
                .map(|v| {
                    v.parse()
                        .map_err(|_| ApiError::bad_request("invalid expected last sequence"))
                })
                .transpose()?,
            last_subject_seq: get(headers::EXPECTED_LAST_SUBJ_SEQ)
                .map(|v| {
                    v.parse().map_err(|_| {
                        ApiError::bad_request("invalid expected last subject sequence")
                    })
                })
                .transpose()?,
            last_subject: get(headers::EXPECTED_LAST_SUBJ_SEQ_SUBJ).map(str::to_string),
            last_msg_id: get(headers::EXPECTED_LAST_MSG_ID).map(str::to_string),
        };
        self.unmet(&expect, subj)?;
        if from == From::Client && get(headers::STREAM_SOURCE).is_some() {
            return Err(ApiError::new(
                400,
                10227,
                "message stream source header is not allowed",
            ));
        }
        let rewritten = match hdrs {
            Some(h) if from == From::Client => self.check_schedule(subj, h, now)?,
            _ => None,
        };
        let hdrs = rewritten.as_deref().or(hdrs);
        let get = |k: &str| hdrs.and_then(|h| headers::get(h, k));
        let cfg = &self.config;
        let state = self.store.state();
        let rollup = match get(headers::ROLLUP) {
            None => None,
            Some(r) => {
                // A sourced message was checked by its origin: it is stored as it is.
                let checked = from == From::Source;
                if !cfg.allow_rollup_hdrs && !checked {
                    return Err(ApiError::rollup_not_allowed());
                }
                match r {
                    "sub" => Some(Rollup::Subject),
                    "all" => {
                        if cfg.deny_purge && !checked {
                            return Err(ApiError::rollup_not_allowed());
                        }
                        Some(Rollup::All)
                    }
                    _ => {
                        return Err(ApiError::bad_request(&format!(
                            "rollup value invalid: {r:?}"
                        )))
                    }
                }
            }
        };
        if let Some(ttl) = get(headers::TTL).filter(|_| from != From::Source) {
            if !cfg.allow_msg_ttl {
                return Err(ApiError::ttl_disabled());
            }
            parse_ttl(ttl).ok_or_else(ApiError::ttl_invalid)?;
        }
        if cfg.discard == Discard::New {
            if cfg.max_msgs > 0 && state.msgs as i64 >= cfg.max_msgs {
                return Err(ApiError::stream_msgs_exceeded());
            }
            // Count the message as the store will: the whole record, framing included.
            let overhead = match cfg.storage {
                super::config::Storage::File => 42,
                super::config::Storage::Memory => 16,
            };
            let record = (size + subj.len() + overhead) as u64;
            if cfg.max_bytes > 0 && (state.bytes + record) as i64 > cfg.max_bytes {
                return Err(ApiError::stream_bytes_exceeded());
            }
            if cfg.discard_new_per_subject && cfg.max_msgs_per_subject > 0 {
                let n = self.store.subject_state(subj).map_or(0, |s| s.msgs);
                if n as i64 >= cfg.max_msgs_per_subject {
                    return Err(ApiError::stream_msgs_per_subject_exceeded());
                }
            }
        }
        Ok(Decision::Append(Op::Append {
            seq: self.store.last_seq() + 1,
            subject: subj.to_string(),
            headers: hdrs.map(<[u8]>::to_vec),
            payload: payload.to_vec(),
            time: now,
            msg_id: msg_id.map(str::to_string),
            rollup,
            expect,
        }))
    }

    /// The sequence stored under `id` if it is inside the duplicate window at `time`.
    fn duplicate_of(&self, id: &str, time: i64) -> Option<u64> {
        let &(seq, t) = self.dedup.ids.get(id)?;
        (time - t <= self.config.duplicate_window).then_some(seq)
    }

    /// The error for the first of `expect`'s conditions the stream does not meet.
    fn unmet(&self, expect: &Expect, subject: &str) -> Result<(), ApiError> {
        if let Some(want) = expect.last_seq {
            let last = self.store.last_seq();
            if want != last {
                return Err(ApiError::wrong_last_sequence(last));
            }
        }
        if let Some(want) = expect.last_subject_seq {
            let on = expect.last_subject.as_deref().unwrap_or(subject);
            let last = self.store.last_seq_for_subject(on).unwrap_or(0);
            if want != last {
                return Err(ApiError::wrong_last_sequence(last));
            }
        }
        if let Some(want) = &expect.last_msg_id {
            if self.last_msg_id.as_deref() != Some(want.as_str()) {
                return Err(ApiError::wrong_last_msg_id(
                    self.last_msg_id.as_deref().unwrap_or(""),
                ));
            }
        }
        Ok(())
    }

    /// Index of the last op applied (read by the tests; the Raft glue will report it).
    #[cfg(test)]
    pub fn applied(&self) -> u64 {
        self.applied
    }

    /// Applies one state change as the next index (the local log: every op committed as it
    /// is proposed).
    pub fn apply(&mut self, op: Op) -> Result<Applied, ApiError> {
        if self.replicated {
            let queued = is_consumer_op(&op).then(|| op.clone());
            let applied = match op {
                // Retention (interest, work queue) removes what the ack settles once it is
                // committed, on every replica alike; the leader's consumers settle it now.
                Op::Ack {
                    consumer,
                    seq,
                    kind,
                } => self.settle_live(&consumer, seq, kind),
                op => self.apply_op(op)?,
            };
            let noop = matches!(&applied, Applied::Acked { settled, .. } if settled.is_empty());
            if let (Some(op), false) = (queued, noop) {
                self.outbox.push(op);
            }
            return Ok(applied);
        }
        self.apply_at(self.applied + 1, op)
    }

    /// Queues `op` to be proposed without applying it here (it applies when committed).
    pub fn propose(&mut self, op: Op) {
        self.outbox.push(op);
    }

    /// The ops queued to propose since the last call: consumer ops applied to the leader's
    /// consumers, and ops queued by [`Stream::propose`].
    pub fn take_outbox(&mut self) -> Vec<Op> {
        std::mem::take(&mut self.outbox)
    }

    /// This replica now leads a replicated stream: its consumers start from the committed
    /// ones (everything committed before is applied by then), their timers rearmed.
    pub fn lead(&mut self) {
        self.outbox.clear();
        self.schedules.clear_inflight();
        self.consumers = self
            .committed
            .values()
            .map(|c| {
                let mut live = Consumer::new(
                    c.name.clone(),
                    c.config.clone(),
                    self.store.as_ref(),
                    None,
                    &self.config.subjects,
                    c.created,
                );
                live.restore(c.state().clone(), c.applied);
                (c.name.clone(), live)
            })
            .collect();
    }

    /// This replica stopped leading: it delivers nothing (its consumers were the leader's).
    pub fn follow(&mut self) {
        self.consumers.clear();
        self.schedules.clear_inflight();
        self.outbox.clear();
    }

    /// The committed consumers (a replicated stream's, as its log has them).
    #[cfg(test)]
    pub fn committed_consumers(&self) -> &BTreeMap<String, Consumer> {
        &self.committed
    }

    /// Applies the op at log index `index`; one at or below the applied index is skipped, so
    /// a replay is idempotent. A refused op still uses its index (every replica refuses it
    /// alike). Consumer ops that changed something are also queued to the journal (file
    /// streams) under their index; the runner writes it with the batch.
    pub fn apply_at(&mut self, index: u64, op: Op) -> Result<Applied, ApiError> {
        let mut outcomes = self.apply_all_at(index, vec![op]);
        outcomes.pop().unwrap_or(Ok(Applied::Skipped))
    }

    /// Applies the ops of log index `index` in order (a replicated stream's batch entry),
    /// one outcome each; like [`Stream::apply_at`], an index at or below the applied one is
    /// skipped whole.
    pub fn apply_all_at(&mut self, index: u64, ops: Vec<Op>) -> Vec<Result<Applied, ApiError>> {
        if index <= self.applied {
            return ops.iter().map(|_| Ok(Applied::Skipped)).collect();
        }
        self.applied = index;
        self.store.mark_applied(index);
        ops.into_iter()
            .map(|op| self.apply_journaled(index, op))
            .collect()
    }

    fn apply_journaled(&mut self, index: u64, op: Op) -> Result<Applied, ApiError> {
        if self.replicated {
            // The committed consumers take consumer ops (the leader's have them already) and
            // decide retention (what an interest stream drops, what acks retire).
            std::mem::swap(&mut self.consumers, &mut self.committed);
            let applied = self.apply_op(op);
            std::mem::swap(&mut self.consumers, &mut self.committed);
            return applied;
        }
        let entry = (self.journal.is_some() && is_journaled(&op)).then(|| codec::encode(&op));
        let applied = self.apply_op(op)?;
        if let (Some(entry), Some(journal)) = (entry, &mut self.journal) {
            if !matches!(&applied, Applied::Acked { settled, .. } if settled.is_empty()) {
                journal.push(index, &entry);
            }
        }
        Ok(applied)
    }
}

/// Consumer ops the stream's journal keeps (the others are in the consumers' snapshots).
pub(super) fn is_journaled(op: &Op) -> bool {
    matches!(
        op,
        Op::Ack { .. } | Op::Delivered { .. } | Op::ConsumerReset { .. }
    )
}

/// Ops that change consumers only.
fn is_consumer_op(op: &Op) -> bool {
    matches!(
        op,
        Op::Ack { .. }
            | Op::Delivered { .. }
            | Op::ConsumerReset { .. }
            | Op::ConsumerCreate { .. }
            | Op::ConsumerDelete { .. }
    )
}

impl Stream {
    /// Applies one op to the state (also the journal's replay).
    fn apply_op(&mut self, op: Op) -> Result<Applied, ApiError> {
        let store_err = |e: crate::store::StoreError| ApiError::store_failed(&e.to_string());
        match op {
            Op::Append {
                seq: assigned,
                subject,
                headers,
                payload,
                time,
                msg_id,
                rollup,
                expect,
            } => {
                let next = self.store.last_seq() + 1;
                // 0: the next sequence, whatever it is when the op applies (a replicated
                // stream's leader proposes appends without knowing what commits before them).
                let assigned = if assigned == 0 { next } else { assigned };
                if assigned < next || self.sourced_before(headers.as_deref()) {
                    return Ok(Applied::Skipped);
                }
                if assigned > next {
                    // A mirror keeps its origin's sequences: the origin's gap is its gap.
                    if self.config.mirror.is_none() {
                        return Err(ApiError::sequence_mismatch());
                    }
                    self.store.skip_to(assigned).map_err(store_err)?;
                }
                if let Some(seq) = msg_id.as_deref().and_then(|id| self.duplicate_of(id, time)) {
                    return Ok(Applied::Duplicate(seq));
                }
                self.unmet(&expect, &subject)?;
                let payload = if self.config.allow_msg_counter {
                    self.counted(&subject, headers.as_deref())?
                } else {
                    payload
                };
                let seq = self
                    .store
                    .append(&subject, headers.as_deref(), &payload, time)
                    .map_err(store_err)?;
                self.track_ttl(headers.as_deref(), seq, time);
                self.note_sourced(headers.as_deref());
                // The window moves with the ops' own times, so every replica forgets the
                // same ids at the same op.
                self.dedup.expire(time, self.config.duplicate_window);
                if let Some(id) = msg_id {
                    self.dedup.insert(id.clone(), seq, time);
                    self.last_msg_id = Some(id);
                }
                match rollup {
                    Some(Rollup::Subject) => {
                        self.store
                            .purge(Some(&subject), Some(seq), None)
                            .map_err(store_err)?;
                    }
                    Some(Rollup::All) => {
                        self.store.purge(None, Some(seq), None).map_err(store_err)?;
                    }
                    None => {}
                }
                self.track_schedule(&subject, headers.as_deref(), seq, time)
                    .map_err(store_err)?;
                self.enforce_limits(&subject).map_err(store_err)?;
                self.drop_uninterested(seq, &subject).map_err(store_err)?;
                Ok(Applied::Stored(seq))
            }
            Op::Delete { seq } => {
                let removed = self.store.remove(seq).map_err(store_err)?;
                Ok(Applied::Deleted(removed))
            }
            Op::Purge { filter, seq, keep } => {
                let n = self
                    .store
                    .purge(filter.as_deref(), seq, keep)
                    .map_err(store_err)?;
                Ok(Applied::Purged(n))
            }
            Op::Expire { before } => self.apply_expire(before),
            Op::ExpireTtl { now } => self.apply_expire_ttl(now),
            Op::UpdateConfig(cfg) => {
                self.config = *cfg;
                self.transform = self.config.subject_transform();
                if !self.config.allow_atomic {
                    // Leader-local staging, not replicated state: nothing to agree on.
                    self.batches = atomic::Batches::default();
                }
                self.enforce_all_limits().map_err(store_err)?;
                Ok(Applied::Done)
            }
            Op::ConsumerCreate {
                name,
                config,
                created,
            } => {
                match self.consumers.get_mut(&name) {
                    Some(existing) => existing.set_config(*config, &self.config.subjects),
                    None => {
                        let start = config
                            .opt_start_time
                            .as_deref()
                            .and_then(super::time::parse_rfc3339);
                        let c = Consumer::new(
                            name.clone(),
                            *config,
                            self.store.as_ref(),
                            start,
                            &self.config.subjects,
                            created,
                        );
                        self.consumers.insert(name, c);
                    }
                }
                Ok(Applied::Done)
            }
            Op::ConsumerDelete { name } => {
                self.consumers.remove(&name);
                if let Some(dir) = &self.dir {
                    let _ =
                        std::fs::remove_file(dir.join("consumers").join(format!("{name}.json")));
                }
                Ok(Applied::Done)
            }
            Op::Ack {
                consumer,
                seq,
                kind,
            } => self.apply_ack(&consumer, seq, kind).map_err(store_err),
            Op::Delivered {
                consumer,
                deliveries,
            } => {
                if let Some(c) = self.consumers.get_mut(&consumer) {
                    c.apply_delivered(&deliveries);
                }
                Ok(Applied::Done)
            }
            Op::ConsumerReset { consumer, seq } => self.apply_reset(&consumer, seq),
        }
    }

    fn enforce_limits(&mut self, subj: &str) -> Result<(), crate::store::StoreError> {
        let cfg = &self.config;
        if cfg.max_msgs_per_subject > 0 {
            if let Some(ss) = self.store.subject_state(subj) {
                if ss.msgs as i64 > cfg.max_msgs_per_subject {
                    self.store
                        .purge(Some(subj), None, Some(cfg.max_msgs_per_subject as u64))?;
                }
            }
        }
        self.enforce_totals()
    }

    fn enforce_totals(&mut self) -> Result<(), crate::store::StoreError> {
        // With discard new, publishes over the limits are refused instead.
        if self.config.discard == Discard::New {
            return Ok(());
        }
        let (max_msgs, max_bytes) = (self.config.max_msgs, self.config.max_bytes);
        loop {
            let st = self.store.state();
            let over = (max_msgs > 0 && st.msgs as i64 > max_msgs)
                || (max_bytes > 0 && st.bytes as i64 > max_bytes);
            if !over || st.msgs == 0 {
                return Ok(());
            }
            let Some(first) = self.store.next_seq_matching(st.first_seq, None) else {
                return Ok(());
            };
            self.store.remove(first)?;
        }
    }

    fn enforce_all_limits(&mut self) -> Result<(), crate::store::StoreError> {
        if self.config.max_msgs_per_subject > 0 {
            let keep = self.config.max_msgs_per_subject as u64;
            for (subj, st) in self.store.subjects_matching(">") {
                if st.msgs > keep {
                    self.store.purge(Some(&subj), None, Some(keep))?;
                }
            }
        }
        self.enforce_totals()
    }
}
