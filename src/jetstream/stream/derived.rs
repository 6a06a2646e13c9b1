//! State a stream derives from its log: the `Nats-Msg-Id` de-duplication window, the per-message
//! TTL index (and the message schedules' index, kept by `schedule`) and expiry (TTL and max_age, with subject delete markers), saved at shutdown so a
//! restart rescans only what came after.

use std::collections::{HashMap, VecDeque};

use serde::{Deserialize, Serialize};

use super::persist::write_file;
use super::{Applied, Op, Stream};
use crate::jetstream::errors::ApiError;
use crate::jetstream::headers;
use crate::jetstream::time::now_nanos;

impl Stream {
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
            schedules: self.schedules.export(),
            sources: self.sources_applied.clone(),
        };
        let res = serde_json::to_vec(&derived)
            .map_err(std::io::Error::other)
            .and_then(|json| write_file(&dir.join("derived.json"), &json));
        if let Err(e) = res {
            tracing::warn!(stream = %self.config.name, "can't save derived state: {e}");
        }
    }

    /// Reopens the store from disk after a failed write or sync and rebuilds what this stream
    /// derives from it (the dedup window, the TTL index): what the failed batch appended is
    /// gone, and nothing may still point at it.
    pub fn recover(&mut self) -> Result<(), crate::store::StoreError> {
        self.store.reopen()?;
        self.dedup = Dedup::new();
        self.last_msg_id = None;
        self.ttl.clear();
        self.schedules = super::schedule::Schedules::default();
        self.sources_applied.clear();
        self.rebuild_dedup(0);
        self.rebuild_ttl(0);
        self.rebuild_schedules(0);
        self.rebuild_sourced(0);
        Ok(())
    }

    /// Loads what [`Stream::save_derived`] wrote (and removes it); returns the first sequence
    /// still to scan.
    pub(super) fn load_derived(&mut self) -> u64 {
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
        self.schedules = super::schedule::Schedules::import(d.schedules);
        self.sources_applied = d.sources;
        d.covered + 1
    }

    /// Re-reads the messages of the current duplicate window so `Nats-Msg-Id` de-duplication
    /// survives restarts.
    pub(super) fn rebuild_dedup(&mut self, after: u64) {
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
    pub(super) fn rebuild_ttl(&mut self, after: u64) {
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

    pub(super) fn track_ttl(&mut self, hdrs: Option<&[u8]>, seq: u64, time: i64) {
        if let Some(ttl) = hdrs
            .and_then(|h| headers::get(h, headers::TTL))
            .and_then(parse_ttl)
        {
            if ttl > 0 {
                self.ttl.insert((time.saturating_add(ttl), seq));
            }
        }
    }

    /// The expiry ops due at `now`: one `ExpireTtl` when a TTL is due (apply itself pops the
    /// TTL index, so every replica decides the same), one `Expire` for max_age. When the
    /// stream asks for subject delete markers, applying them marks each subject expiry
    /// emptied (an expiring marker itself leaves none). A replicated stream's leader proposes
    /// them; a single server applies them at once ([`Stream::expire`], true if anything
    /// changed).
    pub fn expiry_ops(&self, now: i64) -> Vec<Op> {
        let mut ops = Vec::new();
        if self.next_ttl().is_some_and(|at| at <= now) {
            ops.push(Op::ExpireTtl { now });
        }
        let st = self.store.state();
        let before = now - self.config.max_age;
        if self.config.max_age > 0 && st.msgs > 0 && st.first_time < before {
            ops.push(Op::Expire { before });
        }
        ops
    }

    pub fn expire(&mut self, now: i64) -> Result<bool, ApiError> {
        let mut changed = false;
        for op in self.expiry_ops(now) {
            changed |= matches!(self.apply(op)?, Applied::Purged(n) if n > 0);
        }
        Ok(changed)
    }

    /// Applies `Expire` (max_age): removes what is older than `before` and marks the subjects
    /// that emptied, at the time the op stands for (`before` plus max_age), inside apply so
    /// every replica appends the same markers.
    pub(super) fn apply_expire(&mut self, before: i64) -> Result<Applied, ApiError> {
        let store_err = |e: crate::store::StoreError| ApiError::store_failed(&e.to_string());
        let mut emptied = Vec::new();
        if self.config.subject_delete_marker_ttl > 0 {
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
        let n = self.store.expire_older_than(before).map_err(store_err)?;
        let now = before.saturating_add(self.config.max_age);
        self.add_markers(emptied, now, "MaxAge")?;
        Ok(Applied::Purged(n))
    }

    /// Applies `ExpireTtl`: removes every message whose TTL passed at `now` and marks the
    /// subjects that emptied (inside apply: the TTL index is state every replica derives from
    /// the same appends).
    pub(super) fn apply_expire_ttl(&mut self, now: i64) -> Result<Applied, ApiError> {
        let store_err = |e: crate::store::StoreError| ApiError::store_failed(&e.to_string());
        let mut emptied: Vec<String> = Vec::new();
        let mut removed = 0;
        while let Some(&(at, seq)) = self.ttl.iter().next() {
            if at > now {
                break;
            }
            self.ttl.remove(&(at, seq));
            let Ok(Some(m)) = self.store.get(seq) else {
                continue;
            };
            if self.config.subject_delete_marker_ttl > 0 && !is_marker(m.headers.as_deref()) {
                emptied.push(m.subject);
            }
            removed += u64::from(self.store.remove(seq).map_err(store_err)?);
        }
        self.add_markers(emptied, now, "MaxAge")?;
        Ok(Applied::Purged(removed))
    }

    /// Appends a delete marker (with the stream's marker TTL) on each of `subjects` that holds
    /// no message now; returns whether it appended any.
    fn add_markers(
        &mut self,
        mut subjects: Vec<String>,
        now: i64,
        reason: &str,
    ) -> Result<bool, ApiError> {
        subjects.sort();
        subjects.dedup();
        let ttl = format!(
            "{}s",
            (self.config.subject_delete_marker_ttl / 1_000_000_000).max(1)
        );
        let mut added = false;
        for subject in subjects {
            if self.store.subject_state(&subject).is_some() {
                continue;
            }
            let hdrs = headers::build(
                None,
                &[("Nats-Marker-Reason", reason), (headers::TTL, &ttl)],
            );
            self.apply_op(Op::Append {
                seq: self.store.last_seq() + 1,
                subject,
                headers: Some(hdrs),
                payload: Vec::new(),
                time: now,
                msg_id: None,
                rollup: None,
                expect: super::Expect::default(),
            })?;
            added = true;
        }
        Ok(added)
    }

    /// Earliest pending TTL expiry.
    pub fn next_ttl(&self) -> Option<i64> {
        self.ttl.iter().next().map(|(at, _)| *at)
    }
}

#[derive(Clone)]
pub(super) struct Dedup {
    pub(super) ids: HashMap<String, (u64, i64)>,
    order: VecDeque<(i64, String)>,
}

impl Dedup {
    pub(super) fn new() -> Self {
        Self {
            ids: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    pub(super) fn insert(&mut self, id: String, seq: u64, time: i64) {
        self.order.push_back((time, id.clone()));
        self.ids.insert(id, (seq, time));
    }

    /// The window as (arrival order, ids): what [`Dedup::import`] rebuilds it from.
    pub(super) fn export(&self) -> DedupImage {
        DedupImage {
            order: self.order.iter().cloned().collect(),
            ids: self
                .ids
                .iter()
                .map(|(id, (seq, t))| (id.clone(), *seq, *t))
                .collect(),
        }
    }

    /// The window [`Dedup::export`] saw.
    pub(super) fn import(image: DedupImage) -> Dedup {
        Dedup {
            order: image.order.into(),
            ids: image
                .ids
                .into_iter()
                .map(|(id, seq, t)| (id, (seq, t)))
                .collect(),
        }
    }

    pub(super) fn expire(&mut self, now: i64, window: i64) {
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

/// A de-duplication window as a snapshot carries it.
#[derive(Serialize, Deserialize, Default)]
pub(super) struct DedupImage {
    order: Vec<(i64, String)>,
    ids: Vec<(String, u64, i64)>,
}

/// State derived from the log, saved at shutdown to skip rescanning it at start.
#[derive(Serialize, Deserialize)]
struct Derived {
    /// Last sequence the saved state covers.
    covered: u64,
    ids: Vec<(String, u64, i64)>,
    last_msg_id: Option<String>,
    ttl: Vec<(i64, u64)>,
    /// Message schedules as (subject, due, seq).
    #[serde(default)]
    schedules: Vec<(String, i64, u64)>,
    /// Per source (index name), how far it was copied.
    #[serde(default)]
    sources: std::collections::BTreeMap<String, super::sourced::Position>,
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

/// True for KV delete/purge markers and server-written delete markers.
fn is_marker(hdrs: Option<&[u8]>) -> bool {
    hdrs.is_some_and(|h| {
        headers::get(h, "KV-Operation").is_some() || headers::get(h, "Nats-Marker-Reason").is_some()
    })
}
