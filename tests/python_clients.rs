//! Runs the nats-py suites of `tests/python` (core, JetStream, TLS, nkey and JWT users)
//! against an embedded server. The venv and the suite runner are `common::suites`'.

mod common;

use std::path::Path;
use std::time::Duration;

use common::start_default;
use common::suites::{ensure_venv, run_suite};

const MANIFEST_DIR: &str = env!("CARGO_MANIFEST_DIR");

/// Runs `tests/python/<script> <url> <extra...>` within `limit` and asserts it passed.
async fn run_python(python: &Path, script: &str, url: &str, extra: &[&str], limit: Duration) {
    let dir = Path::new(MANIFEST_DIR).join("tests/python");
    let script = dir.join(script);
    let mut args = vec![script.to_str().expect("utf-8 path"), url];
    args.extend_from_slice(extra);
    run_suite(python, &args, &dir, limit, "all ").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_py_core_suite_passes() {
    let python = tokio::task::spawn_blocking(ensure_venv)
        .await
        .expect("venv setup panicked");
    let server = start_default().await;
    run_python(
        &python,
        "core_suite.py",
        &server.client_url(),
        &[],
        Duration::from_secs(180),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_py_jetstream_suite_passes() {
    let python = tokio::task::spawn_blocking(ensure_venv)
        .await
        .expect("venv setup panicked");
    let dir = tempfile::tempdir().expect("tempdir");
    let server = common::start(common::js::js_config(dir.path())).await;
    run_python(
        &python,
        "js_suite.py",
        &server.client_url(),
        &[],
        Duration::from_secs(180),
    )
    .await;
    server.shutdown().await;
}

/// nats-py over TLS: the upgrade after INFO, `tls_handshake_first`, and a client without a
/// certificate refused, against a server that verifies client certificates and takes both
/// handshake orders.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_py_tls_suite_passes() {
    use causeway::config::{HandshakeFirst, TlsConfig};
    let python = tokio::task::spawn_blocking(ensure_venv)
        .await
        .expect("venv setup panicked");
    let certs = tempfile::tempdir().expect("tempdir");
    let ca = common::certs::Ca::new(certs.path(), "test");
    let server_pair = ca.server("server");
    ca.client("alice", &[(rcgen::DnType::CommonName, "alice")], Vec::new());
    let mut tls = TlsConfig::new(&server_pair.cert, &server_pair.key);
    tls.ca_file = Some(ca.cert.clone());
    tls.verify = true;
    tls.handshake_first = HandshakeFirst::Fallback(Duration::from_millis(100));
    let server = common::start(causeway::Config {
        tls: Some(tls),
        ..causeway::Config::loopback()
    })
    .await;
    let cert_dir = certs.path().to_str().expect("utf-8 path");
    run_python(
        &python,
        "tls_suite.py",
        &server.client_url(),
        &[cert_dir],
        Duration::from_secs(120),
    )
    .await;
    server.shutdown().await;
}

/// nats-py signing the INFO nonce with an nkey seed (`nkeys_seed_str`), and an unknown key
/// refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_py_nkey_suite_passes() {
    let python = tokio::task::spawn_blocking(ensure_venv)
        .await
        .expect("venv setup panicked");
    let user = nkeys::KeyPair::new_user();
    let conf = format!(
        r#"authorization {{ users: [ {{ nkey: {}, permissions: {{ publish: "ok.>" }} }} ] }}"#,
        user.public_key()
    );
    let cfg = common::loopback_conf(&conf);
    let server = common::start(cfg).await;
    let seed = user.seed().expect("seed");
    run_python(
        &python,
        "nkey_suite.py",
        &server.client_url(),
        &[&seed],
        Duration::from_secs(120),
    )
    .await;
    server.shutdown().await;
}

/// nats-py in operator mode: a `.creds` file logs in (`user_credentials`), a revoked user's
/// file is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_py_jwt_suite_passes() {
    use common::jwt::{creds, mint, now, operator_conf};
    use serde_json::json;
    let python = tokio::task::spawn_blocking(ensure_venv)
        .await
        .expect("venv setup panicked");
    let operator = nkeys::KeyPair::new_operator();
    let account = nkeys::KeyPair::new_account();
    let (good, revoked) = (nkeys::KeyPair::new_user(), nkeys::KeyPair::new_user());
    let account_jwt = mint(
        &operator,
        &account.public_key(),
        json!({"type": "account", "revocations": { revoked.public_key(): now() }}),
        json!({}),
    );
    let conf = operator_conf(&operator, &[(account.public_key(), account_jwt)]);
    let cfg = common::loopback_conf(&conf);
    let server = common::start(cfg).await;
    let dir = tempfile::tempdir().expect("tempdir");
    for (name, kp) in [("good.creds", &good), ("revoked.creds", &revoked)] {
        let jwt = mint(
            &account,
            &kp.public_key(),
            json!({"type": "user"}),
            json!({}),
        );
        std::fs::write(dir.path().join(name), creds(&jwt, kp)).expect("write creds");
    }
    let creds_dir = dir.path().to_str().expect("utf-8 path");
    run_python(
        &python,
        "jwt_suite.py",
        &server.client_url(),
        &[creds_dir],
        Duration::from_secs(120),
    )
    .await;
    server.shutdown().await;
}
