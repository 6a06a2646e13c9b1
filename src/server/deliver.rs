//! Delivery of one published message to the subscriptions that match it: every plain
//! subscriber gets a copy, each queue group gets exactly one, spread by a random starting member.

use std::sync::Arc;

use bytes::Bytes;
use rand::Rng;

use super::message::Message;
use super::outbound::{Outbound, Push};
use super::sublist::{MatchResult, Router, Sink, Subscription, Take};
use super::trace::{Trace, TraceTag};
use crate::protocol::subject;

/// A message as published, borrowing from the publisher's buffer.
pub(crate) struct Publish<'a> {
    /// Destination subject.
    pub subject: &'a [u8],
    /// Reply subject.
    pub reply: Option<&'a [u8]>,
    /// Raw header block.
    pub headers: Option<&'a [u8]>,
    /// Body.
    pub payload: &'a [u8],
    /// The subject it is routed by when that is not `subject` (a JetStream delivery, routed by
    /// its consumer's deliver subject): a leaf node is told it after the reply's `@`.
    pub routed_by: Option<&'a [u8]>,
}

impl Publish<'_> {
    /// An owned copy, for in-process and internal subscribers.
    pub fn to_message(&self) -> Message {
        Message {
            subject: String::from_utf8_lossy(self.subject).into_owned(),
            reply: self.reply.map(|r| String::from_utf8_lossy(r).into_owned()),
            headers: self.headers.map(Bytes::copy_from_slice),
            payload: Bytes::copy_from_slice(self.payload),
            trace: Default::default(),
        }
    }
}

/// Connections whose writers must be woken once the current batch of publishes is routed.
#[derive(Default)]
pub(crate) struct Dirty {
    list: Vec<Arc<Outbound>>,
}

impl Dirty {
    #[inline]
    pub(crate) fn add(&mut self, out: &Arc<Outbound>) {
        if self.list.len() < 64 && self.list.iter().any(|o| Arc::ptr_eq(o, out)) {
            return;
        }
        self.list.push(out.clone());
    }

    /// Wakes every dirty writer.
    pub fn flush(&mut self) {
        for out in self.list.drain(..) {
            out.flush();
        }
    }
}

/// Who published: used for `echo: false`.
#[derive(Clone, Copy)]
pub(crate) struct Origin {
    /// Publishing connection id.
    pub cid: u64,
    /// Whether that connection wants its own messages.
    pub echo: bool,
}

/// Delivers `msg` to the matches; returns how many subscriptions received it.
pub(crate) fn deliver(
    router: &Router,
    matches: &MatchResult,
    msg: &Publish<'_>,
    origin: Origin,
    dirty: &mut Dirty,
) -> usize {
    deliver_to_groups(router, matches, msg, origin, None, dirty)
}

/// [`deliver`] for a message a leaf node sent: its queue groups are only those it names in
/// `queues` (whitespace separated), and nothing goes back to it.
pub(crate) fn deliver_from_leaf(
    router: &Router,
    matches: &MatchResult,
    msg: &Publish<'_>,
    origin: Origin,
    queues: &[u8],
    dirty: &mut Dirty,
) -> usize {
    deliver_to_groups(router, matches, msg, origin, Some(queues), dirty)
}

/// Every plain subscriber gets `msg`, and one member of each queue group (of those named in
/// `only`, when set). A leaf connection is a group's member of last resort (local members
/// first, as on nats-server), and one that takes a group's copy gets no plain copy besides
/// (the group's copy reaches its plain subscribers too).
fn deliver_to_groups(
    router: &Router,
    matches: &MatchResult,
    msg: &Publish<'_>,
    origin: Origin,
    only: Option<&[u8]>,
    dirty: &mut Dirty,
) -> usize {
    let mut delivered = 0;
    let mut leafs = Vec::new();
    for sub in &matches.psubs {
        if !origin.echo && sub.client_id == origin.cid {
            continue;
        }
        if matches!(sub.sink, Sink::Leaf(_)) {
            leafs.push(sub);
            continue;
        }
        if send(router, sub, msg, dirty, None) {
            delivered += 1;
        }
    }
    let mut served = Vec::new();
    for group in &matches.qsubs {
        if let Some(names) = only {
            let name = group[0].queue.as_deref().unwrap_or_default();
            if !crate::protocol::route::queue_names(names).any(|q| q == name) {
                continue;
            }
        }
        let own = |sub: &Arc<Subscription>| !origin.echo && sub.client_id == origin.cid;
        let leaf = |sub: &Arc<Subscription>| matches!(sub.sink, Sink::Leaf(_));
        let took = to_one_member(group, |sub| {
            !leaf(sub) && !own(sub) && send(router, sub, msg, dirty, None)
        }) || to_one_member(group, |sub| {
            let ok = leaf(sub) && !own(sub) && send(router, sub, msg, dirty, None);
            if ok {
                served.push(sub.client_id);
            }
            ok
        });
        delivered += usize::from(took);
    }
    for sub in leafs {
        if !served.contains(&sub.client_id) && send(router, sub, msg, dirty, None) {
            delivered += 1;
        }
    }
    delivered
}

/// Offers a message to the members of a queue group in turn, from a random one, until one
/// takes it; true if one did.
#[inline]
fn to_one_member(
    group: &[Arc<Subscription>],
    mut offer: impl FnMut(&Arc<Subscription>) -> bool,
) -> bool {
    let n = group.len();
    let start = if n > 1 {
        rand::rng().random_range(0..n)
    } else {
        0
    };
    (0..n).any(|i| offer(&group[(start + i) % n]))
}

/// [`deliver`] for a traced message: each client subscription it went to, or was held back
/// from, is an egress event of `trace`; internal handlers get the trace with the message; a
/// trace-only message goes to internal handlers only. Returns how many subscriptions took it
/// (a client held back by trace-only counts, as on nats-server).
pub(crate) fn deliver_traced(
    router: &Router,
    matches: &MatchResult,
    msg: &Publish<'_>,
    origin: Origin,
    dirty: &mut Dirty,
    trace: &Arc<Trace>,
) -> usize {
    let mut delivered = 0;
    for sub in &matches.psubs {
        delivered += usize::from(traced_send(router, sub, msg, origin, dirty, trace));
    }
    for group in &matches.qsubs {
        if to_one_member(group, |sub| {
            traced_send(router, sub, msg, origin, dirty, trace)
        }) {
            delivered += 1;
        }
    }
    delivered
}

fn traced_send(
    router: &Router,
    sub: &Arc<Subscription>,
    msg: &Publish<'_>,
    origin: Origin,
    dirty: &mut Dirty,
    trace: &Arc<Trace>,
) -> bool {
    let client = matches!(sub.sink, Sink::Conn(_));
    if !origin.echo && sub.client_id == origin.cid {
        if client {
            trace.egress(sub, Some(super::trace::NO_ECHO));
        }
        return false;
    }
    if denied(sub, msg.subject) {
        if client {
            trace.egress(sub, Some(super::trace::SUB_DENY));
        }
        return false;
    }
    match &sub.sink {
        // (An import's bridge would publish it on, untraced, into another account.)
        Sink::Conn(_) | Sink::Local(_) | Sink::Bridge(_) if trace.only() => {
            if client {
                trace.egress(sub, None);
            }
            true
        }
        _ => {
            let ok = send(router, sub, msg, dirty, Some(trace));
            if ok && client {
                trace.egress(sub, None);
            }
            ok
        }
    }
}

/// True if the subscription's permissions deny it this subject.
fn denied(sub: &Subscription, subj: &[u8]) -> bool {
    sub.deny.as_ref().is_some_and(|deny| {
        let subj = String::from_utf8_lossy(subj);
        deny.iter().any(|d| subject::matches(d, &subj))
    })
}

/// Delivers a message that came over a route: to every plain subscriber, and to one member
/// of each queue group named in `queues` (the sending server chose this one for them); never
/// onwards to another route. Returns how many subscriptions received it.
/// Delivers a routed message larger than this server's `max_payload` to in-process
/// subscribers only (clients never get more than `max_payload`; server-internal users, such
/// as the Raft wire, take what routes carry); returns how many got it.
pub(crate) fn deliver_in_process(
    router: &Router,
    matches: &MatchResult,
    msg: &Publish<'_>,
    dirty: &mut Dirty,
) -> usize {
    matches
        .psubs
        .iter()
        .filter(|sub| !matches!(sub.sink, Sink::Conn(_) | Sink::Leaf(_)))
        .filter(|sub| send(router, sub, msg, dirty, None))
        .count()
}

pub(crate) fn deliver_routed(
    router: &Router,
    matches: &MatchResult,
    msg: &Publish<'_>,
    queues: &[u8],
    dirty: &mut Dirty,
) -> usize {
    let mut delivered = 0;
    for sub in &matches.psubs {
        // Bridges take only this server's own publishes.
        if !matches!(sub.sink, Sink::Bridge(_)) && send(router, sub, msg, dirty, None) {
            delivered += 1;
        }
    }
    if queues.is_empty() {
        return delivered;
    }
    for group in &matches.qsubs {
        let name = group[0].queue.as_deref().unwrap_or_default();
        if !crate::protocol::route::queue_names(queues).any(|q| q == name) {
            continue;
        }
        if to_one_member(group, |sub| send(router, sub, msg, dirty, None)) {
            delivered += 1;
        }
    }
    delivered
}

/// Sends to one subscription (an internal or in-process one gets a share of `trace`); false
/// if it could not take the message.
#[inline]
fn send(
    router: &Router,
    sub: &Arc<Subscription>,
    msg: &Publish<'_>,
    dirty: &mut Dirty,
    trace: Option<&Arc<Trace>>,
) -> bool {
    if sub.deny.is_some() && denied(sub, msg.subject) {
        return false;
    }
    let owned = || {
        let mut m = msg.to_message();
        if let Some(t) = trace {
            m.trace = TraceTag::part_of(t);
        }
        m
    };
    let last = match sub.take() {
        Take::Yes => false,
        Take::Last => true,
        Take::No => return false,
    };
    let ok = match &sub.sink {
        Sink::Conn(out) => {
            match out.push_msg(msg.subject, &sub.sid, msg.reply, msg.headers, msg.payload) {
                Push::Queued(was_empty) => {
                    if was_empty {
                        dirty.add(out);
                    }
                    if let (Some(responses), Some(reply)) = (&sub.responses, msg.reply) {
                        responses.delivered(reply);
                    }
                    true
                }
                Push::Closed => false,
            }
        }
        Sink::Leaf(out) => to_leaf(out, sub, msg, dirty),
        Sink::Internal(handler) | Sink::Bridge(handler) => {
            // A handler can wait (a full stream queue holds its publisher back): what this
            // batch already queued for other connections goes out first.
            dirty.flush();
            handler(owned())
        }
        // (In-process subscribers hold messages as long as they like: no trace share.)
        Sink::Local(tx) => match tx.try_send(msg.to_message()) {
            Ok(()) => true,
            Err(tokio::sync::mpsc::error::TrySendError::Full(_)) => {
                tracing::warn!(
                    "Slow Consumer Detected: in-process subscriber on {:?} is full",
                    String::from_utf8_lossy(&sub.subject)
                );
                false
            }
            Err(tokio::sync::mpsc::error::TrySendError::Closed(_)) => {
                router.remove(sub);
                false
            }
        },
    };
    if last {
        router.remove(sub);
    }
    ok
}

/// Writes `msg` to a leaf connection as `LMSG` (for a queue group's member, naming it). A
/// JetStream delivery goes as nats-server sends it: under the subject it is routed by (the
/// consumer's deliver subject), the subject its receivers see after the reply's `@`.
fn to_leaf(out: &Arc<Outbound>, sub: &Subscription, msg: &Publish<'_>, dirty: &mut Dirty) -> bool {
    use crate::protocol::leaf;
    let to = msg.routed_by.unwrap_or(msg.subject);
    if !super::leaf::crosses(to) {
        return false;
    }
    let joined;
    let reply = match msg.reply {
        Some(r)
            if to != msg.subject
                && r.starts_with(b"$JS.ACK.")
                && leaf::split_delivery(r).is_none() =>
        {
            joined = [r, b"@", msg.subject].concat();
            Some(&joined[..])
        }
        r => r,
    };
    let queue = sub.queue.as_deref();
    let len = leaf::msg_len(to, reply, queue, msg.headers, msg.payload);
    let pushed = out.push_frame(len, |b| {
        leaf::write_msg(b, to, reply, queue, msg.headers, msg.payload);
    });
    match pushed {
        Push::Queued(was_empty) => {
            if was_empty {
                dirty.add(out);
            }
            true
        }
        Push::Closed => false,
    }
}
