//! Operator mode with async-nats and `.creds` files: an operator JWT, accounts preloaded into
//! the memory resolver, users logging in with JWTs signed by their account or its signing key.
//! Refused: expired, revoked, forged (signed by an untrusted account) and bearer-less JWTs
//! without a valid nonce signature; a JWT that expires while connected is cut with "User
//! Authentication Expired"; accounts are isolated and JWT permissions hold. JWTs are minted
//! here (header, claims, Ed25519 signature by the issuer's nkey), as `nsc` would.

mod common;

use std::time::Duration;

use async_nats::ConnectOptions;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use causeway::config::from_conf_text;
use causeway::ServerHandle;
use common::jwt::{creds, mint, now, operator_conf};
use common::{start, within, RawClient, TIMEOUT};
use futures::StreamExt;
use nkeys::KeyPair;
use serde_json::{json, Value};

struct Setup {
    server: ServerHandle,
    account_a: KeyPair,
    signing_a: KeyPair,
    account_b: KeyPair,
    revoked: KeyPair,
}

async fn setup() -> Setup {
    let operator = KeyPair::new_operator();
    let (account_a, signing_a, account_b) = (
        KeyPair::new_account(),
        KeyPair::new_account(),
        KeyPair::new_account(),
    );
    let revoked = KeyPair::new_user();
    let a_jwt = mint(
        &operator,
        &account_a.public_key(),
        json!({"type": "account", "version": 2,
               "signing_keys": [signing_a.public_key()],
               "revocations": { revoked.public_key(): now() },
               "limits": {"subs": -1, "conn": -1, "data": -1, "payload": -1, "wildcards": true,
                          "mem_storage": 0, "disk_storage": 0, "streams": -1}}),
        json!({}),
    );
    let b_jwt = mint(
        &operator,
        &account_b.public_key(),
        json!({"type": "account", "version": 2}),
        json!({}),
    );
    let conf = operator_conf(
        &operator,
        &[
            (account_a.public_key(), a_jwt),
            (account_b.public_key(), b_jwt),
        ],
    );
    let cfg = common::loopback_conf(&conf);
    Setup {
        server: start(cfg).await,
        account_a,
        signing_a,
        account_b,
        revoked,
    }
}

/// A user of an account: (creds text, key pair).
fn user(issuer: &KeyPair, nats: Value, extra: Value) -> (String, KeyPair) {
    let kp = KeyPair::new_user();
    let mut claims = json!({"type": "user", "version": 2});
    if let (Some(c), Some(e)) = (claims.as_object_mut(), nats.as_object()) {
        c.extend(e.clone());
    }
    let jwt = mint(issuer, &kp.public_key(), claims, extra);
    (creds(&jwt, &kp), kp)
}

async fn login(server: &ServerHandle, creds: &str) -> Result<async_nats::Client, String> {
    let opts = ConnectOptions::with_credentials(creds)
        .map_err(|e| e.to_string())?
        .connection_timeout(Duration::from_secs(3));
    within(TIMEOUT, "connect", opts.connect(server.client_url()))
        .await
        .map_err(|e| e.to_string())
}

#[tokio::test]
async fn users_log_in_with_jwts_of_trusted_accounts() {
    let s = setup().await;
    let (alice, _) = user(&s.account_a, json!({"pub": {"allow": ["ok.>"]}}), json!({}));
    let (carol, _) = user(
        &s.signing_a,
        json!({"issuer_account": s.account_a.public_key()}),
        json!({}),
    );
    let (bob, _) = user(&s.account_b, json!({}), json!({}));
    let alice = login(&s.server, &alice).await.expect("alice, signed by A");
    let carol = login(&s.server, &carol)
        .await
        .expect("carol, by A's signing key");
    let bob = login(&s.server, &bob).await.expect("bob, of B");
    let mut watch = carol.subscribe(">").await.expect("sub");
    let mut spy_b = bob.subscribe(">").await.expect("sub");
    carol.flush().await.expect("flush");
    bob.flush().await.expect("flush");
    alice.publish("no.1", "denied".into()).await.expect("pub");
    alice.publish("ok.1", "allowed".into()).await.expect("pub");
    alice.flush().await.expect("flush");
    let got = within(TIMEOUT, "alice's message", watch.next())
        .await
        .expect("msg");
    assert_eq!(got.subject.as_str(), "ok.1");
    assert!(
        tokio::time::timeout(Duration::from_millis(300), spy_b.next())
            .await
            .is_err(),
        "account B saw account A's message"
    );
}

#[tokio::test]
async fn expired_revoked_forged_and_unsigned_jwts_are_refused() {
    let s = setup().await;
    let (expired, _) = user(&s.account_a, json!({}), json!({"exp": now() - 1}));
    assert!(login(&s.server, &expired).await.is_err(), "expired JWT");
    let jwt = mint(
        &s.account_a,
        &s.revoked.public_key(),
        json!({"type": "user", "version": 2}),
        json!({}),
    );
    let revoked = creds(&jwt, &s.revoked);
    assert!(login(&s.server, &revoked).await.is_err(), "revoked user");
    let stranger = KeyPair::new_account();
    let (untrusted, _) = user(&stranger, json!({}), json!({}));
    assert!(
        login(&s.server, &untrusted).await.is_err(),
        "untrusted account"
    );
    // A's JWT for one user carrying the signature of another JWT: forged.
    let kp = KeyPair::new_user();
    let genuine = mint(
        &s.account_a,
        &kp.public_key(),
        json!({"type": "user"}),
        json!({}),
    );
    let other_user = KeyPair::new_user().public_key();
    let other = mint(
        &s.account_a,
        &other_user,
        json!({"type": "user"}),
        json!({}),
    );
    let (body, _) = genuine.rsplit_once('.').expect("three parts");
    let (_, other_sig) = other.rsplit_once('.').expect("three parts");
    let forged = creds(&format!("{body}.{other_sig}"), &kp);
    assert!(login(&s.server, &forged).await.is_err(), "forged signature");
    // A's signing key cannot sign for account B.
    let (cross, _) = user(
        &s.signing_a,
        json!({"issuer_account": s.account_b.public_key()}),
        json!({}),
    );
    assert!(
        login(&s.server, &cross).await.is_err(),
        "A's signing key for B"
    );
    let (limited, _) = user(&s.account_a, json!({"src": ["10.0.0.0/8"]}), json!({}));
    assert!(
        login(&s.server, &limited).await.is_err(),
        "unenforced claim"
    );

    // On the wire: the nonce of another connection, validly signed, does not open this one;
    // on its own connection it does. A bearer token needs no signature.
    let first = RawClient::connect(s.server.local_addr()).await;
    let nonce = first.info["nonce"].as_str().expect("nonce").to_string();
    let sig = URL_SAFE_NO_PAD.encode(kp.sign(nonce.as_bytes()).expect("sign"));
    let mut raw = RawClient::connect(s.server.local_addr()).await;
    raw.send_connect(json!({"jwt": genuine, "sig": sig})).await;
    raw.send(b"PING\r\n").await;
    raw.expect_err_and_close("Authorization Violation").await;
    let mut first = first;
    first
        .send_connect(json!({"jwt": genuine, "sig": sig}))
        .await;
    first.ping_pong().await;
    let bearer = mint(
        &s.account_b,
        &kp.public_key(),
        json!({"type": "user", "bearer_token": true}),
        json!({}),
    );
    let mut raw = RawClient::connect(s.server.local_addr()).await;
    raw.send_connect(json!({"jwt": bearer})).await;
    raw.ping_pong().await;
}

/// A bearer user JWT of account A expiring in two seconds.
fn short_lived(s: &Setup) -> String {
    let kp = KeyPair::new_user();
    mint(
        &s.account_a,
        &kp.public_key(),
        json!({"type": "user", "bearer_token": true}),
        json!({"exp": now() + 2}),
    )
}

#[tokio::test]
async fn a_jwt_that_expires_while_connected_ends_the_connection() {
    let s = setup().await;
    let mut raw = RawClient::connect(s.server.local_addr()).await;
    assert!(raw.info["nonce"].is_string(), "{}", raw.info);
    raw.send_connect(json!({"jwt": short_lived(&s)})).await;
    raw.ping_pong().await;
    raw.expect_err_and_close("User Authentication Expired")
        .await;

    // A client that never stops publishing is cut too.
    let mut busy = RawClient::connect(s.server.local_addr()).await;
    busy.send_connect(json!({"jwt": short_lived(&s)})).await;
    busy.ping_pong().await;
    let started = std::time::Instant::now();
    while busy.try_send(b"PUB busy 1\r\nx\r\n").await.is_ok() {
        assert!(
            started.elapsed() < TIMEOUT,
            "a busy client outlived its JWT"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_mode_accounts_cross_a_cluster() {
    let operator = KeyPair::new_operator();
    let (account_a, account_b) = (KeyPair::new_account(), KeyPair::new_account());
    let jwt = |kp: &KeyPair| {
        mint(
            &operator,
            &kp.public_key(),
            json!({"type": "account", "version": 2}),
            json!({}),
        )
    };
    let conf = operator_conf(
        &operator,
        &[
            (account_a.public_key(), jwt(&account_a)),
            (account_b.public_key(), jwt(&account_b)),
        ],
    );
    let node = |routes: Vec<String>| {
        let cluster = causeway::config::ClusterConfig::loopback("jwt").with_routes(routes);
        common::loopback_conf(&conf).with_cluster(cluster)
    };
    let one = start(node(vec![])).await;
    let seed = format!("nats-route://{}", one.cluster_addr().unwrap());
    let two = start(node(vec![seed])).await;
    let deadline = std::time::Instant::now() + TIMEOUT;
    while one.num_routes() != 1 || two.num_routes() != 1 {
        assert!(std::time::Instant::now() < deadline, "no route");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (alice, _) = user(&account_a, json!({}), json!({}));
    let (carol, _) = user(&account_a, json!({}), json!({}));
    let (bob, _) = user(&account_b, json!({}), json!({}));
    let alice = login(&one, &alice).await.expect("alice on server one");
    let carol = login(&two, &carol).await.expect("carol on server two");
    let bob = login(&two, &bob).await.expect("bob on server two");
    let mut inbox = alice.subscribe("a.>").await.expect("sub");
    let mut spy = bob.subscribe(">").await.expect("sub");
    alice.flush().await.expect("flush");
    bob.flush().await.expect("flush");
    // Interest crosses asynchronously: publish until alice's subscription is known on two.
    let got = within(TIMEOUT, "carol's message across the route", async {
        loop {
            carol.publish("a.1", "hi".into()).await.expect("pub");
            carol.flush().await.expect("flush");
            if let Ok(Some(m)) = tokio::time::timeout(Duration::from_millis(50), inbox.next()).await
            {
                break m;
            }
        }
    })
    .await;
    assert_eq!(got.subject.as_str(), "a.1");
    assert!(
        tokio::time::timeout(Duration::from_millis(300), spy.next())
            .await
            .is_err(),
        "account B saw account A's message"
    );
    one.shutdown().await;
    two.shutdown().await;
}

#[test]
fn operator_mode_configuration_errors_name_the_key() {
    let operator = KeyPair::new_operator();
    let op = mint(
        &operator,
        &operator.public_key(),
        json!({"type": "operator"}),
        json!({}),
    );
    let account = KeyPair::new_account();
    let preload = |claims: Value, signer: &KeyPair| {
        let jwt = mint(signer, &account.public_key(), claims, json!({}));
        format!(
            "operator: \"{op}\"\nresolver: MEMORY\nresolver_preload: {{ {}: \"{jwt}\" }}\n",
            account.public_key()
        )
    };
    let scoped = json!({"type": "account",
        "signing_keys": [{"kind": "user_scope", "key": KeyPair::new_account().public_key()}]});
    let cases = [
        (
            preload(scoped, &operator),
            "signing_keys (scoped) is not supported yet",
        ),
        (
            preload(
                json!({"type": "account", "default_permissions": {"resp": {"max": 1}}}),
                &operator,
            ),
            "default_permissions is not supported yet",
        ),
        (
            preload(
                json!({"type": "account", "revocations": {"U1": "soon"}}),
                &operator,
            ),
            "not a time",
        ),
        (
            preload(
                json!({"type": "account", "exports": [{"subject": "x", "type": "stream"}]}),
                &operator,
            ),
            "exports is not supported yet",
        ),
        (
            preload(
                json!({"type": "account", "limits": {"disk_storage": -1}}),
                &operator,
            ),
            "limits.disk_storage is not supported yet",
        ),
        (
            preload(json!({"type": "account"}), &KeyPair::new_operator()),
            "not signed by a trusted operator",
        ),
        (
            format!(
                "{}accounts {{ A: {{}} }}\n",
                preload(json!({"type": "account"}), &operator)
            ),
            "cannot be combined",
        ),
        (
            format!(
                "{}system_account: NOPE\n",
                preload(json!({"type": "account"}), &operator)
            ),
            "not in resolver_preload",
        ),
        (
            format!("operator: \"{op}\"\nresolver: URL(http://x)\n"),
            "resolver (other than MEMORY)",
        ),
    ];
    for (text, want) in cases {
        let err = from_conf_text(&text, None).expect_err(&text);
        assert!(err.to_string().contains(want), "{want}: {err}");
    }
    let ok = preload(json!({"type": "account"}), &operator);
    assert!(from_conf_text(&ok, None).expect("valid").trust.is_some());
}
