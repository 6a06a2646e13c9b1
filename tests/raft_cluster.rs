//! Three-node Raft groups over the in-process wire (`raft::MemNet`): election, ordered
//! apply, leader failover, restart catch-up by log and by snapshot, a partitioned leader,
//! and many groups sharing one link per node pair. Every wait polls with a deadline.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::{Duration, Instant};

use causeway::raft::testing::Recorder;
use causeway::raft::{Group, GroupError, GroupOptions, Host, MemNet, Node, NodeId};
use tempfile::TempDir;

const WAIT: Duration = Duration::from_secs(10);

/// Polls `f` every 20 ms until it is true; panics with `what` after `limit`.
async fn until(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

type Tweak = fn(GroupOptions) -> GroupOptions;

struct Cluster {
    net: MemNet,
    root: TempDir,
    name: String,
    tweak: Tweak,
    groups: BTreeMap<NodeId, Group<Recorder>>,
    /// The hosts that are up (their liveness beacons go around, see `beacons`).
    hosts: std::sync::Arc<std::sync::Mutex<BTreeMap<NodeId, Host>>>,
}

fn members(ids: &[NodeId]) -> BTreeMap<NodeId, Node> {
    ids.iter()
        .map(|i| (*i, Node::new(format!("n{i}"), format!("mem://{i}"))))
        .collect()
}

impl Cluster {
    async fn start(tweak: Tweak) -> Cluster {
        let mut c = Cluster {
            net: MemNet::new(),
            root: tempfile::tempdir().unwrap(),
            name: "g".into(),
            tweak,
            groups: BTreeMap::new(),
            hosts: Default::default(),
        };
        for id in 1..=3 {
            c.open(id).await;
        }
        c.groups[&1].initialize(members(&[1, 2, 3])).await.unwrap();
        c
    }

    /// Opens (or reopens, as after a restart) node `id`'s member with a fresh host.
    async fn open(&mut self, id: NodeId) {
        let host = Host::new(id);
        self.net.register(&host);
        self.hosts.lock().unwrap().insert(id, host.clone());
        let dir = self.root.path().join(format!("n{id}"));
        let opts = (self.tweak)(GroupOptions::new(self.name.clone(), id, dir));
        let wire = self.net.wire(id);
        let group = Group::open(opts, Recorder::default(), wire, &host)
            .await
            .unwrap();
        self.groups.insert(id, group);
    }

    /// Stops node `id` (off the network, its group shut down).
    async fn stop(&mut self, id: NodeId) {
        self.net.down(id);
        self.hosts.lock().unwrap().remove(&id);
        if let Some(g) = self.groups.remove(&id) {
            g.shutdown().await;
        }
    }

    /// Waits for one of `among` to lead; returns it.
    async fn leader(&self, among: &[NodeId]) -> NodeId {
        let mut found = None;
        until("a leader", WAIT, || {
            found = among.iter().copied().find(|i| self.groups[i].is_leader());
            found.is_some()
        })
        .await;
        found.unwrap_or_default()
    }

    fn state(&self, id: NodeId) -> Recorder {
        self.groups[&id].read(|r| r.clone())
    }

    /// Waits until every member in `ids` has applied what `of` has, and checks they agree.
    async fn converge(&self, ids: &[NodeId], of: NodeId) -> Recorder {
        let want = self.groups[&of].applied_index();
        until("the members to catch up", WAIT, || {
            ids.iter().all(|i| self.groups[i].applied_index() >= want)
        })
        .await;
        let state = self.state(of);
        for i in ids {
            assert_eq!(self.state(*i), state, "node {i} differs from node {of}");
        }
        state
    }

    async fn propose_all(&self, on: NodeId, payloads: impl Iterator<Item = String>) {
        for p in payloads {
            self.groups[&on].propose(p.into_bytes()).await.unwrap();
        }
    }
}

fn payloads(prefix: &str, n: usize) -> impl Iterator<Item = String> + '_ {
    (0..n).map(move |i| format!("{prefix}{i}"))
}

fn strings(r: &Recorder) -> Vec<String> {
    r.payloads()
        .into_iter()
        .map(|p| String::from_utf8(p).unwrap())
        .collect()
}

async fn timed<T>(f: impl Future<Output = T>) -> (T, Duration) {
    let start = Instant::now();
    let out = f.await;
    (out, start.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_elect_and_apply_in_the_same_order() {
    let c = Cluster::start(|o| o).await;
    let leader = c.leader(&[1, 2, 3]).await;
    let g = &c.groups[&leader];
    // Concurrent proposals: the log decides one order, every member applies it.
    let answers =
        futures::future::join_all((0..30).map(|i| g.propose(format!("p{i}").into_bytes()))).await;
    let indexes: Vec<u64> = answers
        .into_iter()
        .map(|a| u64::from_le_bytes(a.unwrap().try_into().unwrap()))
        .collect();
    let state = c.converge(&[1, 2, 3], leader).await;
    assert_eq!(state.applied.len(), 30);
    for (i, index) in indexes.iter().enumerate() {
        let at = state.applied.iter().find(|(x, _)| x == index).unwrap();
        assert_eq!(
            at.1,
            format!("p{i}").into_bytes(),
            "the answer names the entry's index"
        );
    }
    let follower = [1, 2, 3]
        .into_iter()
        .find(|i| *i != leader)
        .unwrap_or_default();
    let err = c.groups[&follower]
        .propose(b"no".to_vec())
        .await
        .unwrap_err();
    assert!(
        matches!(err, GroupError::NotLeader { leader: Some(l) } if l == leader),
        "{err}"
    );
    c.groups[&leader].ensure_linearizable().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_leader_follows_a_dead_one_and_keeps_what_was_committed() {
    let mut c = Cluster::start(|o| o).await;
    let old = c.leader(&[1, 2, 3]).await;
    c.propose_all(old, payloads("a", 10)).await;
    let rest: Vec<NodeId> = [1, 2, 3].into_iter().filter(|i| *i != old).collect();
    c.stop(old).await;
    let (new, took) = timed(c.leader(&rest)).await;
    eprintln!("new leader {new} after {took:?}");
    assert!(took < Duration::from_secs(3), "failover took {took:?}");
    c.propose_all(new, payloads("b", 10)).await;
    let state = c.converge(&rest, new).await;
    let want: Vec<String> = payloads("a", 10).chain(payloads("b", 10)).collect();
    assert_eq!(strings(&state), want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_follower_catches_up_from_the_log() {
    let mut c = Cluster::start(|o| o).await;
    let leader = c.leader(&[1, 2, 3]).await;
    c.propose_all(leader, payloads("a", 5)).await;
    let f = [1, 2, 3]
        .into_iter()
        .find(|i| *i != leader)
        .unwrap_or_default();
    c.converge(&[1, 2, 3], leader).await;
    c.stop(f).await;
    c.propose_all(leader, payloads("b", 10)).await;
    c.open(f).await;
    let state = c.converge(&[1, 2, 3], leader).await;
    assert_eq!(state.applied.len(), 15);
    let snapshot = c.root.path().join(format!("n{f}/raft-snapshot"));
    assert!(!snapshot.exists(), "caught up from the log alone");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_follower_gets_a_snapshot_when_the_log_was_purged() {
    let mut c = Cluster::start(|o| GroupOptions {
        snapshot_every: 20,
        keep_below_snapshot: 0,
        ..o
    })
    .await;
    let leader = c.leader(&[1, 2, 3]).await;
    let f = [1, 2, 3]
        .into_iter()
        .find(|i| *i != leader)
        .unwrap_or_default();
    c.stop(f).await;
    c.propose_all(leader, payloads("a", 60)).await;
    until("the leader to purge its log", WAIT, || {
        let m = c.groups[&leader].raft().metrics().borrow().clone();
        m.purged.is_some_and(|p| p.index >= 40)
    })
    .await;
    c.open(f).await;
    let state = c.converge(&[1, 2, 3], leader).await;
    assert_eq!(strings(&state), payloads("a", 60).collect::<Vec<_>>());
    let m = c.groups[&f].raft().metrics().borrow().clone();
    assert!(
        m.snapshot.is_some_and(|s| s.index >= 40),
        "{:?}",
        m.snapshot
    );
    assert!(c.root.path().join(format!("n{f}/raft-snapshot")).exists());
    // The installed snapshot is durable: the follower restarts from it.
    c.stop(f).await;
    c.open(f).await;
    c.converge(&[f], leader).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitioned_leader_cannot_commit_and_heal_converges() {
    let c = Cluster::start(|o| GroupOptions {
        propose_timeout: Duration::from_millis(1500),
        ..o
    })
    .await;
    let old = c.leader(&[1, 2, 3]).await;
    c.propose_all(old, payloads("a", 5)).await;
    c.net.partition(&[old]);
    let err = c.groups[&old].propose(b"lost".to_vec()).await.unwrap_err();
    assert!(matches!(err, GroupError::Timeout), "{err}");
    let rest: Vec<NodeId> = [1, 2, 3].into_iter().filter(|i| *i != old).collect();
    let new = c.leader(&rest).await;
    c.propose_all(new, payloads("b", 5)).await;
    c.net.heal();
    until("the old leader to follow", WAIT, || {
        c.groups[&old].leader() == Some(new) && !c.groups[&old].is_leader()
    })
    .await;
    let state = c.converge(&[1, 2, 3], new).await;
    let want: Vec<String> = payloads("a", 5).chain(payloads("b", 5)).collect();
    assert_eq!(strings(&state), want, "the uncommitted proposal is gone");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_groups_share_one_link_per_node_pair() {
    let net = MemNet::new();
    let root = tempfile::tempdir().unwrap();
    let hosts: Vec<Host> = (1..=3).map(Host::new).collect();
    let mut groups: BTreeMap<(usize, NodeId), Group<Recorder>> = BTreeMap::new();
    for host in &hosts {
        net.register(host);
        let wire = net.wire(host.id());
        for g in 0..50 {
            let dir = root.path().join(format!("g{g}/n{}", host.id()));
            let opts = GroupOptions::new(format!("g{g}"), host.id(), dir);
            let group = Group::open(opts, Recorder::default(), wire.clone(), host)
                .await
                .unwrap();
            groups.insert((g, host.id()), group);
        }
    }
    for g in 0..50 {
        let first = (g % 3) as NodeId + 1;
        groups[&(g, first)]
            .initialize(members(&[1, 2, 3]))
            .await
            .unwrap();
    }
    for g in 0..50 {
        let mut leader = None;
        until("every group's leader", WAIT, || {
            leader = (1..=3).find(|i| groups[&(g, *i)].is_leader());
            leader.is_some()
        })
        .await;
        let leader = leader.unwrap_or_default();
        groups[&(g, leader)]
            .propose(format!("g{g}").into_bytes())
            .await
            .unwrap();
    }
    until("every member to apply", WAIT, || {
        groups.iter().all(|((g, _), group)| {
            group.read(|r| r.payloads() == vec![format!("g{g}").into_bytes()])
        })
    })
    .await;
    assert_eq!(net.links_opened(), 6, "one link per ordered node pair");
    for (_, g) in groups {
        g.shutdown().await;
    }
}

/// What the NATS wire's beacons do, for the in-process wire: every 100 ms each host that is
/// up is heard by the others, which wake groups whose leader fell silent.
fn beacons(
    hosts: std::sync::Arc<std::sync::Mutex<BTreeMap<NodeId, Host>>>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let up: Vec<Host> = hosts.lock().unwrap().values().cloned().collect();
            for h in &up {
                for peer in &up {
                    peer.quiet().liveness.heard(h.id(), h.quiet().incarnation);
                }
            }
            for h in &up {
                h.wake_lapsed();
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_group_quiesces_wakes_on_a_proposal_and_fails_over() {
    let mut c = Cluster::start(|mut o| {
        o.quiesce_after = Some(Duration::from_millis(300));
        o
    })
    .await;
    let beacons = beacons(c.hosts.clone());
    let first = c.leader(&[1, 2, 3]).await;
    c.propose_all(first, payloads("a", 5)).await;
    until("the leader to quiesce", WAIT, || {
        c.groups[&first].is_quiet()
    })
    .await;
    let followers: Vec<NodeId> = [1, 2, 3].into_iter().filter(|i| *i != first).collect();
    // The leader goes quiet first, then tells its followers: they follow shortly.
    until("the followers to quiesce", WAIT, || {
        let hosts = c.hosts.lock().unwrap();
        followers
            .iter()
            .all(|f| hosts[f].quiet().quiesced.contains("g"))
    })
    .await;

    // A proposal wakes it; followers follow its heartbeats again; it quiesces once more.
    c.propose_all(first, payloads("b", 3)).await;
    assert!(!c.groups[&first].is_quiet());
    {
        let hosts = c.hosts.lock().unwrap();
        for f in &followers {
            assert!(!hosts[f].quiet().quiesced.contains("g"), "node {f} woke");
        }
    }
    c.converge(&[1, 2, 3], first).await;
    until("the leader to quiesce again", WAIT, || {
        c.groups[&first].is_quiet()
    })
    .await;

    // The quiesced leader dies: its node falls silent, the followers campaign.
    let t = Instant::now();
    c.stop(first).await;
    let second = c.leader(&followers).await;
    eprintln!(
        "quiesced leader {first} gone; {second} leads after {:?}",
        t.elapsed()
    );
    c.propose_all(second, payloads("c", 2)).await;
    let state = c.converge(&followers, second).await;
    assert_eq!(strings(&state).len(), 10);
    beacons.abort();
}
