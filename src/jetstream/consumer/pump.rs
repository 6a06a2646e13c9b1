//! Delivery: turning a consumer's state into the messages due now — redeliveries, new
//! messages, pull-request statuses, heartbeats, flow control and `rate_limit_bps` pacing. The
//! pump reads the replicated state and changes only leader-local state; what it handed out is
//! returned as [`Deliveries`], the `Delivered` op the stream applies.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::priority::PIN_HEADER;
use super::{now_nanos, status, Consumer, Deliveries, MaxDeliveries, Outgoing, PullRequest, Sent};
use crate::jetstream::config::{AckPolicy, PriorityPolicy, ReplayPolicy};
use crate::jetstream::headers;
use crate::store::MsgStore;

/// Bytes of flow-controlled data between FlowControl requests.
const FC_EVERY: u64 = 2 * 1024 * 1024;

impl Consumer {
    /// Produces every delivery and status message that is due now, the messages that reached
    /// `max_deliver`, and the `Delivered` op that records what was handed out. Nothing above
    /// `committed` (the stream's commit watermark) is delivered yet.
    pub fn pump(
        &mut self,
        stream: &str,
        store: &dyn MsgStore,
        (push_active, committed): (bool, u64),
        out: &mut Vec<Outgoing>,
    ) -> (Vec<MaxDeliveries>, Deliveries) {
        let now = Instant::now();
        let mut exceeded = Vec::new();
        let mut d = Deliveries {
            cursor: self.state.sseq,
            dseq: self.state.dseq,
            ..Deliveries::default()
        };
        // Ack deadlines that passed become redeliveries.
        let due: Vec<u64> = self
            .deadlines
            .iter()
            .filter(|(_, t)| **t <= now)
            .map(|(s, _)| *s)
            .collect();
        for s in due {
            self.deadlines.remove(&s);
            self.redeliver.insert(s);
        }
        if let Some(until) = self.paused_until() {
            if until > now_nanos() {
                return (exceeded, d);
            }
        }
        if self.is_pull() {
            self.expire_pulls(now, out);
            self.expire_pin(stream, now, out);
        }
        self.push_bound = push_active && !self.is_pull();
        let target = (push_active, committed);
        self.deliver(stream, store, target, now, out, &mut d, &mut exceeded);
        if d.dseq > self.state.dseq {
            self.last_delivered_at = Some(now_nanos());
        }
        // No-wait requests end once nothing more is available.
        if self.is_pull() {
            let initial_left = self.state.initial.len() - d.initial_taken as usize;
            let left =
                self.redeliver.len() as u64 + self.pending_after(store, d.cursor, initial_left);
            while let Some(r) = self.waiting.front() {
                if r.no_wait && left == 0 {
                    let reply = r.reply.clone();
                    self.waiting.pop_front();
                    out.push(status(&reply, 404, "No Messages", &[]));
                } else {
                    break;
                }
            }
        }
        self.heartbeats(now, d.dseq, d.cursor, out);
        (exceeded, d)
    }

    /// The delivery loop of [`Consumer::pump`]: redeliveries first, then the initial
    /// last-per-subject set, then new messages up to `committed`, while a target and room for
    /// pending acks last.
    #[allow(clippy::too_many_arguments)]
    fn deliver(
        &mut self,
        stream: &str,
        store: &dyn MsgStore,
        (push_active, committed): (bool, u64),
        now: Instant,
        out: &mut Vec<Outgoing>,
        d: &mut Deliveries,
        exceeded: &mut Vec<MaxDeliveries>,
    ) {
        let tracked = self.config.ack_policy != AckPolicy::None;
        // No acks, or max_ack_pending -1: no limit.
        let max_pending = if !tracked || self.config.max_ack_pending < 0 {
            u64::MAX
        } else {
            self.config.max_ack_pending.max(1) as u64
        };
        let mut pending_len = self.state.pending.len() as u64;
        let mut pending_left: Option<u64> = None;
        loop {
            // Push: the deliver subject; pull: picked once the message is known.
            let push_target = if self.is_pull() {
                if self.waiting.is_empty() {
                    break;
                }
                None
            } else {
                if !push_active || self.fc_outstanding.is_some() {
                    break;
                }
                match &self.config.deliver_subject {
                    Some(t) => Some(t.clone()),
                    None => break,
                }
            };
            let mut from_initial = false;
            let (sseq, redelivery) = if let Some(&s) = self.redeliver.iter().next() {
                self.redeliver.remove(&s);
                if !self.state.pending.contains_key(&s) || d.dropped.contains(&s) {
                    continue;
                }
                (s, true)
            } else {
                if pending_len >= max_pending {
                    break;
                }
                if let Some(&s) = self.state.initial.get(d.initial_taken as usize) {
                    if s > committed {
                        break;
                    }
                    from_initial = true;
                    d.initial_taken += 1;
                    (s, false)
                } else {
                    match self.next_seq(store, d.cursor) {
                        Some(s) if s <= committed => (s, false),
                        _ => break,
                    }
                }
            };
            let msg = match store.get(sseq) {
                Ok(Some(m)) => m,
                _ => {
                    // Gone (deleted or damaged): skip it.
                    if self.state.pending.contains_key(&sseq) {
                        d.dropped.push(sseq);
                        pending_len = pending_len.saturating_sub(1);
                    }
                    if !redelivery {
                        d.cursor = d.cursor.max(sseq);
                    }
                    continue;
                }
            };
            if !redelivery && !self.matches(&msg.subject) {
                d.cursor = d.cursor.max(sseq);
                continue;
            }
            // Not delivered now: leave it where it came from (a new message stays behind the
            // cursor), to be offered again.
            let put_back = |c: &mut Self, d: &mut Deliveries| {
                if redelivery {
                    c.redeliver.insert(sseq);
                } else if from_initial {
                    d.initial_taken -= 1;
                }
            };
            // Held back (replay_policy: original, rate_limit_bps): wake up when it is due.
            let hold = |c: &mut Self, d: &mut Deliveries, until: Instant| {
                put_back(c, d);
                c.replay_due = Some(until);
            };
            if self.config.replay_policy == ReplayPolicy::Original && !redelivery {
                if let Some((prev_ts, at)) = self.last_delivery_time {
                    let gap = Duration::from_nanos(msg.time.saturating_sub(prev_ts).max(0) as u64);
                    if at + gap > now {
                        hold(self, d, at + gap);
                        break;
                    }
                }
                self.last_delivery_time = Some((msg.time, now));
                self.replay_due = None;
            }
            let data_size = msg.payload.len() + msg.headers.as_ref().map_or(0, |h| h.len());
            let size = data_size as u64;
            if self.config.rate_limit_bps > 0 && !self.is_pull() {
                if let Some(wait) = self.rate.take(size, self.config.rate_limit_bps, now) {
                    hold(self, d, now + wait);
                    break;
                }
            }
            let count = if redelivery {
                let entry = self.state.pending.get(&sseq).map(|p| p.1).unwrap_or(1);
                if self.config.max_deliver > 0 && entry >= self.config.max_deliver as u64 {
                    d.dropped.push(sseq);
                    pending_len = pending_len.saturating_sub(1);
                    exceeded.push(MaxDeliveries {
                        stream_seq: sseq,
                        deliveries: entry,
                    });
                    continue;
                }
                entry + 1
            } else {
                1
            };
            let initial_left = self.state.initial.len() - d.initial_taken as usize;
            let cursor = if redelivery {
                d.cursor
            } else {
                d.cursor.max(sseq)
            };
            // Counting is O(subjects) for wildcard filters: count once per pump, then step down.
            let pending = match pending_left {
                Some(p) if !redelivery => p.saturating_sub(1),
                Some(p) => p,
                None => self.pending_after(store, cursor, initial_left),
            };
            let dseq = d.dseq + 1;
            let reply = format!(
                "$JS.ACK.{stream}.{}.{count}.{sseq}.{dseq}.{}.{pending}",
                self.name, msg.time
            );
            // A pull request takes the message if its byte budget (subject, reply, headers and
            // data, as nats-server counts) has room.
            let wire_size = (msg.subject.len() + reply.len() + data_size) as u64;
            let slot = if self.is_pull() {
                let behind = if self.config.priority_policy == PriorityPolicy::Overflow {
                    self.pending_after(store, d.cursor, initial_left)
                } else {
                    0
                };
                let pinned = self.pin_id().is_some();
                let Some(i) = self.pick_pull(stream, behind, pending_len, out) else {
                    put_back(self, d);
                    break;
                };
                let r = &self.waiting[i];
                if r.max_bytes > 0 && wire_size > r.max_bytes {
                    if let Some(r) = self.waiting.remove(i) {
                        out.push(pending_status(&r, 409, "Message Size Exceeds MaxBytes"));
                    }
                    if !pinned {
                        // Pinned just now to a request that never got a message: nobody
                        // holds that pin.
                        self.drop_pin();
                    }
                    put_back(self, d);
                    continue;
                }
                Some(i)
            } else {
                None
            };
            let target = match (slot, push_target) {
                (Some(i), _) => self.waiting[i].reply.clone(),
                (None, Some(t)) => t,
                (None, None) => break,
            };
            // The pin (perhaps just given to this request) goes with the message.
            let pin = (self.config.priority_policy == PriorityPolicy::PinnedClient)
                .then(|| self.pin_id().map(str::to_string))
                .flatten();
            d.dseq = dseq;
            d.cursor = cursor;
            pending_left = Some(pending);
            if tracked {
                d.sent.push(Sent {
                    sseq,
                    dseq,
                    count,
                    time: msg.time,
                });
                pending_len += u64::from(!redelivery);
                self.deadlines.insert(sseq, now + self.ack_wait(count));
            }
            let (mut hdrs, payload) = if self.config.headers_only {
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
            if let Some(pin) = &pin {
                hdrs = Some(headers::append(hdrs.as_deref(), &[(PIN_HEADER, pin)]));
            }
            out.push(Outgoing {
                to: target.clone(),
                subject: msg.subject.clone(),
                reply: Some(reply),
                headers: hdrs,
                payload,
            });
            self.last_hb = now;
            match slot {
                Some(i) => self.account_pull(i, wire_size, out),
                None => self.account_push(stream, &target, size, out),
            }
        }
    }

    /// After one delivery to pull request `i`: its batch and byte budget. A request whose
    /// budget is used up ends; one whose batch is done with bytes left says so (409 Batch
    /// Completed), as nats-server does.
    fn account_pull(&mut self, i: usize, size: u64, out: &mut Vec<Outgoing>) {
        let Some(r) = self.waiting.get_mut(i) else {
            return;
        };
        r.delivered += 1;
        r.batch = r.batch.saturating_sub(1);
        // Heartbeats are for idle requests: a delivery starts the wait again.
        r.last_hb = Instant::now();
        if r.max_bytes > 0 {
            r.max_bytes = r.max_bytes.saturating_sub(size);
            if r.max_bytes == 0 {
                r.batch = 0;
            } else if r.batch == 0 {
                out.push(pending_status(r, 409, "Batch Completed"));
            }
        }
        if r.batch == 0 {
            self.waiting.remove(i);
        }
    }

    /// After one push delivery: flow control.
    fn account_push(&mut self, stream: &str, target: &str, size: u64, out: &mut Vec<Outgoing>) {
        if self.config.flow_control {
            self.since_fc += size;
            if self.since_fc >= FC_EVERY {
                self.since_fc = 0;
                self.fc_counter += 1;
                let fc = format!("$JS.FC.{stream}.{}.{}", self.name, self.fc_counter);
                self.fc_outstanding = Some(fc.clone());
                let mut m = status(target, 100, "FlowControl Request", &[]);
                m.reply = Some(fc);
                out.push(m);
            }
        }
    }

    fn expire_pulls(&mut self, now: Instant, out: &mut Vec<Outgoing>) {
        let mut kept = VecDeque::with_capacity(self.waiting.len());
        for r in self.waiting.drain(..) {
            if r.expires.is_some_and(|e| e <= now) {
                out.push(pending_status(&r, 408, "Request Timeout"));
            } else {
                kept.push_back(r);
            }
        }
        self.waiting = kept;
    }

    fn heartbeats(&mut self, now: Instant, dseq: u64, sseq: u64, out: &mut Vec<Outgoing>) {
        let last = (dseq.to_string(), sseq.to_string());
        let pairs = [
            ("Nats-Last-Consumer", last.0.as_str()),
            ("Nats-Last-Stream", last.1.as_str()),
        ];
        for r in self.waiting.iter_mut() {
            if let Some(hb) = r.heartbeat {
                if now.duration_since(r.last_hb) >= hb {
                    r.last_hb = now;
                    out.push(status(&r.reply, 100, "Idle Heartbeat", &pairs));
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
}

/// A status ending (or about) pull request `r`, with what it still wanted.
pub(super) fn pending_status(r: &PullRequest, code: u16, text: &str) -> Outgoing {
    let left = r.batch.to_string();
    let bytes = r.max_bytes.to_string();
    status(
        &r.reply,
        code,
        text,
        &[
            ("Nats-Pending-Messages", &left),
            ("Nats-Pending-Bytes", &bytes),
        ],
    )
}

/// A token bucket over delivered bytes for `rate_limit_bps` (bits per second).
#[derive(Default)]
pub(super) struct RateLimiter {
    tokens: f64,
    last: Option<Instant>,
}

impl RateLimiter {
    /// Takes `size` bytes; `Some(wait)` if they are not available yet.
    pub(super) fn take(&mut self, size: u64, bps: u64, now: Instant) -> Option<Duration> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemStore;

    /// A pull consumer never hands out a message above the commit watermark (appended, not yet
    /// durable: the runner applies the next batch while the previous one is in `fdatasync`);
    /// once the watermark passes it, it is delivered in order.
    #[test]
    fn nothing_above_the_commit_watermark_is_delivered() {
        let mut store = MemStore::new();
        for i in 1..=10 {
            store.append("s.a", None, b"x", i).unwrap();
        }
        let config = serde_json::from_value(serde_json::json!({
            "durable_name": "d", "ack_policy": "explicit", "max_ack_pending": -1,
            "ack_wait": 30_000_000_000u64,
        }))
        .unwrap();
        let mut c = Consumer::new("d".into(), config, &store, None, &["s.>".into()], 0);
        assert!(c
            .add_pull("inbox".into(), br#"{"batch":100}"#, &store)
            .is_none());
        let mut out = Vec::new();
        let (_, d) = c.pump("S", &store, (false, 6), &mut out);
        let seqs: Vec<u64> = d.sent.iter().map(|s| s.sseq).collect();
        assert_eq!(seqs, (1..=6).collect::<Vec<_>>());
        assert_eq!(d.cursor, 6);
        c.state.apply_delivered(&d, c.config.ack_policy);
        let mut out = Vec::new();
        let (_, d) = c.pump("S", &store, (false, 10), &mut out);
        let seqs: Vec<u64> = d.sent.iter().map(|s| s.sseq).collect();
        assert_eq!(seqs, (7..=10).collect::<Vec<_>>());
    }
}
