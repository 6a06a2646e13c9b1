//! An acknowledgement is a promise: a stream update and consumer state (a pause, the delivery
//! cursor, plain acks in the journal) survive kill -9, a full disk never costs
//! an acknowledged message (before or after a restart on the still-full disk), and the store
//! limits answer as nats-server 2.15.1 does (`10047`, `10028`, `10023`; compared live).
//!
//! The disk-full test mounts a small tmpfs, so it needs root (CI runs as root); elsewhere it
//! says it was skipped.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::child::ChildServer;
use common::js::{assert_ack, connect, err_code, msg_data, publish, JsEnv};
use common::reference::{ApiClient, RefServer};
use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_causeway");

#[tokio::test]
async fn stream_update_survives_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let port = common::free_port() as i32;
    let mut child = ChildServer::spawn(BIN, dir.path(), port);
    let addr = child.wait_ready().await;
    let mut c = ApiClient::connect(addr).await;
    let create = json!({"name": "U", "subjects": ["u.a"], "max_msgs": 100});
    assert!(c
        .api("STREAM.CREATE.U", create.to_string().as_bytes())
        .await
        .get("error")
        .is_none());
    let update = json!({"name": "U", "subjects": ["u.a", "u.b"], "max_msgs": 5});
    let v = c
        .api("STREAM.UPDATE.U", update.to_string().as_bytes())
        .await;
    assert_eq!(v["config"]["max_msgs"], 5, "{v}");
    child.kill9();
    let mut child = ChildServer::spawn(BIN, dir.path(), port);
    let addr = child.wait_ready().await;
    let mut c = ApiClient::connect(addr).await;
    let info = c.api("STREAM.INFO.U", b"").await;
    assert_eq!(info["config"]["max_msgs"], 5, "{info}");
    assert_eq!(info["config"]["subjects"], json!(["u.a", "u.b"]), "{info}");
    let ack = c.request("u.b", b"x").await;
    let ack: Value = serde_json::from_slice(&ack.payload).unwrap();
    assert_ack(&ack, "U", 1);
}

/// A tmpfs of `mib` MiB mounted on a fresh directory, unmounted on drop.
struct Tmpfs {
    path: PathBuf,
    _dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(mib: u32) -> Option<Tmpfs> {
        let dir = tempfile::tempdir().ok()?;
        let path = dir.path().join("mnt");
        std::fs::create_dir(&path).ok()?;
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
            .arg(&path)
            .status()
            .is_ok_and(|s| s.success());
        ok.then_some(Tmpfs { path, _dir: dir })
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

/// Starts the binary on a config text, on a fixed port.
fn spawn_conf(conf_dir: &Path, text: &str, port: u16) -> ChildServer {
    let file = conf_dir.join("causeway.conf");
    std::fs::write(&file, text).unwrap();
    let port = port.to_string();
    ChildServer::spawn_args(
        BIN,
        &["-c", file.to_str().unwrap(), "-a", "127.0.0.1", "-p", &port],
    )
}

/// Publishes 4 KiB messages one at a time until the server refuses one (at most `max`);
/// returns the acknowledged sequences and the first refusal.
async fn fill(nc: &async_nats::Client, max: usize) -> (Vec<(u64, Vec<u8>)>, Value) {
    let mut acked = Vec::new();
    for i in 0..max {
        let payload = format!("{i:06}").repeat(700).into_bytes()[..4096].to_vec();
        let ack = publish(nc, "s.x", &[], payload.clone()).await;
        match ack["seq"].as_u64() {
            Some(seq) if ack.get("error").is_none() => acked.push((seq, payload)),
            _ => return (acked, ack),
        }
    }
    panic!("{max} messages of 4 KiB fit; the store never filled up");
}

/// Every acknowledged message is there, byte for byte, and nothing else.
async fn all_readable(env_nc: &async_nats::Client, acked: &[(u64, Vec<u8>)]) {
    for (seq, payload) in acked {
        let body = json!({ "seq": seq }).to_string();
        let v = common::js::api(env_nc, "STREAM.MSG.GET.S", body).await;
        assert!(v.get("error").is_none(), "acked seq {seq} lost: {v}");
        assert_eq!(&msg_data(&v), payload, "seq {seq} changed");
    }
    let info = common::js::api(env_nc, "STREAM.INFO.S", "").await;
    assert_eq!(info["state"]["messages"], acked.len() as u64, "{info}");
}

#[tokio::test]
async fn a_full_disk_loses_no_acknowledged_message() {
    let Some(fs) = Tmpfs::mount(8) else {
        eprintln!("skipped: mounting a tmpfs needs root");
        return;
    };
    let conf_dir = tempfile::tempdir().unwrap();
    // A limit above the disk's size, so the disk itself runs out.
    let text = format!(
        "jetstream {{ store_dir: \"{}\", max_file_store: 1GB }}\n",
        fs.path.join("js").display()
    );
    let port = common::free_port();
    let mut child = spawn_conf(conf_dir.path(), &text, port);
    let addr = child.wait_ready().await;
    let nc = connect(&format!("nats://{addr}")).await;
    let v = common::js::api(
        &nc,
        "STREAM.CREATE.S",
        json!({"name": "S", "subjects": ["s.>"]}).to_string(),
    )
    .await;
    assert!(v.get("error").is_none(), "{v}");
    let (acked, refusal) = fill(&nc, 4000).await;
    assert!(acked.len() > 100, "only {} messages fit", acked.len());
    assert_eq!(err_code(&refusal), Some(10077), "{refusal}");
    all_readable(&nc, &acked).await;
    // Still full: refused again, still readable.
    let again = publish(&nc, "s.x", &[], vec![b'x'; 4096]).await;
    assert!(again.get("error").is_some(), "{again}");
    all_readable(&nc, &acked).await;
    drop(nc);
    child.kill9();
    // Restart on the still-full disk.
    let mut child = spawn_conf(conf_dir.path(), &text, port);
    let addr = child.wait_ready().await;
    let nc = connect(&format!("nats://{addr}")).await;
    all_readable(&nc, &acked).await;
    let after = publish(&nc, "s.x", &[], vec![b'x'; 4096]).await;
    if after.get("error").is_none() {
        // A restart may free a little space (a torn tail cut off): then it must be stored.
        let seq = after["seq"].as_u64().unwrap();
        assert!(seq > acked.last().unwrap().0, "{after}");
    }
    drop(child);
}

#[tokio::test]
async fn the_default_store_limit_answers_before_the_disk_is_full() {
    let Some(fs) = Tmpfs::mount(8) else {
        eprintln!("skipped: mounting a tmpfs needs root");
        return;
    };
    // nats-server's default max_file_store is 75% of the free disk: publishes are refused
    // with 10023 while there is still room, so nothing ever meets ENOSPC.
    let env = JsEnv::on(tempfile::tempdir_in(&fs.path).unwrap()).await;
    env.stream(json!({"name": "S", "subjects": ["s.>"]})).await;
    let (acked, refusal) = fill(&env.nc, 4000).await;
    assert_eq!(err_code(&refusal), Some(10023), "{refusal}");
    assert_eq!(refusal["stream"], "S", "{refusal}");
    assert_eq!(refusal["seq"], 0, "{refusal}");
    all_readable(&env.nc, &acked).await;
    let env = env.restart().await;
    all_readable(&env.nc, &acked).await;
    env.stop().await;
}

/// The answers of one server to the store-limit requests.
async fn limit_answers(addr: std::net::SocketAddr) -> Vec<Value> {
    let mut c = ApiClient::connect(addr).await;
    let mut out = Vec::new();
    for (name, storage, max_bytes) in [
        ("F", "file", 10 << 20),
        ("M", "memory", 10 << 20),
        ("B", "file", i64::MAX),
    ] {
        let body = json!({"name": name, "subjects": [name.to_lowercase()], "storage": storage, "max_bytes": max_bytes});
        let v = c
            .api(
                &format!("STREAM.CREATE.{name}"),
                body.to_string().as_bytes(),
            )
            .await;
        out.push(v["error"].clone());
    }
    let v = c
        .api(
            "STREAM.CREATE.FN",
            json!({"name": "FN", "subjects": ["fn"]})
                .to_string()
                .as_bytes(),
        )
        .await;
    assert!(v.get("error").is_none(), "{v}");
    let payload = vec![b'x'; 4096];
    for _ in 0..1000 {
        let ack = c.request("fn", &payload).await;
        let ack: Value = serde_json::from_slice(&ack.payload).unwrap();
        if ack.get("error").is_some() {
            out.push(ack);
            return out;
        }
    }
    panic!("1000 messages of 4 KiB fit under max_file_store: 1MB");
}

#[tokio::test]
async fn store_limits_answer_as_nats_server() {
    let conf = "jetstream { store_dir: \"{store}\", max_file_store: 1MB, max_memory_store: 1MB }\n";
    let theirs = RefServer::start(conf);
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = common::js::js_config(dir.path());
    cfg.jetstream.max_file = 1 << 20;
    cfg.jetstream.max_memory = 1 << 20;
    let ours = common::start(cfg).await;
    let a = limit_answers(ours.local_addr()).await;
    let b = limit_answers(theirs.addr).await;
    assert_eq!(a, b, "causeway vs nats-server 2.15.1");
    assert_eq!(a[0]["err_code"], 10047);
    assert_eq!(a[1]["err_code"], 10028);
    assert_eq!(a[2]["err_code"], 10047);
    assert_eq!(a[3]["error"]["err_code"], 10023);
    ours.shutdown().await;
}

#[tokio::test]
async fn a_store_directory_written_by_nats_server_is_named_not_served_empty() {
    let theirs = RefServer::jetstream();
    let mut c = ApiClient::connect(theirs.addr).await;
    let v = c
        .api("STREAM.CREATE.S", br#"{"name":"S","subjects":["s.>"]}"#)
        .await;
    assert!(v.get("error").is_none(), "{v}");
    let store = theirs.dir.path().join("store");
    assert!(store
        .join("jetstream")
        .join("$G")
        .join("streams")
        .join("S")
        .is_dir());
    let mut child = Command::new(BIN)
        .args(["-a", "127.0.0.1", "-p", "-1", "-js", "-sd"])
        .arg(&store)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run causeway");
    let deadline = std::time::Instant::now() + common::TIMEOUT;
    while child.try_wait().expect("try_wait").is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("causeway kept running on nats-server's data");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let out = child.wait_with_output().expect("output");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "started on nats-server's data: {err}"
    );
    assert!(err.contains("holds nats-server's JetStream data"), "{err}");
    assert!(!err.contains("Server is ready"), "{err}");
}

/// Consumer changes that are not creates, and the journal's plain acks and deliveries, survive
/// kill -9: a pause (a config change, snapshotted before its answer), a delivery cursor and
/// plain (unconfirmed) acks written at the end of their batch.
#[tokio::test]
async fn consumer_pause_acks_and_cursor_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let port = common::free_port() as i32;
    let mut child = ChildServer::spawn(BIN, dir.path(), port);
    let addr = child.wait_ready().await;
    let mut c = ApiClient::connect(addr).await;
    let create = json!({"name": "K", "subjects": ["k.>"]});
    let v = c
        .api("STREAM.CREATE.K", create.to_string().as_bytes())
        .await;
    assert!(v.get("error").is_none(), "{v}");
    for i in 1..=5 {
        let ack = c.request("k.a", format!("m{i}").as_bytes()).await;
        let ack: Value = serde_json::from_slice(&ack.payload).unwrap();
        assert_ack(&ack, "K", i);
    }
    for name in ["A", "P"] {
        let cfg =
            json!({"stream_name": "K", "config": {"durable_name": name, "ack_policy": "explicit"}});
        let v = c
            .api(
                &format!("CONSUMER.CREATE.K.{name}"),
                cfg.to_string().as_bytes(),
            )
            .await;
        assert!(v.get("error").is_none(), "{v}");
    }
    // A takes 3 messages and acks 2 of them with plain acks (no confirmation asked).
    for _ in 0..3 {
        let m = c.request("$JS.API.CONSUMER.MSG.NEXT.K.A", b"").await;
        let reply = m.reply.clone().expect("a delivery with an ack subject");
        if m.payload != b"m3" {
            c.publish(&reply, b"+ACK").await;
        }
    }
    let until = "2099-01-01T00:00:00Z";
    let v = c
        .api(
            "CONSUMER.PAUSE.K.P",
            json!({"pause_until": until}).to_string().as_bytes(),
        )
        .await;
    assert_eq!(v["paused"], true, "{v}");
    // The plain acks were read before this answer (one connection, in order).
    let info = c.api("CONSUMER.INFO.K.A", b"").await;
    assert_eq!(info["num_ack_pending"], 1, "{info}");
    child.kill9();

    let mut child = ChildServer::spawn(BIN, dir.path(), port);
    let addr = child.wait_ready().await;
    let mut c = ApiClient::connect(addr).await;
    let info = c.api("CONSUMER.INFO.K.A", b"").await;
    assert_eq!(info["delivered"]["stream_seq"], 3, "{info}");
    assert_eq!(info["num_ack_pending"], 1, "{info}");
    assert_eq!(info["num_pending"], 2, "{info}");
    let info = c.api("CONSUMER.INFO.K.P", b"").await;
    assert_eq!(info["paused"], true, "{info}");
    assert_eq!(info["config"]["pause_until"], until, "{info}");
    child.terminate().await;
}
