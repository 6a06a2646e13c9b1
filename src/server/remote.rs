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
//!
//! Every line names its account: each account's interest is kept, written and matched in
//! that account's subject space only.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use rand::Rng;
use rustc_hash::FxHashMap;

use super::deliver::{deliver_in_process, deliver_routed, Dirty, Publish};
use super::outbound::{Outbound, Push};
use super::sublist::{InterestSink, MatchCache, MatchResult, Router, Sink, Subscription};
use super::Shared;
use crate::protocol::{route, subject};

/// Interest of the other servers of the cluster, per account: one subscription per (route,
/// subject, queue), whose sink is the route's outbound buffer.
pub(crate) struct Remote {
    /// The global account's (the common case, without a map lookup).
    global: Router,
    /// The other accounts' (fixed at start: accounts do not change while running).
    accounts: FxHashMap<Box<[u8]>, Router>,
}

impl Remote {
    /// Interest tables for the global account and each of `accounts`.
    pub(crate) fn new<'a>(accounts: impl Iterator<Item = &'a str>) -> Self {
        Self {
            global: Router::default(),
            accounts: accounts
                .map(|a| (a.as_bytes().into(), Router::named(a.as_bytes())))
                .collect(),
        }
    }

    /// The other servers' interest in `account`'s subjects (`None`: an account this server
    /// does not have).
    #[inline]
    fn router(&self, account: &[u8]) -> Option<&Router> {
        if account == route::GLOBAL_ACCOUNT {
            Some(&self.global)
        } else {
            self.accounts.get(account)
        }
    }

    /// Forwards a locally published message of `account` to every route with matching
    /// interest (once per route), `local` being what matched locally. Returns how many routes
    /// it was sent to.
    pub(crate) fn forward(
        &self,
        account: &[u8],
        cache: Option<&mut MatchCache>,
        local: &MatchResult,
        msg: &Publish<'_>,
        dirty: &mut Dirty,
    ) -> usize {
        self.forward_to_groups(account, cache, local, msg, None, dirty)
    }

    /// [`Remote::forward`] for a message a leaf node sent: of the queue groups, only those it
    /// names in `queues` (whitespace separated) are served.
    pub(crate) fn forward_from_leaf(
        &self,
        account: &[u8],
        local: &MatchResult,
        msg: &Publish<'_>,
        queues: &[u8],
        dirty: &mut Dirty,
    ) -> usize {
        self.forward_to_groups(account, None, local, msg, Some(queues), dirty)
    }

    /// Follows the other servers' subscriptions in `account` (see [`Router::watch_subs`]).
    pub(crate) fn watch_subs(&self, account: &[u8], sink: Arc<dyn super::sublist::SubSink>) {
        if let Some(router) = self.router(account) {
            router.watch_subs(sink);
        }
    }

    fn forward_to_groups(
        &self,
        account: &[u8],
        cache: Option<&mut MatchCache>,
        local: &MatchResult,
        msg: &Publish<'_>,
        only: Option<&[u8]>,
        dirty: &mut Dirty,
    ) -> usize {
        let Some(router) = self.router(account) else {
            return 0;
        };
        let matches = match cache {
            Some(cache) => cache.get(router, msg.subject),
            None => router.matches(msg.subject),
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
            let named = |names: &[u8]| {
                let name = name.unwrap_or_default();
                crate::protocol::route::queue_names(names).any(|q| q == name)
            };
            if only.is_some_and(|names| !named(names)) {
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
            let (subject, reply, headers, payload) =
                (msg.subject, msg.reply, msg.headers, msg.payload);
            let len = route::msg_len(account, subject, reply, queues, headers, payload);
            let pushed = out.push_frame(len, |b| {
                route::write_msg(b, account, subject, reply, queues, headers, payload);
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
        let matches = self.global.matches(to);
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

    /// True if some route has interest in `subject` of `account`.
    pub(crate) fn has_interest(&self, account: &[u8], subject: &[u8]) -> bool {
        self.router(account).is_some_and(|r| {
            let m = r.matches(subject);
            !m.psubs.is_empty() || !m.qsubs.is_empty()
        })
    }
}

/// Writes this server's interest changes in one account to one route as `RS+` / `RS-`.
struct InterestWriter {
    out: Arc<Outbound>,
    account: Box<[u8]>,
    /// Shared by the route's writers of every account.
    detached: Arc<AtomicBool>,
}

impl InterestSink for InterestWriter {
    fn interest(&self, subject: &[u8], queue: Option<&[u8]>, present: bool) -> bool {
        if self.detached.load(Ordering::Relaxed) || self.out.closed().is_some() {
            return false;
        }
        self.out.send(|b| {
            if present {
                route::write_sub(b, &self.account, subject, queue);
            } else {
                route::write_unsub(b, &self.account, subject, queue);
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

/// A peer's (account, subject, queue) interest.
type InterestKey = (Box<[u8]>, Box<[u8]>, Option<Box<[u8]>>);

/// One route as the broker core sees it; the cluster layer holds it for the route's life.
/// Dropping it removes the peer's interest and stops sending this server's.
pub(crate) struct RouteLink {
    shared: Arc<Shared>,
    remote: Arc<Remote>,
    out: Arc<Outbound>,
    subs: FxHashMap<InterestKey, Arc<Subscription>>,
    /// Set when the route goes: its interest writers stop.
    detached: Arc<AtomicBool>,
    /// Match caches for routed messages, per account (a cache knows one router).
    caches: FxHashMap<Box<[u8]>, MatchCache>,
    dirty: Dirty,
}

impl RouteLink {
    /// Attaches a route whose frames go to `out`: this server's interest is written to it
    /// from now on (what exists now first). `None` when no cluster is configured.
    pub(crate) fn attach(shared: Arc<Shared>, out: Arc<Outbound>) -> Option<RouteLink> {
        let remote = shared.remote.clone()?;
        let detached = Arc::new(AtomicBool::new(false));
        let routers = std::iter::once(&shared.router).chain(shared.accounts.values());
        for router in routers {
            router.watch_interest_with(Arc::new(InterestWriter {
                out: out.clone(),
                account: router.account().into(),
                detached: detached.clone(),
            }));
        }
        Some(RouteLink {
            shared,
            remote,
            out,
            subs: FxHashMap::default(),
            detached,
            caches: FxHashMap::default(),
            dirty: Dirty::default(),
        })
    }

    /// The peer gained (`present`) or lost interest in `subject` / `queue` of `account` (an
    /// account this server does not have is ignored: nothing of it is published here).
    pub(crate) fn interest(
        &mut self,
        account: &[u8],
        subj: &[u8],
        queue: Option<&[u8]>,
        present: bool,
    ) -> Result<(), RouteError> {
        if !subject::is_valid_subject(subj) || !queue.is_none_or(subject::is_valid_queue) {
            return Err(RouteError::InvalidInterest);
        }
        let remote = self.remote.clone();
        let Some(router) = remote.router(account) else {
            tracing::debug!(account = %String::from_utf8_lossy(account), "interest in an unknown account");
            return Ok(());
        };
        let key = (
            Box::<[u8]>::from(account),
            Box::<[u8]>::from(subj),
            queue.map(Box::<[u8]>::from),
        );
        if present {
            if self.subs.contains_key(&key) {
                return Ok(());
            }
            let sink = Sink::Conn(self.out.clone());
            let sub = Arc::new(Subscription::new(subj, queue, self.out.cid, sink));
            router.insert(sub.clone());
            self.subs.insert(key, sub);
        } else if let Some(sub) = self.subs.remove(&key) {
            router.remove(&sub);
        }
        Ok(())
    }

    /// Delivers a message the peer sent to local subscribers only: every plain one, and one
    /// member of each group in `queues` (whitespace separated). Returns how many got it.
    pub(crate) fn deliver(
        &mut self,
        account: &[u8],
        subj: &[u8],
        reply: Option<&[u8]>,
        headers: Option<&[u8]>,
        payload: &[u8],
        queues: &[u8],
    ) -> usize {
        self.deliver_to(account, subj, subj, reply, headers, payload, queues)
    }

    /// [`RouteLink::deliver`] for a message routed by `to` but shown as `subj` (`RMSGD`).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn deliver_to(
        &mut self,
        account: &[u8],
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
        let shared = self.shared.clone();
        let router = if account == route::GLOBAL_ACCOUNT {
            &shared.router
        } else {
            match std::str::from_utf8(account)
                .ok()
                .and_then(|a| shared.accounts.get(a))
            {
                Some(r) => r,
                None => return 0,
            }
        };
        let matches = self
            .caches
            .entry(account.into())
            .or_default()
            .get(router, to);
        if size > shared.config.max_payload {
            let msg = Publish {
                subject: subj,
                reply,
                headers,
                payload,
                routed_by: Some(to),
            };
            let n = deliver_in_process(router, &matches, &msg, &mut self.dirty);
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
            routed_by: Some(to),
        };
        let stats = &shared.stats;
        stats.in_msgs.fetch_add(1, Ordering::Relaxed);
        stats.in_bytes.fetch_add(size as u64, Ordering::Relaxed);
        deliver_routed(router, &matches, &msg, queues, &mut self.dirty)
    }

    /// Wakes the writers of the connections the last deliveries touched.
    pub(crate) fn flush(&mut self) {
        self.dirty.flush();
    }
}

impl Drop for RouteLink {
    fn drop(&mut self) {
        self.detached.store(true, Ordering::Relaxed);
        self.dirty.flush();
        for ((account, _, _), sub) in self.subs.drain() {
            if let Some(router) = self.remote.router(&account) {
                router.remove(&sub);
            }
        }
    }
}
