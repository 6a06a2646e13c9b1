//! Failover of a replicated (R3) stream with real processes: three `causeway` binaries form a
//! cluster on 127.0.0.1; a client given all three URLs publishes numbered messages (each with
//! a `Nats-Msg-Id`, retried until acknowledged) while the stream's leader is killed with
//! `kill -9` and restarted, three times, then every server is restarted in turn (SIGTERM) while
//! it goes on. Afterwards every acknowledged message must be in the stream exactly once, at
//! the sequence its ack named. The tally is printed.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, stream};
use common::child::{cluster_args, ChildServer};
use common::free_port;

const BIN: &str = env!("CARGO_BIN_EXE_causeway");
const MESSAGES: u64 = 800;
const KILLS: usize = 3;
/// Kill rounds take the first three quarters of the messages (of `KILLS + 1` parts, one per
/// round); a rolling restart of all three servers the last part.
const PARTS: usize = KILLS + 2;

struct Node {
    name: String,
    args: Vec<String>,
    child: Option<ChildServer>,
}

impl Node {
    fn new(i: usize, clients: &[u16; 3], routes: &[u16; 3], dir: &Path) -> Node {
        let all: Vec<String> = routes
            .iter()
            .map(|p| format!("nats://127.0.0.1:{p}"))
            .collect();
        Node {
            name: format!("n{}", i + 1),
            args: cluster_args(i, clients[i], routes[i], &all, "fo", dir),
            child: None,
        }
    }

    async fn start(&mut self) {
        let args: Vec<&str> = self.args.iter().map(String::as_str).collect();
        let mut child = ChildServer::spawn_args(BIN, &args);
        child.wait_ready().await;
        self.child = Some(child);
    }
}

/// The stream's leader, as its info (answered by the leader) names it; `None` if no answer
/// comes within 300 ms.
async fn leader(client: &async_nats::Client) -> Option<String> {
    let ask = client.request("$JS.API.STREAM.INFO.FO", "".into());
    let reply = tokio::time::timeout(Duration::from_millis(300), ask)
        .await
        .ok()?
        .ok()?;
    let info: serde_json::Value = serde_json::from_slice(&reply.payload).ok()?;
    info["cluster"]["leader"].as_str().map(String::from)
}

/// Message `seq`, or `None` if the stream says it has none; other errors (no leader yet
/// after the restarts) are retried for a bounded time.
async fn get_message(s: &stream::Stream, seq: u64) -> Option<jetstream::message::StreamMessage> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match s.get_raw_message(seq).await {
            Ok(m) => return Some(m),
            Err(e) if e.to_string().contains("no message found") => return None,
            Err(e) => {
                assert!(Instant::now() < deadline, "message {seq}: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acknowledged_messages_survive_leader_kills() {
    let dir = tempfile::tempdir().unwrap();
    let clients = [free_port(), free_port(), free_port()];
    let routes = [free_port(), free_port(), free_port()];
    let mut nodes: Vec<Node> = (0..3)
        .map(|i| Node::new(i, &clients, &routes, dir.path()))
        .collect();
    for n in &mut nodes {
        n.start().await;
    }
    let urls: Vec<async_nats::ServerAddr> = clients
        .iter()
        .map(|p| format!("nats://127.0.0.1:{p}").parse().unwrap())
        .collect();
    let client = async_nats::ConnectOptions::new()
        .retry_on_initial_connect()
        .connect(urls)
        .await
        .unwrap();
    let js = jetstream::new(client.clone());
    let deadline = Instant::now() + Duration::from_secs(30);
    let cfg = stream::Config {
        name: "FO".into(),
        subjects: vec!["fo.>".into()],
        num_replicas: 3,
        ..Default::default()
    };
    loop {
        if js.get_or_create_stream(cfg.clone()).await.is_ok() {
            break;
        }
        assert!(Instant::now() < deadline, "no stream");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // The publisher: each message retried (same Msg-Id) until acknowledged.
    let acked: Arc<Mutex<BTreeMap<u64, u64>>> = Arc::default();
    let publisher = {
        let (js, acked) = (js.clone(), acked.clone());
        tokio::spawn(async move {
            for i in 0..MESSAGES {
                let deadline = Instant::now() + Duration::from_secs(60);
                loop {
                    let mut headers = async_nats::HeaderMap::new();
                    headers.insert("Nats-Msg-Id", format!("m{i}").as_str());
                    let sent = js
                        .publish_with_headers(format!("fo.{i}"), headers, i.to_string().into())
                        .await;
                    let seq = match sent {
                        Ok(ack) => match tokio::time::timeout(Duration::from_secs(3), ack).await {
                            Ok(Ok(ack)) => Some(ack.sequence),
                            _ => None,
                        },
                        Err(_) => None,
                    };
                    if let Some(seq) = seq {
                        acked.lock().unwrap().insert(i, seq);
                        break;
                    }
                    assert!(Instant::now() < deadline, "message {i} never acknowledged");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        })
    };

    // Kill the leader with -9 under that load, restart it, three times.
    let (mut killed, mut takeovers) = (Vec::new(), Vec::new());
    for round in 1..=KILLS {
        let want = round * MESSAGES as usize / PARTS;
        while acked.lock().unwrap().len() < want {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let name = loop {
            if let Some(l) = leader(&client).await {
                break l;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let node = nodes.iter_mut().find(|n| n.name == name).unwrap();
        node.child.as_mut().unwrap().kill9();
        node.child = None;
        // Another server takes over (before the killed one is back).
        let killed_at = Instant::now();
        let next = loop {
            match leader(&client).await {
                Some(l) if l != name => break l,
                _ => {}
            }
            assert!(
                killed_at.elapsed() < Duration::from_secs(20),
                "no new leader"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        takeovers.push(format!("{name}->{next} {:?}", killed_at.elapsed()));
        killed.push(name.clone());
        let node = nodes.iter_mut().find(|n| n.name == name).unwrap();
        node.start().await;
    }
    // A rolling restart (SIGTERM, start again) of every server while the publisher goes on.
    let mut restarted = 0;
    for node in &mut nodes {
        let want = (KILLS + 1) * MESSAGES as usize / PARTS + restarted * 20;
        while acked.lock().unwrap().len() < want.min(MESSAGES as usize - 1) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        node.child.as_mut().unwrap().terminate().await;
        node.child = None;
        node.start().await;
        restarted += 1;
        // Let the restarted server catch up before the next one goes.
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    tokio::time::timeout(Duration::from_secs(120), publisher)
        .await
        .expect("publisher finished in time")
        .expect("publisher");

    // Creating the stream again (same config) is answered whichever server is down.
    for node in &mut nodes {
        node.child.as_mut().unwrap().kill9();
        node.child = None;
        let deadline = Instant::now() + Duration::from_secs(20);
        while js.create_stream(cfg.clone()).await.is_err() {
            assert!(
                Instant::now() < deadline,
                "create not answered without {}",
                node.name
            );
        }
        node.start().await;
    }

    // Every acknowledged message, exactly once, at its sequence.
    let acked = acked.lock().unwrap().clone();
    let s = js.get_stream("FO").await.unwrap();
    let (mut lost, mut wrong) = (Vec::new(), Vec::new());
    for (i, seq) in &acked {
        match get_message(&s, *seq).await {
            Some(m) if m.payload == i.to_string().as_bytes() => {}
            Some(m) => wrong.push((*i, *seq, String::from_utf8_lossy(&m.payload).to_string())),
            None => lost.push(*i),
        }
    }
    let mut s = js.get_stream("FO").await.unwrap();
    let stored = s.info().await.unwrap().state.messages;
    eprintln!(
        "failover tally: kills {} ({takeovers:?}), rolling restarts {restarted}, acked {}, stored {stored}, lost {}, misplaced {}",
        killed.len(),
        acked.len(),
        lost.len(),
        wrong.len()
    );
    assert_eq!(acked.len() as u64, MESSAGES);
    assert!(lost.is_empty(), "lost: {lost:?}");
    assert!(wrong.is_empty(), "misplaced: {wrong:?}");
    assert_eq!(stored, MESSAGES, "duplicates stored");
    for n in &mut nodes {
        if let Some(c) = n.child.as_mut() {
            c.terminate().await;
        }
    }
}
