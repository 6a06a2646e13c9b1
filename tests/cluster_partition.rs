//! Partitions and a linearizability check, with real processes: three `causeway` binaries
//! whose cluster links each pass through a proxy the test can cut. Four clients (one per
//! server, the fourth on the first) put, get, create and update three keys of an R3 KV
//! bucket while the bucket's leader is first cut off from the others (a minority of one)
//! and healed, then killed with `kill -9` and restarted. Afterwards:
//! - no write through the isolated server was acknowledged while it was cut off (no split
//!   brain), and writes through the majority were;
//! - the three replicas converge after the heal;
//! - the recorded history of every key is linearizable (`linear::check`, a register model
//!   with revisions); answers that say nothing for sure count as "may have happened".
//!
//! The tally (operations, outcomes, faults) is printed.

mod common;
#[path = "cluster_partition/linear.rs"]
mod linear;

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, kv};
use common::child::{cluster_args, ChildServer};
use common::free_port;
use common::proxy::Proxy;
use linear::{Event, Op};
use rand::{Rng, SeedableRng};

const BIN: &str = env!("CARGO_BIN_EXE_causeway");
const KEYS: u64 = 3;
const WORKERS: usize = 4;
/// Each client operation is given up (outcome unknown) after this long (short enough that
/// the majority's clients try again while the partition lasts).
const OP_TIMEOUT: Duration = Duration::from_secs(2);

/// The three servers and the proxies on their links: `links[i][j]` carries server `i`'s
/// route to server `j`.
struct Cluster {
    clients: [u16; 3],
    args: Vec<Vec<String>>,
    children: Vec<Option<ChildServer>>,
    links: Vec<Vec<Option<Proxy>>>,
}

impl Cluster {
    async fn start(dir: &Path) -> Cluster {
        let clients = [free_port(), free_port(), free_port()];
        let routes = [free_port(), free_port(), free_port()];
        let mut links: Vec<Vec<Option<Proxy>>> = Vec::new();
        for i in 0..3 {
            let mut row = Vec::new();
            for (j, port) in routes.iter().enumerate() {
                row.push(if i == j {
                    None
                } else {
                    Some(Proxy::start(*port).await)
                });
            }
            links.push(row);
        }
        // Gossip must not dial around the proxies: each server advertises a dead address.
        let nowhere = free_port();
        let args = (0..3)
            .map(|i| {
                let via: Vec<String> = links[i]
                    .iter()
                    .flatten()
                    .map(|p| format!("nats://127.0.0.1:{}", p.port))
                    .collect();
                let mut args = cluster_args(i, clients[i], routes[i], &via, "part", dir);
                args.extend(["--cluster_advertise".into(), format!("127.0.0.1:{nowhere}")]);
                args
            })
            .collect();
        let mut c = Cluster {
            clients,
            args,
            children: vec![None, None, None],
            links,
        };
        for i in 0..3 {
            c.start_node(i).await;
        }
        c
    }

    async fn start_node(&mut self, i: usize) {
        let args: Vec<&str> = self.args[i].iter().map(String::as_str).collect();
        let mut child = ChildServer::spawn_args(BIN, &args);
        child.wait_ready().await;
        self.children[i] = Some(child);
    }

    /// Cuts (or heals) every link to and from server `k`.
    fn isolate(&self, k: usize, cut: bool) {
        for (i, row) in self.links.iter().enumerate() {
            for (j, p) in row.iter().enumerate() {
                if let (Some(p), true) = (p, i == k || j == k) {
                    if cut {
                        p.cut();
                    } else {
                        p.heal();
                    }
                }
            }
        }
    }

    fn url(&self, i: usize) -> String {
        format!("nats://127.0.0.1:{}", self.clients[i])
    }
}

/// The bucket stream's leader and whether every replica is current, as its info says.
async fn leader(client: &async_nats::Client) -> Option<(usize, bool)> {
    let ask = client.request("$JS.API.STREAM.INFO.KV_LIN", "".into());
    let reply = tokio::time::timeout(Duration::from_secs(1), ask)
        .await
        .ok()?
        .ok()?;
    let info: serde_json::Value = serde_json::from_slice(&reply.payload).ok()?;
    let name = info["cluster"]["leader"].as_str()?;
    let current = info["cluster"]["replicas"]
        .as_array()
        .is_some_and(|r| r.len() == 2 && r.iter().all(|x| x["current"] == true));
    let i = name
        .strip_prefix('n')?
        .parse::<usize>()
        .ok()?
        .checked_sub(1)?;
    Some((i, current))
}

async fn wait_leader(client: &async_nats::Client, want_current: bool) -> usize {
    let deadline = Instant::now() + Duration::from_secs(45);
    loop {
        match leader(client).await {
            Some((i, current)) if current || !want_current => return i,
            _ => {}
        }
        if Instant::now() > deadline {
            let info = client
                .request("$JS.API.STREAM.INFO.KV_LIN", "".into())
                .await
                .map(|m| String::from_utf8_lossy(&m.payload).to_string());
            panic!("no leader (all current: {want_current}): {info:?}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// One recorded operation: its key, the server its client went through, the event.
type Record = (u64, usize, Event);

/// A client doing random operations on the keys until `stop`, through server `node`.
async fn worker(
    w: usize,
    node: usize,
    kv: kv::Store,
    start: Instant,
    stop: Arc<AtomicBool>,
    history: Arc<Mutex<Vec<Record>>>,
) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(w as u64);
    let mut last_rev = [0u64; KEYS as usize];
    let mut n = 0u64;
    let now = || start.elapsed().as_nanos() as u64;
    while !stop.load(Ordering::Acquire) {
        n += 1;
        let key = rng.random_range(0..KEYS);
        let name = format!("k{key}");
        // Values are unique across the run: worker, then count.
        let value = (w as u64 + 1) * 1_000_000 + n;
        let call = now();
        let pick = rng.random_range(0..100);
        let (op, ok) = if pick < 40 {
            let r = tokio::time::timeout(OP_TIMEOUT, kv.put(&name, value.to_string().into())).await;
            let rev = matches!(r, Ok(Ok(_))).then(|| r.unwrap().unwrap());
            (Op::Put { value, rev }, rev.is_some())
        } else if pick < 75 {
            match tokio::time::timeout(OP_TIMEOUT, kv.entry(&name)).await {
                Ok(Ok(entry)) => {
                    let read = entry
                        .filter(|e| e.operation == kv::Operation::Put)
                        .map(|e| {
                            let v = std::str::from_utf8(&e.value).unwrap().parse().unwrap();
                            last_rev[key as usize] = e.revision;
                            (v, e.revision)
                        });
                    (Op::Get { read }, true)
                }
                // A read that did not answer says nothing.
                _ => (Op::Get { read: None }, false),
            }
        } else if pick < 85 {
            // A create is an update expecting no value (async-nats' `create` reads the key
            // after a failed attempt, which would make a lost answer look like a refusal).
            let created = kv.update(&name, value.to_string().into(), 0);
            let outcome = match tokio::time::timeout(OP_TIMEOUT, created).await {
                Ok(Ok(rev)) => Some(Ok(rev)),
                Ok(Err(e)) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => Some(Err(())),
                _ => None,
            };
            (Op::Create { value, outcome }, outcome.is_some())
        } else {
            let expected = last_rev[key as usize];
            let outcome = match tokio::time::timeout(
                OP_TIMEOUT,
                kv.update(&name, value.to_string().into(), expected),
            )
            .await
            {
                Ok(Ok(rev)) => Some(Ok(rev)),
                Ok(Err(e)) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => Some(Err(())),
                _ => None,
            };
            (
                Op::Update {
                    value,
                    expected,
                    outcome,
                },
                outcome.is_some(),
            )
        };
        if let Op::Put { rev: Some(r), .. }
        | Op::Create {
            outcome: Some(Ok(r)),
            ..
        }
        | Op::Update {
            outcome: Some(Ok(r)),
            ..
        } = &op
        {
            last_rev[key as usize] = *r;
        }
        let unanswered_read = matches!(op, Op::Get { .. }) && !ok;
        if !unanswered_read {
            let ret = ok.then(now);
            history
                .lock()
                .unwrap()
                .push((key, node, Event { op, call, ret }));
        }
        tokio::time::sleep(Duration::from_millis(15)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_minority_refuses_writes_and_kv_histories_are_linearizable() {
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = Cluster::start(dir.path()).await;
    let admin = async_nats::connect(cluster.url(0)).await.unwrap();
    let js = jetstream::new(admin.clone());
    let deadline = Instant::now() + Duration::from_secs(30);
    let cfg = kv::Config {
        bucket: "LIN".into(),
        num_replicas: 3,
        ..Default::default()
    };
    while js.create_key_value(cfg.clone()).await.is_err() {
        assert!(Instant::now() < deadline, "bucket never created");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    wait_leader(&admin, true).await;

    let start = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let history: Arc<Mutex<Vec<Record>>> = Arc::default();
    let mut workers = Vec::new();
    for w in 0..WORKERS {
        let node = w % 3;
        let client = async_nats::ConnectOptions::new()
            .retry_on_initial_connect()
            .connect(cluster.url(node))
            .await
            .unwrap();
        let kv = jetstream::new(client).get_key_value("LIN").await.unwrap();
        let (stop, history) = (stop.clone(), history.clone());
        workers.push(tokio::spawn(worker(w, node, kv, start, stop, history)));
    }

    // The leader cut off from the other two, then healed.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let isolated = wait_leader(&admin, false).await;
    let cut_at = start.elapsed().as_nanos() as u64;
    cluster.isolate(isolated, true);
    tokio::time::sleep(Duration::from_secs(8)).await;
    let healed_at = start.elapsed().as_nanos() as u64;
    cluster.isolate(isolated, false);
    let watcher = async_nats::connect(cluster.url((isolated + 1) % 3))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(4)).await;

    // The leader killed, then restarted.
    let killed = wait_leader(&watcher, false).await;
    cluster.children[killed].as_mut().unwrap().kill9();
    tokio::time::sleep(Duration::from_secs(3)).await;
    cluster.start_node(killed).await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    stop.store(true, Ordering::Release);
    for w in workers {
        tokio::time::timeout(OP_TIMEOUT * 3, w)
            .await
            .expect("worker stopped")
            .unwrap();
    }
    // The replicas converge.
    let watcher = async_nats::connect(cluster.url((killed + 1) % 3))
        .await
        .unwrap();
    wait_leader(&watcher, true).await;

    let history = history.lock().unwrap().clone();
    let is_write = |op: &Op| !matches!(op, Op::Get { .. });
    let acked_write = |op: &Op| {
        matches!(
            op,
            Op::Put { rev: Some(_), .. }
                | Op::Create {
                    outcome: Some(Ok(_)),
                    ..
                }
                | Op::Update {
                    outcome: Some(Ok(_)),
                    ..
                }
        )
    };
    // Writes called through the isolated server well after the cut (its lease and any
    // commit in flight are over) until the heal: none may be acknowledged.
    let settled = cut_at + 2_000_000_000;
    let during = |e: &Event| e.call >= settled && e.call < healed_at;
    let minority_acked = history
        .iter()
        .filter(|(_, n, e)| *n == isolated && during(e) && acked_write(&e.op))
        .count();
    let majority_acked = history
        .iter()
        .filter(|(_, n, e)| *n != isolated && during(e) && acked_write(&e.op))
        .count();
    let writes = history.iter().filter(|(_, _, e)| is_write(&e.op)).count();
    let unknown = history.iter().filter(|(_, _, e)| e.ret.is_none()).count();
    eprintln!(
        "partition tally: {} operations ({writes} writes, {unknown} unknown outcome); isolated n{} for {:.1} s: majority acked {majority_acked} writes, minority {minority_acked}; killed n{}",
        history.len(),
        isolated + 1,
        (healed_at - cut_at) as f64 / 1e9,
        killed + 1
    );
    assert_eq!(
        minority_acked, 0,
        "a write was acknowledged by the minority"
    );
    assert!(
        majority_acked > 0,
        "the majority took no writes while partitioned"
    );
    for key in 0..KEYS {
        let events: Vec<Event> = history
            .iter()
            .filter(|(k, _, _)| *k == key)
            .map(|(_, _, e)| e.clone())
            .collect();
        assert!(
            events.len() > 20,
            "key {key}: only {} operations",
            events.len()
        );
        if let Err(e) = linear::check(&events) {
            panic!("key k{key}: {e}");
        }
    }
    for c in cluster.children.iter_mut().flatten() {
        c.terminate().await;
    }
}
