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
}

impl MsgGetReq {
    /// The request for `$JS.API.DIRECT.GET.<stream>.<subj>` (subject form) or the JSON body.
    fn from_request(subj: Option<&str>, body: &[u8]) -> Option<MsgGetReq> {
        match subj {
            Some(subj) => Some(MsgGetReq {
                last_by_subj: Some(subj.to_string()),
                ..MsgGetReq::default()
            }),
            None => serde_json::from_slice(body).ok(),
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
            let req = MsgGetReq::from_request(subj.as_deref(), &m.payload);
            let answer = match &req {
                None => Some(status(reply, 408, "Bad Request", &[])),
                Some(req) if req.is_lookup() => reader.try_with(|s| single(&stream, s, req, reply)),
                Some(_) => None,
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
        req.seq,
        req.last_by_subj.as_deref(),
        req.next_by_subj.as_deref(),
    );
    match found {
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
    let Some(req) = MsgGetReq::from_request(subj, body) else {
        out.push(status(reply, 408, "Bad Request", &[]));
        return;
    };
    if req.is_single() {
        out.push(single(stream, store, &req, reply));
        return;
    }
    // Batched: the matching messages in order, then an EOB status.
    let seqs: Vec<u64> = if req.multi_last.is_empty() {
        let filter = req.next_by_subj.as_deref();
        let mut seqs = Vec::new();
        let mut at = req.seq.unwrap_or(1).max(1);
        while (seqs.len() as u64) < req.batch {
            match store.next_seq_matching(at, filter) {
                Some(seq) => {
                    seqs.push(seq);
                    at = seq + 1;
                }
                None => break,
            }
        }
        seqs
    } else {
        let up_to = req.up_to_seq.unwrap_or(u64::MAX);
        let mut seqs: Vec<u64> = req
            .multi_last
            .iter()
            .flat_map(|f| store.subjects_matching(f))
            .map(|(_, st)| st.last_seq)
            .filter(|seq| *seq <= up_to)
            .collect();
        seqs.sort_unstable();
        seqs.dedup();
        seqs
    };
    if seqs.is_empty() {
        out.push(status(reply, 404, "Message Not Found", &[]));
        return;
    }
    let mut sent = 0u64;
    let mut bytes = 0u64;
    let mut last = 0u64;
    let total = seqs.len() as u64;
    for seq in seqs {
        let Ok(Some(m)) = store.get(seq) else {
            continue;
        };
        bytes += (m.payload.len() + m.headers.as_ref().map_or(0, |h| h.len())) as u64;
        if req.max_bytes > 0 && bytes > req.max_bytes && sent > 0 {
            break;
        }
        sent += 1;
        let pending = match &req.next_by_subj {
            Some(f) if req.multi_last.is_empty() => store.count_matching(seq + 1, Some(f)),
            None if req.multi_last.is_empty() => store.count_matching(seq + 1, None),
            _ => total - sent,
        }
        .to_string();
        let prev = last.to_string();
        out.push(direct_reply(
            stream,
            &m,
            reply,
            &[
                ("Nats-Num-Pending", &pending),
                ("Nats-Last-Sequence", &prev),
            ],
        ));
        last = seq;
    }
    let (pending, last) = ((total - sent).to_string(), last.to_string());
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
