//! A three-member Raft group whose RPCs travel as `$NRG.<group>.<node>` requests through a
//! causeway server's in-process client (three nodes on one server until cluster routes
//! exist): election, ordered apply, failover, and a bad frame answered, not fatal.

use std::collections::BTreeMap;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_over_nrg_subjects_elects_applies_and_fails_over() {
    let server = Server::start(Config::loopback()).await.unwrap();
    let root = tempfile::tempdir().unwrap();
    let mut groups = BTreeMap::new();
    for id in 1..=3 {
        let client = server.client();
        let host = Host::new(id);
        let service = NatsWire::serve(&client, host.clone()).await.unwrap();
        let opts = GroupOptions::new("meta", id, root.path().join(format!("n{id}")));
        let group = Group::open(opts, Recorder::default(), NatsWire::new(client), &host)
            .await
            .unwrap();
        groups.insert(id, (group, service));
    }
    let members: BTreeMap<NodeId, Node> = (1..=3)
        .map(|i| (i, Node::new(format!("n{i}"), "inproc")))
        .collect();
    groups[&1].0.initialize(members).await.unwrap();
    let mut leader = None;
    until("a leader", || {
        leader = leader_of(&groups);
        leader.is_some()
    })
    .await;
    let old = leader.unwrap_or_default();
    for i in 0..10 {
        groups[&old]
            .0
            .propose(format!("a{i}").into_bytes())
            .await
            .unwrap();
    }

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
    until("a new leader", || {
        leader = leader_of(&groups);
        leader.is_some()
    })
    .await;
    eprintln!("failover over $NRG took {:?}", start.elapsed());
    let new = leader.unwrap_or_default();
    for i in 0..10 {
        groups[&new]
            .0
            .propose(format!("b{i}").into_bytes())
            .await
            .unwrap();
    }
    let want: Vec<Vec<u8>> = (0..10)
        .map(|i| format!("a{i}"))
        .chain((0..10).map(|i| format!("b{i}")))
        .map(String::into_bytes)
        .collect();
    until("both members to apply everything", || {
        groups
            .values()
            .all(|(g, _)| g.read(|r| r.payloads() == want))
    })
    .await;
    for (_, (g, _)) in groups {
        g.shutdown().await;
    }
    server.shutdown().await;
}
