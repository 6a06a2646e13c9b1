//! Direct gets (`$JS.API.DIRECT.GET.<stream>[.<subject>]`): stored messages answered as plain
//! messages with `Nats-Stream`/`Nats-Subject`/`Nats-Sequence`/`Nats-Time-Stamp` headers, the
//! way Key-Value clients read keys.
//!
//! A single get (by sequence, last by subject, next by subject, literal subjects) is answered
//! right where the request arrives — on the requesting connection's task — through a
//! [`StoreReader`], without a hop to the stream's thread ([`handler`]). Batched, multi-last and
//! wildcard gets, which walk the index, and gets that find the store locked (a segment roll),
//! go to the stream's thread, which answers them with [`get`].
//!
//! Ordering, as with nats-server: a get answered here sees every publish that was acknowledged
//! before it was sent, but may overtake a publish still queued for the stream (pipelined without
//! waiting for its ack), an earlier batched get to the same inbox, and a message can be seen
//! between its append and its batch's fdatasync.

use serde::Deserialize;

use super::consumer::{status, Outgoing};
use super::headers;
use super::runner::Input;
use super::time::rfc3339;
use crate::protocol::subject::has_wildcard;
use crate::server::{Client, InternalHandler, Message};
use crate::store::{MsgStore, StoreReader, StoredMsg};

/// A `STREAM.MSG.GET` or `DIRECT.GET` request body.
#[derive(Deserialize, Default)]
pub(crate) struct MsgGetReq {
    pub seq: Option<u64>,
    pub last_by_subj: Option<String>,
    pub next_by_subj: Option<String>,
    #[serde(default)]
    pub batch: u64,
    #[serde(default)]
    pub max_bytes: u64,
    #[serde(default)]
    pub multi_last: Vec<String>,
    pub up_to_seq: Option<u64>,
    /// The first message at or after this time (RFC 3339).
    pub start_time: Option<String>,
    /// Multi-last: only messages up to this time.
    pub up_to_time: Option<String>,
    /// Only the payload: no headers at all.
    #[serde(default)]
    pub no_hdr: bool,
}

/// Most messages one multi-last get answers.
const MAX_MULTI: usize = 1024;

impl MsgGetReq {
    /// The request for `$JS.API.DIRECT.GET.<stream>.<subj>` (subject form) or the JSON body,
    /// checked as nats-server checks it; `Err` is the 408 status text to answer.
    fn from_request(subj: Option<&str>, body: &[u8]) -> Result<MsgGetReq, &'static str> {
        let blank = body.iter().all(u8::is_ascii_whitespace);
        let parsed = || serde_json::from_slice::<MsgGetReq>(body).map_err(|_| "Malformed Request");
        let Some(subj) = subj else {
            if blank {
                return Err("Empty Request");
            }
            let req = parsed()?;
            return req.check().map(|()| req);
        };
        let req = if blank {
            MsgGetReq::default()
        } else {
            parsed()?
        };
        let extra = req.last_by_subj.is_some()
            || req.next_by_subj.is_some()
            || !req.multi_last.is_empty()
            || req.seq.unwrap_or(0) != 0
            || req.batch != 0
            || req.start_time.is_some()
            || req.up_to_seq.unwrap_or(0) != 0
            || req.up_to_time.is_some();
        if extra || subj.is_empty() {
            return Err("Bad Request");
        }
        Ok(MsgGetReq {
            last_by_subj: Some(subj.to_string()),
            ..req
        })
    }

    /// Nothing asked for, or options that do not go together.
    fn check(&self) -> Result<(), &'static str> {
        let seq = self.seq.unwrap_or(0) > 0;
        let (last, next) = (self.last_by_subj.is_some(), self.next_by_subj.is_some());
        let (multi, start) = (!self.multi_last.is_empty(), self.start_time.is_some());
        if !seq && !last && !next && !multi && !start {
            return Err("Empty Request");
        }
        // At most one of seq, last_by_subj and start_time; last_by_subj alone; no next with
        // multi_last; not both up_to limits.
        let starts = [seq, last, start].iter().filter(|b| **b).count();
        let conflict = starts > 1
            || (last && (next || self.batch > 0 || multi))
            || (next && multi)
            || (self.up_to_seq.unwrap_or(0) > 0 && self.up_to_time.is_some());
        if conflict {
            return Err("Bad Request");
        }
        Ok(())
    }

    /// Where the get starts: `start_time`'s first sequence, else `seq`.
    fn start(&self, store: &dyn MsgStore) -> Option<u64> {
        match self
            .start_time
            .as_deref()
            .and_then(super::time::parse_rfc3339)
        {
            Some(t) => Some(store.seq_for_time(t)),
            None => self.seq,
        }
    }

    fn is_single(&self) -> bool {
        self.batch == 0 && self.multi_last.is_empty()
    }

    /// A single get that is one index lookup (no wildcard to match against every subject):
    /// cheap enough to answer on a connection's task.
    fn is_lookup(&self) -> bool {
        let literal = |s: &Option<String>| s.as_deref().is_none_or(|s| !has_wildcard(s.as_bytes()));
        self.is_single() && literal(&self.last_by_subj) && literal(&self.next_by_subj)
    }
}

/// What a replica does with a direct get.
pub(crate) enum Serve {
    /// Answer it (a single server, or the leader holding its read lease).
    Answer,
    /// Hand it to the stream's runner (a leader waiting for its lease).
    Forward,
    /// Leave it to the replica that answers.
    Ignore,
}

/// The internal subscription handler for a stream's direct-get subjects: single gets are
/// answered in place from `reader`; anything else (and any request once the store is closed)
/// is queued to the stream's thread with `forward`. See [`Serve`] for what a replica of a
/// replicated stream answers.
pub(crate) fn handler(
    stream: String,
    reader: StoreReader,
    client: Client,
    serve: impl Fn() -> Serve + Send + Sync + 'static,
    forward: impl Fn(Input) -> bool + Send + Sync + 'static,
) -> InternalHandler {
    let prefix = format!("$JS.API.DIRECT.GET.{stream}.");
    std::sync::Arc::new(move |m: Message| {
        match serve() {
            Serve::Ignore => return true,
            Serve::Forward => {
                let subj = m.subject.strip_prefix(&prefix).map(str::to_string);
                return forward(Input::Api(super::api::Call::DirectGet(subj), m));
            }
            Serve::Answer => {}
        }
        let subj = m.subject.strip_prefix(&prefix).map(str::to_string);
        // Without a reply subject there is nobody to answer (nats-server ignores it too).
        if let Some(reply) = m.reply.as_deref() {
            if !super::versioning::level_met(m.headers.as_deref()) {
                let o = status(reply, 412, "Required Api Level", &[]);
                client.publish_routed(&o.to, &o.subject, None, o.headers.as_deref(), &[]);
                return true;
            }
            let req = MsgGetReq::from_request(subj.as_deref(), &m.payload);
            let answer = match &req {
                Err(text) => Some(status(reply, 408, text, &[])),
                Ok(req) if req.is_lookup() => reader.try_with(|s| single(&stream, s, req, reply)),
                Ok(_) => None,
            };
            if let Some(o) = answer {
                client.publish_routed(&o.to, &o.subject, None, o.headers.as_deref(), &o.payload);
                return true;
            }
        } else {
            return false;
        }
        forward(Input::Api(super::api::Call::DirectGet(subj), m))
    })
}

/// The message a single get asks for, or its 404.
fn single(stream: &str, store: &dyn MsgStore, req: &MsgGetReq, reply: &str) -> Outgoing {
    let found = find_msg(
        store,
        req.start(store),
        req.last_by_subj.as_deref(),
        req.next_by_subj.as_deref(),
    );
    match found {
        Some(m) if req.no_hdr => Outgoing {
            to: reply.to_string(),
            subject: reply.to_string(),
            reply: None,
            headers: None,
            payload: m.payload.clone(),
        },
        Some(m) => direct_reply(stream, &m, reply, &[]),
        None => status(reply, 404, "Message Not Found", &[]),
    }
}

/// Finds the message a get request names: by sequence, the last on a subject (wildcards
/// allowed) or the next on a subject from a sequence.
pub(crate) fn find_msg(
    store: &dyn MsgStore,
    seq: Option<u64>,
    last: Option<&str>,
    next: Option<&str>,
) -> Option<StoredMsg> {
    let seq = match (seq, last, next) {
        // A literal subject is one lookup in the per-subject index (KV gets take this path).
        (_, Some(subj), _) if !has_wildcard(subj.as_bytes()) => store.last_seq_for_subject(subj)?,
        (_, Some(subj), _) => store
            .subjects_matching(subj)
            .into_iter()
            .map(|(_, st)| st.last_seq)
            .max()?,
        (start, None, Some(subj)) => {
            store.next_seq_matching(start.unwrap_or(0).max(1), Some(subj))?
        }
        (Some(seq), None, None) => seq,
        (None, None, None) => return None,
    };
    store.get(seq).ok().flatten()
}

/// Answers any direct get on the stream's thread: the message(s), or a 404/408 status; a
/// batch ends with a 204 EOB status.
pub(crate) fn get(
    stream: &str,
    store: &dyn MsgStore,
    subj: Option<&str>,
    body: &[u8],
    reply: &str,
    out: &mut Vec<Outgoing>,
) {
    let req = match MsgGetReq::from_request(subj, body) {
        Ok(req) => req,
        Err(text) => {
            out.push(status(reply, 408, text, &[]));
            return;
        }
    };
    if req.is_single() {
        out.push(single(stream, store, &req, reply));
        return;
    }
    if !req.multi_last.is_empty() {
        multi_last(stream, store, &req, reply, out);
        return;
    }
    // Batched: the matching messages in order, then an EOB status.
    let filter = req.next_by_subj.as_deref();
    let mut seqs = Vec::new();
    let mut at = req.start(store).unwrap_or(1).max(1);
    while (seqs.len() as u64) < req.batch {
        match store.next_seq_matching(at, filter) {
            Some(seq) => {
                seqs.push(seq);
                at = seq + 1;
            }
            None => break,
        }
    }
    if seqs.is_empty() {
        out.push(status(reply, 404, "Message Not Found", &[]));
        return;
    }
    let pending_after = |seq: u64| store.count_matching(seq + 1, filter);
    let last = send_all(stream, store, &req, &seqs, reply, out, pending_after);
    let (pending, last) = (pending_after(last).to_string(), last.to_string());
    out.push(status(
        reply,
        204,
        "EOB",
        &[
            ("Nats-Num-Pending", &pending),
            ("Nats-Last-Sequence", &last),
        ],
    ));
}

/// A multi-last get: the last message of each subject the filters match, up to a sequence or
/// a time, in sequence order; 404 No Results for none, 413 past 1024; the EOB names the
/// sequence it read up to.
fn multi_last(
    stream: &str,
    store: &dyn MsgStore,
    req: &MsgGetReq,
    reply: &str,
    out: &mut Vec<Outgoing>,
) {
    let up_to = match req
        .up_to_time
        .as_deref()
        .and_then(super::time::parse_rfc3339)
    {
        Some(t) => {
            let seq = store.seq_for_time(t);
            if seq <= store.state().first_seq {
                out.push(status(reply, 404, "No Results", &[]));
                return;
            }
            seq - 1
        }
        None => match req.up_to_seq.unwrap_or(0) {
            0 => store.last_seq(),
            n => n,
        },
    };
    // Stops as soon as there are too many (each subject may be a walk of its messages).
    let mut found = std::collections::BTreeSet::new();
    'filters: for f in &req.multi_last {
        for (subj, st) in store.subjects_matching(f) {
            if let Some(seq) = last_up_to(store, &subj, &st, up_to) {
                found.insert(seq);
                if found.len() > MAX_MULTI {
                    break 'filters;
                }
            }
        }
    }
    let mut seqs: Vec<u64> = found.into_iter().collect();
    if seqs.len() > MAX_MULTI {
        out.push(status(reply, 413, "Too Many Results", &[]));
        return;
    }
    if seqs.is_empty() {
        out.push(status(reply, 404, "No Results", &[]));
        return;
    }
    let total = seqs.len();
    if req.batch > 0 {
        seqs.truncate(usize::try_from(req.batch).unwrap_or(usize::MAX));
    }
    let index = |seq: u64| seqs.iter().position(|s| *s == seq).map_or(0, |i| i + 1);
    let last = send_all(stream, store, req, &seqs, reply, out, |seq| {
        (total - index(seq)) as u64
    });
    let pending = (total - index(last)).to_string();
    let (last, up_to) = (last.to_string(), up_to.to_string());
    out.push(status(
        reply,
        204,
        "EOB",
        &[
            ("Nats-Num-Pending", &pending),
            ("Nats-Last-Sequence", &last),
            ("Nats-UpTo-Sequence", &up_to),
        ],
    ));
}

/// The last sequence of `subject` (whose state is `st`) at or before `up_to`.
fn last_up_to(
    store: &dyn MsgStore,
    subject: &str,
    st: &crate::store::SubjectState,
    up_to: u64,
) -> Option<u64> {
    if st.last_seq <= up_to {
        return Some(st.last_seq);
    }
    let mut found = None;
    let mut at = st.first_seq;
    while let Some(seq) = store.next_seq_matching(at, Some(subject)) {
        if seq > up_to {
            break;
        }
        found = Some(seq);
        at = seq + 1;
    }
    found
}

/// Sends the messages `seqs` of a batched get, each with its pending count and the sequence
/// sent before it, until `max_bytes` (subject, headers and data) is reached; returns the last
/// sequence sent.
fn send_all(
    stream: &str,
    store: &dyn MsgStore,
    req: &MsgGetReq,
    seqs: &[u64],
    reply: &str,
    out: &mut Vec<Outgoing>,
    pending_after: impl Fn(u64) -> u64,
) -> u64 {
    // Without a limit, nats-server's default pending limit for a client (64 MiB).
    let max_bytes = if req.max_bytes > 0 {
        req.max_bytes
    } else {
        64 << 20
    };
    let mut bytes = 0u64;
    let mut last = 0u64;
    for &seq in seqs {
        let Ok(Some(m)) = store.get(seq) else {
            continue;
        };
        let (pending, prev) = (pending_after(seq).to_string(), last.to_string());
        let extra = [
            ("Nats-Num-Pending", pending.as_str()),
            ("Nats-Last-Sequence", prev.as_str()),
        ];
        let mut o = direct_reply(stream, &m, reply, &extra);
        if req.no_hdr {
            o.headers = None;
        }
        out.push(o);
        last = seq;
        bytes +=
            (m.subject.len() + m.payload.len() + m.headers.as_ref().map_or(0, |h| h.len())) as u64;
        if bytes >= max_bytes {
            break;
        }
    }
    last
}

fn direct_reply(stream: &str, m: &StoredMsg, reply: &str, extra: &[(&str, &str)]) -> Outgoing {
    let seq = m.seq.to_string();
    let ts = rfc3339(m.time);
    let mut pairs = vec![
        ("Nats-Stream", stream),
        ("Nats-Subject", m.subject.as_str()),
        ("Nats-Sequence", seq.as_str()),
        ("Nats-Time-Stamp", ts.as_str()),
    ];
    pairs.extend_from_slice(extra);
    Outgoing {
        to: reply.to_string(),
        subject: reply.to_string(),
        reply: None,
        headers: Some(headers::append(m.headers.as_deref(), &pairs)),
        payload: m.payload.clone(),
    }
}
