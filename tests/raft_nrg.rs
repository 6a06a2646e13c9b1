//! A three-member Raft group whose RPCs travel as `$NRG.<group>.<node>` requests through
//! causeway's in-process client: three nodes on one server (election, ordered apply, failover,
//! a bad frame answered, not fatal), and one node on each of three clustered servers, whose
//! RPCs cross the routes (failover when the leader's whole server goes).

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use causeway::raft::net::decode_reply;
use causeway::raft::testing::Recorder;
use causeway::raft::{Group, GroupOptions, Host, NatsWire, Node, NodeId, Reply, Service};
use causeway::{Config, Server};

const WAIT: Duration = Duration::from_secs(10);

async fn until(what: &str, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < WAIT, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn leader_of(groups: &BTreeMap<NodeId, (Group<Recorder>, Service)>) -> Option<NodeId> {
    groups
        .iter()
        .find(|(_, (g, _))| g.is_leader())
        .map(|(i, _)| *i)
}

type Members = BTreeMap<NodeId, (Group<Recorder>, Service)>;

/// Opens member `i + 1` of group `name` on each client (over `$NRG`), and initializes the
/// group with all of them.
async fn open_members(clients: Vec<causeway::Client>, name: &str, root: &Path) -> Members {
    let mut groups = BTreeMap::new();
    for (i, client) in clients.into_iter().enumerate() {
        let id = i as NodeId + 1;
        let host = Host::new(id);
        let service = NatsWire::serve(&client, host.clone()).await.unwrap();
        let opts = GroupOptions::new(name, id, root.join(format!("n{id}")));
        let group = Group::open(opts, Recorder::default(), NatsWire::new(client), &host)
            .await
            .unwrap();
        groups.insert(id, (group, service));
    }
    let members: BTreeMap<NodeId, Node> = groups
        .keys()
        .map(|&i| (i, Node::new(format!("n{i}"), "nrg")))
        .collect();
    groups[&1].0.initialize(members).await.unwrap();
    groups
}

/// Waits for a leader among `groups`.
async fn wait_leader(groups: &Members, what: &str) -> NodeId {
    let mut leader = None;
    until(what, || {
        leader = leader_of(groups);
        leader.is_some()
    })
    .await;
    leader.unwrap_or_default()
}

/// Proposes `<prefix>0`..`<prefix>9` on `leader`.
async fn propose_ten(groups: &Members, leader: NodeId, prefix: &str) {
    for i in 0..10 {
        groups[&leader]
            .0
            .propose(format!("{prefix}{i}").into_bytes())
            .await
            .unwrap();
    }
}

/// Waits until every member applied `a0..a9` then `b0..b9`, in order, then shuts them down.
async fn all_apply_a_then_b(groups: Members) {
    let want: Vec<Vec<u8>> = (0..10)
        .map(|i| format!("a{i}"))
        .chain((0..10).map(|i| format!("b{i}")))
        .map(String::into_bytes)
        .collect();
    until("every member to apply everything", || {
        groups
            .values()
            .all(|(g, _)| g.read(|r| r.payloads() == want))
    })
    .await;
    for (_, (g, _)) in groups {
        g.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_over_nrg_subjects_elects_applies_and_fails_over() {
    let server = Server::start(Config::loopback()).await.unwrap();
    let root = tempfile::tempdir().unwrap();
    let clients = (0..3).map(|_| server.client()).collect();
    let mut groups = open_members(clients, "meta", root.path()).await;
    let old = wait_leader(&groups, "a leader").await;
    propose_ten(&groups, old, "a").await;

    // A frame that is not an RPC is answered with a refusal; the node goes on.
    let reply = server
        .client()
        .request("$NRG.meta.1", "garbage".into())
        .await
        .unwrap();
    assert!(matches!(
        decode_reply(&reply.payload),
        Ok(Reply::Refused(_))
    ));

    let (group, service) = groups.remove(&old).unwrap();
    drop(service);
    group.shutdown().await;
    let start = Instant::now();
    let new = wait_leader(&groups, "a new leader").await;
    eprintln!("failover over $NRG took {:?}", start.elapsed());
    propose_ten(&groups, new, "b").await;
    all_apply_a_then_b(groups).await;
    server.shutdown().await;
}

/// Starts a server of cluster "raft" with routes to `seeds`.
async fn clustered(seeds: &[String]) -> causeway::ServerHandle {
    let cluster =
        causeway::config::ClusterConfig::loopback("raft").with_routes(seeds.iter().cloned());
    Server::start(Config::loopback().with_cluster(cluster))
        .await
        .unwrap()
}

/// One member on each of three clustered servers: the group's RPCs cross the routes (one
/// connection per server pair carries them with everything else). It elects, applies in
/// order everywhere, and when the leader's whole server goes, the other two elect a new
/// leader and keep what was committed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_spread_over_three_clustered_servers_rides_on_routes() {
    let a = clustered(&[]).await;
    let seed = [format!("nats-route://{}", a.cluster_addr().unwrap())];
    let b = clustered(&seed).await;
    let c = clustered(&seed).await;
    let servers = [a, b, c];
    until("a full mesh", || {
        servers.iter().all(|s| s.num_routes() == 2)
    })
    .await;
    let root = tempfile::tempdir().unwrap();
    let clients = servers.iter().map(|s| s.client()).collect();
    let mut groups = open_members(clients, "spread", root.path()).await;
    let old = wait_leader(&groups, "a leader").await;
    propose_ten(&groups, old, "a").await;
    let [a, b, c] = servers;
    let mut servers: BTreeMap<NodeId, causeway::ServerHandle> =
        [(1, a), (2, b), (3, c)].into_iter().collect();
    // The leader's server goes, routes and all.
    let (group, service) = groups.remove(&old).unwrap();
    drop(service);
    group.shutdown().await;
    servers.remove(&old).unwrap().shutdown().await;
    let new = wait_leader(&groups, "a new leader on the two left").await;
    assert_ne!(new, old);
    propose_ten(&groups, new, "b").await;
    all_apply_a_then_b(groups).await;
    for (_, s) in servers {
        s.shutdown().await;
    }
}
