//! The `$JS.API` request handlers that act on one stream, run on that stream's thread, and the
//! JSON shapes of their responses (`io.nats.jetstream.api.v1.*_response`).

use base64::Engine;
use serde::Deserialize;
use serde_json::{json, Value};

use super::config::{ConsumerConfig, Retention, StreamConfig};
use super::consumer::{Consumer, Outgoing};
use super::direct::{self, find_msg, MsgGetReq};
use super::errors::ApiError;
use super::stream::{Applied, Op, Stream};
use super::time::{now_nanos, rfc3339};

/// A stream-bound API request.
#[derive(Debug, Clone)]
pub(crate) enum Call {
    Info,
    Purge,
    MsgGet,
    MsgDelete,
    DirectGet(Option<String>),
    ConsumerCreate {
        name: Option<String>,
        filter: Option<String>,
        durable_subject: bool,
    },
    ConsumerInfo(String),
    ConsumerDelete(String),
    ConsumerNames,
    ConsumerList,
    ConsumerNext(String),
    ConsumerPause(String),
    ConsumerReset(String),
    ConsumerUnpin(String),
}

/// Builds a response of `kind` (e.g. `stream_info`) from a body object or an error.
pub(crate) fn response(kind: &str, body: Result<Value, ApiError>) -> Vec<u8> {
    let mut v = match body {
        Ok(v) => v,
        Err(e) => json!({ "error": e }),
    };
    if let Value::Object(map) = &mut v {
        map.insert(
            "type".into(),
            Value::String(format!("io.nats.jetstream.api.v1.{kind}_response")),
        );
    }
    serde_json::to_vec(&v).unwrap_or_default()
}

/// The `state` object of stream info.
pub(crate) fn state_json(s: &Stream) -> Value {
    let st = s.store.state();
    // A stream that never held a message reports first_seq 0, like nats-server.
    let first_seq = if st.last_seq == 0 { 0 } else { st.first_seq };
    let mut v = json!({
        "messages": st.msgs,
        "bytes": st.bytes,
        "first_seq": first_seq,
        "first_ts": rfc3339(st.first_time),
        "last_seq": st.last_seq,
        "last_ts": rfc3339(st.last_time),
        "consumer_count": s.public_consumers().count(),
    });
    if st.num_subjects > 0 {
        v["num_subjects"] = json!(st.num_subjects);
    }
    if st.num_deleted > 0 {
        v["num_deleted"] = json!(st.num_deleted);
    }
    if !s.lost.is_empty() {
        // Damaged records found at recovery: never served, reported like nats-server's `lost`.
        v["lost"] = json!({ "msgs": s.lost, "bytes": 0 });
    }
    v
}

/// Full stream info.
pub(crate) fn stream_info(s: &Stream, cluster: &Value) -> Value {
    let mut config = json!(s.config);
    super::versioning::annotate(&mut config, super::versioning::stream_level(&s.config));
    let mut v = json!({
        "config": config,
        "created": rfc3339(s.created),
        "state": state_json(s),
        "cluster": cluster,
        "ts": rfc3339(now_nanos()),
    });
    if let Some(m) = &s.config.mirror {
        v["mirror"] = s.sourcing.mirror_json(m);
    }
    if let Some(sources) = &s.config.sources {
        v["sources"] = s.sourcing.sources_json(sources);
    }
    v
}

#[derive(Deserialize, Default)]
struct InfoReq {
    #[serde(default)]
    deleted_details: bool,
    #[serde(default)]
    subjects_filter: String,
    #[serde(default)]
    offset: i64,
}

/// Most subjects one stream info answer lists.
const SUBJECTS_LIMIT: usize = 100_000;

/// `STREAM.INFO` with its options: `deleted_details` lists the deleted sequences,
/// `subjects_filter` the message count of each subject it matches (sorted, paged by `offset`,
/// with `total`/`offset`/`limit`).
fn info_request(s: &Stream, body: &[u8], cluster: &Value) -> Result<Value, ApiError> {
    let req: InfoReq = parse_object(body)?.unwrap_or_default();
    let mut v = stream_info(s, cluster);
    v["total"] = json!(0);
    v["offset"] = json!(0);
    v["limit"] = json!(0);
    if req.deleted_details {
        let deleted = deleted_seqs(s.store.as_ref());
        if !deleted.is_empty() {
            v["state"]["deleted"] = json!(deleted);
        }
    }
    if !req.subjects_filter.is_empty() {
        let mut subjects = s.store.subjects_matching(&req.subjects_filter);
        if !subjects.is_empty() {
            subjects.sort_by(|a, b| a.0.cmp(&b.0));
            let offset = usize::try_from(req.offset.max(0))
                .unwrap_or(usize::MAX)
                .min(subjects.len());
            let end = offset.saturating_add(SUBJECTS_LIMIT).min(subjects.len());
            let page: serde_json::Map<String, Value> = subjects[offset..end]
                .iter()
                .map(|(subj, st)| (subj.clone(), json!(st.msgs)))
                .collect();
            v["state"]["subjects"] = Value::Object(page);
            v["total"] = json!(subjects.len());
            v["offset"] = json!(offset);
            v["limit"] = json!(SUBJECTS_LIMIT);
        }
    }
    Ok(v)
}

/// The sequences between a stream's first and last that hold no message.
fn deleted_seqs(store: &dyn crate::store::MsgStore) -> Vec<u64> {
    let st = store.state();
    let mut deleted = Vec::new();
    if st.num_deleted == 0 {
        return deleted;
    }
    let mut expect = st.first_seq;
    while let Some(seq) = store.next_seq_matching(expect, None) {
        deleted.extend(expect..seq);
        if seq >= st.last_seq {
            break;
        }
        expect = seq + 1;
    }
    deleted
}

/// Full consumer info.
pub(crate) fn consumer_info(stream: &Stream, c: &Consumer, cluster: &Value) -> Value {
    let (floor_c, floor_s) = c.ack_floor();
    // As nats-server shows them: nothing acked yet is a floor of 0/0, and while the initial
    // last-per-subject set is being delivered, the stream position is just before its next one.
    let floor_s = if floor_c == 0 {
        c.state().reset_floor
    } else {
        floor_s
    };
    let delivered_s = c
        .state()
        .initial
        .front()
        .map_or(c.state().sseq, |next| next.saturating_sub(1));
    let mut config = json!(c.config);
    super::versioning::annotate(&mut config, super::versioning::consumer_level(&c.config));
    let mut v = json!({
        "stream_name": stream.name(),
        "name": c.name,
        "created": rfc3339(c.created),
        "config": config,
        "delivered": { "consumer_seq": c.state().dseq, "stream_seq": delivered_s },
        "ack_floor": { "consumer_seq": floor_c, "stream_seq": floor_s },
        "num_ack_pending": c.state().pending.len(),
        "num_redelivered": c.state().num_redelivered,
        "num_waiting": c.num_waiting(),
        "num_pending": c.num_pending(stream.store.as_ref()),
        "cluster": cluster,
        "ts": rfc3339(now_nanos()),
    });
    if let Some(until) = c.paused_until().filter(|u| *u > now_nanos()) {
        v["paused"] = json!(true);
        v["pause_remaining"] = json!(until - now_nanos());
    }
    if let Some(groups) = c.priority_groups_json() {
        v["priority_groups"] = groups;
    }
    if c.push_bound {
        v["push_bound"] = json!(true);
    }
    if let Some(t) = c.last_delivered_at {
        v["delivered"]["last_active"] = json!(rfc3339(t));
    }
    if let Some(t) = c.last_acked_at {
        v["ack_floor"]["last_active"] = json!(rfc3339(t));
    }
    v
}

fn parse<T: for<'de> Deserialize<'de>>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError::from_json(&e))
}

/// Decodes a request body that must be a JSON object, or `null` (also what an empty body
/// reads as, as on nats-server). serde would accept an array for a struct; Go refuses it.
pub(crate) fn parse_object<T: for<'de> Deserialize<'de>>(
    body: &[u8],
) -> Result<Option<T>, ApiError> {
    let start = body.iter().position(|b| !b.is_ascii_whitespace());
    match start.map(|i| body[i]) {
        None => Ok(None),
        Some(b'{' | b'n') => parse(body),
        Some(_) => Err(ApiError::invalid_json(
            "json: cannot unmarshal non-object into the request",
        )),
    }
}

pub(crate) fn parse_or_default<T: for<'de> Deserialize<'de> + Default>(
    body: &[u8],
) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    parse(body)
}

#[derive(Deserialize, Default)]
struct PurgeReq {
    filter: Option<String>,
    seq: Option<u64>,
    keep: Option<u64>,
}

#[derive(Deserialize, Default)]
struct MsgDeleteReq {
    seq: u64,
    #[allow(dead_code)]
    no_erase: Option<bool>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct CreateConsumerReq {
    stream_name: Option<String>,
    config: Option<ConsumerConfig>,
    #[serde(default)]
    action: String,
    /// nats-server 2.11+: refuse instead of defaulting.
    #[serde(default)]
    pedantic: bool,
}

/// Page size of the NAMES requests.
pub(crate) const NAMES_LIMIT: usize = 1024;
/// Page size of the LIST requests.
pub(crate) const LIST_LIMIT: usize = 256;

/// The body of the NAMES and LIST requests (streams and consumers).
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct ListReq {
    #[serde(default)]
    offset: i64,
    #[serde(default)]
    pub subject: Option<String>,
}

impl ListReq {
    /// Decodes a request body; an empty body or `null` is the first page.
    pub fn parse(body: &[u8]) -> Result<ListReq, ApiError> {
        Ok(parse_object::<ListReq>(body)?.unwrap_or_default())
    }

    /// The page of `all` this request asks for, and its offset clamped to the total.
    pub fn page<'a, T>(&self, all: &'a [T], limit: usize) -> (usize, &'a [T]) {
        let offset = usize::try_from(self.offset.max(0))
            .unwrap_or(usize::MAX)
            .min(all.len());
        let end = offset.saturating_add(limit).min(all.len());
        (offset, &all[offset..end])
    }

    /// A refused listing still carries its paging fields, zeroed (`empty` is the list).
    pub fn error(e: ApiError, field: &str, empty: Value) -> Value {
        json!({ "error": e, "total": 0, "offset": 0, "limit": 0, field: empty })
    }
}

/// What a stream-bound call produced.
pub(crate) struct Reply {
    /// JSON response for the request's reply subject (None: nothing to send, e.g. pulls).
    pub body: Option<Vec<u8>>,
    /// Whether state changed (needs a sync before the reply goes out).
    pub mutated: bool,
}

impl Reply {
    /// No answer from the handler (it queued what it sends in `out`, if anything).
    fn nothing() -> Self {
        Self {
            body: None,
            mutated: false,
        }
    }

    fn json(kind: &str, body: Result<Value, ApiError>, mutated: bool) -> Self {
        Self {
            body: Some(response(kind, body)),
            mutated,
        }
    }
}

/// Handles one stream-bound API call.
pub(crate) fn handle(
    s: &mut Stream,
    call: Call,
    reply: Option<&str>,
    body: &[u8],
    cluster: &Value,
    out: &mut Vec<Outgoing>,
) -> Reply {
    match call {
        Call::Info => Reply::json("stream_info", info_request(s, body, cluster), false),
        Call::Purge => {
            let r = purge(s, body).map(|n| json!({ "success": true, "purged": n }));
            Reply::json("stream_purge", r, true)
        }
        Call::MsgGet => Reply::json("stream_msg_get", msg_get(s, body), false),
        Call::MsgDelete => {
            let r = msg_delete(s, body).map(|_| json!({ "success": true }));
            Reply::json("stream_msg_delete", r, true)
        }
        Call::DirectGet(subj) => {
            if let Some(reply) = reply {
                direct::get(
                    s.name(),
                    s.store.as_ref(),
                    subj.as_deref(),
                    body,
                    reply,
                    out,
                );
            }
            Reply {
                body: None,
                mutated: false,
            }
        }
        Call::ConsumerCreate {
            name,
            filter,
            durable_subject,
        } => {
            let r = create_consumer(s, name, filter, durable_subject, body)
                .map(|name| consumer_info(s, &s.consumers[&name], cluster));
            Reply::json("consumer_create", r, true)
        }
        Call::ConsumerInfo(name) => {
            let r = s
                .consumers
                .get(&name)
                .map(|c| consumer_info(s, c, cluster))
                .ok_or_else(ApiError::consumer_not_found);
            Reply::json("consumer_info", r, false)
        }
        Call::ConsumerDelete(name) => {
            let r = match s.consumers.get_mut(&name) {
                None => Err(ApiError::consumer_not_found()),
                Some(c) => {
                    c.on_delete(out);
                    s.apply(Op::ConsumerDelete { name })
                        .map(|_| json!({ "success": true }))
                }
            };
            Reply::json("consumer_delete", r, true)
        }
        Call::ConsumerNames => {
            let r = match ListReq::parse(body) {
                Ok(req) => {
                    let names: Vec<&String> = s.public_consumers().map(|c| &c.name).collect();
                    let (offset, page) = req.page(&names, NAMES_LIMIT);
                    json!({ "total": names.len(), "offset": offset, "limit": NAMES_LIMIT, "consumers": page })
                }
                Err(e) => ListReq::error(e, "consumers", json!([])),
            };
            Reply::json("consumer_names", Ok(r), false)
        }
        Call::ConsumerList => {
            let r = match ListReq::parse(body) {
                Ok(req) => {
                    let all: Vec<&Consumer> = s.public_consumers().collect();
                    let (offset, page) = req.page(&all, LIST_LIMIT);
                    let infos: Vec<Value> =
                        page.iter().map(|c| consumer_info(s, c, cluster)).collect();
                    json!({ "total": all.len(), "offset": offset, "limit": LIST_LIMIT, "consumers": infos })
                }
                Err(e) => ListReq::error(e, "consumers", json!([])),
            };
            Reply::json("consumer_list", Ok(r), false)
        }
        Call::ConsumerNext(name) => {
            let Some(reply) = reply else {
                return Reply {
                    body: None,
                    mutated: false,
                };
            };
            let store = s.store.as_ref();
            match s.consumers.get_mut(&name) {
                Some(c) => {
                    if let Some(st) = c.add_pull(reply.to_string(), body, store) {
                        out.push(st);
                    }
                }
                // As on nats-server, where pulls go to the consumer's own subscription.
                None => out.push(super::consumer::no_responders(reply)),
            }
            Reply {
                body: None,
                mutated: false,
            }
        }
        Call::ConsumerPause(name) => {
            let r = super::consumer_api::pause(s, &name, body);
            Reply::json("consumer_pause", r, true)
        }
        Call::ConsumerReset(name) => {
            if reply.is_none() || !s.consumers.contains_key(&name) {
                // nats-server answers it on the consumer's own subscription, so a consumer
                // that does not exist leaves the request unanswered there too.
                return Reply::nothing();
            }
            let r = super::consumer_api::reset(s, &name, body, cluster);
            Reply::json("consumer_reset", r, true)
        }
        Call::ConsumerUnpin(name) => {
            let r = super::consumer_api::unpin(s, &name, body, out);
            Reply::json("consumer_unpin", r, false)
        }
    }
}

/// Checks that `new` is an allowed update of `old`.
pub(crate) fn check_update(old: &StreamConfig, new: &StreamConfig) -> Result<(), ApiError> {
    super::sourcing::rules::check_update(old, new)?;
    if new.storage != old.storage {
        return Err(ApiError::invalid_config(
            "stream configuration update can not change storage type",
        ));
    }
    if new.retention != old.retention {
        return Err(ApiError::invalid_config(
            "stream configuration update can not change retention policy",
        ));
    }
    if new.persist_mode != old.persist_mode {
        return Err(ApiError::invalid_config(
            "stream configuration update can not change persist mode",
        ));
    }
    if new.allow_msg_counter != old.allow_msg_counter {
        return Err(ApiError::invalid_config(
            "stream configuration update can not change message counter setting",
        ));
    }
    if old.allow_msg_schedules && !new.allow_msg_schedules {
        return Err(ApiError::invalid_config(
            "message schedules can not be disabled",
        ));
    }
    if old.sealed && !new.sealed {
        return Err(ApiError::invalid_config(
            "stream configuration update can not unseal a sealed stream",
        ));
    }
    Ok(())
}

/// New `consumer_limits` may not be below what an existing consumer has.
fn check_consumer_limits(s: &Stream, cfg: &StreamConfig) -> Result<(), ApiError> {
    let (old, new) = (&s.config.consumer_limits, &cfg.consumer_limits);
    let changed = (new.inactive_threshold > 0 && new.inactive_threshold != old.inactive_threshold)
        || (new.max_ack_pending > 0 && new.max_ack_pending != old.max_ack_pending);
    if !changed {
        return Ok(());
    }
    let over: Vec<&str> = s
        .consumers
        .values()
        .filter(|c| {
            (new.inactive_threshold > 0 && c.config.inactive_threshold > new.inactive_threshold)
                || (new.max_ack_pending > 0 && c.config.max_ack_pending > new.max_ack_pending)
        })
        .map(|c| c.name.as_str())
        .collect();
    if over.is_empty() {
        return Ok(());
    }
    Err(ApiError {
        code: 500,
        err_code: 10069,
        description: format!("change to limits violates consumers: {}", over.join(", ")),
    })
}

/// Applies a normalised configuration update (the catalogue has it durably already, so a
/// restart finds what was acknowledged).
pub(crate) fn update(s: &mut Stream, cfg: StreamConfig) -> Result<(), ApiError> {
    check_update(&s.config, &cfg)?;
    check_consumer_limits(s, &cfg)?;
    s.apply(Op::UpdateConfig(Box::new(cfg))).map(|_| ())
}

fn purge(s: &mut Stream, body: &[u8]) -> Result<u64, ApiError> {
    let op = purge_op(s, body)?;
    Ok(purged(s.apply(op)?))
}

/// The count a purge's outcome reports.
pub(crate) fn purged(applied: Applied) -> u64 {
    match applied {
        Applied::Purged(n) => n,
        _ => 0,
    }
}

/// The `Purge` op a purge request asks for, if the stream allows it.
pub(crate) fn purge_op(s: &Stream, body: &[u8]) -> Result<Op, ApiError> {
    if s.config.deny_purge {
        return Err(ApiError {
            code: 500,
            err_code: 10110,
            description: "stream purge not permitted".into(),
        });
    }
    if s.config.sealed {
        return Err(ApiError::sealed());
    }
    let req: PurgeReq = parse_or_default(body)?;
    if req.seq.is_some() && req.keep.is_some() {
        return Err(ApiError::bad_request(
            "purge request can not have both seq and keep",
        ));
    }
    Ok(Op::Purge {
        filter: req.filter.filter(|f| !f.is_empty()),
        seq: req.seq,
        keep: req.keep,
    })
}

fn msg_get(s: &Stream, body: &[u8]) -> Result<Value, ApiError> {
    let req: MsgGetReq = parse(body)?;
    if req.seq.is_none() && req.last_by_subj.is_none() && req.next_by_subj.is_none() {
        return Err(ApiError::bad_request("request had no valid parameters"));
    }
    let m = find_msg(
        s.store.as_ref(),
        req.seq,
        req.last_by_subj.as_deref(),
        req.next_by_subj.as_deref(),
    )
    .ok_or_else(ApiError::no_message_found)?;
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut msg = json!({
        "subject": m.subject,
        "seq": m.seq,
        "time": rfc3339(m.time),
    });
    if !m.payload.is_empty() {
        msg["data"] = json!(b64.encode(&m.payload));
    }
    if let Some(h) = &m.headers {
        msg["hdrs"] = json!(b64.encode(h));
    }
    Ok(json!({ "message": msg }))
}

fn msg_delete(s: &mut Stream, body: &[u8]) -> Result<(), ApiError> {
    let op = msg_delete_op(s, body)?;
    deleted(s.apply(op)?)
}

/// What a message delete's outcome answers.
pub(crate) fn deleted(applied: Applied) -> Result<(), ApiError> {
    match applied {
        Applied::Deleted(true) => Ok(()),
        _ => Err(ApiError::msg_delete_failed("no message found")),
    }
}

/// The `Delete` op a message delete request asks for, if the stream allows it.
pub(crate) fn msg_delete_op(s: &Stream, body: &[u8]) -> Result<Op, ApiError> {
    if s.config.deny_delete {
        return Err(ApiError::msg_delete_failed("message delete not permitted"));
    }
    if s.config.sealed {
        return Err(ApiError::sealed());
    }
    let req: MsgDeleteReq = parse(body)?;
    Ok(Op::Delete { seq: req.seq })
}

fn create_consumer(
    s: &mut Stream,
    subj_name: Option<String>,
    subj_filter: Option<String>,
    durable_subject: bool,
    body: &[u8],
) -> Result<String, ApiError> {
    let req: Option<CreateConsumerReq> = parse_object(body)?;
    let req = req.unwrap_or_default();
    if req.stream_name.as_deref() != Some(s.name()) {
        return Err(ApiError::stream_mismatch());
    }
    // A request without a config asks for nats-server's zero config: no acks.
    let mut cfg = req.config.unwrap_or_else(|| ConsumerConfig {
        ack_policy: super::config::AckPolicy::None,
        ..ConsumerConfig::default()
    });
    match (&subj_name, durable_subject) {
        (None, _) if cfg.durable_name.is_some() => {
            return Err(ApiError::consumer_ephemeral_with_durable())
        }
        (None, _) => {}
        (Some(n), true) => match &cfg.durable_name {
            None => return Err(ApiError::consumer_durable_name_missing()),
            Some(d) if d != n => return Err(ApiError::consumer_durable_mismatch()),
            Some(_) => {}
        },
        (Some(n), false) => {
            if cfg.durable_name.as_deref().is_some_and(|d| d != n) {
                return Err(ApiError::consumer_durable_mismatch());
            }
            // The name in the subject wins over a different `name` in the body.
            cfg.name = Some(n.clone());
        }
    }
    if let Some(f) = &subj_filter {
        if cfg.filter_subject.as_deref() != Some(f.as_str()) {
            return Err(ApiError::consumer_create_filter_mismatch());
        }
    }
    let mut cfg = cfg.normalize_within(&s.config.consumer_limits, req.pedantic)?;
    cfg.check_for_stream(&s.config)?;
    if s.config.retention == Retention::WorkQueue {
        if cfg.ack_policy != super::config::AckPolicy::Explicit {
            return Err(ApiError::consumer_wq_explicit_ack());
        }
        let mine = cfg.filters();
        for other in s.consumers.values() {
            if Some(other.name.as_str()) == cfg.effective_name() {
                continue;
            }
            let theirs = other.config.filters();
            if mine.is_empty() || theirs.is_empty() {
                return Err(ApiError::consumer_wq_multiple_unfiltered());
            }
            if mine.iter().any(|a| {
                theirs
                    .iter()
                    .any(|b| crate::protocol::subject::overlaps(a, b))
            }) {
                return Err(ApiError::consumer_wq_not_unique());
            }
        }
    }
    let name = match cfg.effective_name() {
        Some(n) => n.to_string(),
        None => {
            let n = ephemeral_name();
            cfg.name = Some(n.clone());
            n
        }
    };
    if let Some(existing) = s.consumers.get(&name) {
        if existing.config == cfg {
            return Ok(name);
        }
        if req.action == "create" {
            return Err(ApiError::consumer_already_exists());
        }
        existing.config.check_update(&cfg)?;
    } else {
        if req.action == "update" {
            return Err(ApiError::consumer_does_not_exist());
        }
        let count = s.public_consumers().count() as i64;
        if s.config.max_consumers > 0 && count >= s.config.max_consumers {
            return Err(ApiError::max_consumers());
        }
    }
    s.apply(Op::ConsumerCreate {
        name: name.clone(),
        config: Box::new(cfg),
        created: now_nanos(),
    })?;
    Ok(name)
}

fn ephemeral_name() -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let mut rng = rand::rng();
    (0..8)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}
