//! TLS on the client listener with stock async-nats clients: INFO-then-upgrade and TLS-first
//! handshakes, `allow_non_tls`, client certificates (`verify`), certificates mapped to users
//! (`verify_and_map`), pinned certificates, and the errors a bad certificate file gives at
//! start. Certificates are made at run time (`common::certs`).

mod common;

use std::path::Path;
use std::time::Duration;

use async_nats::ConnectOptions;
use causeway::config::{HandshakeFirst, TlsConfig};
use causeway::{Config, Server, ServerHandle};
use common::certs::{email, Ca, Pair};
use common::{start, within, TIMEOUT};
use futures::StreamExt;
use rcgen::DnType;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

struct Certs {
    _dir: tempfile::TempDir,
    ca: Ca,
    server: Pair,
    alice: Pair,
    bob: Pair,
    rogue: Pair,
}

fn certs() -> Certs {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = Ca::new(dir.path(), "test");
    let server = ca.server("server");
    let alice = ca.client(
        "alice",
        &[
            (DnType::OrganizationName, "Causeway Test"),
            (DnType::CommonName, "alice"),
        ],
        Vec::new(),
    );
    let bob = ca.client(
        "bob",
        &[(DnType::CommonName, "bob")],
        vec![email("bob@example.com")],
    );
    let rogue_ca = Ca::new(dir.path(), "rogue");
    let rogue = rogue_ca.client("rogue", &[(DnType::CommonName, "alice")], Vec::new());
    Certs {
        _dir: dir,
        ca,
        server,
        alice,
        bob,
        rogue,
    }
}

fn tls_config(c: &Certs) -> TlsConfig {
    TlsConfig::new(&c.server.cert, &c.server.key)
}

fn with_tls(tls: TlsConfig) -> Config {
    Config {
        tls: Some(tls),
        ..Config::loopback()
    }
}

fn trusting(c: &Certs) -> ConnectOptions {
    ConnectOptions::new()
        .add_root_certificates(c.ca.cert.clone())
        .require_tls(true)
}

fn with_cert(opts: ConnectOptions, who: &Pair) -> ConnectOptions {
    opts.add_client_certificate(who.cert.clone(), who.key.clone())
}

async fn try_connect(
    opts: ConnectOptions,
    url: &str,
) -> Result<async_nats::Client, async_nats::ConnectError> {
    let opts = opts
        .connection_timeout(Duration::from_secs(3))
        .max_reconnects(Some(1));
    within(TIMEOUT, "connect", opts.connect(url)).await
}

/// A publish reaches a subscriber on the same connection.
async fn round_trip(nc: &async_nats::Client, subject: &str) {
    let mut sub = nc.subscribe(subject.to_string()).await.expect("subscribe");
    nc.publish(subject.to_string(), "over tls".into())
        .await
        .expect("publish");
    let msg = within(TIMEOUT, "message", sub.next())
        .await
        .expect("message");
    assert_eq!(&msg.payload[..], b"over tls");
}

/// The first line the server sends on a plain TCP connection, if any within `wait`.
async fn first_line(server: &ServerHandle, wait: Duration) -> (TcpStream, Option<String>) {
    let mut tcp = TcpStream::connect(server.local_addr()).await.expect("tcp");
    let mut buf = vec![0u8; 4096];
    let line = match tokio::time::timeout(wait, tcp.read(&mut buf)).await {
        Ok(Ok(n)) if n > 0 => Some(String::from_utf8_lossy(&buf[..n]).into_owned()),
        _ => None,
    };
    (tcp, line)
}

#[tokio::test]
async fn clients_upgrade_after_info_and_plaintext_is_refused() {
    let c = certs();
    let server = start(with_tls(tls_config(&c))).await;
    let url = server.client_url();
    assert!(url.starts_with("tls://"), "{url}");

    let nc = try_connect(trusting(&c), &url).await.expect("TLS client");
    round_trip(&nc, "tls.upgrade").await;

    // INFO goes out in the clear and says TLS is required; a client that then speaks
    // plaintext gets nothing back and is dropped.
    let (mut tcp, info) = first_line(&server, TIMEOUT).await;
    let info = info.expect("INFO before the upgrade");
    assert!(info.starts_with("INFO "), "{info}");
    assert!(info.contains("\"tls_required\":true"), "{info}");
    tcp.write_all(b"CONNECT {}\r\nPING\r\n")
        .await
        .expect("write");
    let mut rest = Vec::new();
    let read = tokio::time::timeout(TIMEOUT, tcp.read_to_end(&mut rest)).await;
    let rest = String::from_utf8_lossy(&rest);
    assert!(read.is_ok(), "the server keeps a plaintext client open");
    assert!(!rest.contains("PONG"), "plaintext served: {rest}");

    // A client that does not trust the server's CA cannot connect.
    let untrusting = ConnectOptions::new().require_tls(true);
    assert!(try_connect(untrusting, &url).await.is_err());
    server.shutdown().await;
}

#[tokio::test]
async fn tls_first_handshakes_with_and_without_fallback() {
    let c = certs();
    let mut tls = tls_config(&c);
    tls.handshake_first = HandshakeFirst::On;
    let server = start(with_tls(tls)).await;
    let nc = try_connect(trusting(&c).tls_first(), &server.client_url())
        .await
        .expect("TLS-first client");
    round_trip(&nc, "tls.first").await;
    // The server waits for a ClientHello: no INFO in the clear.
    let (_tcp, line) = first_line(&server, Duration::from_millis(500)).await;
    assert_eq!(line, None, "INFO sent before the TLS handshake");
    // A client that waits for INFO first cannot connect.
    assert!(try_connect(trusting(&c), &server.client_url())
        .await
        .is_err());
    server.shutdown().await;

    // With a fallback delay, both kinds of client are served.
    let mut tls = tls_config(&c);
    tls.handshake_first = HandshakeFirst::Fallback(Duration::from_millis(100));
    let server = start(with_tls(tls)).await;
    for opts in [trusting(&c).tls_first(), trusting(&c)] {
        let nc = try_connect(opts, &server.client_url())
            .await
            .expect("client with fallback");
        round_trip(&nc, "tls.fallback").await;
    }
    server.shutdown().await;
}

#[tokio::test]
async fn allow_non_tls_serves_both_kinds_of_client() {
    let c = certs();
    let server = start(Config {
        allow_non_tls: true,
        ..with_tls(tls_config(&c))
    })
    .await;
    let addr = server.local_addr();
    let (_tcp, info) = first_line(&server, TIMEOUT).await;
    let info = info.expect("INFO");
    assert!(info.contains("\"tls_available\":true"), "{info}");
    assert!(!info.contains("tls_required"), "{info}");
    let plain = try_connect(ConnectOptions::new(), &format!("nats://{addr}"))
        .await
        .expect("plain client");
    round_trip(&plain, "mixed.plain").await;
    let secure = try_connect(trusting(&c), &format!("tls://{addr}"))
        .await
        .expect("TLS client");
    round_trip(&secure, "mixed.tls").await;
    server.shutdown().await;
}

#[tokio::test]
async fn verify_requires_a_certificate_from_the_ca() {
    let c = certs();
    let mut tls = tls_config(&c);
    tls.ca_file = Some(c.ca.cert.clone());
    tls.verify = true;
    let server = start(with_tls(tls)).await;
    let url = server.client_url();
    let (_tcp, info) = first_line(&server, TIMEOUT).await;
    assert!(info.expect("INFO").contains("\"tls_verify\":true"));

    let nc = try_connect(with_cert(trusting(&c), &c.alice), &url)
        .await
        .expect("client with a certificate from the CA");
    round_trip(&nc, "verified").await;
    assert!(
        try_connect(trusting(&c), &url).await.is_err(),
        "a client without a certificate connected"
    );
    assert!(
        try_connect(with_cert(trusting(&c), &c.rogue), &url)
            .await
            .is_err(),
        "a certificate from another CA was accepted"
    );
    server.shutdown().await;
}

/// A server that maps client certificates to the users of `conf` (an `authorization` block).
async fn mapping_server(c: &Certs, conf: &str) -> ServerHandle {
    let mut tls = tls_config(c);
    tls.ca_file = Some(c.ca.cert.clone());
    tls.map_users = true;
    let mut cfg = common::loopback_conf(conf);
    cfg.tls = Some(tls);
    start(cfg).await
}

#[tokio::test]
async fn verify_and_map_logs_certificates_in_as_users() {
    let c = certs();
    let conf = r#"
        authorization {
          users: [
            { user: "CN=alice,O=Causeway Test" }
            { user: "bob@example.com", permissions: { publish: { allow: ["ok.>"] } } }
          ]
        }
        "#;
    let server = mapping_server(&c, conf).await;
    let url = server.client_url();

    // Alice is mapped by her subject, with every permission.
    let alice = try_connect(with_cert(trusting(&c), &c.alice), &url)
        .await
        .expect("alice by subject");
    round_trip(&alice, "anything").await;
    let mut watch = alice.subscribe(">").await.expect("subscribe");
    alice.flush().await.expect("flush");

    // Bob is mapped by his e-mail SAN, even with a user name in CONNECT, and gets his
    // permissions: only ok.> reaches Alice.
    let bob = try_connect(
        with_cert(trusting(&c), &c.bob).user_and_password("alice".into(), "x".into()),
        &url,
    )
    .await
    .expect("bob by e-mail");
    bob.publish("no.1", "denied".into()).await.expect("publish");
    bob.publish("ok.1", "allowed".into())
        .await
        .expect("publish");
    bob.flush().await.expect("flush");
    let got = within(TIMEOUT, "bob's message", watch.next())
        .await
        .expect("message");
    assert_eq!(got.subject.as_str(), "ok.1");
    server.shutdown().await;

    // A certificate naming no configured user is refused.
    let server = mapping_server(&c, r#"authorization { users: [ { user: "CN=carol" } ] }"#).await;
    assert!(
        try_connect(with_cert(trusting(&c), &c.alice), &server.client_url())
            .await
            .is_err(),
        "a certificate of no user was let in"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn a_plaintext_client_does_not_fall_back_to_a_password_when_certificates_map_users() {
    let c = certs();
    let mut tls = tls_config(&c);
    tls.ca_file = Some(c.ca.cert.clone());
    tls.map_users = true;
    let mut cfg = common::loopback_conf(
        r#"authorization { users: [ { user: "CN=alice,O=Causeway Test" } ] }"#,
    );
    cfg.tls = Some(tls);
    cfg.allow_non_tls = true;
    let server = start(cfg).await;
    let plain =
        ConnectOptions::with_user_and_password("CN=alice,O=Causeway Test".into(), "".into());
    let addr = server.local_addr();
    assert!(
        try_connect(plain, &format!("nats://{addr}")).await.is_err(),
        "a plaintext client logged in as a certificate user"
    );
    let alice = try_connect(with_cert(trusting(&c), &c.alice), &format!("tls://{addr}"))
        .await
        .expect("alice with her certificate");
    round_trip(&alice, "mapped").await;
    server.shutdown().await;
}

#[tokio::test]
async fn pinned_certificates_admit_only_those() {
    let c = certs();
    let mut tls = tls_config(&c);
    tls.ca_file = Some(c.ca.cert.clone());
    tls.verify = true;
    tls.pinned_certs = vec![spki_sha256(&c.alice.spki)];
    let server = start(with_tls(tls)).await;
    let url = server.client_url();
    let nc = try_connect(with_cert(trusting(&c), &c.alice), &url)
        .await
        .expect("pinned client");
    round_trip(&nc, "pinned").await;
    assert!(
        try_connect(with_cert(trusting(&c), &c.bob), &url)
            .await
            .is_err(),
        "a certificate that is not pinned was accepted"
    );
    server.shutdown().await;
}

/// SHA-256 of a SubjectPublicKeyInfo (rcgen's DER of the key), lower-case hex.
fn spki_sha256(spki: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, spki);
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test]
async fn bad_certificate_files_fail_the_start_naming_the_file() {
    let c = certs();
    let missing = Path::new("/nonexistent/server-cert.pem");
    let err = Server::start(with_tls(TlsConfig::new(missing, &c.server.key)))
        .await
        .err()
        .expect("a missing certificate file started");
    assert!(
        err.to_string().contains("/nonexistent/server-cert.pem"),
        "{err}"
    );
    let garbage = c._dir.path().join("garbage-key.pem");
    std::fs::write(&garbage, "not a key").expect("write");
    let err = Server::start(with_tls(TlsConfig::new(&c.server.cert, &garbage)))
        .await
        .err()
        .expect("a bad key file started");
    assert!(err.to_string().contains("garbage-key.pem"), "{err}");
    // A key that does not match the certificate.
    let err = Server::start(with_tls(TlsConfig::new(&c.server.cert, &c.alice.key)))
        .await
        .err()
        .expect("a mismatched key started");
    assert!(err.to_string().contains("TLS"), "{err}");
}

/// A node of a cluster whose routes use TLS with this certificate (`None`: plain routes).
fn route_node(c: &Certs, who: Option<&Pair>, routes: &[String]) -> Config {
    let mut cluster =
        causeway::config::ClusterConfig::loopback("secure").with_routes(routes.iter().cloned());
    // No `verify`: routes verify their peers regardless.
    cluster.tls = who.map(|p| {
        let mut tls = TlsConfig::new(&p.cert, &p.key);
        tls.ca_file = Some(c.ca.cert.clone());
        tls
    });
    Config::loopback().with_cluster(cluster)
}

#[tokio::test]
async fn routes_run_over_tls_and_refuse_peers_without_it() {
    let c = certs();
    // Route certificates name 127.0.0.1 (the dialer checks it) and are client certificates
    // too (the listener verifies them).
    let node = c.ca.server_and_client("node");
    let a = start(route_node(&c, Some(&node), &[])).await;
    let seed = [format!(
        "nats-route://{}",
        a.cluster_addr().expect("route listener")
    )];
    let b = start(route_node(&c, Some(&node), &seed)).await;
    let cc = start(route_node(&c, Some(&node), &seed)).await;
    let deadline = std::time::Instant::now() + TIMEOUT;
    while [&a, &b, &cc].iter().any(|s| s.num_routes() != 2) {
        assert!(std::time::Instant::now() < deadline, "no TLS mesh");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (nb, nc) = (
        common::nats_client(&b).await,
        common::nats_client(&cc).await,
    );
    let mut sub = nb.subscribe("secure.x").await.expect("subscribe");
    nb.flush().await.expect("flush");
    let got = within(TIMEOUT, "a message across TLS routes", async {
        loop {
            nc.publish("secure.x", "hop".into()).await.expect("publish");
            if let Ok(Some(m)) = tokio::time::timeout(Duration::from_millis(100), sub.next()).await
            {
                return m;
            }
        }
    })
    .await;
    assert_eq!(&got.payload[..], b"hop");

    // A plain node and a node with a certificate from another CA never join.
    let plain = start(route_node(&c, None, &seed)).await;
    let rogue_ca = Ca::new(c._dir.path(), "rogue2");
    let rogue_pair = rogue_ca.server_and_client("rogue-node");
    let rogue = start(route_node(&c, Some(&rogue_pair), &seed)).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(a.num_routes(), 2, "an untrusted node joined");
    assert_eq!((plain.num_routes(), rogue.num_routes()), (0, 0));
    for s in [plain, rogue, cc, b, a] {
        s.shutdown().await;
    }
}
