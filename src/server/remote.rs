//! The broker core's side of cluster routes, and all the cluster layer may use of it: other
//! servers' interest ([`Remote`], present only when a cluster is configured) and the two ways
//! a message crosses a route.
//!
//! - Out: after a local publish is delivered locally, [`Remote::forward`] writes one `RMSG`
//!   into the outbound buffer of each route whose peer has matching interest, naming the queue
//!   groups that peer should serve: a group goes to a remote member only when this server has
//!   none, so each group gets exactly one copy cluster-wide.
//! - In: [`RouteLink`] is what the cluster layer holds for one route. It records the peer's
//!   `RS+`/`RS-` interest in [`Remote`]'s trie, writes this server's interest to the peer
//!   (a snapshot, then each change, synchronously, so interest always precedes the messages
//!   that depend on it), and delivers what the peer sends to local subscribers only: a
//!   message never takes a second hop.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use rand::Rng;
use rustc_hash::FxHashMap;

use super::deliver::{deliver_in_process, deliver_routed, Dirty, Publish};
use super::outbound::{Outbound, Push};
use super::sublist::{InterestSink, MatchCache, MatchResult, Router, Sink, Subscription};
use super::Shared;
use crate::protocol::{route, subject};

/// Interest of the other servers of the cluster: one subscription per (route, subject,
/// queue), whose sink is the route's outbound buffer.
#[derive(Default)]
pub(crate) struct Remote {
    router: Router,
}

impl Remote {
    /// Forwards a locally published message to every route with matching interest (once per
    /// route), `local` being what matched locally. Returns how many routes it was sent to.
    pub(crate) fn forward(
        &self,
        cache: Option<&mut MatchCache>,
        local: &MatchResult,
        msg: &Publish<'_>,
        dirty: &mut Dirty,
    ) -> usize {
        let matches = match cache {
            Some(cache) => cache.get(&self.router, msg.subject),
            None => self.router.matches(msg.subject),
        };
        if matches.psubs.is_empty() && matches.qsubs.is_empty() {
            return 0;
        }
        // (route's subscription, queue groups it serves); a handful of routes at most.
        let mut targets: Vec<(&Arc<Subscription>, Vec<&[u8]>)> = Vec::new();
        for sub in &matches.psubs {
            if !targets.iter().any(|(t, _)| t.client_id == sub.client_id) {
                targets.push((sub, Vec::new()));
            }
        }
        for group in &matches.qsubs {
            let name = group[0].queue.as_deref();
            // Members on this server are preferred: they already got it.
            if local.qsubs.iter().any(|g| g[0].queue.as_deref() == name) {
                continue;
            }
            let pick = &group[rand::rng().random_range(0..group.len())];
            let name = name.unwrap_or_default();
            match targets
                .iter_mut()
                .find(|(t, _)| t.client_id == pick.client_id)
            {
                Some((_, queues)) => queues.push(name),
                None => targets.push((pick, vec![name])),
            }
        }
        let mut sent = 0;
        for (sub, queues) in &targets {
            let Sink::Conn(out) = &sub.sink else {
                continue;
            };
            let len = route::msg_len(msg.subject, msg.reply, queues, msg.headers, msg.payload);
            let pushed = out.push_frame(len, |b| {
                route::write_msg(b, msg.subject, msg.reply, queues, msg.headers, msg.payload);
            });
            if let Push::Queued(was_empty) = pushed {
                if was_empty {
                    dirty.add(out);
                }
                sent += 1;
            }
        }
        sent
    }

    /// Forwards a routed delivery (routed by `to`, shown as `msg.subject`) to every route
    /// whose peer has plain interest in `to` (deliver subjects are inboxes, not queue groups).
    pub(crate) fn forward_delivery(
        &self,
        to: &[u8],
        msg: &Publish<'_>,
        dirty: &mut Dirty,
    ) -> usize {
        let matches = self.router.matches(to);
        let mut sent = 0;
        let mut seen: Vec<u64> = Vec::new();
        for sub in &matches.psubs {
            if seen.contains(&sub.client_id) {
                continue;
            }
            seen.push(sub.client_id);
            let Sink::Conn(out) = &sub.sink else {
                continue;
            };
            let (subject, reply, headers, payload) =
                (msg.subject, msg.reply, msg.headers, msg.payload);
            let len = route::delivery_len(to, subject, reply, headers, payload);
            let pushed = out.push_frame(len, |b| {
                route::write_delivery(b, to, subject, reply, headers, payload);
            });
            if let Push::Queued(was_empty) = pushed {
                if was_empty {
                    dirty.add(out);
                }
                sent += 1;
            }
        }
        sent
    }

    /// True if some route has interest in `subject`.
    pub(crate) fn has_interest(&self, subject: &[u8]) -> bool {
        let m = self.router.matches(subject);
        !m.psubs.is_empty() || !m.qsubs.is_empty()
    }
}

/// Writes this server's interest changes to one route as `RS+` / `RS-`.
struct InterestWriter {
    out: Arc<Outbound>,
    detached: AtomicBool,
}

impl InterestSink for InterestWriter {
    fn interest(&self, subject: &[u8], queue: Option<&[u8]>, present: bool) -> bool {
        if self.detached.load(Ordering::Relaxed) || self.out.closed().is_some() {
            return false;
        }
        self.out.send(|b| {
            if present {
                route::write_sub(b, subject, queue);
            } else {
                route::write_unsub(b, subject, queue);
            }
        });
        true
    }
}

/// Why an operation a peer sent on its route was not applied.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum RouteError {
    /// The subject or queue of `RS+`/`RS-` is not valid.
    #[error("invalid subject or queue in route interest")]
    InvalidInterest,
}

/// A peer's (subject, queue) interest.
type InterestKey = (Box<[u8]>, Option<Box<[u8]>>);

/// One route as the broker core sees it; the cluster layer holds it for the route's life.
/// Dropping it removes the peer's interest and stops sending this server's.
pub(crate) struct RouteLink {
    shared: Arc<Shared>,
    remote: Arc<Remote>,
    out: Arc<Outbound>,
    subs: FxHashMap<InterestKey, Arc<Subscription>>,
    writer: Arc<InterestWriter>,
    cache: MatchCache,
    dirty: Dirty,
}

impl RouteLink {
    /// Attaches a route whose frames go to `out`: this server's interest is written to it
    /// from now on (what exists now first). `None` when no cluster is configured.
    pub(crate) fn attach(shared: Arc<Shared>, out: Arc<Outbound>) -> Option<RouteLink> {
        let remote = shared.remote.clone()?;
        let writer = Arc::new(InterestWriter {
            out: out.clone(),
            detached: AtomicBool::new(false),
        });
        shared.router.watch_interest_with(writer.clone());
        Some(RouteLink {
            shared,
            remote,
            out,
            subs: FxHashMap::default(),
            writer,
            cache: MatchCache::default(),
            dirty: Dirty::default(),
        })
    }

    /// The peer gained (`present`) or lost interest in `subject` / `queue`.
    pub(crate) fn interest(
        &mut self,
        subj: &[u8],
        queue: Option<&[u8]>,
        present: bool,
    ) -> Result<(), RouteError> {
        if !subject::is_valid_subject(subj) || !queue.is_none_or(subject::is_valid_queue) {
            return Err(RouteError::InvalidInterest);
        }
        let key = (Box::<[u8]>::from(subj), queue.map(Box::<[u8]>::from));
        if present {
            if self.subs.contains_key(&key) {
                return Ok(());
            }
            let sub = Arc::new(Subscription {
                subject: subj.into(),
                queue: queue.map(Into::into),
                sid: Box::default(),
                client_id: self.out.cid,
                sink: Sink::Conn(self.out.clone()),
                max: AtomicU64::new(0),
                delivered: AtomicU64::new(0),
                removed: AtomicBool::new(false),
                deny: None,
                responses: None,
            });
            self.remote.router.insert(sub.clone());
            self.subs.insert(key, sub);
        } else if let Some(sub) = self.subs.remove(&key) {
            self.remote.router.remove(&sub);
        }
        Ok(())
    }

    /// Delivers a message the peer sent to local subscribers only: every plain one, and one
    /// member of each group in `queues` (whitespace separated). Returns how many got it.
    pub(crate) fn deliver(
        &mut self,
        subj: &[u8],
        reply: Option<&[u8]>,
        headers: Option<&[u8]>,
        payload: &[u8],
        queues: &[u8],
    ) -> usize {
        self.deliver_to(subj, subj, reply, headers, payload, queues)
    }

    /// [`RouteLink::deliver`] for a message routed by `to` but shown as `subj` (`RMSGD`).
    pub(crate) fn deliver_to(
        &mut self,
        to: &[u8],
        subj: &[u8],
        reply: Option<&[u8]>,
        headers: Option<&[u8]>,
        payload: &[u8],
        queues: &[u8],
    ) -> usize {
        let size = payload.len() + headers.map_or(0, <[u8]>::len);
        if subject::has_empty_token(subj) || subject::has_empty_token(to) {
            return 0;
        }
        let matches = self.cache.get(&self.shared.router, to);
        if size > self.shared.config.max_payload {
            let msg = Publish {
                subject: subj,
                reply,
                headers,
                payload,
            };
            let n = deliver_in_process(&self.shared.router, &matches, &msg, &mut self.dirty);
            if n == 0 {
                tracing::warn!(
                    size,
                    "dropped a routed message larger than this server's max_payload"
                );
            }
            return n;
        }
        let msg = Publish {
            subject: subj,
            reply,
            headers,
            payload,
        };
        let stats = &self.shared.stats;
        stats.in_msgs.fetch_add(1, Ordering::Relaxed);
        stats.in_bytes.fetch_add(size as u64, Ordering::Relaxed);
        deliver_routed(&self.shared.router, &matches, &msg, queues, &mut self.dirty)
    }

    /// Wakes the writers of the connections the last deliveries touched.
    pub(crate) fn flush(&mut self) {
        self.dirty.flush();
    }
}

impl Drop for RouteLink {
    fn drop(&mut self) {
        self.writer.detached.store(true, Ordering::Relaxed);
        self.dirty.flush();
        for (_, sub) in self.subs.drain() {
            self.remote.router.remove(&sub);
        }
    }
}
