//! Delivery: turning a consumer's state into the messages due now — redeliveries, new
//! messages, pull-request statuses, heartbeats, flow control and `rate_limit_bps` pacing.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::{now_nanos, status, Consumer, MaxDeliveries, Outgoing};
use crate::jetstream::config::{AckPolicy, ReplayPolicy};
use crate::jetstream::headers;
use crate::store::MsgStore;

/// Bytes of flow-controlled data between FlowControl requests.
const FC_EVERY: u64 = 2 * 1024 * 1024;

impl Consumer {
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
        // No acks, or max_ack_pending -1: no limit.
        let max_pending =
            if self.config.ack_policy == AckPolicy::None || self.config.max_ack_pending < 0 {
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
