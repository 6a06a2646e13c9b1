//! Subject routing: the subscription trie, its generation-checked match cache, and the
//! [`Subscription`] record that routing hands to delivery.
//!
//! The trie has one level per subject token with separate slots for `*` and `>`. Reads vastly
//! outnumber writes, so [`Router`] keeps the trie behind an `RwLock` plus a generation counter;
//! each connection keeps a [`MatchCache`] of recent subject -> result lookups that it throws away
//! whenever the generation moves.
//!
//! The router also reports interest ([`Router::watch_interest`]): an [`InterestChange`] when
//! the first subscription on a (subject, queue) pair arrives or the last one leaves, which
//! routes and gateways propagate to other servers. A trie node holds exactly one subject's
//! subscriptions, so its lists count them per pair.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use bytes::Bytes;
use rustc_hash::FxHashMap;
use tokio::sync::mpsc;

use super::message::Message;
use super::outbound::Outbound;

/// Where a subscription's messages go.
pub(crate) enum Sink {
    /// A TCP client: frames are encoded into its outbound buffer.
    Conn(Arc<Outbound>),
    /// An in-process subscriber: messages are sent on a bounded channel.
    Local(tokio::sync::mpsc::Sender<Message>),
    /// A server-internal handler (JetStream API, streams, acks), called on the publisher's task;
    /// it must only enqueue. Returns false if it could not take the message.
    Internal(InternalHandler),
    /// An internal handler that takes only what is published on this server, never what a
    /// route brings: an account import's bridge, which every server of a cluster has (each
    /// bridges its own publishers, so a message crosses accounts once).
    Bridge(InternalHandler),
    /// A leaf node connection's interest: frames are encoded as `LMSG` into its outbound
    /// buffer (with the subscription's queue group, for a member of one).
    Leaf(Arc<Outbound>),
}

/// A server-internal message handler.
pub(crate) type InternalHandler = Arc<dyn Fn(Message) -> bool + Send + Sync>;

/// One subscription, shared by the trie, the owning connection and match results.
pub(crate) struct Subscription {
    /// Subject pattern.
    pub subject: Box<[u8]>,
    /// Queue group name.
    pub queue: Option<Box<[u8]>>,
    /// Client-chosen subscription id.
    pub sid: Box<[u8]>,
    /// Id of the owning connection (for `echo: false`).
    pub client_id: u64,
    /// Where matching messages go.
    pub sink: Sink,
    /// Auto-unsubscribe limit (0 = none).
    pub max: AtomicU64,
    /// Messages delivered so far.
    pub delivered: AtomicU64,
    /// Set once the subscription left the trie.
    pub removed: AtomicBool,
    /// Subjects this subscriber may not receive (permissions with partial overlap).
    pub deny: Option<Arc<[String]>>,
    /// The owner's `allow_responses` table: replies to what this subscription receives are
    /// recorded there.
    pub responses: Option<Arc<super::auth::Responses>>,
}

impl Subscription {
    /// A subscription of connection `client_id` on `subject` (in `queue`) whose messages go
    /// to `sink`: no sid, no limit, no permissions of its own (a server's or a peer's).
    pub fn new(subject: &[u8], queue: Option<&[u8]>, client_id: u64, sink: Sink) -> Self {
        Self {
            subject: subject.into(),
            queue: queue.map(Into::into),
            sid: Box::default(),
            client_id,
            sink,
            max: AtomicU64::new(0),
            delivered: AtomicU64::new(0),
            removed: AtomicBool::new(false),
            deny: None,
            responses: None,
        }
    }
}

/// What one delivery attempt to a subscription may do.
pub(crate) enum Take {
    /// Deliver.
    Yes,
    /// Deliver; it was the last one allowed, remove the subscription.
    Last,
    /// Do not deliver.
    No,
}

impl Subscription {
    /// Accounts for one delivery against the auto-unsubscribe limit.
    #[inline]
    pub fn take(&self) -> Take {
        if self.removed.load(Ordering::Relaxed) {
            return Take::No;
        }
        // Every delivery counts, so a later `UNSUB <sid> <max>` limits the total, as in
        // nats-server.
        let n = self.delivered.fetch_add(1, Ordering::Relaxed) + 1;
        let max = self.max.load(Ordering::Relaxed);
        if max == 0 {
            return Take::Yes;
        }
        match n.cmp(&max) {
            std::cmp::Ordering::Less => Take::Yes,
            std::cmp::Ordering::Equal => Take::Last,
            std::cmp::Ordering::Greater => Take::No,
        }
    }
}

/// The subscriptions matching one subject: plain ones, and one list per queue group.
#[derive(Default)]
pub(crate) struct MatchResult {
    /// Plain subscriptions: each gets a copy.
    pub psubs: Vec<Arc<Subscription>>,
    /// Queue groups: each group gets one copy.
    pub qsubs: Vec<Vec<Arc<Subscription>>>,
}

type QueueGroups = Vec<(Box<[u8]>, Vec<Arc<Subscription>>)>;

/// What removing a subscription from the trie did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Removed {
    /// It was not there.
    Absent,
    /// Removed; others remain on its (subject, queue).
    Remaining,
    /// Removed; it was the last on its (subject, queue).
    Last,
}

#[derive(Default)]
struct Node {
    next: Option<Box<Level>>,
    psubs: Vec<Arc<Subscription>>,
    qsubs: QueueGroups,
}

impl Node {
    fn is_empty(&self) -> bool {
        self.psubs.is_empty()
            && self.qsubs.is_empty()
            && self.next.as_ref().is_none_or(|l| l.is_empty())
    }
}

#[derive(Default)]
struct Level {
    literal: FxHashMap<Box<[u8]>, Node>,
    pwc: Option<Box<Node>>,
    fwc: Option<Box<Node>>,
}

impl Level {
    fn is_empty(&self) -> bool {
        self.literal.is_empty() && self.pwc.is_none() && self.fwc.is_none()
    }
}

/// The subscription trie.
#[derive(Default)]
pub(crate) struct Sublist {
    root: Level,
    count: usize,
}

impl Sublist {
    /// Adds a subscription; returns true if it is the first on its (subject, queue).
    pub fn insert(&mut self, sub: Arc<Subscription>) -> bool {
        let subject = sub.subject.clone();
        let mut level = &mut self.root;
        let mut tokens = subject.split(|&b| b == b'.').peekable();
        let node = loop {
            let Some(tok) = tokens.next() else {
                return false; // empty subject: rejected before reaching here
            };
            let node: &mut Node = match tok {
                b"*" => level.pwc.get_or_insert_with(Default::default),
                b">" => level.fwc.get_or_insert_with(Default::default),
                _ => level.literal.entry(tok.into()).or_default(),
            };
            if tokens.peek().is_none() {
                break node;
            }
            level = node.next.get_or_insert_with(Default::default);
        };
        let first = match &sub.queue {
            None => {
                node.psubs.push(sub);
                node.psubs.len() == 1
            }
            Some(q) => match node.qsubs.iter_mut().find(|(name, _)| name == q) {
                Some((_, members)) => {
                    members.push(sub);
                    false
                }
                None => {
                    node.qsubs.push((q.clone(), vec![sub]));
                    true
                }
            },
        };
        self.count += 1;
        first
    }

    /// Removes a subscription.
    pub fn remove(&mut self, sub: &Arc<Subscription>) -> Removed {
        let tokens: Vec<&[u8]> = sub.subject.split(|&b| b == b'.').collect();
        let removed = remove_in(&mut self.root, &tokens, sub);
        if removed != Removed::Absent {
            self.count -= 1;
        }
        removed
    }

    /// Calls `f` with every (subject, queue) that has subscriptions.
    fn for_each_interest(&self, f: &mut impl FnMut(&[u8], Option<&[u8]>)) {
        walk_interest(&self.root, &mut Vec::new(), false, f);
    }

    /// Number of subscriptions.
    pub fn len(&self) -> usize {
        self.count
    }

    /// All subscriptions matching a literal subject.
    pub fn matches(&self, subject: &[u8]) -> MatchResult {
        let tokens: smallvec_like::Tokens = smallvec_like::Tokens::new(subject);
        let mut out = MatchResult::default();
        match_level(&self.root, tokens.as_slice(), &mut out);
        out
    }
}

/// A tiny fixed-capacity token splitter so matching does not allocate for typical subjects.
mod smallvec_like {
    pub(super) struct Tokens<'a> {
        inline: [&'a [u8]; 16],
        len: usize,
        spill: Vec<&'a [u8]>,
    }

    impl<'a> Tokens<'a> {
        pub fn new(subject: &'a [u8]) -> Self {
            let mut t = Tokens {
                inline: [&[][..]; 16],
                len: 0,
                spill: Vec::new(),
            };
            for tok in subject.split(|&b| b == b'.') {
                if t.len < 16 {
                    t.inline[t.len] = tok;
                    t.len += 1;
                } else {
                    if t.spill.is_empty() {
                        t.spill.extend_from_slice(&t.inline);
                    }
                    t.spill.push(tok);
                }
            }
            t
        }

        pub fn as_slice(&self) -> &[&'a [u8]] {
            if self.spill.is_empty() {
                &self.inline[..self.len]
            } else {
                &self.spill
            }
        }
    }
}

fn add_node(node: &Node, out: &mut MatchResult) {
    out.psubs.extend(node.psubs.iter().cloned());
    for (_, members) in &node.qsubs {
        // A group that appears under several matching patterns is still one group.
        let queue = &members[0].queue;
        match out.qsubs.iter_mut().find(|g| &g[0].queue == queue) {
            Some(group) => group.extend(members.iter().cloned()),
            None => out.qsubs.push(members.clone()),
        }
    }
}

fn match_level(level: &Level, tokens: &[&[u8]], out: &mut MatchResult) {
    let Some((tok, rest)) = tokens.split_first() else {
        return;
    };
    if let Some(fwc) = &level.fwc {
        add_node(fwc, out);
    }
    if let Some(pwc) = &level.pwc {
        match_node(pwc, rest, out);
    }
    if let Some(node) = level.literal.get(*tok) {
        match_node(node, rest, out);
    }
}

fn match_node(node: &Node, rest: &[&[u8]], out: &mut MatchResult) {
    if rest.is_empty() {
        add_node(node, out);
    } else if let Some(next) = &node.next {
        match_level(next, rest, out);
    }
}

/// Visits the nodes of `level` and below, `prefix` holding the subject of the level's parent.
fn walk_interest(
    level: &Level,
    prefix: &mut Vec<u8>,
    nested: bool,
    f: &mut impl FnMut(&[u8], Option<&[u8]>),
) {
    let wildcards = [(&b"*"[..], &level.pwc), (&b">"[..], &level.fwc)];
    let literals = level.literal.iter().map(|(tok, node)| (&tok[..], node));
    let wildcards = wildcards
        .into_iter()
        .filter_map(|(tok, node)| node.as_deref().map(|n| (tok, n)));
    for (tok, node) in literals.chain(wildcards) {
        let len = prefix.len();
        if nested {
            prefix.push(b'.');
        }
        prefix.extend_from_slice(tok);
        if !node.psubs.is_empty() {
            f(prefix, None);
        }
        for (queue, _) in &node.qsubs {
            f(prefix, Some(queue));
        }
        if let Some(next) = &node.next {
            walk_interest(next, prefix, true, f);
        }
        prefix.truncate(len);
    }
}

/// Visits every subscription of the trie.
fn walk_subs(level: &Level, f: &mut impl FnMut(&Arc<Subscription>)) {
    let wildcards = [&level.pwc, &level.fwc];
    let nodes = level
        .literal
        .values()
        .chain(wildcards.into_iter().filter_map(|n| n.as_deref()));
    for node in nodes {
        node.psubs.iter().for_each(&mut *f);
        for (_, members) in &node.qsubs {
            members.iter().for_each(&mut *f);
        }
        if let Some(next) = &node.next {
            walk_subs(next, f);
        }
    }
}

fn remove_in(level: &mut Level, tokens: &[&[u8]], sub: &Arc<Subscription>) -> Removed {
    let Some((tok, rest)) = tokens.split_first() else {
        return Removed::Absent;
    };
    let (found, empty) = {
        let node: &mut Node = match *tok {
            b"*" => match level.pwc.as_deref_mut() {
                Some(n) => n,
                None => return Removed::Absent,
            },
            b">" => match level.fwc.as_deref_mut() {
                Some(n) => n,
                None => return Removed::Absent,
            },
            _ => match level.literal.get_mut(*tok) {
                Some(n) => n,
                None => return Removed::Absent,
            },
        };
        let found = if rest.is_empty() {
            remove_from_node(node, sub)
        } else {
            match node.next.as_deref_mut() {
                Some(next) => {
                    let f = remove_in(next, rest, sub);
                    if next.is_empty() {
                        node.next = None;
                    }
                    f
                }
                None => Removed::Absent,
            }
        };
        (found, node.is_empty())
    };
    if empty {
        match *tok {
            b"*" => level.pwc = None,
            b">" => level.fwc = None,
            _ => {
                level.literal.remove(*tok);
            }
        }
    }
    found
}

fn remove_from_node(node: &mut Node, sub: &Arc<Subscription>) -> Removed {
    match &sub.queue {
        None => match node.psubs.iter().position(|s| Arc::ptr_eq(s, sub)) {
            Some(i) => {
                node.psubs.swap_remove(i);
                removed_last(node.psubs.is_empty())
            }
            None => Removed::Absent,
        },
        Some(q) => {
            let Some(gi) = node.qsubs.iter().position(|(name, _)| name == q) else {
                return Removed::Absent;
            };
            let members = &mut node.qsubs[gi].1;
            let Some(i) = members.iter().position(|s| Arc::ptr_eq(s, sub)) else {
                return Removed::Absent;
            };
            members.swap_remove(i);
            let last = members.is_empty();
            if last {
                node.qsubs.swap_remove(gi);
            }
            removed_last(last)
        }
    }
}

fn removed_last(last: bool) -> Removed {
    if last {
        Removed::Last
    } else {
        Removed::Remaining
    }
}

/// A change in whether a (subject, queue) pair has any subscription.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct InterestChange {
    /// The subscriptions' subject, wildcards as written.
    pub subject: Bytes,
    /// Their queue group; `None` for plain subscriptions.
    pub queue: Option<Bytes>,
    /// True when the first subscription arrived, false when the last one left.
    pub present: bool,
}

impl InterestChange {
    fn new(subject: &[u8], queue: Option<&[u8]>, present: bool) -> Self {
        Self {
            subject: Bytes::copy_from_slice(subject),
            queue: queue.map(Bytes::copy_from_slice),
            present,
        }
    }
}

/// A listener of interest changes called synchronously, under the trie's write lock, as each
/// change happens: a route writes its `RS+`/`RS-` frames this way, so that they reach the
/// peer before any message a later publish forwards on the same route.
pub(crate) trait InterestSink: Send + Sync {
    /// One change; it must not block nor touch the router. Returns false once the listener
    /// is gone (it is then forgotten).
    fn interest(&self, subject: &[u8], queue: Option<&[u8]>, present: bool) -> bool;
}

/// A listener of every subscription added or removed (not only of the first and the last of
/// a (subject, queue)): leaf connections count other connections' interest themselves.
pub(crate) trait SubSink: Send + Sync {
    /// One subscription came (`present`) or went; it must not block nor touch the router.
    /// Returns false once the listener is gone (it is then forgotten).
    fn sub(&self, sub: &Subscription, present: bool) -> bool;
}

/// The listeners of [`Router::watch_subs`].
#[derive(Default)]
struct SubWatchers {
    /// Read on every change while the trie's lock is held (see [`Watchers::active`]).
    active: AtomicBool,
    sinks: Mutex<Vec<Arc<dyn SubSink>>>,
}

impl SubWatchers {
    fn send(&self, sub: &Subscription, present: bool) {
        let mut sinks = self.sinks.lock().unwrap_or_else(|e| e.into_inner());
        sinks.retain(|s| s.sub(sub, present));
        if sinks.is_empty() {
            self.active.store(false, Ordering::Relaxed);
        }
    }
}

/// One listener of interest changes.
enum Watcher {
    Channel(mpsc::UnboundedSender<InterestChange>),
    Sink(Arc<dyn InterestSink>),
}

/// The listeners of [`Router::watch_interest`] and [`Router::watch_interest_with`].
#[derive(Default)]
struct Watchers {
    /// Whether there are listeners: read before any change is built, so that nobody
    /// listening costs one relaxed load per first or last subscription. It is only read and
    /// written under the trie's lock (read lock to add, write lock otherwise), which orders it.
    active: AtomicBool,
    senders: Mutex<Vec<Watcher>>,
}

impl Watchers {
    #[inline]
    fn active(&self) -> bool {
        self.active.load(Ordering::Relaxed)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Watcher>> {
        self.senders.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn add(&self, w: Watcher) {
        self.lock().push(w);
        self.active.store(true, Ordering::Relaxed);
    }

    /// Sends the change to every listener, dropping those that went away.
    fn send(&self, sub: &Subscription, present: bool) {
        let mut senders = self.lock();
        senders.retain(|w| match w {
            Watcher::Channel(tx) => tx
                .send(InterestChange::new(
                    &sub.subject,
                    sub.queue.as_deref(),
                    present,
                ))
                .is_ok(),
            Watcher::Sink(sink) => sink.interest(&sub.subject, sub.queue.as_deref(), present),
        });
        if senders.is_empty() {
            self.active.store(false, Ordering::Relaxed);
        }
    }
}

/// The shared routing table: the trie plus a generation number that moves on every change.
///
/// Interest changes are sent while the trie's write lock is held, so that every listener sees
/// them in the order they happened (a first and a last of one pair never swap); the channels
/// are unbounded, so sending never waits.
pub(crate) struct Router {
    list: RwLock<Sublist>,
    generation: AtomicU64,
    watchers: Watchers,
    sub_watchers: SubWatchers,
    /// The account whose subjects these are (`$G`: the global account), as routes name it.
    account: Box<[u8]>,
}

impl Default for Router {
    fn default() -> Self {
        Self::named(crate::protocol::route::GLOBAL_ACCOUNT)
    }
}

impl Router {
    /// An empty router for the subjects of `account`.
    pub fn named(account: &[u8]) -> Self {
        Self {
            list: RwLock::default(),
            generation: AtomicU64::new(0),
            watchers: Watchers::default(),
            sub_watchers: SubWatchers::default(),
            account: account.into(),
        }
    }

    /// The account whose subjects these are.
    #[inline]
    pub fn account(&self) -> &[u8] {
        &self.account
    }

    /// Adds a subscription.
    pub fn insert(&self, sub: Arc<Subscription>) {
        let mut list = self.list.write().unwrap_or_else(|e| e.into_inner());
        if list.insert(sub.clone()) && self.watchers.active() {
            self.watchers.send(&sub, true);
        }
        if self.sub_watchers.active.load(Ordering::Relaxed) {
            self.sub_watchers.send(&sub, true);
        }
        self.generation.fetch_add(1, Ordering::Release);
    }

    /// Removes a subscription (idempotent).
    pub fn remove(&self, sub: &Arc<Subscription>) {
        if sub.removed.swap(true, Ordering::AcqRel) {
            return;
        }
        let mut list = self.list.write().unwrap_or_else(|e| e.into_inner());
        let removed = list.remove(sub);
        if removed == Removed::Last && self.watchers.active() {
            self.watchers.send(sub, false);
        }
        if removed != Removed::Absent && self.sub_watchers.active.load(Ordering::Relaxed) {
            self.sub_watchers.send(sub, false);
        }
        self.generation.fetch_add(1, Ordering::Release);
    }

    /// Follows interest: the receiver first gets a `present: true` change for every
    /// (subject, queue) that has subscriptions now, then every change as it happens. A
    /// listener must keep draining it (the channel is unbounded); dropping the receiver stops
    /// the changes (noticed at the next one).
    #[cfg_attr(
        not(test),
        expect(
            dead_code,
            reason = "routes use watch_interest_with; gateways (a later issue) will use it"
        )
    )]
    pub fn watch_interest(&self) -> mpsc::UnboundedReceiver<InterestChange> {
        let (tx, rx) = mpsc::unbounded_channel();
        // The read lock keeps changes out between the snapshot and the registration.
        let list = self.list.read().unwrap_or_else(|e| e.into_inner());
        list.for_each_interest(&mut |subject, queue| {
            let _ = tx.send(InterestChange::new(subject, queue, true));
        });
        self.watchers.add(Watcher::Channel(tx));
        drop(list);
        rx
    }

    /// Like [`Router::watch_interest`], but `sink` is called synchronously: first with every
    /// (subject, queue) that has subscriptions now, then with each change while the change
    /// is made.
    pub fn watch_interest_with(&self, sink: Arc<dyn InterestSink>) {
        let list = self.list.read().unwrap_or_else(|e| e.into_inner());
        list.for_each_interest(&mut |subject, queue| {
            sink.interest(subject, queue, true);
        });
        self.watchers.add(Watcher::Sink(sink));
    }

    /// Calls `sink` with every subscription there is now, then with each one added or
    /// removed, while the change is made.
    pub fn watch_subs(&self, sink: Arc<dyn SubSink>) {
        let list = self.list.read().unwrap_or_else(|e| e.into_inner());
        walk_subs(&list.root, &mut |sub| {
            sink.sub(sub, true);
        });
        let mut sinks = self
            .sub_watchers
            .sinks
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        sinks.push(sink);
        self.sub_watchers.active.store(true, Ordering::Relaxed);
    }

    /// Current generation.
    #[inline]
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Matches a literal subject without any cache.
    pub fn matches(&self, subject: &[u8]) -> Arc<MatchResult> {
        let list = self.list.read().unwrap_or_else(|e| e.into_inner());
        Arc::new(list.matches(subject))
    }

    /// Number of subscriptions.
    pub fn count(&self) -> usize {
        self.list.read().unwrap_or_else(|e| e.into_inner()).len()
    }
}

/// A per-connection cache of recent match results, valid for one router generation.
#[derive(Default)]
pub(crate) struct MatchCache {
    generation: u64,
    map: FxHashMap<Box<[u8]>, Arc<MatchResult>>,
}

const MATCH_CACHE_MAX: usize = 1024;

impl MatchCache {
    /// Returns the subscriptions matching `subject`, from the cache when still valid.
    #[inline]
    pub fn get(&mut self, router: &Router, subject: &[u8]) -> Arc<MatchResult> {
        let generation = router.generation();
        if generation != self.generation {
            self.map.clear();
            self.generation = generation;
        } else if let Some(hit) = self.map.get(subject) {
            return hit.clone();
        }
        let result = router.matches(subject);
        if self.map.len() >= MATCH_CACHE_MAX {
            self.map.clear();
        }
        self.map.insert(subject.into(), result.clone());
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sub(subject: &str, queue: Option<&str>) -> Arc<Subscription> {
        let (tx, _rx) = tokio::sync::mpsc::channel(1);
        Arc::new(Subscription {
            subject: subject.as_bytes().into(),
            queue: queue.map(|q| q.as_bytes().into()),
            sid: b"1"[..].into(),
            client_id: 1,
            sink: Sink::Local(tx),
            max: AtomicU64::new(0),
            delivered: AtomicU64::new(0),
            removed: AtomicBool::new(false),
            deny: None,
            responses: None,
        })
    }

    #[test]
    fn wildcard_matching() {
        let mut sl = Sublist::default();
        let subs: Vec<_> = ["foo.bar", "foo.*", "foo.>", ">", "*.bar", "foo.*.baz", "*"]
            .iter()
            .map(|s| sub(s, None))
            .collect();
        for s in &subs {
            sl.insert(s.clone());
        }
        let count = |sl: &Sublist, subject: &str| sl.matches(subject.as_bytes()).psubs.len();
        assert_eq!(count(&sl, "foo.bar"), 5); // foo.bar foo.* foo.> > *.bar
        assert_eq!(count(&sl, "foo.x.baz"), 3); // foo.> > foo.*.baz
        assert_eq!(count(&sl, "foo"), 2); // > *
        assert_eq!(count(&sl, "x.y.z.w"), 1); // >
        for s in &subs {
            assert_eq!(sl.remove(s), Removed::Last);
        }
        assert_eq!(sl.len(), 0);
        assert!(sl.root.is_empty());
        assert_eq!(count(&sl, "foo.bar"), 0);
    }

    #[test]
    fn queue_groups_merge_across_patterns() {
        let mut sl = Sublist::default();
        let a = sub("foo.*", Some("q"));
        let b = sub("foo.bar", Some("q"));
        let c = sub("foo.bar", Some("r"));
        for s in [&a, &b, &c] {
            sl.insert(s.clone());
        }
        let m = sl.matches(b"foo.bar");
        assert_eq!(m.qsubs.len(), 2);
        assert_eq!(m.qsubs.iter().map(|g| g.len()).sum::<usize>(), 3);
        assert_eq!(sl.remove(&b), Removed::Last);
        assert_eq!(sl.remove(&b), Removed::Absent);
        assert_eq!(sl.matches(b"foo.bar").qsubs.len(), 2);
    }

    /// Everything received so far, as (subject, queue, present).
    fn drain(
        rx: &mut mpsc::UnboundedReceiver<InterestChange>,
    ) -> Vec<(String, Option<String>, bool)> {
        let text = |b: &Bytes| String::from_utf8_lossy(b).into_owned();
        std::iter::from_fn(|| rx.try_recv().ok())
            .map(|c| (text(&c.subject), c.queue.as_ref().map(text), c.present))
            .collect()
    }

    fn change(subject: &str, queue: Option<&str>, present: bool) -> (String, Option<String>, bool) {
        (subject.to_string(), queue.map(str::to_string), present)
    }

    #[test]
    fn insert_and_remove_report_first_and_last_per_pair() {
        let mut sl = Sublist::default();
        let (a, b, q) = (sub("foo", None), sub("foo", None), sub("foo", Some("q")));
        assert!(sl.insert(a.clone()));
        assert!(!sl.insert(b.clone()));
        assert!(sl.insert(q.clone()));
        assert_eq!(sl.remove(&a), Removed::Remaining);
        assert_eq!(sl.remove(&q), Removed::Last);
        assert_eq!(sl.remove(&b), Removed::Last);
        assert_eq!(sl.remove(&b), Removed::Absent);
    }

    #[test]
    fn duplicate_subscriptions_change_interest_once() {
        let router = Router::default();
        let mut rx = router.watch_interest();
        let (a, b) = (sub("foo", None), sub("foo", None));
        router.insert(a.clone());
        router.insert(b.clone());
        assert_eq!(drain(&mut rx), [change("foo", None, true)]);
        router.remove(&a);
        assert_eq!(drain(&mut rx), []);
        router.remove(&a); // idempotent: no second event
        router.remove(&b);
        assert_eq!(drain(&mut rx), [change("foo", None, false)]);
    }

    #[test]
    fn queue_groups_are_separate_pairs() {
        let router = Router::default();
        let mut rx = router.watch_interest();
        let plain = sub("foo", None);
        let (q1a, q1b, q2) = (
            sub("foo", Some("q1")),
            sub("foo", Some("q1")),
            sub("foo", Some("q2")),
        );
        for s in [&plain, &q1a, &q1b, &q2] {
            router.insert(s.clone());
        }
        assert_eq!(
            drain(&mut rx),
            [
                change("foo", None, true),
                change("foo", Some("q1"), true),
                change("foo", Some("q2"), true),
            ]
        );
        router.remove(&q1a);
        router.remove(&plain);
        assert_eq!(drain(&mut rx), [change("foo", None, false)]);
        router.remove(&q2);
        router.remove(&q1b);
        assert_eq!(
            drain(&mut rx),
            [
                change("foo", Some("q2"), false),
                change("foo", Some("q1"), false)
            ]
        );
    }

    #[test]
    fn wildcard_subjects_are_reported_as_written() {
        let router = Router::default();
        let mut rx = router.watch_interest();
        let subs: Vec<_> = ["foo.*", "foo.>", ">", "foo.bar"]
            .iter()
            .map(|s| sub(s, None))
            .collect();
        for s in &subs {
            router.insert(s.clone());
        }
        let expected: Vec<_> = ["foo.*", "foo.>", ">", "foo.bar"]
            .iter()
            .map(|s| change(s, None, true))
            .collect();
        assert_eq!(drain(&mut rx), expected);
        router.remove(&subs[0]);
        assert_eq!(drain(&mut rx), [change("foo.*", None, false)]);
    }

    #[test]
    fn a_new_watcher_first_gets_current_interest() {
        let router = Router::default();
        let subs: Vec<_> = [
            ("a", None),
            ("a.b.c", None),
            ("*.b", Some("q")),
            ("a.>", None),
            ("a.b.c", None),
        ]
        .iter()
        .map(|(s, q)| sub(s, *q))
        .collect();
        for s in &subs {
            router.insert(s.clone());
        }
        let mut rx = router.watch_interest();
        let mut snapshot = drain(&mut rx);
        snapshot.sort();
        let mut expected = vec![
            change("a", None, true),
            change("a.b.c", None, true),
            change("*.b", Some("q"), true),
            change("a.>", None, true),
        ];
        expected.sort();
        assert_eq!(snapshot, expected);
        router.remove(&subs[0]);
        assert_eq!(drain(&mut rx), [change("a", None, false)]);
    }

    #[test]
    fn every_watcher_gets_changes_and_dropped_ones_are_forgotten() {
        let router = Router::default();
        assert!(!router.watchers.active());
        let mut kept = router.watch_interest();
        let dropped = router.watch_interest();
        drop(dropped);
        router.insert(sub("foo", None));
        assert_eq!(drain(&mut kept), [change("foo", None, true)]);
        assert_eq!(router.watchers.lock().len(), 1);
        drop(kept);
        router.insert(sub("bar", None));
        assert!(!router.watchers.active());
        assert!(router.watchers.lock().is_empty());
    }
}
