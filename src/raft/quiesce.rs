//! Quiescing idle groups, so a thousand idle groups cost next to nothing.
//!
//! A leader whose group has had no new entry for a while, and whose followers have all of
//! its log, asks each follower to quiesce ([`super::Rpc::Quiesce`]), then stops its Raft
//! ticks (no heartbeats, no timers). A follower quiesces only for the leader it follows, in
//! the same vote: its ticks stop too (no election timer), and it relies on the leader's node
//! being alive instead of the group's heartbeats.
//! Every node announces itself a few times a second ([`Liveness`], one beacon per node rather
//! than one heartbeat per group); a follower wakes (campaigns again) when its leader's node
//! has not been heard from for [`LEADER_SILENT`] or came back as a new process, and whenever
//! the leader sends it anything (an entry, a heartbeat after a wake).
//!
//! A leader wakes ([`Quiet::wake`]) on a proposal or when the application needs a fresh
//! quorum acknowledgement (a read lease): ticks resume and a heartbeat goes out at once. Safety does not depend
//! on any of this: a quiesced leader has no lease (no quorum acknowledged it lately), and
//! elections follow Raft's rules as ever.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::NodeId;

/// How long a node may stay unheard before the groups it leads wake up.
pub const LEADER_SILENT: Duration = Duration::from_millis(1000);

/// How often a node announces itself.
pub const BEACON_EVERY: Duration = Duration::from_millis(200);

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// When each node was last heard from, and as which process.
#[derive(Default)]
pub struct Liveness {
    seen: Mutex<HashMap<NodeId, (Instant, u64)>>,
}

impl Liveness {
    /// Node `node` (process `incarnation`) was heard from now.
    pub fn heard(&self, node: NodeId, incarnation: u64) {
        lock(&self.seen).insert(node, (Instant::now(), incarnation));
    }

    /// The process `node` was last heard as, if it was heard within [`LEADER_SILENT`].
    pub fn alive(&self, node: NodeId) -> Option<u64> {
        let seen = lock(&self.seen);
        let (at, incarnation) = seen.get(&node)?;
        (at.elapsed() < LEADER_SILENT).then_some(*incarnation)
    }
}

/// A follower's quiesced groups: group name → (leader, the leader's process then).
#[derive(Default)]
pub struct Quiesced {
    groups: Mutex<HashMap<String, (NodeId, u64)>>,
}

impl Quiesced {
    pub(crate) fn insert(&self, group: &str, leader: NodeId, incarnation: u64) {
        lock(&self.groups).insert(group.to_string(), (leader, incarnation));
    }

    /// True if `group` is quiesced here.
    pub fn contains(&self, group: &str) -> bool {
        lock(&self.groups).contains_key(group)
    }

    /// True if `group` is quiesced here under `leader`.
    pub(crate) fn led_by(&self, group: &str, leader: Option<NodeId>) -> bool {
        lock(&self.groups)
            .get(group)
            .is_some_and(|(l, _)| Some(*l) == leader)
    }

    /// Removes `group`; true if it was quiesced.
    pub(crate) fn remove(&self, group: &str) -> bool {
        lock(&self.groups).remove(group).is_some()
    }

    /// Removes and returns the groups whose leader is no longer alive as the same process.
    pub(crate) fn lapsed(&self, live: &Liveness) -> Vec<String> {
        let mut groups = lock(&self.groups);
        let gone: Vec<String> = groups
            .iter()
            .filter(|(_, (leader, inc))| live.alive(*leader) != Some(*inc))
            .map(|(g, _)| g.clone())
            .collect();
        for g in &gone {
            groups.remove(g);
        }
        gone
    }
}

/// A leader's quiescence: whether its ticks are off, and a count of wakes so that a
/// quiesce decided before a wake is not carried out after it.
#[derive(Default)]
pub struct Quiet {
    state: Mutex<QuietState>,
}

#[derive(Default)]
struct QuietState {
    quiet: bool,
    wakes: u64,
    /// Quiescing is held off (a stepdown needs the followers to campaign).
    held: bool,
}

impl Quiet {
    /// The wake count now (taken before asking the followers).
    pub fn wakes(&self) -> u64 {
        lock(&self.state).wakes
    }

    /// Marks the leader quiet unless it was woken since `wakes`; true if it is now quiet
    /// (the caller then turns ticks off, under the same decision).
    pub fn settle(&self, wakes: u64, off: impl FnOnce()) -> bool {
        let mut s = lock(&self.state);
        if s.wakes != wakes || s.quiet || s.held {
            return false;
        }
        s.quiet = true;
        off();
        true
    }

    /// Wakes the leader: true if it was quiet (the caller turns ticks back on, under the
    /// same decision).
    pub fn wake(&self, on: impl FnOnce()) -> bool {
        let mut s = lock(&self.state);
        s.wakes += 1;
        if !s.quiet {
            return false;
        }
        s.quiet = false;
        on();
        true
    }

    /// Holds quiescing off (`true`) or lets it happen again (`false`).
    pub fn hold(&self, held: bool) {
        lock(&self.state).held = held;
    }

    /// True while quiescing is held off.
    pub fn held(&self) -> bool {
        lock(&self.state).held
    }

    /// True while quiet.
    pub fn is_quiet(&self) -> bool {
        lock(&self.state).quiet
    }
}

/// The shared quiescence state of a node's groups (held by its [`super::Host`]).
#[derive(Default)]
pub struct NodeQuiet {
    /// This process's incarnation (random per start), sent in its beacons.
    pub incarnation: u64,
    /// Who was heard from lately.
    pub liveness: Liveness,
    /// The groups quiesced here as followers.
    pub quiesced: Quiesced,
}

impl NodeQuiet {
    /// A node's state with a fresh incarnation.
    pub fn new() -> Arc<NodeQuiet> {
        Arc::new(NodeQuiet {
            incarnation: rand::random::<u64>() | 1,
            ..Default::default()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wake_cancels_a_quiesce_decided_before_it() {
        let q = Quiet::default();
        let before = q.wakes();
        assert!(!q.wake(|| panic!("not quiet yet")));
        assert!(!q.settle(before, || panic!("woken since")));
        assert!(q.settle(q.wakes(), || ()));
        assert!(q.is_quiet());
        let mut on = false;
        assert!(q.wake(|| on = true));
        assert!(on && !q.is_quiet());
    }

    #[test]
    fn followers_wake_when_their_leader_falls_silent_or_restarts() {
        let live = Liveness::default();
        let q = Quiesced::default();
        live.heard(1, 10);
        live.heard(2, 20);
        q.insert("a", 1, 10);
        q.insert("b", 2, 20);
        q.insert("c", 3, 30);
        assert_eq!(q.lapsed(&live), vec!["c".to_string()], "3 never heard");
        live.heard(2, 21);
        assert_eq!(q.lapsed(&live), vec!["b".to_string()], "2 restarted");
        assert!(q.lapsed(&live).is_empty());
        assert!(q.remove("a"));
        assert!(!q.remove("a"));
    }
}
