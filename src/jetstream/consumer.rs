//! A consumer as a state machine over its stream's store: where it is in the stream, which
//! deliveries await acks, what to redeliver and when, and the waiting pull requests.
//!
//! The owning stream thread drives it: [`Consumer::on_ack`] and friends change state,
//! [`Consumer::pump`] produces the deliveries and status messages that are due now.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::config::{AckPolicy, ConsumerConfig, DeliverPolicy, ReplayPolicy};
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

/// Persistent consumer state (what survives a restart).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub(crate) struct ConsumerState {
    /// Last stream sequence handed out (the delivery cursor).
    pub sseq: u64,
    /// Last consumer sequence handed out.
    pub dseq: u64,
    /// Pending acks: stream seq -> (consumer seq, delivery count, publish time).
    pub pending: BTreeMap<u64, (u64, u64, i64)>,
    /// Messages redelivered at least once.
    pub num_redelivered: u64,
    /// Last-per-subject sequences still to deliver first.
    pub initial: VecDeque<u64>,
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
}

/// One consumer.
pub(crate) struct Consumer {
    pub name: String,
    pub config: ConsumerConfig,
    pub created: i64,
    pub state: ConsumerState,
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
    /// Set when persisted state changed.
    pub dirty: bool,
    /// Set when the consumer wants to send the stream advisories or remove messages.
    pub acked: Vec<u64>,
}

/// Bytes of flow-controlled data between FlowControl requests.
const FC_EVERY: u64 = 2 * 1024 * 1024;

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
            created: now_nanos(),
            state,
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
            dirty: true,
            acked: Vec::new(),
        }
    }

    /// Replaces the configuration (a consumer update).
    pub fn set_config(&mut self, config: ConsumerConfig, stream_subjects: &[String]) {
        self.filters = effective_filters(&config, stream_subjects);
        self.config = config;
        self.dirty = true;
    }

    /// Restores a consumer from persisted state; pending acks are due for redelivery after
    /// their ack wait.
    pub fn restore(&mut self, state: ConsumerState, created: i64) {
        let due = Instant::now() + self.ack_wait(1);
        for &sseq in state.pending.keys() {
            self.deadlines.insert(sseq, due);
        }
        self.state = state;
        self.created = created;
        self.dirty = false;
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
        let start = self.state.sseq + 1;
        let tail = if self.filters.is_empty() {
            store.count_matching(start, None)
        } else {
            self.filters
                .iter()
                .map(|f| store.count_matching(start, Some(f)))
                .sum()
        };
        tail + self.state.initial.len() as u64
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

    /// Handles an ack on `$JS.ACK...` for stream sequence `sseq`; returns the reply to send for
    /// AckSync (an empty message) if `reply` is set.
    pub fn on_ack(&mut self, sseq: u64, body: &[u8]) -> AckOutcome {
        let body = std::str::from_utf8(body).unwrap_or("").trim();
        let (kind, rest) = body.split_once(' ').unwrap_or((body, ""));
        self.last_active = Instant::now();
        match kind {
            "" | "+ACK" | "+OK" => {
                self.ack(sseq);
                AckOutcome::Acked
            }
            "+NXT" => {
                self.ack(sseq);
                AckOutcome::Next(rest.trim().to_string())
            }
            "-NAK" => {
                if self.state.pending.contains_key(&sseq) {
                    let delay = parse_nak_delay(rest);
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
                AckOutcome::Other
            }
            "+WPI" => {
                if let Some(&(_, count, _)) = self.state.pending.get(&sseq) {
                    let d = self.ack_wait(count);
                    self.deadlines.insert(sseq, Instant::now() + d);
                }
                AckOutcome::Other
            }
            "+TERM" => {
                let known = self.state.pending.remove(&sseq).is_some();
                self.deadlines.remove(&sseq);
                self.redeliver.remove(&sseq);
                self.dirty = true;
                if known {
                    self.acked.push(sseq);
                    AckOutcome::Terminated(rest.to_string())
                } else {
                    AckOutcome::Other
                }
            }
            _ => AckOutcome::Other,
        }
    }

    fn ack(&mut self, sseq: u64) {
        match self.config.ack_policy {
            AckPolicy::All => {
                let done: Vec<u64> = self.state.pending.range(..=sseq).map(|(s, _)| *s).collect();
                for s in done {
                    self.state.pending.remove(&s);
                    self.deadlines.remove(&s);
                    self.redeliver.remove(&s);
                    self.acked.push(s);
                }
            }
            _ => {
                if self.state.pending.remove(&sseq).is_some() {
                    self.acked.push(sseq);
                }
                self.deadlines.remove(&sseq);
                self.redeliver.remove(&sseq);
            }
        }
        self.dirty = true;
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
        if self.config.max_batch > 0 && req.batch > self.config.max_batch as u64 {
            let text = format!("Exceeded MaxRequestBatch of {}", self.config.max_batch);
            return Some(status(&reply, 409, &text, &[]));
        }
        if self.waiting.len() as i64 >= self.config.max_waiting.max(1) {
            return Some(status(&reply, 409, "Exceeded MaxWaiting", &[]));
        }
        if req.no_wait && self.available(store) == 0 {
            return Some(status(&reply, 404, "No Messages", &[]));
        }
        let now = Instant::now();
        self.waiting.push_back(PullRequest {
            reply,
            batch: req.batch.max(1),
            max_bytes: req.max_bytes,
            expires: (req.expires > 0).then(|| now + Duration::from_nanos(req.expires as u64)),
            no_wait: req.no_wait,
            heartbeat: (req.idle_heartbeat > 0)
                .then(|| Duration::from_nanos(req.idle_heartbeat as u64)),
            last_hb: now,
            delivered: 0,
        });
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

    /// Produces every delivery and status message that is due now.
    pub fn pump(
        &mut self,
        stream: &str,
        store: &dyn MsgStore,
        push_active: bool,
        out: &mut Vec<Outgoing>,
    ) -> Vec<MaxDeliveries> {
        let now = Instant::now();
        let mut exceeded = Vec::new();
        // Ack deadlines that passed become redeliveries.
        let due: Vec<u64> = self
            .deadlines
            .iter()
            .filter(|(_, d)| **d <= now)
            .map(|(s, _)| *s)
            .collect();
        for s in due {
            self.deadlines.remove(&s);
            self.redeliver.insert(s);
        }
        if let Some(until) = self.paused_until() {
            if until > now_nanos() {
                return exceeded;
            }
        }
        if self.is_pull() {
            self.expire_pulls(store, now, out);
        }
        let max_pending = if self.config.ack_policy == AckPolicy::None {
            u64::MAX
        } else {
            self.config.max_ack_pending.max(1) as u64
        };
        let mut pending_left: Option<u64> = None;
        loop {
            let target = if self.is_pull() {
                match self.waiting.front() {
                    Some(r) => r.reply.clone(),
                    None => break,
                }
            } else {
                if !push_active || self.fc_outstanding.is_some() {
                    break;
                }
                match &self.config.deliver_subject {
                    Some(d) => d.clone(),
                    None => break,
                }
            };
            // Redeliveries first, then the initial last-per-subject set, then new messages.
            let mut from_initial = false;
            let (sseq, redelivery) = if let Some(&s) = self.redeliver.iter().next() {
                self.redeliver.remove(&s);
                if !self.state.pending.contains_key(&s) {
                    continue;
                }
                (s, true)
            } else {
                if self.state.pending.len() as u64 >= max_pending {
                    break;
                }
                if let Some(s) = self.state.initial.pop_front() {
                    from_initial = true;
                    (s, false)
                } else {
                    match self.next_seq(store, self.state.sseq) {
                        Some(s) => (s, false),
                        None => break,
                    }
                }
            };
            let msg = match store.get(sseq) {
                Ok(Some(m)) => m,
                _ => {
                    // Gone (deleted or damaged): skip it.
                    self.state.pending.remove(&sseq);
                    if !redelivery {
                        self.state.sseq = self.state.sseq.max(sseq);
                    }
                    continue;
                }
            };
            if !redelivery && !self.matches(&msg.subject) {
                self.state.sseq = self.state.sseq.max(sseq);
                continue;
            }
            if self.config.replay_policy == ReplayPolicy::Original && !redelivery {
                if let Some((prev_ts, at)) = self.last_delivery_time {
                    let gap = Duration::from_nanos(msg.time.saturating_sub(prev_ts).max(0) as u64);
                    if at + gap > now {
                        // Not due yet: leave it where it came from and wake up when it is.
                        if from_initial {
                            self.state.initial.push_front(sseq);
                        }
                        self.replay_due = Some(at + gap);
                        break;
                    }
                }
                self.last_delivery_time = Some((msg.time, now));
                self.replay_due = None;
            }
            if self.config.rate_limit_bps > 0 && !self.is_pull() {
                let size = (msg.payload.len() + msg.headers.as_ref().map_or(0, |h| h.len())) as u64;
                if let Some(wait) = self.rate.take(size, self.config.rate_limit_bps, now) {
                    // Over the rate: put the message back and wake up when it fits.
                    if redelivery {
                        self.redeliver.insert(sseq);
                    } else if from_initial {
                        self.state.initial.push_front(sseq);
                    }
                    self.replay_due = Some(now + wait);
                    break;
                }
            }
            let count = if redelivery {
                let entry = self.state.pending.get(&sseq).map(|p| p.1).unwrap_or(1);
                if self.config.max_deliver > 0 && entry >= self.config.max_deliver as u64 {
                    self.state.pending.remove(&sseq);
                    self.dirty = true;
                    exceeded.push(MaxDeliveries {
                        stream_seq: sseq,
                        deliveries: entry,
                    });
                    continue;
                }
                self.state.num_redelivered += u64::from(entry == 1);
                entry + 1
            } else {
                1
            };
            let size = (msg.payload.len() + msg.headers.as_ref().map_or(0, |h| h.len())) as u64;
            if self.is_pull() {
                if let Some(r) = self.waiting.front() {
                    if r.max_bytes > 0 && size > r.max_bytes {
                        let reply = r.reply.clone();
                        self.waiting.pop_front();
                        out.push(status(&reply, 409, "Message Size Exceeds MaxBytes", &[]));
                        if redelivery {
                            self.redeliver.insert(sseq);
                        }
                        // A new message stays behind the cursor and is offered again.
                        continue;
                    }
                }
            }
            let dseq = self.state.dseq + 1;
            self.state.dseq = dseq;
            if !redelivery {
                self.state.sseq = self.state.sseq.max(sseq);
            }
            // Counting is O(subjects) for wildcard filters: count once per pump, then step down.
            let pending = match pending_left {
                Some(p) if !redelivery => p.saturating_sub(1),
                Some(p) => p,
                None => self.num_pending(store),
            };
            pending_left = Some(pending);
            let reply = format!(
                "$JS.ACK.{stream}.{}.{count}.{sseq}.{dseq}.{}.{pending}",
                self.name, msg.time
            );
            if self.config.ack_policy != AckPolicy::None {
                self.state.pending.insert(sseq, (dseq, count, msg.time));
                self.deadlines.insert(sseq, now + self.ack_wait(count));
            }
            self.dirty = true;
            let (hdrs, payload) = if self.config.headers_only {
                let len = msg.payload.len().to_string();
                (
                    Some(headers::append(
                        msg.headers.as_deref(),
                        &[("Nats-Msg-Size", &len)],
                    )),
                    Bytes::new(),
                )
            } else {
                (
                    msg.headers.as_ref().map(|h| h.to_vec()),
                    msg.payload.clone(),
                )
            };
            out.push(Outgoing {
                to: target.clone(),
                subject: msg.subject.clone(),
                reply: Some(reply),
                headers: hdrs,
                payload,
            });
            self.last_hb = now;
            if self.is_pull() {
                if let Some(r) = self.waiting.front_mut() {
                    r.delivered += 1;
                    r.batch -= 1;
                    if r.max_bytes > 0 {
                        r.max_bytes = r.max_bytes.saturating_sub(size);
                    }
                    if r.batch == 0 {
                        self.waiting.pop_front();
                    }
                }
            } else if self.config.flow_control {
                self.since_fc += size;
                if self.since_fc >= FC_EVERY {
                    self.since_fc = 0;
                    self.fc_counter += 1;
                    let fc = format!("$JS.FC.{stream}.{}.{}", self.name, self.fc_counter);
                    self.fc_outstanding = Some(fc.clone());
                    let mut m = status(&target, 100, "FlowControl Request", &[]);
                    m.reply = Some(fc);
                    out.push(m);
                }
            }
        }
        // No-wait requests end once nothing more is available.
        if self.is_pull() {
            while let Some(r) = self.waiting.front() {
                if r.no_wait && self.available(store) == 0 {
                    let reply = r.reply.clone();
                    self.waiting.pop_front();
                    out.push(status(&reply, 404, "No Messages", &[]));
                } else {
                    break;
                }
            }
        }
        self.heartbeats(now, out);
        exceeded
    }

    fn expire_pulls(&mut self, store: &dyn MsgStore, now: Instant, out: &mut Vec<Outgoing>) {
        let _ = store;
        let mut kept = VecDeque::with_capacity(self.waiting.len());
        for r in self.waiting.drain(..) {
            if r.expires.is_some_and(|e| e <= now) {
                let left = r.batch.to_string();
                let bytes = r.max_bytes.to_string();
                out.push(status(
                    &r.reply,
                    408,
                    "Request Timeout",
                    &[
                        ("Nats-Pending-Messages", &left),
                        ("Nats-Pending-Bytes", &bytes),
                    ],
                ));
            } else {
                kept.push_back(r);
            }
        }
        self.waiting = kept;
    }

    fn heartbeats(&mut self, now: Instant, out: &mut Vec<Outgoing>) {
        let last = (self.state.dseq.to_string(), self.state.sseq.to_string());
        let pairs = [
            ("Nats-Last-Consumer", last.0.as_str()),
            ("Nats-Last-Stream", last.1.as_str()),
        ];
        for r in self.waiting.iter_mut() {
            if let Some(hb) = r.heartbeat {
                if now.duration_since(r.last_hb) >= hb {
                    r.last_hb = now;
                    out.push(status(&r.reply, 100, "Idle Heartbeat", &[]));
                }
            }
        }
        if self.is_pull() || self.config.idle_heartbeat <= 0 {
            return;
        }
        let hb = Duration::from_nanos(self.config.idle_heartbeat as u64);
        if now.duration_since(self.last_hb) >= hb {
            self.last_hb = now;
            if let Some(d) = &self.config.deliver_subject {
                let mut m = status(d, 100, "Idle Heartbeat", &pairs);
                if let Some(fc) = &self.fc_outstanding {
                    m.headers = Some(headers::build(
                        Some((100, "Idle Heartbeat")),
                        &[pairs[0], pairs[1], ("Nats-Consumer-Stalled", fc)],
                    ));
                }
                out.push(m);
            }
        }
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

/// A token bucket over delivered bytes for `rate_limit_bps` (bits per second).
#[derive(Default)]
struct RateLimiter {
    tokens: f64,
    last: Option<Instant>,
}

impl RateLimiter {
    /// Takes `size` bytes; `Some(wait)` if they are not available yet.
    fn take(&mut self, size: u64, bps: u64, now: Instant) -> Option<Duration> {
        let per_sec = bps as f64 / 8.0;
        let elapsed = self
            .last
            .map_or(1.0, |l| now.duration_since(l).as_secs_f64());
        self.last = Some(now);
        // Allow a burst of one second's worth, or one message if it is bigger.
        self.tokens = (self.tokens + elapsed * per_sec).min(per_sec.max(size as f64));
        if self.tokens >= size as f64 {
            self.tokens -= size as f64;
            None
        } else {
            Some(Duration::from_secs_f64(
                (size as f64 - self.tokens) / per_sec,
            ))
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

/// What an ack did.
pub(crate) enum AckOutcome {
    Acked,
    Next(String),
    Terminated(String),
    Other,
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

#[derive(Deserialize, Default)]
struct PullJson {
    #[serde(default)]
    batch: i64,
    #[serde(default)]
    expires: i64,
    #[serde(default)]
    max_bytes: i64,
    #[serde(default)]
    no_wait: bool,
    #[serde(default)]
    idle_heartbeat: i64,
}

struct Pull {
    batch: u64,
    expires: i64,
    max_bytes: u64,
    no_wait: bool,
    idle_heartbeat: i64,
}

fn parse_pull(body: &[u8]) -> Result<Pull, String> {
    let text = std::str::from_utf8(body).unwrap_or("").trim();
    if text.is_empty() {
        return Ok(Pull {
            batch: 1,
            expires: 0,
            max_bytes: 0,
            no_wait: false,
            idle_heartbeat: 0,
        });
    }
    if let Ok(n) = text.parse::<u64>() {
        return Ok(Pull {
            batch: n.max(1),
            expires: 0,
            max_bytes: 0,
            no_wait: false,
            idle_heartbeat: 0,
        });
    }
    let j: PullJson = serde_json::from_str(text).map_err(|_| "Bad Request".to_string())?;
    if j.batch < 0 || j.expires < 0 || j.max_bytes < 0 {
        return Err("Bad Request".into());
    }
    if j.idle_heartbeat > 0 && j.expires > 0 && j.idle_heartbeat * 2 > j.expires {
        return Err("Bad Request - heartbeat value too large".into());
    }
    Ok(Pull {
        batch: j.batch.max(1) as u64,
        expires: j.expires,
        max_bytes: j.max_bytes as u64,
        no_wait: j.no_wait,
        idle_heartbeat: j.idle_heartbeat,
    })
}

fn parse_nak_delay(rest: &str) -> Option<Duration> {
    let rest = rest.trim();
    if rest.is_empty() {
        return None;
    }
    if rest.starts_with('{') {
        #[derive(Deserialize)]
        struct Delay {
            delay: i64,
        }
        return serde_json::from_str::<Delay>(rest)
            .ok()
            .map(|d| Duration::from_nanos(d.delay.max(0) as u64));
    }
    crate::config::parse_duration(rest)
}
