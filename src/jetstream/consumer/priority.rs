//! Priority groups of pull consumers (nats-server 2.11/2.12): which waiting pull request a
//! message goes to under `priority_policy` `overflow` (requests with `min_pending` /
//! `min_ack_pending` wait until the consumer is that far behind), `pinned_client` (one client,
//! named by the `Nats-Pin-Id` it was given, takes everything until it stops pulling for
//! `priority_timeout` or is unpinned) and `prioritized` (lower `priority` first). The pin is
//! leader-local, as on nats-server: a new leader pins afresh.

use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::{json, Value};

use super::pull::PullGroup;
use super::{Consumer, Outgoing, PullRequest};
use crate::jetstream::config::{valid_group_name, PriorityPolicy};
use crate::jetstream::errors::ApiError;

/// The client a `pinned_client` consumer delivers to.
pub(super) struct Pin {
    pub id: String,
    /// When it was pinned (unix nanoseconds, shown in consumer info).
    pub since: i64,
    /// When it loses the pin unless it pulls again.
    pub expires: Instant,
}

/// The header naming the pin on deliveries and in pull requests' `id`.
pub(super) const PIN_HEADER: &str = "Nats-Pin-Id";

impl Consumer {
    /// Checks a pull request's priority fields as nats-server does; `Err` is the status to
    /// answer it with. A request of the pinned client renews the pin.
    pub(super) fn check_pull_group(&mut self, g: &PullGroup) -> Result<(), (u16, &'static str)> {
        let policy = self.config.priority_policy;
        if (g.min_pending != 0 || g.min_ack_pending != 0) && policy != PriorityPolicy::Overflow {
            return Err((400, "Bad Request - Not a Overflow Priority consumer"));
        }
        if !g.id.is_empty() && policy != PriorityPolicy::PinnedClient {
            return Err((400, "Bad Request - Not a Pinned Client Priority consumer"));
        }
        if !(0..=9).contains(&g.priority) {
            return Err((400, "Bad Request - Priority must be between 0 and 9"));
        }
        if policy == PriorityPolicy::None {
            return Ok(());
        }
        if g.group.is_empty() {
            return Err((400, "Bad Request - Priority Group missing"));
        }
        if !self.config.priority_groups.contains(&g.group) {
            return Err((400, "Bad Request - Invalid Priority Group"));
        }
        let ttl = self.pin_ttl();
        if let Some(pin) = &mut self.pin {
            if g.id == pin.id {
                pin.expires = Instant::now() + ttl;
            } else if !g.id.is_empty() {
                return Err((423, "Nats-Pin-Id mismatch"));
            }
        }
        Ok(())
    }

    /// Where a new pull request goes in the queue: by `priority` for `prioritized`, else last.
    pub(super) fn queue_position(&self, req: &PullRequest) -> usize {
        if self.config.priority_policy != PriorityPolicy::Prioritized {
            return self.waiting.len();
        }
        let rank = |r: &PullRequest| r.group.as_ref().map_or(i64::MAX, |g| g.priority);
        let mine = rank(req);
        self.waiting
            .iter()
            .position(|r| rank(r) > mine)
            .unwrap_or(self.waiting.len())
    }

    /// The waiting request the next message goes to (its index), by the priority policy;
    /// `None` if no request may take it now. Requests holding a stale pin are ended with a
    /// 423. `pending` counts the messages not yet delivered, `ack_pending` those awaiting acks.
    pub(super) fn pick_pull(
        &mut self,
        stream: &str,
        pending: u64,
        ack_pending: u64,
        out: &mut Vec<Outgoing>,
    ) -> Option<usize> {
        match self.config.priority_policy {
            PriorityPolicy::None | PriorityPolicy::Prioritized => {
                (!self.waiting.is_empty()).then_some(0)
            }
            PriorityPolicy::Overflow => self.waiting.iter().position(|r| {
                let Some(g) = &r.group else { return true };
                let as_u64 = |n: i64| u64::try_from(n).unwrap_or(0);
                (g.min_pending <= 0 && g.min_ack_pending <= 0)
                    || (g.min_pending > 0 && as_u64(g.min_pending) <= pending)
                    || (g.min_ack_pending > 0 && as_u64(g.min_ack_pending) <= ack_pending)
            }),
            PriorityPolicy::PinnedClient => self.pick_pinned(stream, out),
        }
    }

    fn pick_pinned(&mut self, stream: &str, out: &mut Vec<Outgoing>) -> Option<usize> {
        let mut i = 0;
        while i < self.waiting.len() {
            let id = self.waiting[i].group.as_ref().map_or("", |g| g.id.as_str());
            let pinned = self.pin.as_ref().map(|p| p.id.as_str());
            match pinned {
                Some(p) if id == p => return Some(i),
                Some(_) if id.is_empty() => i += 1,
                None if id.is_empty() => {
                    self.assign_pin(i, stream, out);
                    return Some(i);
                }
                // A pin this consumer no longer honours.
                _ => {
                    if let Some(r) = self.waiting.remove(i) {
                        out.push(wrong_pin(&r));
                    }
                }
            }
        }
        None
    }

    fn assign_pin(&mut self, i: usize, stream: &str, out: &mut Vec<Outgoing>) {
        let id = nuid::next().to_string();
        let group = match self.waiting.get_mut(i).and_then(|r| r.group.as_mut()) {
            Some(g) => {
                g.id = id.clone();
                g.group.clone()
            }
            None => return,
        };
        self.pin = Some(Pin {
            id: id.clone(),
            since: super::now_nanos(),
            expires: Instant::now() + self.pin_ttl(),
        });
        let mut v = crate::jetstream::advisory::typed("consumer_group_pinned");
        v["stream"] = json!(stream);
        v["consumer"] = json!(self.name);
        v["group"] = json!(group);
        v["pinned_id"] = json!(id);
        out.push(advisory("PINNED", stream, &self.name, &v));
    }

    /// Drops the pin (`reason`: "timeout" or "admin") and tells whoever listens.
    fn unpin_now(&mut self, stream: &str, group: &str, reason: &str, out: &mut Vec<Outgoing>) {
        self.pin = None;
        let mut v = crate::jetstream::advisory::typed("consumer_group_unpinned");
        v["stream"] = json!(stream);
        v["consumer"] = json!(self.name);
        v["group"] = json!(group);
        v["reason"] = json!(reason);
        out.push(advisory("UNPINNED", stream, &self.name, &v));
    }

    /// `CONSUMER.UNPIN`: the group's pinned client (if any) loses its pin; the next pull
    /// request without an id is pinned.
    pub(crate) fn unpin(
        &mut self,
        stream: &str,
        group: &str,
        out: &mut Vec<Outgoing>,
    ) -> Result<(), ApiError> {
        if group.is_empty() {
            return Err(ApiError::invalid_json("consumer group not specified"));
        }
        if !valid_group_name(group) {
            return Err(ApiError::consumer_invalid_group_name());
        }
        if !self.config.priority_groups.iter().any(|g| g == group) {
            return Err(ApiError::consumer_invalid_priority_group());
        }
        self.unpin_now(stream, group, "admin", out);
        Ok(())
    }

    /// Ends a pin whose client stopped pulling for `priority_timeout`.
    pub(super) fn expire_pin(&mut self, stream: &str, now: Instant, out: &mut Vec<Outgoing>) {
        if self.pin.as_ref().is_some_and(|p| p.expires <= now) {
            let group = self
                .config
                .priority_groups
                .first()
                .cloned()
                .unwrap_or_default();
            self.unpin_now(stream, &group, "timeout", out);
        }
    }

    /// Forgets the pin without telling anyone (its holder never learnt it).
    pub(super) fn drop_pin(&mut self) {
        self.pin = None;
    }

    /// When the pin expires, if there is one.
    pub(super) fn pin_deadline(&self) -> Option<Instant> {
        self.pin.as_ref().map(|p| p.expires)
    }

    /// The pin a delivery names (`pinned_client` only).
    pub(super) fn pin_id(&self) -> Option<&str> {
        self.pin.as_ref().map(|p| p.id.as_str())
    }

    fn pin_ttl(&self) -> Duration {
        Duration::from_nanos(u64::try_from(self.config.priority_timeout).unwrap_or(0))
    }

    /// Consumer info's `priority_groups`: the first group with its pin, as nats-server shows it.
    pub(crate) fn priority_groups_json(&self) -> Option<Value> {
        let group = self.config.priority_groups.first()?;
        let mut g = json!({ "group": group, "pinned_ts": "0001-01-01T00:00:00Z" });
        if let Some(pin) = &self.pin {
            g["pinned_client_id"] = json!(pin.id);
            g["pinned_ts"] = json!(crate::jetstream::time::rfc3339(pin.since));
        }
        Some(json!([g]))
    }
}

/// A request refused because it holds a pin that is not (or no longer) the consumer's.
fn wrong_pin(r: &PullRequest) -> Outgoing {
    super::pump::pending_status(r, 423, "Nats-Wrong-Pin-Id")
}

fn advisory(kind: &str, stream: &str, consumer: &str, body: &Value) -> Outgoing {
    let subject = format!("$JS.EVENT.ADVISORY.CONSUMER.{kind}.{stream}.{consumer}");
    Outgoing {
        to: subject.clone(),
        subject,
        reply: None,
        headers: None,
        payload: Bytes::from(serde_json::to_vec(body).unwrap_or_default()),
    }
}
