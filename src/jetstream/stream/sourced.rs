//! What a mirror or source brings in (see `jetstream::sourcing`), as the stream stores it.
//!
//! A mirror stores each message under its origin sequence and time: a gap in the origin (a
//! deleted message) is a gap here. A source's message is stored as a publish, checked by the
//! stream's limits but not as a client's (its origin checked it), stamped with the
//! `Nats-Stream-Source` header; apply keeps, per source, the last origin sequence stored, and
//! stores nothing at or below it: a message a link receives twice (after a restart, a
//! recreated consumer) is stored once.

use super::{Decision, From, Op, Rollup, Stream};

/// How often at most the sources' positions are written between shutdowns.
const SAVE_EVERY: std::time::Duration = std::time::Duration::from_secs(1);
use crate::jetstream::errors::ApiError;
use crate::jetstream::headers;
use crate::jetstream::sourcing::Sourced;

impl Stream {
    /// The op that stores what a link brought; `None` when it is stored already (or a
    /// `Nats-Msg-Id` duplicate); the error when the stream refuses it.
    pub fn sourced_op(&mut self, s: &Sourced) -> Result<Option<Op>, ApiError> {
        if s.refused.load(std::sync::atomic::Ordering::Acquire) != 0 {
            // An earlier message of its session was refused: the link starts over from
            // there, and nothing after it may be stored first.
            return Ok(None);
        }
        let m = &s.message;
        if s.source.is_none() {
            return self.mirrored_op(s);
        }
        if self.sourced_before(m.headers.as_deref()) {
            return Ok(None);
        }
        let decision =
            self.check_publish_from(&m.subject, m.headers.as_deref(), &m.payload, From::Source)?;
        Ok(match decision {
            Decision::Append(op) => Some(op),
            Decision::Duplicate(_) => None,
        })
    }

    /// A mirror's copy: the origin's sequence and time, its rollup carried out, nothing else
    /// checked but the size (the origin checked it).
    fn mirrored_op(&self, s: &Sourced) -> Result<Option<Op>, ApiError> {
        if s.seq <= self.store.last_seq() {
            return Ok(None);
        }
        let m = &s.message;
        let hdrs = m.headers.as_deref();
        let size = m.payload.len() + hdrs.map_or(0, <[u8]>::len);
        if self.config.max_msg_size >= 0 && size as i64 > self.config.max_msg_size {
            return Err(ApiError::message_too_large());
        }
        let rollup = match hdrs.and_then(|h| headers::get(h, headers::ROLLUP)) {
            Some("sub") => Some(Rollup::Subject),
            Some("all") => Some(Rollup::All),
            _ => None,
        };
        Ok(Some(Op::Append {
            seq: s.seq,
            subject: m.subject.clone(),
            headers: hdrs.map(<[u8]>::to_vec),
            payload: m.payload.to_vec(),
            time: s.time,
            msg_id: None,
            rollup,
            expect: Default::default(),
        }))
    }

    /// Where the stream's copy from `source` stands (a mirror: `None`, its own last
    /// sequence), where its link resumes.
    pub fn sourced_up_to(&self, source: Option<&str>) -> Position {
        match source {
            None => Position {
                seq: self.store.last_seq(),
                ident: String::new(),
            },
            Some(s) => self.sources_applied.get(s).cloned().unwrap_or_default(),
        }
    }

    /// Inside apply: whether an append carrying `hdrs` is a source's message stored already
    /// (at or below the source's position, from the same origin: a recreated origin starts
    /// over).
    pub(super) fn sourced_before(&self, hdrs: Option<&[u8]>) -> bool {
        if self.config.sources.is_none() {
            return false;
        }
        source_of(hdrs).is_some_and(|(source, at)| {
            self.sources_applied
                .get(&source)
                .is_some_and(|last| at.seq <= last.seq && last.same_origin(&at.ident))
        })
    }

    /// Inside apply: notes the origin sequence of a source's message just stored.
    pub(super) fn note_sourced(&mut self, hdrs: Option<&[u8]>) {
        if self.config.sources.is_none() {
            return;
        }
        if let Some((source, at)) = source_of(hdrs) {
            self.sources_applied.insert(source, at);
            self.sources_changed = true;
        }
    }

    /// Writes the sources' positions to `sources.json` when they changed and the last write is
    /// older than [`SAVE_EVERY`] (after a commit): a crash then loses at most that much of
    /// them, and only for messages the stream no longer holds either (the rest are found
    /// again by [`Stream::rebuild_sourced`]); a source would copy those again.
    pub fn save_sourced(&mut self) {
        let Some(dir) = &self.dir else { return };
        if !self.sources_changed || self.sources_saved.is_some_and(|t| t.elapsed() < SAVE_EVERY) {
            return;
        }
        let json = serde_json::to_vec(&self.sources_applied).unwrap_or_default();
        let (tmp, path) = (dir.join("sources.json.tmp"), dir.join("sources.json"));
        let res = super::write_file(&tmp, &json).and_then(|_| std::fs::rename(&tmp, &path));
        if let Err(e) = res {
            tracing::warn!(stream = %self.config.name, "can't save the sources' positions: {e}");
        }
        self.sources_changed = false;
        self.sources_saved = Some(std::time::Instant::now());
    }

    /// Takes the positions [`Stream::save_sourced`] last wrote where they are ahead of what
    /// the messages show.
    pub(super) fn load_sourced(&mut self) {
        let Some(path) = self.dir.as_ref().map(|d| d.join("sources.json")) else {
            return;
        };
        let saved: std::collections::BTreeMap<String, Position> = std::fs::read(&path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        for (source, saved) in saved {
            let at = self.sources_applied.entry(source).or_insert(saved.clone());
            // What the messages show of a recreated origin is newer than any saved position.
            if at.same_origin(&saved.ident) && saved.seq > at.seq {
                *at = saved;
            }
        }
    }

    /// Re-reads the sources' positions from the messages after `after` (a stream with
    /// sources whose saved state did not cover them).
    pub(super) fn rebuild_sourced(&mut self, after: u64) {
        if self.config.sources.is_none() {
            return;
        }
        let mut seq = after;
        while let Some(next) = self.store.next_seq_matching(seq, None) {
            if let Ok(Some(m)) = self.store.get(next) {
                self.note_sourced(m.headers.as_deref());
            }
            seq = next + 1;
        }
    }
}

/// How far a stream copied from one source: the last origin sequence stored, and the
/// origin's identity (a hash of its creation time; empty when unknown).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct Position {
    pub seq: u64,
    #[serde(default)]
    pub ident: String,
}

impl Position {
    /// Whether `ident` names the same origin (an unknown identity is taken to).
    pub fn same_origin(&self, ident: &str) -> bool {
        self.ident.is_empty() || ident.is_empty() || self.ident == ident
    }
}

/// The source (its index name) and position a `Nats-Stream-Source` header names:
/// `<stream> <seq> <filter> <dest> <subject> [<origin identity>]`.
fn source_of(hdrs: Option<&[u8]>) -> Option<(String, Position)> {
    let v = headers::get(hdrs?, headers::STREAM_SOURCE)?;
    let f: Vec<&str> = v.split(' ').collect();
    if f.len() < 4 {
        return None;
    }
    let seq = f[1].parse().ok()?;
    let ident = f.get(5).map_or_else(String::new, |s| (*s).to_string());
    Some((
        format!("{} {} {}", f[0], f[2], f[3]),
        Position { seq, ident },
    ))
}
