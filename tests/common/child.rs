//! The `causeway` binary as a child process with JetStream on a store directory: spawn, wait
//! for readiness (reading the port from the log), `kill -9`, graceful SIGTERM, and the captured
//! stderr. The child is killed when the guard is dropped, so a failing test leaves nothing
//! running.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::TIMEOUT;

/// A running `causeway` binary; killed on drop.
pub struct ChildServer {
    child: Child,
    /// Every stderr line so far.
    log: Arc<Mutex<Vec<String>>>,
}

impl ChildServer {
    /// Starts `bin` with `-a 127.0.0.1 -p <port> -js -sd <dir>`; `port` -1 picks a random one.
    pub fn spawn(bin: &str, store_dir: &Path, port: i32) -> ChildServer {
        let port = port.to_string();
        let dir = store_dir.to_string_lossy();
        Self::spawn_args(bin, &["-a", "127.0.0.1", "-p", &port, "-js", "-sd", &dir])
    }

    /// Starts `bin` with these arguments.
    pub fn spawn_args(bin: &str, args: &[&str]) -> ChildServer {
        let mut child = Command::new(bin)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("failed to spawn causeway");
        let stderr = child.stderr.take().expect("stderr");
        let log = Arc::new(Mutex::new(Vec::new()));
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        ChildServer { child, log }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The peak resident set size so far (`VmHWM`), in MiB.
    pub fn peak_rss_mib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .expect("read /proc/<pid>/status");
        let kib: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmHWM in /proc/<pid>/status");
        kib / 1024
    }

    /// A copy of every stderr line so far.
    pub fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    /// Waits (bounded) for a stderr line containing `needle`; returns it.
    pub async fn wait_for_line(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            if let Some(l) = self.log().into_iter().find(|l| l.contains(needle)) {
                return l;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "causeway exited ({status}) before logging {needle:?}: {:#?}",
                    self.log()
                );
            }
            assert!(
                Instant::now() < deadline,
                "no stderr line with {needle:?}; got {:#?}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits for "Listening for client connections on" and "Server is ready"; returns the
    /// client address.
    pub async fn wait_ready(&mut self) -> SocketAddr {
        const LISTEN: &str = "Listening for client connections on ";
        let line = self.wait_for_line(LISTEN).await;
        let addr = line.split(LISTEN).nth(1).unwrap().trim();
        let addr: SocketAddr = addr
            .parse()
            .unwrap_or_else(|_| panic!("bad address in {line:?}"));
        self.wait_for_line("Server is ready").await;
        addr
    }

    fn signal(&self, sig: libc::c_int) {
        let pid = libc::pid_t::try_from(self.child.id()).expect("pid");
        // SAFETY: sending a signal to our own child process by pid.
        let rc = unsafe { libc::kill(pid, sig) };
        assert_eq!(rc, 0, "kill({pid}, {sig}) failed");
    }

    /// `kill -9` and reap the process.
    pub fn kill9(&mut self) {
        self.signal(libc::SIGKILL);
        let _ = self.child.wait();
    }

    /// SIGTERM and wait (bounded) for a clean exit.
    pub async fn terminate(&mut self) {
        self.signal(libc::SIGTERM);
        let deadline = Instant::now() + TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                assert!(status.success(), "causeway exited with {status}");
                return;
            }
            assert!(
                Instant::now() < deadline,
                "causeway did not exit on SIGTERM"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for ChildServer {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The arguments of clustered server `n<i+1>` (`-n n<i+1>`): clients on `client`, routes on
/// `route`, dialing `routes`, in cluster `cluster`, JetStream in `<dir>/n<i+1>`.
pub fn cluster_args(
    i: usize,
    client: u16,
    route: u16,
    routes: &[String],
    cluster: &str,
    dir: &Path,
) -> Vec<String> {
    let name = format!("n{}", i + 1);
    [
        "-a",
        "127.0.0.1",
        "-p",
        &client.to_string(),
        "-n",
        &name,
        "-js",
        "-sd",
        &dir.join(&name).to_string_lossy(),
        "--cluster",
        &format!("nats://127.0.0.1:{route}"),
        "--cluster_name",
        cluster,
        "--routes",
        &routes.join(","),
    ]
    .map(String::from)
    .to_vec()
}
