//! A KV watcher (an ordered push consumer without a durable name) resumes at once after the
//! server is killed with -9 and restarted on the same store: its consumer is kept across the
//! restart, so the client's resubscription finds it, as nats-server keeps file-backed
//! ephemeral consumers. Checked with async-nats and with nats.js; each wait is bounded (the
//! clients' own fallback, recreating the consumer after missed heartbeats, takes 10-60 s).

mod common;

use std::time::{Duration, Instant};

use async_nats::jetstream::kv;
use common::child::ChildServer;
use common::suites::ensure_node_modules;
use futures::StreamExt;
use tokio::io::{AsyncBufReadExt, BufReader};

const BIN: &str = env!("CARGO_BIN_EXE_causeway");
/// How long a watcher may stay silent after a put once the server is back.
const RESUME_LIMIT: Duration = Duration::from_secs(8);

async fn reconnecting_client(port: u16) -> async_nats::Client {
    async_nats::ConnectOptions::new()
        .reconnect_delay_callback(|_| Duration::from_millis(100))
        .connect(format!("nats://127.0.0.1:{port}"))
        .await
        .expect("connect")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_nats_kv_watch_resumes_after_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let port = common::free_port();
    let mut child = ChildServer::spawn(BIN, dir.path(), i32::from(port));
    child.wait_ready().await;
    let nc = reconnecting_client(port).await;
    let js = async_nats::jetstream::new(nc.clone());
    let store = js
        .create_key_value(kv::Config {
            bucket: "W".into(),
            ..Default::default()
        })
        .await
        .expect("create bucket");
    let mut watch = store.watch_all().await.expect("watch");
    store.put("a", "1".into()).await.expect("put a");
    let first = common::within(common::TIMEOUT, "first entry", watch.next()).await;
    assert_eq!(first.unwrap().unwrap().key, "a");

    child.kill9();
    let mut child = ChildServer::spawn(BIN, dir.path(), i32::from(port));
    child.wait_ready().await;
    let nc2 = reconnecting_client(port).await;
    let store2 = async_nats::jetstream::new(nc2)
        .get_key_value("W")
        .await
        .expect("bucket after restart");
    store2.put("b", "2".into()).await.expect("put b");
    let put_at = Instant::now();
    loop {
        let entry = common::within(RESUME_LIMIT, "the watcher to resume", watch.next())
            .await
            .expect("watch ended")
            .expect("watch error");
        if entry.key == "b" {
            break;
        }
        assert_eq!(entry.key, "a", "unexpected entry {entry:?}");
    }
    eprintln!(
        "async-nats watcher resumed {:?} after the put",
        put_at.elapsed()
    );
    drop(child);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_js_kv_watch_resumes_after_kill_9() {
    let node_dir = tokio::task::spawn_blocking(ensure_node_modules)
        .await
        .expect("npm setup panicked");
    let dir = tempfile::tempdir().unwrap();
    let port = common::free_port();
    let mut child = ChildServer::spawn(BIN, dir.path(), i32::from(port));
    child.wait_ready().await;
    let mut script = tokio::process::Command::new("node")
        .args(["kv_watch_restart.mjs", &format!("nats://127.0.0.1:{port}")])
        .current_dir(&node_dir)
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("node");
    let mut lines = BufReader::new(script.stdout.take().unwrap()).lines();
    let mut out = Vec::new();
    common::within(Duration::from_secs(60), "the script to watch", async {
        while let Some(line) = lines.next_line().await.expect("read") {
            let done = line == "watching";
            out.push(line);
            if done {
                return;
            }
        }
        panic!("script ended early: {out:?}");
    })
    .await;
    child.kill9();
    let mut child = ChildServer::spawn(BIN, dir.path(), i32::from(port));
    child.wait_ready().await;
    common::within(Duration::from_secs(60), "the script to finish", async {
        while let Some(line) = lines.next_line().await.expect("read") {
            out.push(line);
        }
    })
    .await;
    let status = script.wait().await.expect("wait");
    eprintln!("{}", out.join("\n"));
    assert!(
        status.success() && out.iter().any(|l| l == "all ok"),
        "{out:?}"
    );
    drop(child);
}
