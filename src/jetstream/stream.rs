//! One stream: its configuration, its store, its consumers and the de-duplication window.
//!
//! Every state change goes through [`Stream::apply`] with an [`Op`], the unit a replication
//! layer will later agree on; publish checks ([`Stream::check_publish`]) decide which op a
//! publish becomes, or which error it gets, without changing anything.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::config::{ConsumerConfig, Discard, Retention, StreamConfig};
use super::consumer::{Consumer, ConsumerState};
use super::errors::ApiError;
use super::headers;
use super::time::now_nanos;
use crate::store::MsgStore;

/// A state change of a stream. Applying the same ops in the same order to the same starting
/// state gives the same stream: this is what Raft replicates.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) enum Op {
    /// Store a message.
    Append {
        subject: String,
        headers: Option<Vec<u8>>,
        payload: Vec<u8>,
        time: i64,
        msg_id: Option<String>,
        rollup: Option<Rollup>,
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
    /// Replace the configuration.
    UpdateConfig(Box<StreamConfig>),
    /// Add or replace a consumer.
    ConsumerCreate {
        name: String,
        config: Box<ConsumerConfig>,
    },
    /// Remove a consumer.
    ConsumerDelete { name: String },
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
    Deleted(bool),
    Purged(u64),
    Done,
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
}

struct Dedup {
    ids: HashMap<String, (u64, i64)>,
    order: VecDeque<(i64, String)>,
}

impl Dedup {
    fn new() -> Self {
        Self {
            ids: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    fn insert(&mut self, id: String, seq: u64, time: i64) {
        self.order.push_back((time, id.clone()));
        self.ids.insert(id, (seq, time));
    }

    fn expire(&mut self, now: i64, window: i64) {
        while let Some((t, _)) = self.order.front() {
            if now - *t <= window {
                break;
            }
            if let Some((_, id)) = self.order.pop_front() {
                if self.ids.get(&id).is_some_and(|(_, t2)| now - *t2 > window) {
                    self.ids.remove(&id);
                }
            }
        }
    }
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
}

impl Stream {
    pub fn new(
        config: StreamConfig,
        created: i64,
        store: Box<dyn MsgStore>,
        dir: Option<PathBuf>,
    ) -> Self {
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
        };
        let from = s.load_derived();
        s.rebuild_dedup(from);
        s.rebuild_ttl(from);
        s
    }

    /// Saves the de-duplication window and TTL index at shutdown so the next start reads only
    /// what was appended after it (a crash leaves no file, and the next start rescans).
    pub fn save_derived(&self) {
        let Some(dir) = &self.dir else { return };
        let derived = Derived {
            covered: self.store.state().last_seq,
            ids: self
                .dedup
                .ids
                .iter()
                .map(|(id, (seq, t))| (id.clone(), *seq, *t))
                .collect(),
            last_msg_id: self.last_msg_id.clone(),
            ttl: self.ttl.iter().copied().collect(),
        };
        let res = serde_json::to_vec(&derived)
            .map_err(std::io::Error::other)
            .and_then(|json| write_file(&dir.join("derived.json"), &json, true));
        if let Err(e) = res {
            tracing::warn!(stream = %self.config.name, "can't save derived state: {e}");
        }
    }

    /// Loads what [`Stream::save_derived`] wrote (and removes it); returns the first sequence
    /// still to scan.
    fn load_derived(&mut self) -> u64 {
        let Some(path) = self.dir.as_ref().map(|d| d.join("derived.json")) else {
            return 0;
        };
        let derived: Option<Derived> = std::fs::read(&path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok());
        let _ = std::fs::remove_file(&path);
        let Some(d) = derived.filter(|d| d.covered <= self.store.state().last_seq) else {
            return 0;
        };
        for (id, seq, t) in d.ids {
            self.dedup.insert(id, seq, t);
        }
        self.last_msg_id = d.last_msg_id;
        self.ttl = d.ttl.into_iter().collect();
        d.covered + 1
    }

    /// Re-reads the messages of the current duplicate window so `Nats-Msg-Id` de-duplication
    /// survives restarts.
    fn rebuild_dedup(&mut self, after: u64) {
        let now = now_nanos();
        let from = self.store.seq_for_time(now - self.config.duplicate_window);
        let mut seq = from.max(after);
        while let Some(next) = self.store.next_seq_matching(seq, None) {
            if let Ok(Some(m)) = self.store.get(next) {
                if let Some(id) = m
                    .headers
                    .as_deref()
                    .and_then(|h| headers::get(h, headers::MSG_ID))
                {
                    self.dedup.insert(id.to_string(), m.seq, m.time);
                    self.last_msg_id = Some(id.to_string());
                }
            }
            seq = next + 1;
        }
    }

    /// Re-reads the TTLs of live messages (only for streams that allow per-message TTL).
    fn rebuild_ttl(&mut self, after: u64) {
        if !self.config.allow_msg_ttl {
            return;
        }
        let mut seq = after;
        while let Some(next) = self.store.next_seq_matching(seq, None) {
            if let Ok(Some(m)) = self.store.get(next) {
                self.track_ttl(m.headers.as_deref(), m.seq, m.time);
            }
            seq = next + 1;
        }
    }

    fn track_ttl(&mut self, hdrs: Option<&[u8]>, seq: u64, time: i64) {
        if let Some(ttl) = hdrs
            .and_then(|h| headers::get(h, headers::TTL))
            .and_then(parse_ttl)
        {
            if ttl > 0 {
                self.ttl.insert((time.saturating_add(ttl), seq));
            }
        }
    }

    /// Removes messages whose TTL or max_age passed, through [`Stream::apply`]. When the
    /// stream asks for subject delete markers, a subject emptied by expiry gets a marker (an
    /// expiring marker itself leaves none). Returns whether anything changed.
    pub fn expire(&mut self, now: i64) -> Result<bool, ApiError> {
        let marker_ttl = self.config.subject_delete_marker_ttl;
        let mut emptied: Vec<String> = Vec::new();
        let mut changed = false;
        while let Some(&(at, seq)) = self.ttl.iter().next() {
            if at > now {
                break;
            }
            self.ttl.remove(&(at, seq));
            let Ok(Some(m)) = self.store.get(seq) else {
                continue;
            };
            if marker_ttl > 0 && !is_marker(m.headers.as_deref()) {
                emptied.push(m.subject);
            }
            changed |= matches!(self.apply(Op::Delete { seq })?, Applied::Deleted(true));
        }
        if self.config.max_age > 0 {
            let before = now - self.config.max_age;
            if marker_ttl > 0 {
                let mut seq = 0;
                while let Some(next) = self.store.next_seq_matching(seq, None) {
                    match self.store.get(next) {
                        Ok(Some(m)) if m.time >= before => break,
                        Ok(Some(m)) if !is_marker(m.headers.as_deref()) => emptied.push(m.subject),
                        _ => {}
                    }
                    seq = next + 1;
                }
            }
            changed |= matches!(self.apply(Op::Expire { before })?, Applied::Purged(n) if n > 0);
        }
        emptied.sort();
        emptied.dedup();
        let ttl = format!("{}s", (marker_ttl / 1_000_000_000).max(1));
        for subject in emptied {
            if self.store.subject_state(&subject).is_some() {
                continue;
            }
            let hdrs = headers::build(
                None,
                &[("Nats-Marker-Reason", "MaxAge"), (headers::TTL, &ttl)],
            );
            self.apply(Op::Append {
                subject,
                headers: Some(hdrs),
                payload: Vec::new(),
                time: now,
                msg_id: None,
                rollup: None,
            })?;
            changed = true;
        }
        Ok(changed)
    }

    /// The republished copy of a just-stored message, if the stream's `republish` matches it.
    pub fn republish(
        &self,
        seq: u64,
        m: &crate::server::Message,
    ) -> Option<super::consumer::Outgoing> {
        let rp = self.config.republish.as_ref()?;
        let src = rp.get("src").and_then(|v| v.as_str()).unwrap_or(">");
        let dest = rp.get("dest").and_then(|v| v.as_str())?;
        let headers_only = rp
            .get("headers_only")
            .and_then(|v| v.as_bool())
            .unwrap_or(false);
        let to = map_subject(src, dest, &m.subject)?;
        let seq_s = seq.to_string();
        let size = m.payload.len().to_string();
        let mut pairs = vec![
            ("Nats-Stream", self.config.name.as_str()),
            ("Nats-Subject", m.subject.as_str()),
            ("Nats-Sequence", seq_s.as_str()),
        ];
        let last = seq.saturating_sub(1).to_string();
        pairs.push(("Nats-Last-Sequence", last.as_str()));
        if headers_only {
            pairs.push(("Nats-Msg-Size", size.as_str()));
        }
        Some(super::consumer::Outgoing {
            to: to.clone(),
            subject: to,
            reply: None,
            headers: Some(headers::append(m.headers.as_deref(), &pairs)),
            payload: if headers_only {
                bytes::Bytes::new()
            } else {
                m.payload.clone()
            },
        })
    }

    /// Earliest pending TTL expiry.
    pub fn next_ttl(&self) -> Option<i64> {
        self.ttl.iter().next().map(|(at, _)| *at)
    }

    pub fn name(&self) -> &str {
        &self.config.name
    }

    /// Checks a publish against the stream's rules and expectations; returns the op to apply.
    pub fn check_publish(
        &mut self,
        subj: &str,
        hdrs: Option<&[u8]>,
        payload: &[u8],
    ) -> Result<Decision, ApiError> {
        let cfg = &self.config;
        if cfg.sealed {
            return Err(ApiError::sealed());
        }
        let size = payload.len() + hdrs.map_or(0, <[u8]>::len);
        if cfg.max_msg_size >= 0 && size as i64 > cfg.max_msg_size {
            return Err(ApiError::message_too_large());
        }
        let get = |k: &str| hdrs.and_then(|h| headers::get(h, k));
        let now = now_nanos();
        let msg_id = get(headers::MSG_ID).filter(|s| !s.is_empty());
        if let Some(id) = msg_id {
            self.dedup.expire(now, cfg.duplicate_window);
            if let Some(&(seq, _)) = self.dedup.ids.get(id) {
                return Ok(Decision::Duplicate(seq));
            }
        }
        if let Some(expected) = get(headers::EXPECTED_STREAM) {
            if expected != cfg.name {
                return Err(ApiError::expected_stream_mismatch());
            }
        }
        let state = self.store.state();
        if let Some(v) = get(headers::EXPECTED_LAST_SEQ) {
            let want: u64 = v
                .parse()
                .map_err(|_| ApiError::bad_request("invalid expected last sequence"))?;
            if want != state.last_seq {
                return Err(ApiError::wrong_last_sequence(state.last_seq));
            }
        }
        if let Some(v) = get(headers::EXPECTED_LAST_SUBJ_SEQ) {
            let want: u64 = v
                .parse()
                .map_err(|_| ApiError::bad_request("invalid expected last subject sequence"))?;
            let on = get(headers::EXPECTED_LAST_SUBJ_SEQ_SUBJ).unwrap_or(subj);
            let last = self.store.last_seq_for_subject(on).unwrap_or(0);
            if want != last {
                return Err(ApiError::wrong_last_sequence(last));
            }
        }
        if let Some(v) = get(headers::EXPECTED_LAST_MSG_ID) {
            if self.last_msg_id.as_deref() != Some(v) {
                return Err(ApiError::wrong_last_msg_id(
                    self.last_msg_id.as_deref().unwrap_or(""),
                ));
            }
        }
        let rollup = match get(headers::ROLLUP) {
            None => None,
            Some(r) => {
                if !cfg.allow_rollup_hdrs {
                    return Err(ApiError::rollup_not_allowed());
                }
                match r {
                    "sub" => Some(Rollup::Subject),
                    "all" => {
                        if cfg.deny_purge {
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
        if let Some(ttl) = get(headers::TTL) {
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
            subject: subj.to_string(),
            headers: hdrs.map(<[u8]>::to_vec),
            payload: payload.to_vec(),
            time: now,
            msg_id: msg_id.map(str::to_string),
            rollup,
        }))
    }

    /// Applies one state change.
    pub fn apply(&mut self, op: Op) -> Result<Applied, ApiError> {
        let store_err = |e: crate::store::StoreError| ApiError::store_failed(&e.to_string());
        match op {
            Op::Append {
                subject,
                headers,
                payload,
                time,
                msg_id,
                rollup,
            } => {
                let seq = self
                    .store
                    .append(&subject, headers.as_deref(), &payload, time)
                    .map_err(store_err)?;
                self.track_ttl(headers.as_deref(), seq, time);
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
                self.enforce_limits(&subject).map_err(store_err)?;
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
            Op::Expire { before } => {
                let n = self.store.expire_older_than(before).map_err(store_err)?;
                Ok(Applied::Purged(n))
            }
            Op::UpdateConfig(cfg) => {
                self.config = *cfg;
                self.enforce_all_limits().map_err(store_err)?;
                Ok(Applied::Done)
            }
            Op::ConsumerCreate { name, config } => {
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

    /// Removes messages every interested consumer has acknowledged (interest and workqueue
    /// retention).
    pub fn retire_acked(&mut self, seqs: &[u64]) -> Result<bool, crate::store::StoreError> {
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
                    && (c.state.pending.contains_key(&seq) || c.state.sseq < seq)
            });
            if !still_wanted {
                removed |= self.store.remove(seq)?;
            }
        }
        Ok(removed)
    }

    /// For interest retention: drops a just-stored message no consumer is interested in.
    pub fn drop_uninterested(
        &mut self,
        seq: u64,
        subj: &str,
    ) -> Result<(), crate::store::StoreError> {
        if self.config.retention == Retention::Interest
            && !self.consumers.values().any(|c| c.matches(subj))
        {
            self.store.remove(seq)?;
        }
        Ok(())
    }

    /// Persists the consumers whose state changed (write-to-temp and rename; with `durable`,
    /// the file is fsynced before the rename).
    pub fn persist_consumers(&mut self, durable: bool) {
        let Some(dir) = &self.dir else {
            for c in self.consumers.values_mut() {
                c.dirty = false;
            }
            return;
        };
        let cdir = dir.join("consumers");
        for c in self.consumers.values_mut().filter(|c| c.dirty) {
            c.dirty = false;
            if c.config.durable_name.is_none() {
                continue;
            }
            let rec = ConsumerRecord {
                config: c.config.clone(),
                created: c.created,
                state: c.state.clone(),
            };
            let Ok(json) = serde_json::to_vec(&rec) else {
                continue;
            };
            let tmp = cdir.join(format!("{}.json.tmp", c.name));
            let dst = cdir.join(format!("{}.json", c.name));
            let res = std::fs::create_dir_all(&cdir)
                .and_then(|_| write_file(&tmp, &json, durable))
                .and_then(|_| std::fs::rename(&tmp, &dst));
            if let Err(e) = res {
                tracing::error!(stream = %self.config.name, consumer = %c.name, "can't persist consumer state: {e}");
            }
        }
    }

    /// Loads persisted durable consumers.
    pub fn load_consumers(&mut self) {
        let Some(dir) = &self.dir else { return };
        let Ok(entries) = std::fs::read_dir(dir.join("consumers")) else {
            return;
        };
        for e in entries.flatten() {
            let path = e.path();
            if path.extension().and_then(|x| x.to_str()) != Some("json") {
                continue;
            }
            let rec: ConsumerRecord = match std::fs::read(&path)
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok())
            {
                Some(r) => r,
                None => {
                    tracing::error!(path = %path.display(), "unreadable consumer state; skipped");
                    continue;
                }
            };
            let Some(name) = rec.config.effective_name().map(str::to_string) else {
                continue;
            };
            let mut c = Consumer::new(
                name.clone(),
                rec.config,
                self.store.as_ref(),
                None,
                &self.config.subjects,
            );
            c.restore(rec.state, rec.created);
            self.consumers.insert(name, c);
        }
    }
}

/// State derived from the log, saved at shutdown to skip rescanning it at start.
#[derive(Serialize, Deserialize)]
struct Derived {
    /// Last sequence the saved state covers.
    covered: u64,
    ids: Vec<(String, u64, i64)>,
    last_msg_id: Option<String>,
    ttl: Vec<(i64, u64)>,
}

#[derive(Serialize, Deserialize)]
struct ConsumerRecord {
    config: ConsumerConfig,
    created: i64,
    state: ConsumerState,
}

/// Parses a `Nats-TTL` value into nanoseconds: a Go duration of at least one second, a number
/// of seconds, or `never` (-1).
pub(crate) fn parse_ttl(v: &str) -> Option<i64> {
    let v = v.trim();
    if v.eq_ignore_ascii_case("never") {
        return Some(-1);
    }
    let d = match v.parse::<u64>() {
        Ok(secs) => std::time::Duration::from_secs(secs),
        Err(_) => crate::config::parse_duration(v)?,
    };
    (d >= std::time::Duration::from_secs(1)).then_some(d.as_nanos() as i64)
}

fn write_file(path: &std::path::Path, data: &[u8], durable: bool) -> std::io::Result<()> {
    use std::io::Write;
    let mut f = std::fs::File::create(path)?;
    f.write_all(data)?;
    if durable {
        f.sync_data()?;
    }
    Ok(())
}

/// Maps `subject` matched by `src` onto `dest`: wildcards of `dest` (`*`, `>`, `$N`,
/// `{{wildcard(N)}}`) take the tokens captured by `src`'s wildcards, in order.
pub(crate) fn map_subject(src: &str, dest: &str, subject: &str) -> Option<String> {
    if !crate::protocol::subject::matches(src, subject) {
        return None;
    }
    let stoks: Vec<&str> = subject.split('.').collect();
    let mut captures: Vec<String> = Vec::new();
    let mut rest: Option<String> = None;
    for (i, t) in src.split('.').enumerate() {
        match t {
            "*" => captures.push(stoks.get(i)?.to_string()),
            ">" => rest = Some(stoks.get(i..)?.join(".")),
            _ => {}
        }
    }
    let mut next = 0;
    let mut out = Vec::new();
    for t in dest.split('.') {
        let idx = t
            .strip_prefix('$')
            .and_then(|n| n.parse::<usize>().ok())
            .or_else(|| {
                t.strip_prefix("{{wildcard(")
                    .and_then(|r| r.strip_suffix(")}}"))
                    .and_then(|n| n.trim().parse::<usize>().ok())
            });
        match (t, idx) {
            (_, Some(n)) => out.push(captures.get(n.checked_sub(1)?)?.clone()),
            ("*", None) => {
                out.push(captures.get(next)?.clone());
                next += 1;
            }
            (">", None) => out.push(rest.clone().unwrap_or_else(|| stoks.join("."))),
            (lit, None) => out.push(lit.to_string()),
        }
    }
    Some(out.join("."))
}

/// True for KV delete/purge markers and server-written delete markers.
fn is_marker(hdrs: Option<&[u8]>) -> bool {
    hdrs.is_some_and(|h| {
        headers::get(h, "KV-Operation").is_some() || headers::get(h, "Nats-Marker-Reason").is_some()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subject_mapping() {
        assert_eq!(
            map_subject(">", "repub.>", "a.b").as_deref(),
            Some("repub.a.b")
        );
        assert_eq!(
            map_subject("$KV.b.>", "rp.>", "$KV.b.k").as_deref(),
            Some("rp.k")
        );
        assert_eq!(
            map_subject("a.*.c", "x.$1", "a.q.c").as_deref(),
            Some("x.q")
        );
        assert_eq!(
            map_subject("a.*", "x.{{wildcard(1)}}", "a.z").as_deref(),
            Some("x.z")
        );
        assert_eq!(map_subject("a.*", "x.y", "b.z"), None);
        assert_eq!(parse_ttl("2s"), Some(2_000_000_000));
        assert_eq!(parse_ttl("5"), Some(5_000_000_000));
        assert_eq!(parse_ttl("never"), Some(-1));
        assert_eq!(parse_ttl("10ms"), None);
    }
}
