//! Subject routing: the subscription trie, its generation-checked match cache, and the
//! [`Subscription`] record that routing hands to delivery.
//!
//! The trie has one level per subject token with separate slots for `*` and `>`. Reads vastly
//! outnumber writes, so [`Router`] keeps the trie behind an `RwLock` plus a generation counter;
//! each connection keeps a [`MatchCache`] of recent subject -> result lookups that it throws away
//! whenever the generation moves.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use rustc_hash::FxHashMap;

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
    /// Adds a subscription.
    pub fn insert(&mut self, sub: Arc<Subscription>) {
        let subject = sub.subject.clone();
        let mut level = &mut self.root;
        let mut tokens = subject.split(|&b| b == b'.').peekable();
        let node = loop {
            let Some(tok) = tokens.next() else {
                return; // empty subject: rejected before reaching here
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
        match &sub.queue {
            None => node.psubs.push(sub),
            Some(q) => match node.qsubs.iter_mut().find(|(name, _)| name == q) {
                Some((_, members)) => members.push(sub),
                None => node.qsubs.push((q.clone(), vec![sub])),
            },
        }
        self.count += 1;
    }

    /// Removes a subscription; returns whether it was present.
    pub fn remove(&mut self, sub: &Arc<Subscription>) -> bool {
        let tokens: Vec<&[u8]> = sub.subject.split(|&b| b == b'.').collect();
        let found = remove_in(&mut self.root, &tokens, sub);
        if found {
            self.count -= 1;
        }
        found
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

fn remove_in(level: &mut Level, tokens: &[&[u8]], sub: &Arc<Subscription>) -> bool {
    let Some((tok, rest)) = tokens.split_first() else {
        return false;
    };
    let (found, empty) = {
        let node: &mut Node = match *tok {
            b"*" => match level.pwc.as_deref_mut() {
                Some(n) => n,
                None => return false,
            },
            b">" => match level.fwc.as_deref_mut() {
                Some(n) => n,
                None => return false,
            },
            _ => match level.literal.get_mut(*tok) {
                Some(n) => n,
                None => return false,
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
                None => false,
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

fn remove_from_node(node: &mut Node, sub: &Arc<Subscription>) -> bool {
    match &sub.queue {
        None => match node.psubs.iter().position(|s| Arc::ptr_eq(s, sub)) {
            Some(i) => {
                node.psubs.swap_remove(i);
                true
            }
            None => false,
        },
        Some(q) => {
            let Some(gi) = node.qsubs.iter().position(|(name, _)| name == q) else {
                return false;
            };
            let members = &mut node.qsubs[gi].1;
            let Some(i) = members.iter().position(|s| Arc::ptr_eq(s, sub)) else {
                return false;
            };
            members.swap_remove(i);
            if members.is_empty() {
                node.qsubs.swap_remove(gi);
            }
            true
        }
    }
}

/// The shared routing table: the trie plus a generation number that moves on every change.
#[derive(Default)]
pub(crate) struct Router {
    list: RwLock<Sublist>,
    generation: AtomicU64,
}

impl Router {
    /// Adds a subscription.
    pub fn insert(&self, sub: Arc<Subscription>) {
        let mut list = self.list.write().unwrap_or_else(|e| e.into_inner());
        list.insert(sub);
        self.generation.fetch_add(1, Ordering::Release);
    }

    /// Removes a subscription (idempotent).
    pub fn remove(&self, sub: &Arc<Subscription>) {
        if sub.removed.swap(true, Ordering::AcqRel) {
            return;
        }
        let mut list = self.list.write().unwrap_or_else(|e| e.into_inner());
        list.remove(sub);
        self.generation.fetch_add(1, Ordering::Release);
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
            assert!(sl.remove(s));
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
        assert!(sl.remove(&b));
        assert!(!sl.remove(&b));
        assert_eq!(sl.matches(b"foo.bar").qsubs.len(), 2);
    }
}
