//! Config reload (SIGHUP, `--signal reload`): the same file change on causeway (the binary)
//! and nats-server 2.15.1, and the same raw clients on both. A user removed is logged out with
//! `Authorization Violation`, a subscription the new permissions refuse is dropped with its
//! `Permissions Violation` text, the remaining permissions apply at once, and a change that
//! needs a restart is refused as a whole.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::child::ChildServer;
use common::reference::RefServer;
use common::{RawClient, TIMEOUT};
use serde_json::json;

const BIN: &str = env!("CARGO_BIN_EXE_causeway");

const BEFORE: &str = r#"
authorization {
  users: [
    {user: alice, password: a, permissions: {publish: ">", subscribe: ">"}}
    {user: bob, password: b}
  ]
}
"#;

const AFTER: &str = r#"
authorization {
  users: [
    {user: alice, password: a, permissions: {publish: "orders.>", subscribe: "orders.>"}}
    {user: carol, password: c}
  ]
}
"#;

/// Clients of the story, connected before the reload.
struct Before {
    alice: RawClient,
    bob: RawClient,
}

async fn before(addr: SocketAddr) -> Before {
    let mut alice = RawClient::connect_with(addr, json!({"user": "alice", "pass": "a"})).await;
    let (subs, _) = alice
        .exchange(b"SUB secret.x 1\r\nSUB orders.> 2\r\n")
        .await;
    assert_eq!(subs, "");
    let bob = RawClient::connect_with(addr, json!({"user": "bob", "pass": "b"})).await;
    Before { alice, bob }
}

/// What the clients see after the reload: bob's end, alice's errors, what alice may still do,
/// and whether carol (new) and bob (removed) can log in.
async fn after(addr: SocketAddr, mut c: Before) -> Vec<(String, bool)> {
    // Bob is logged out once the reload is applied: wait for that (bounded).
    let deadline = Instant::now() + TIMEOUT;
    let bob = loop {
        let got = c.bob.exchange(b"").await;
        if got.1 {
            break got;
        }
        assert!(Instant::now() < deadline, "bob was not logged out: {got:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let mut out = vec![bob];
    out.push(c.alice.exchange(b"").await);
    out.push(c.alice.exchange(b"PUB orders.1 2\r\nhi\r\n").await);
    out.push(c.alice.exchange(b"PUB secret.x 2\r\nhi\r\n").await);
    out.push(c.alice.exchange(b"SUB secret.> 3\r\n").await);
    for (user, pass) in [("carol", "c"), ("bob", "b")] {
        let mut fresh = RawClient::connect(addr).await;
        let connect = json!({"user": user, "pass": pass, "verbose": false});
        out.push(
            fresh
                .exchange(format!("CONNECT {connect}\r\n").as_bytes())
                .await,
        );
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_changes_authorization_live_as_nats_server() {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("causeway.conf");
    let pid_file = dir.path().join("causeway.pid");
    std::fs::write(&conf, BEFORE).unwrap();
    let (conf_s, pid_s) = (conf.to_string_lossy(), pid_file.to_string_lossy());
    let mut ours = ChildServer::spawn_args(
        BIN,
        &["-c", &conf_s, "-a", "127.0.0.1", "-p", "-1", "-P", &pid_s],
    );
    let ours_addr = ours.wait_ready().await;
    let theirs = RefServer::start(BEFORE);

    let mine = before(ours_addr).await;
    let reference = before(theirs.addr).await;
    std::fs::write(&conf, AFTER).unwrap();
    let status = std::process::Command::new(BIN)
        .arg("--signal")
        .arg(format!("reload={pid_s}"))
        .status()
        .unwrap();
    assert!(status.success(), "--signal reload failed");
    theirs.reload(AFTER);
    ours.wait_for_line("Reloaded server configuration").await;

    let a = after(ours_addr, mine).await;
    let b = after(theirs.addr, reference).await;
    // Bob's `-ERR` may be lost to a reset on either server (it is closed right after), so
    // only his end is compared; causeway's text is checked below.
    assert_eq!(a[0].1, b[0].1, "bob's end");
    assert_eq!(
        a[1..],
        b[1..],
        "causeway vs nats-server 2.15.1 after the reload"
    );
    // The story is what it claims: bob out, secret.x dropped, orders still delivered.
    assert!(a[0].1, "bob is logged out");
    assert!(
        matches!(a[0].0.as_str(), "" | "-ERR 'Authorization Violation'\r\n"),
        "{:?}",
        a[0]
    );
    assert!(a[1]
        .0
        .contains("Permissions Violation for Subscription to \"secret.x\""));
    assert!(a[2].0.starts_with("MSG orders.1 2 2\r\nhi"), "{:?}", a[2]);
    assert!(a[3]
        .0
        .contains("Permissions Violation for Publish to \"secret.x\""));
    assert_eq!(a[5], (String::new(), false), "carol logs in");
    assert!(a[6].1, "bob no longer logs in");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_refuses_a_change_that_needs_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("causeway.conf");
    std::fs::write(&conf, BEFORE).unwrap();
    let conf_s = conf.to_string_lossy().into_owned();
    let mut ours = ChildServer::spawn_args(BIN, &["-c", &conf_s, "-a", "127.0.0.1", "-p", "-1"]);
    let addr = ours.wait_ready().await;
    // A new server name and a new user: the name cannot change live, so neither applies.
    std::fs::write(&conf, format!("server_name: renamed\n{AFTER}")).unwrap();
    let status = std::process::Command::new(BIN)
        .arg("--signal")
        .arg(format!("reload={}", ours.pid()))
        .status()
        .unwrap();
    assert!(status.success());
    let line = ours
        .wait_for_line("Failed to reload server configuration")
        .await;
    assert!(
        line.contains(
            "config reload not supported for ServerName: old=None, new=Some(\"renamed\")"
        ),
        "{line}"
    );
    let mut bob = RawClient::connect(addr).await;
    let got = bob
        .exchange(b"CONNECT {\"user\":\"bob\",\"pass\":\"b\",\"verbose\":false}\r\n")
        .await;
    assert_eq!(
        got,
        (String::new(), false),
        "bob still logs in: nothing applied"
    );
    ours.terminate().await;
}

#[test]
fn signal_errors_are_nats_server_texts() {
    let run = |arg: &str| {
        let out = std::process::Command::new(BIN)
            .args(["--signal", arg])
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    assert_eq!(
        run("reload=abc"),
        (Some(1), "causeway: invalid pid: abc\n".into())
    );
    assert_eq!(
        run("bogus=1"),
        (Some(1), "causeway: unknown signal \"bogus\"\n".into())
    );
    assert_eq!(
        run("reload=1=2"),
        (
            Some(1),
            "causeway: invalid signal parameters: [\"reload\", \"1\", \"2\"]\n".into()
        )
    );
}
