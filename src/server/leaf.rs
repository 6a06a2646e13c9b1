//! The broker core's side of one leaf node connection, and all the leaf layer may use of it
//! ([`LeafLink`]): a leaf connection is bound to one account, whose subjects it shares with
//! its peer.
//!
//! - Out: every subscription of the account except the connection's own counts as interest
//!   the peer is told of (`LS+` when a (subject, queue) gets its first, `LS-` when it loses
//!   its last; a queue group's line carries its member count); the JetStream API and
//!   internal subjects nats-server keeps from crossing a leaf connection are left out.
//! - In: the peer's interest becomes subscriptions of the account whose sink is the
//!   connection ([`Sink::Leaf`]): whatever is delivered here (a local client's publish, a
//!   routed message, another leaf's) reaches it as `LMSG`. A message the peer sends is
//!   delivered here like a publish, except back to it, and to the queue groups it names only.
//! - Loops: each account's leaf connections advertise one `$LDS.<id>` subject of this
//!   server; a peer announcing it back means the leaf connections form a cycle.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use rustc_hash::FxHashMap;

use super::deliver::{deliver_from_leaf, Dirty, Origin, Publish};
use super::outbound::Outbound;
use super::sublist::{MatchCache, Router, Sink, SubSink, Subscription};
use super::Shared;
use crate::protocol::{leaf, subject};

/// Subjects that never cross a leaf connection: the JetStream API (each side answers its
/// own; a domain's `$JS.<domain>.API` does cross), KV and object store writes (nats-server
/// denies these three both ways), and this server's cluster-internal traffic (Raft, leader
/// holds, system events). `$JSC.R.` (the replies nats-server's sources and mirrors wait for)
/// crosses.
const DENIED: [&[u8]; 7] = [
    b"$JS.API.",
    b"$KV.",
    b"$OBJ.",
    b"$JSC.HOLD.",
    b"$NRG.",
    b"$NRGLIVE.",
    b"$SYS.",
];

/// Whether a message on `subj` (or interest in it) may cross a leaf connection. A wildcard
/// interest such as `>` crosses; the messages it matches are checked one by one.
pub(crate) fn crosses(subj: &[u8]) -> bool {
    !DENIED.iter().any(|d| subj.starts_with(d))
}

/// Why an operation a peer sent on its leaf connection was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum LeafError {
    /// The subject or queue of `LS+`/`LS-` is not valid.
    #[error("invalid subject or queue in leaf interest")]
    InvalidInterest,
    /// The peer announced this server's own loop detection subject.
    #[error("Loop detected for leafnode account={0:?}. Delaying attempt to reconnect for 30s")]
    Loop(String),
}

/// A (subject, queue) key.
type Key = (Box<[u8]>, Option<Box<[u8]>>);

/// Who is at the other end of a leaf connection.
pub(crate) struct LeafPeer {
    /// Its server name.
    pub name: String,
    pub addr: SocketAddr,
    /// Whether it is our hub (we dialed it), not a leaf of ours.
    pub hub: bool,
}

/// The live leaf connections, as `/leafz` shows them.
#[derive(Default)]
pub(crate) struct Registry {
    live: Mutex<BTreeMap<u64, Arc<Entry>>>,
}

/// One live leaf connection's identity and counters.
struct Entry {
    peer: LeafPeer,
    account: String,
    out: Arc<Outbound>,
    in_msgs: AtomicU64,
    in_bytes: AtomicU64,
    subscriptions: AtomicUsize,
}

impl Registry {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, Arc<Entry>>> {
        self.live.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Each live connection as nats-server's `/leafz` lists it.
    pub(crate) fn json(&self) -> Vec<serde_json::Value> {
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        self.lock()
            .iter()
            .map(|(cid, e)| {
                serde_json::json!({
                    "id": cid,
                    "name": e.peer.name,
                    "is_spoke": e.peer.hub,
                    "account": e.account,
                    "ip": e.peer.addr.ip().to_string(),
                    "port": e.peer.addr.port(),
                    "in_msgs": load(&e.in_msgs),
                    "out_msgs": load(&e.out.out_msgs),
                    "in_bytes": load(&e.in_bytes),
                    "out_bytes": load(&e.out.out_bytes),
                    "subscriptions": e.subscriptions.load(Ordering::Relaxed),
                    "compression": "off",
                })
            })
            .collect()
    }
}

/// One leaf connection as the broker core sees it; the leaf layer holds it for the
/// connection's life. Dropping it removes the peer's interest and stops sending ours.
pub(crate) struct LeafLink {
    shared: Arc<Shared>,
    router: Arc<Router>,
    out: Arc<Outbound>,
    /// This server's loop detection subject in the account.
    lds: String,
    subs: FxHashMap<Key, Arc<Subscription>>,
    writer: Arc<InterestWriter>,
    cache: MatchCache,
    dirty: Dirty,
    /// Its entry in the server's registry.
    entry: Arc<Entry>,
}

impl LeafLink {
    /// Attaches a leaf connection bound to `account` (`$G` or an account of `accounts {}`)
    /// whose frames go to `out`; `lds` is this server's loop detection subject there.
    /// `None` for an account this server does not have.
    pub(crate) fn attach(
        shared: Arc<Shared>,
        account: &str,
        out: Arc<Outbound>,
        lds: String,
        peer: LeafPeer,
    ) -> Option<LeafLink> {
        let router = if account == "$G" {
            shared.router.clone()
        } else {
            shared.accounts.get(account)?.clone()
        };
        let writer = Arc::new(InterestWriter {
            out: out.clone(),
            counts: Mutex::default(),
            detached: AtomicBool::new(false),
        });
        router.watch_subs(writer.clone());
        // In a cluster, the other servers' interest is this server's to offer too.
        if let Some(remote) = &shared.remote {
            remote.watch_subs(router.account(), writer.clone());
        }
        let entry = Arc::new(Entry {
            peer,
            account: account.to_string(),
            out: out.clone(),
            in_msgs: AtomicU64::new(0),
            in_bytes: AtomicU64::new(0),
            subscriptions: AtomicUsize::new(0),
        });
        shared.leafs.lock().insert(out.cid, entry.clone());
        Some(LeafLink {
            entry,
            shared,
            router,
            out,
            lds,
            subs: FxHashMap::default(),
            writer,
            cache: MatchCache::default(),
            dirty: Dirty::default(),
        })
    }

    /// The peer gained interest in `subj` (for `queue`, with its member count) or lost it.
    pub(crate) fn interest(
        &mut self,
        subj: &[u8],
        queue: Option<&[u8]>,
        present: bool,
    ) -> Result<(), LeafError> {
        if !subject::is_valid_subject(subj) || !queue.is_none_or(subject::is_valid_queue) {
            return Err(LeafError::InvalidInterest);
        }
        if present && subj == self.lds.as_bytes() {
            let account = String::from_utf8_lossy(self.router.account()).into_owned();
            return Err(LeafError::Loop(account));
        }
        if !crosses(subj) {
            return Ok(());
        }
        let key: Key = (subj.into(), queue.map(Into::into));
        if !present {
            if let Some(sub) = self.subs.remove(&key) {
                self.router.remove(&sub);
            }
            self.entry
                .subscriptions
                .store(self.subs.len(), Ordering::Relaxed);
            return Ok(());
        }
        if self.subs.contains_key(&key) {
            return Ok(()); // a queue group's new member count
        }
        let sink = Sink::Leaf(self.out.clone());
        let sub = Arc::new(Subscription::new(subj, queue, self.out.cid, sink));
        self.router.insert(sub.clone());
        self.subs.insert(key, sub);
        self.entry
            .subscriptions
            .store(self.subs.len(), Ordering::Relaxed);
        Ok(())
    }

    /// Delivers a message the peer sent: to every plain subscriber here (another leaf
    /// connection's too, never back to the peer) and one member of each group in `queues`.
    /// A JetStream delivery (`reply` ending in `@<subject>`) is shown with that subject.
    /// Returns how many subscriptions got it.
    pub(crate) fn deliver(
        &mut self,
        subj: &[u8],
        reply: Option<&[u8]>,
        headers: Option<&[u8]>,
        payload: &[u8],
        queues: &[u8],
    ) -> usize {
        let size = payload.len() + headers.map_or(0, <[u8]>::len);
        if subject::has_empty_token(subj) || size > self.shared.config.max_payload {
            return 0;
        }
        // A JetStream delivery: routed by `subj` (its deliver subject), shown as the subject
        // after the reply's `@`.
        let (reply, shown) = match reply.and_then(leaf::split_delivery) {
            Some((reply, shown)) => (Some(reply), shown),
            None => (reply, subj),
        };
        if !crosses(subj) {
            return 0;
        }
        let matches = self.cache.get(&self.router, subj);
        let msg = Publish {
            subject: shown,
            reply,
            headers,
            payload,
            routed_by: (shown != subj).then_some(subj),
        };
        for (msgs, bytes) in [
            (&self.shared.stats.in_msgs, &self.shared.stats.in_bytes),
            (&self.entry.in_msgs, &self.entry.in_bytes),
        ] {
            msgs.fetch_add(1, Ordering::Relaxed);
            bytes.fetch_add(size as u64, Ordering::Relaxed);
        }
        let origin = Origin {
            cid: self.out.cid,
            echo: false,
        };
        let local = deliver_from_leaf(
            &self.router,
            &matches,
            &msg,
            origin,
            queues,
            &mut self.dirty,
        );
        // In a cluster it goes on to the other servers with interest (one hop from here).
        let Some(remote) = &self.shared.remote else {
            return local;
        };
        let account = self.router.account();
        let routed = match msg.routed_by {
            Some(to) if account == crate::protocol::route::GLOBAL_ACCOUNT => {
                remote.forward_delivery(to, &msg, &mut self.dirty)
            }
            _ => remote.forward_from_leaf(account, &matches, &msg, queues, &mut self.dirty),
        };
        local + routed
    }

    /// Wakes the writers of the connections the last deliveries touched.
    pub(crate) fn flush(&mut self) {
        self.dirty.flush();
    }
}

impl Drop for LeafLink {
    fn drop(&mut self) {
        self.shared.leafs.lock().remove(&self.out.cid);
        self.writer.detached.store(true, Ordering::Relaxed);
        self.dirty.flush();
        for (_, sub) in self.subs.drain() {
            self.router.remove(&sub);
        }
    }
}

/// Counts the account's subscriptions other than the connection's own, per (subject,
/// queue), and writes each change of interest to the peer.
struct InterestWriter {
    out: Arc<Outbound>,
    counts: Mutex<FxHashMap<Key, u64>>,
    detached: AtomicBool,
}

impl SubSink for InterestWriter {
    fn sub(&self, sub: &Subscription, present: bool) -> bool {
        if self.detached.load(Ordering::Relaxed) || self.out.closed().is_some() {
            return false;
        }
        if sub.client_id == self.out.cid || !crosses(&sub.subject) {
            return true;
        }
        let key: Key = (sub.subject.clone(), sub.queue.clone());
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        let n = counts.entry(key).or_default();
        let before = *n;
        *n = if present {
            before + 1
        } else {
            before.saturating_sub(1)
        };
        let after = *n;
        if after == 0 {
            counts.remove(&(sub.subject.clone(), sub.queue.clone()));
        }
        drop(counts);
        let (subj, queue) = (&sub.subject[..], sub.queue.as_deref());
        match queue {
            // A queue group's count is news on every change.
            Some(q) if after > 0 => self
                .out
                .send(|b| leaf::write_sub(b, subj, Some((q, after)))),
            _ if before == 0 && after > 0 => self.out.send(|b| leaf::write_sub(b, subj, None)),
            _ if before > 0 && after == 0 => self.out.send(|b| leaf::write_unsub(b, subj, queue)),
            _ => {}
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::crosses;

    #[test]
    fn the_jetstream_api_and_internal_subjects_stay_home() {
        for s in [
            "$JS.API.INFO",
            "$JS.API.>",
            "$KV.b.k",
            "$NRG.x",
            "$SYS.REQ.X",
        ] {
            assert!(!crosses(s.as_bytes()), "{s}");
        }
        for s in [
            "orders.new",
            ">",
            "$JS.hub.API.INFO",
            "$JS.ACK.S.c.1.1.1.1.0",
            "$LDS.x",
        ] {
            assert!(crosses(s.as_bytes()), "{s}");
        }
    }
}
