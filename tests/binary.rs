//! The `causeway` binary as a child process: `--version`, bad flags and bad config values,
//! discovering the random port from the log, flag/config precedence, auth flags, and a
//! graceful SIGTERM (lame-duck INFO, EOF, exit status 0).
//!
//! Every child is killed by a guard if the test fails, and every wait is bounded.

mod common;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{RawClient, TIMEOUT};
use serde_json::json;

const BIN: &str = env!("CARGO_BIN_EXE_causeway");

/// Kills the child on drop unless it has already exited.
struct Guard {
    child: Child,
    /// Lines the child wrote to stderr, as they arrive.
    lines: mpsc::Receiver<String>,
    /// Every stderr line seen so far, for failure messages.
    seen: Vec<String>,
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

impl Guard {
    fn spawn(args: &[&str]) -> Guard {
        let mut child = Command::new(BIN)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("failed to spawn causeway");
        let stderr = child.stderr.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Guard {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Waits for a stderr line containing `needle` and returns it.
    fn wait_for_line(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(e) => panic!("no stderr line with {needle:?} ({e}); got {:#?}", self.seen),
            }
        }
    }

    /// Waits for the "Listening for client connections on" line and "Server is ready".
    fn wait_ready(&mut self) -> SocketAddr {
        let line = self.wait_for_line("Listening for client connections on ");
        let addr = line
            .split("Listening for client connections on ")
            .nth(1)
            .unwrap()
            .trim();
        let addr: SocketAddr = addr
            .parse()
            .unwrap_or_else(|_| panic!("bad address in {line:?}"));
        self.wait_for_line("Server is ready");
        addr
    }

    /// Waits (bounded) for the child to exit.
    fn wait_exit(&mut self) -> std::process::ExitStatus {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(Instant::now() < deadline, "causeway did not exit in time");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn signal(&self, sig: libc::c_int) {
        let pid = libc::pid_t::try_from(self.child.id()).unwrap();
        // SAFETY: sending a signal to our own child process by pid.
        let rc = unsafe { libc::kill(pid, sig) };
        assert_eq!(rc, 0, "kill failed");
    }
}

/// Runs the binary to completion (bounded) and returns its output.
fn run_to_exit(args: &[&str]) -> Output {
    let mut child = Command::new(BIN)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("failed to spawn causeway");
    let deadline = Instant::now() + TIMEOUT;
    loop {
        if child.try_wait().expect("try_wait").is_some() {
            return child.wait_with_output().expect("output");
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let out = child.wait_with_output().expect("output");
            panic!(
                "causeway {args:?} did not exit; stderr: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn write_conf(dir: &tempfile::TempDir, text: &str) -> String {
    let path = dir.path().join("causeway.conf");
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_string()
}

#[test]
fn version_flag_prints_version_and_exits_zero() {
    let out = run_to_exit(&["--version"]);
    assert!(out.status.success(), "{out:?}");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains(env!("CARGO_PKG_VERSION")),
        "no version in {text:?}"
    );
    assert_eq!(text.trim().lines().count(), 1, "{text:?}");
}

#[test]
fn unknown_flag_is_a_short_error() {
    let out = run_to_exit(&["--no-such-flag"]);
    assert!(!out.status.success(), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no-such-flag"), "flag not named: {err:?}");
    assert!(
        err.trim().lines().count() <= 2,
        "not a short message: {err:?}"
    );
}

#[test]
fn invalid_config_values_name_the_key() {
    let dir = tempfile::tempdir().unwrap();
    for (text, key) in [
        ("max_payload: \"lots\"\n", "max_payload"),
        ("port: 99999999\n", "port"),
        ("ping_interval: \"soon\"\n", "ping_interval"),
    ] {
        let path = write_conf(&dir, text);
        let out = run_to_exit(&["-c", &path]);
        assert!(!out.status.success(), "{text:?} accepted: {out:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(key),
            "{text:?}: error does not name {key}: {err:?}"
        );
    }
    let out = run_to_exit(&["-c", "/nonexistent/causeway.conf"]);
    assert!(!out.status.success(), "missing config file accepted");
}

#[tokio::test]
async fn sigterm_announces_lame_duck_closes_clients_and_exits_zero() {
    let mut child = Guard::spawn(&["-a", "127.0.0.1", "-p", "-1"]);
    let addr = child.wait_ready();
    assert_eq!(addr.ip().to_string(), "127.0.0.1");
    assert_ne!(addr.port(), 0);
    let mut raw = RawClient::connect_ready(addr).await;
    raw.send(b"SUB x 1\r\nPUB x 2\r\nhi\r\n").await;
    assert_eq!(raw.read_msg().await.payload, b"hi");

    child.signal(libc::SIGTERM);
    let line = raw.read_line().await;
    let info: serde_json::Value = serde_json::from_str(
        line.strip_prefix("INFO ")
            .unwrap_or_else(|| panic!("expected INFO, got {line:?}")),
    )
    .unwrap();
    assert_eq!(info["ldm"], json!(true), "{info}");
    raw.expect_closed().await;
    let status = tokio::task::spawn_blocking(move || child.wait_exit())
        .await
        .unwrap();
    assert_eq!(status.code(), Some(0), "{status:?}");
}

#[tokio::test]
async fn command_line_flags_override_the_config_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_conf(&dir, "max_payload: 4096\nmax_connections: 100\n");
    let mut child = Guard::spawn(&["-c", &path, "-a", "127.0.0.1", "-p", "-1"]);
    let addr = child.wait_ready();
    let c = RawClient::connect_ready(addr).await;
    assert_eq!(c.info["max_payload"], json!(4096), "{}", c.info);

    let mut child2 = Guard::spawn(&[
        "-c",
        &path,
        "-a",
        "127.0.0.1",
        "-p",
        "-1",
        "--max_payload",
        "2048",
    ]);
    let addr2 = child2.wait_ready();
    let c2 = RawClient::connect_ready(addr2).await;
    assert_eq!(c2.info["max_payload"], json!(2048), "{}", c2.info);
}

#[tokio::test]
async fn user_and_pass_flags_require_authentication() {
    let mut child = Guard::spawn(&[
        "-a",
        "127.0.0.1",
        "-p",
        "-1",
        "--user",
        "ops",
        "--pass",
        "pw",
    ]);
    let addr = child.wait_ready();
    let mut ok = RawClient::connect(addr).await;
    assert_eq!(ok.info["auth_required"], json!(true), "{}", ok.info);
    ok.send_connect(json!({"user": "ops", "pass": "pw"})).await;
    ok.ping_pong().await;
    let mut bad = RawClient::connect(addr).await;
    bad.send_connect(json!({"user": "ops", "pass": "nope"}))
        .await;
    bad.send(b"PING\r\n").await;
    bad.expect_err_and_close("Authorization Violation").await;
}

#[tokio::test]
async fn log_file_flag_receives_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("causeway.log");
    let mut child = Guard::spawn(&["-a", "127.0.0.1", "-p", "-1", "-l", log.to_str().unwrap()]);
    let deadline = Instant::now() + TIMEOUT;
    let addr = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.contains("Server is ready") {
            let line = text
                .lines()
                .find(|l| l.contains("Listening for client connections on "))
                .expect("no listening line in the log file");
            let addr = line
                .split("Listening for client connections on ")
                .nth(1)
                .unwrap()
                .trim();
            break addr.parse::<SocketAddr>().unwrap();
        }
        assert!(
            Instant::now() < deadline,
            "log file never said ready: {text:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    RawClient::connect_ready(addr).await;
    child.signal(libc::SIGTERM);
    let status = tokio::task::spawn_blocking(move || child.wait_exit())
        .await
        .unwrap();
    assert!(status.success(), "{status:?}");
}

#[test]
fn configuration_causeway_does_not_implement_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    for (text, want) in [
        ("bogus_key: 1\n", "unknown field \"bogus_key\""),
        (
            "jetstream { bogus: 1 }\n",
            "unknown field \"jetstream.bogus\"",
        ),
        (
            "tls { cert_file: nosuch-cert.pem, key_file: k.pem }\n",
            "nosuch-cert.pem",
        ),
        (
            "tls { cert_file: c.pem, key_file: k.pem, cipher_suites: [x] }\n",
            "tls.cipher_suites is not supported yet",
        ),
        (
            "websocket { port: 8080 }\n",
            "websocket requires TLS configuration",
        ),
        (
            "cluster { listen: -1, tls { cert_file: c.pem, key_file: k.pem, insecure: true } }\n",
            "cluster.tls.insecure is not supported yet",
        ),
        (
            "cluster { listen: -1 }\njetstream: enabled\n",
            "jetstream cluster requires `server_name` to be set",
        ),
        (
            "accounts { A: { users: [ {user: u, password: p} ], mappings: { a: b } } }\n",
            "accounts.A.mappings is not supported yet",
        ),
        (
            "authorization { users: [ {nkey: UNOTAKEY} ] }\n",
            "Not a valid public nkey for a user",
        ),
        ("jetstream { domain: \"a.b\" }\n", "invalid domain name"),
        (
            "no_auth_user: nosuch\n",
            "no_auth_user: \"nosuch\" present, but users/nkeys are not defined",
        ),
    ] {
        let path = write_conf(&dir, text);
        let out = run_to_exit(&["-c", &path, "-a", "127.0.0.1", "-p", "-1"]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{text:?} started: {err}");
        assert!(
            err.contains(want),
            "{text:?}: {err:?} does not say {want:?}"
        );
        assert!(
            !err.contains("Server is ready"),
            "{text:?}: served before refusing: {err}"
        );
    }
}

#[tokio::test]
async fn config_warnings_reach_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_conf(&dir, "server_tags: [\"a\"]\nlogtime: false\n");
    let mut child = Guard::spawn(&["-c", &path, "-a", "127.0.0.1", "-p", "-1"]);
    let line = child.wait_for_line("server_tags is not implemented; ignored");
    assert!(line.contains("[WRN]"), "{line}");
    child.wait_ready();
}

#[tokio::test]
async fn addr_flag_moves_the_monitoring_listener_and_v_prints_the_version() {
    let mut child = Guard::spawn(&["-a", "127.0.0.2", "-p", "-1", "-m", "-1"]);
    let line = child.wait_for_line("Starting http monitor on");
    assert!(line.contains("127.0.0.2:"), "{line}");
    drop(child);
    let out = run_to_exit(&["-v"]);
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains(env!("CARGO_PKG_VERSION")));
}

/// One server per store directory: a second one on it refuses to start, naming the
/// directory, and leaves the first one's index alone (it used to take the busy sled for a
/// damaged one and recreate it under the running server).
#[test]
fn a_second_server_on_the_same_store_directory_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().to_str().unwrap();
    let mut first = Guard::spawn(&["-js", "-sd", store, "-a", "127.0.0.1", "-p", "-1"]);
    first.wait_ready();
    let second = run_to_exit(&["-js", "-sd", store, "-a", "127.0.0.1", "-p", "-1"]);
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(!second.status.success(), "{stderr}");
    assert!(stderr.contains("in use by another server"), "{stderr}");
    assert!(stderr.contains(store), "{stderr}");
    assert!(!stderr.contains("recreating"), "{stderr}");
    assert!(dir.path().join("jetstream/index.sled").exists());
}
