//! A consumer as a state machine over its stream's store: where it is in the stream, which
//! deliveries await acks, what to redeliver and when, and the waiting pull requests.
//!
//! Its replicated state (`state`: cursor, pending acks, redelivery count) changes only by the
//! stream's ops `Delivered` and `Ack`; everything else here is leader-local delivery (ack
//! deadlines, the redelivery queue, waiting pulls, heartbeats, flow control, rate limit), which a
//! new leader rebuilds from the replicated state. [`Consumer::pump`] (in `pump`) works out what is
//! due now and returns it as a `Delivered` op for the stream to apply; `pull` parses pull
//! requests and NAK delays.

mod priority;
mod pull;
mod pump;
mod state;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::{Duration, Instant};

use bytes::Bytes;

use pull::{parse_nak_delay, parse_pull, PullGroup};
use pump::RateLimiter;
pub(crate) use state::{AckKind, ConsumerState, Deliveries, Sent};

use super::config::{ConsumerConfig, DeliverPolicy};
use super::headers;
use crate::protocol::subject;
use crate::store::MsgStore;

/// A message the stream thread must publish on the consumer's behalf.
#[derive(Debug)]
pub(crate) struct Outgoing {
    /// Subject the message is routed by (deliver subject or pull inbox).
    pub to: String,
    /// Subject shown to the receiver (the stored message's own subject).
    pub subject: String,
    pub reply: Option<String>,
    pub headers: Option<Vec<u8>>,
    pub payload: Bytes,
}

struct PullRequest {
    reply: String,
    batch: u64,
    max_bytes: u64,
    expires: Option<Instant>,
    no_wait: bool,
    heartbeat: Option<Duration>,
    last_hb: Instant,
    delivered: u64,
    /// Its priority-group fields (a JSON request's).
    group: Option<PullGroup>,
}

/// One consumer.
pub(crate) struct Consumer {
    pub name: String,
    pub config: ConsumerConfig,
    pub created: i64,
    /// Replicated state: changed only through the stream's ops (see `state`).
    state: ConsumerState,
    /// The stream journal's index this consumer's state includes (its last snapshot's, or the
    /// last entry replayed into it).
    pub applied: u64,
    filters: Vec<String>,
    deadlines: BTreeMap<u64, Instant>,
    redeliver: BTreeSet<u64>,
    waiting: VecDeque<PullRequest>,
    pub last_active: Instant,
    last_hb: Instant,
    fc_outstanding: Option<String>,
    fc_counter: u64,
    since_fc: u64,
    last_delivery_time: Option<(i64, Instant)>,
    /// When a message held back by `replay_policy: original` or `rate_limit_bps` becomes due.
    replay_due: Option<Instant>,
    rate: RateLimiter,
    /// The pinned client (`priority_policy: pinned_client`).
    pin: Option<priority::Pin>,
    /// A push consumer whose deliver subject has interest (as of the last pump).
    pub push_bound: bool,
    /// When it last delivered, and last had a delivery acknowledged (unix nanoseconds).
    pub last_delivered_at: Option<i64>,
    pub last_acked_at: Option<i64>,
    /// Set when the snapshot on disk is out of date in a way the journal does not cover (a new
    /// consumer, a new configuration).
    pub dirty: bool,
}

fn now_nanos() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

impl Consumer {
    /// A new consumer positioned by its deliver policy.
    pub fn new(
        name: String,
        config: ConsumerConfig,
        store: &dyn MsgStore,
        start_time: Option<i64>,
        stream_subjects: &[String],
        created: i64,
    ) -> Self {
        let filters = effective_filters(&config, stream_subjects);
        let st = store.state();
        let mut state = ConsumerState::default();
        let last_matching = |filters: &[String]| -> u64 {
            if filters.is_empty() {
                return st.last_seq;
            }
            filters
                .iter()
                .flat_map(|f| store.subjects_matching(f))
                .map(|(_, s)| s.last_seq)
                .max()
                .unwrap_or(0)
        };
        match config.deliver_policy {
            DeliverPolicy::All => state.sseq = st.first_seq.saturating_sub(1),
            DeliverPolicy::Last => state.sseq = last_matching(&filters).saturating_sub(1),
            DeliverPolicy::New => state.sseq = st.last_seq,
            DeliverPolicy::ByStartSequence => {
                state.sseq = config.opt_start_seq.unwrap_or(1).saturating_sub(1)
            }
            DeliverPolicy::ByStartTime => {
                state.sseq = store
                    .seq_for_time(start_time.unwrap_or(0))
                    .saturating_sub(1)
            }
            DeliverPolicy::LastPerSubject => {
                let pats: Vec<String> = if filters.is_empty() {
                    vec![">".to_string()]
                } else {
                    filters.clone()
                };
                let mut seqs: Vec<u64> = pats
                    .iter()
                    .flat_map(|f| store.subjects_matching(f))
                    .map(|(_, s)| s.last_seq)
                    .collect();
                seqs.sort_unstable();
                seqs.dedup();
                state.initial = seqs.into();
                state.sseq = st.last_seq;
            }
        }
        if config.deliver_policy == DeliverPolicy::Last && last_matching(&filters) == 0 {
            state.sseq = st.last_seq;
        }
        let now = Instant::now();
        Self {
            name,
            config,
            created,
            state,
            applied: 0,
            filters,
            deadlines: BTreeMap::new(),
            redeliver: BTreeSet::new(),
            waiting: VecDeque::new(),
            last_active: now,
            last_hb: now,
            fc_outstanding: None,
            fc_counter: 0,
            since_fc: 0,
            last_delivery_time: None,
            replay_due: None,
            rate: RateLimiter::default(),
            pin: None,
            push_bound: false,
            last_delivered_at: None,
            last_acked_at: None,
            dirty: true,
        }
    }

    /// Replaces the configuration (a consumer update).
    pub fn set_config(&mut self, config: ConsumerConfig, stream_subjects: &[String]) {
        self.filters = effective_filters(&config, stream_subjects);
        self.config = config;
        self.dirty = true;
    }

    /// Restores a consumer from a snapshot taken at journal index `applied`; pending acks are
    /// due for redelivery after their ack wait.
    pub fn restore(&mut self, state: ConsumerState, applied: u64) {
        self.state = state;
        self.applied = applied;
        self.dirty = false;
        self.rearm();
    }

    /// Leader-local timers from the replicated state alone (after a restore or a replay, or
    /// when this replica becomes the leader): every pending ack is due after its ack wait.
    pub fn rearm(&mut self) {
        let due = Instant::now() + self.ack_wait(1);
        self.deadlines = self.state.pending.keys().map(|&s| (s, due)).collect();
        self.redeliver.clear();
        self.pin = None;
    }

    /// The replicated state (read-only: it changes through the stream's ops).
    pub fn state(&self) -> &ConsumerState {
        &self.state
    }

    /// Applies a `Delivered` op (called by the stream's `apply` only).
    pub(crate) fn apply_delivered(&mut self, d: &Deliveries) {
        self.state.apply_delivered(d, self.config.ack_policy);
    }

    /// Applies a `ConsumerReset` op (called by the stream's `apply` only); the leader-local
    /// redelivery timers go with the pending acks.
    pub(crate) fn apply_reset(&mut self, seq: u64) {
        self.state.apply_reset(seq);
        self.deadlines.clear();
        self.redeliver.clear();
        self.last_delivery_time = None;
        self.last_delivered_at = None;
        self.last_acked_at = None;
    }

    /// Applies an `Ack` op (called by the stream's `apply` only); returns what it settled.
    pub(crate) fn apply_ack(&mut self, seq: u64, kind: AckKind) -> Vec<u64> {
        self.state.apply_ack(seq, kind, self.config.ack_policy)
    }

    fn ack_wait(&self, delivery_count: u64) -> Duration {
        let ns = if self.config.backoff.is_empty() {
            self.config.ack_wait
        } else {
            let i = (delivery_count.saturating_sub(1) as usize).min(self.config.backoff.len() - 1);
            self.config.backoff[i]
        };
        Duration::from_nanos(ns.max(1) as u64)
    }

    /// True if `subj` passes the consumer's filters.
    pub fn matches(&self, subj: &str) -> bool {
        self.filters.is_empty() || self.filters.iter().any(|f| subject::matches(f, subj))
    }

    /// True for a pull consumer.
    pub fn is_pull(&self) -> bool {
        self.config.is_pull()
    }

    /// Messages not yet delivered.
    pub fn num_pending(&self, store: &dyn MsgStore) -> u64 {
        self.pending_after(store, self.state.sseq, self.state.initial.len())
    }

    /// Messages after `cursor` plus `initial` left of the last-per-subject set.
    fn pending_after(&self, store: &dyn MsgStore, cursor: u64, initial: usize) -> u64 {
        let start = cursor + 1;
        let tail = if self.filters.is_empty() {
            store.count_matching(start, None)
        } else {
            self.filters
                .iter()
                .map(|f| store.count_matching(start, Some(f)))
                .sum()
        };
        tail + initial as u64
    }

    /// Number of waiting pull requests.
    pub fn num_waiting(&self) -> usize {
        self.waiting.len()
    }

    /// Ack floor: (consumer seq, stream seq) below which everything is acknowledged.
    pub fn ack_floor(&self) -> (u64, u64) {
        match self.state.pending.iter().next() {
            Some((&sseq, &(dseq, _, _))) => (dseq.saturating_sub(1), sseq.saturating_sub(1)),
            None => (self.state.dseq, self.state.sseq),
        }
    }

    fn next_seq(&self, store: &dyn MsgStore, after: u64) -> Option<u64> {
        if self.filters.is_empty() {
            return store.next_seq_matching(after + 1, None);
        }
        self.filters
            .iter()
            .filter_map(|f| store.next_seq_matching(after + 1, Some(f)))
            .min()
    }

    /// Leader-local bookkeeping once an `Ack` op settled these sequences.
    pub fn settle(&mut self, seqs: &[u64]) {
        if !seqs.is_empty() {
            self.last_acked_at = Some(now_nanos());
        }
        for s in seqs {
            self.deadlines.remove(s);
            self.redeliver.remove(s);
        }
    }

    /// Marks the consumer active (an ack, a pull, a flow-control reply).
    pub fn touch(&mut self) {
        self.last_active = Instant::now();
    }

    /// `-NAK`: redeliver `sseq` now, or after `delay` (leader-local: only timing changes).
    pub fn nak(&mut self, sseq: u64, delay: Option<Duration>) {
        if !self.state.pending.contains_key(&sseq) {
            return;
        }
        match delay {
            Some(d) if !d.is_zero() => {
                self.deadlines.insert(sseq, Instant::now() + d);
            }
            _ => {
                self.deadlines.remove(&sseq);
                self.redeliver.insert(sseq);
            }
        }
    }

    /// `+WPI`: the ack deadline of `sseq` starts again (leader-local).
    pub fn progress(&mut self, sseq: u64) {
        if let Some(&(_, count, _)) = self.state.pending.get(&sseq) {
            let d = self.ack_wait(count);
            self.deadlines.insert(sseq, Instant::now() + d);
        }
    }

    /// Queues a pull request (`$JS.API.CONSUMER.MSG.NEXT`); returns a status to send at once
    /// if the request is refused.
    pub fn add_pull(
        &mut self,
        reply: String,
        body: &[u8],
        store: &dyn MsgStore,
    ) -> Option<Outgoing> {
        self.last_active = Instant::now();
        if !self.is_pull() {
            return Some(status(&reply, 409, "Consumer is push based", &[]));
        }
        let req = match parse_pull(body) {
            Ok(r) => r,
            Err(text) => return Some(status(&reply, 400, &text, &[])),
        };
        if let Some(text) = self.exceeds_request_limits(&req) {
            return Some(status(&reply, 409, &text, &[]));
        }
        if let Some(g) = &req.group {
            if let Err((code, text)) = self.check_pull_group(g) {
                return Some(status(&reply, code, text, &[]));
            }
        }
        if self.waiting.len() as i64 >= self.config.max_waiting.max(1) {
            // With heartbeats the client waits for them instead (no hot retry loop).
            return (req.idle_heartbeat == 0)
                .then(|| status(&reply, 409, "Exceeded MaxWaiting", &[]));
        }
        if req.no_wait && self.available(store) == 0 {
            return Some(status(&reply, 404, "No Messages", &[]));
        }
        let now = Instant::now();
        let request = PullRequest {
            reply,
            batch: req.batch.max(1),
            max_bytes: req.max_bytes,
            expires: (req.expires > 0).then(|| now + Duration::from_nanos(req.expires as u64)),
            no_wait: req.no_wait,
            heartbeat: (req.idle_heartbeat > 0)
                .then(|| Duration::from_nanos(req.idle_heartbeat as u64)),
            last_hb: now,
            delivered: 0,
            group: req.group,
        };
        let at = self.queue_position(&request);
        self.waiting.insert(at, request);
        None
    }

    /// The 409 text for a pull request over the consumer's `max_batch`, `max_expires` or
    /// `max_bytes`.
    fn exceeds_request_limits(&self, req: &pull::Pull) -> Option<String> {
        let cfg = &self.config;
        if cfg.max_batch > 0 && req.batch > cfg.max_batch as u64 {
            return Some(format!("Exceeded MaxRequestBatch of {}", cfg.max_batch));
        }
        if cfg.max_expires > 0 && req.expires > cfg.max_expires {
            let limit = Duration::from_nanos(cfg.max_expires as u64);
            let limit = crate::config::go_duration(limit);
            return Some(format!("Exceeded MaxRequestExpires of {limit}"));
        }
        if cfg.max_bytes > 0 && req.max_bytes > cfg.max_bytes as u64 {
            return Some(format!("Exceeded MaxRequestMaxBytes of {}", cfg.max_bytes));
        }
        None
    }

    fn available(&self, store: &dyn MsgStore) -> u64 {
        self.redeliver.len() as u64 + self.num_pending(store)
    }

    /// Marks a flow-control reply received.
    pub fn on_flow_control(&mut self, subject: &str) {
        if self.fc_outstanding.as_deref() == Some(subject) {
            self.fc_outstanding = None;
        }
        self.last_active = Instant::now();
    }

    /// The earliest instant at which [`Consumer::pump`] has timed work to do.
    pub fn next_deadline(&self) -> Option<Instant> {
        let mut next = self.deadlines.values().min().copied();
        let mut consider = |t: Instant| next = Some(next.map_or(t, |n: Instant| n.min(t)));
        for r in &self.waiting {
            if let Some(e) = r.expires {
                consider(e);
            }
            if let Some(hb) = r.heartbeat {
                consider(r.last_hb + hb);
            }
        }
        if let Some(t) = self.replay_due {
            consider(t);
        }
        if let Some(t) = self.pin_deadline() {
            consider(t);
        }
        if !self.is_pull() && self.config.idle_heartbeat > 0 {
            consider(self.last_hb + Duration::from_nanos(self.config.idle_heartbeat as u64));
        }
        next
    }

    /// Pause deadline (unix nanos), if paused.
    pub fn paused_until(&self) -> Option<i64> {
        self.config
            .pause_until
            .as_deref()
            .and_then(super::time::parse_rfc3339)
    }

    /// Tells waiting pull requests the consumer is gone.
    pub fn on_delete(&mut self, out: &mut Vec<Outgoing>) {
        for r in self.waiting.drain(..) {
            out.push(status(&r.reply, 409, "Consumer Deleted", &[]));
        }
    }
}

/// The consumer's filters; filters that cover every subject of the stream select everything and
/// are dropped, so the store can take its unfiltered fast paths (a KV `watch_all` is one).
fn effective_filters(config: &ConsumerConfig, stream_subjects: &[String]) -> Vec<String> {
    let filters = config.filters();
    let covers_all = !filters.is_empty()
        && stream_subjects
            .iter()
            .all(|s| filters.iter().any(|f| subject::covers(f, s)));
    if covers_all {
        Vec::new()
    } else {
        filters
    }
}

/// A message that reached max_deliver.
pub(crate) struct MaxDeliveries {
    pub stream_seq: u64,
    pub deliveries: u64,
}

/// What the body of an ack on `$JS.ACK...` asks for.
#[derive(Debug, PartialEq)]
pub(crate) enum AckRequest {
    /// `+ACK`, `+OK` or an empty body.
    Ack,
    /// `+NXT`: ack, then the rest is a pull request.
    Next(String),
    /// `-NAK`, with an optional delay.
    Nak(Option<Duration>),
    /// `+WPI`.
    Progress,
    /// `+TERM`, with an optional reason.
    Term(String),
    /// Anything else: ignored.
    Unknown,
}

impl AckRequest {
    /// Parses an ack body.
    pub fn parse(body: &[u8]) -> AckRequest {
        let body = std::str::from_utf8(body).unwrap_or("").trim();
        let (kind, rest) = body.split_once(' ').unwrap_or((body, ""));
        match kind {
            "" | "+ACK" | "+OK" => AckRequest::Ack,
            "+NXT" => AckRequest::Next(rest.trim().to_string()),
            "-NAK" => AckRequest::Nak(parse_nak_delay(rest)),
            "+WPI" => AckRequest::Progress,
            "+TERM" => AckRequest::Term(rest.to_string()),
            _ => AckRequest::Unknown,
        }
    }
}

/// What a request to a subject nobody serves gets (`NATS/1.0 503`): the answer nats-server's
/// clients expect for a consumer that does not exist (its pull and ack subjects have no
/// subscription there).
pub(crate) fn no_responders(to: &str) -> Outgoing {
    status(to, 503, "", &[])
}

/// A status message (`NATS/1.0 <code> <text>`) with no payload.
pub(crate) fn status(to: &str, code: u16, text: &str, pairs: &[(&str, &str)]) -> Outgoing {
    Outgoing {
        to: to.to_string(),
        subject: to.to_string(),
        reply: None,
        headers: Some(headers::build(Some((code, text)), pairs)),
        payload: Bytes::new(),
    }
}
