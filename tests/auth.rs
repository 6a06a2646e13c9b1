//! Authentication and authorization: single user/password (plain and bcrypt), tokens, a users
//! list with publish/subscribe permissions (exact `-ERR` texts, connection kept, denied
//! messages not delivered), and the same set up from config-file text.

mod common;

use async_nats::{ConnectErrorKind, ConnectOptions, Event, ServerError};
use causeway::config::{AuthConfig, Permissions, SubjectPermission, User};
use causeway::Config;
use common::{next_msg, parse_msgs, start, within, RawClient, TIMEOUT};
use serde_json::json;

fn with_auth(auth: AuthConfig) -> Config {
    Config {
        auth,
        ..Config::loopback()
    }
}

fn user_pass(user: &str, password: &str) -> AuthConfig {
    AuthConfig {
        user: Some(user.into()),
        password: Some(password.into()),
        ..AuthConfig::default()
    }
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

async fn connect_user(
    url: String,
    user: &str,
    pass: &str,
) -> Result<async_nats::Client, async_nats::ConnectError> {
    within(
        TIMEOUT,
        "async-nats connect",
        ConnectOptions::with_user_and_password(user.into(), pass.into())
            .max_reconnects(1)
            .connect(url),
    )
    .await
}

/// Raw connection sending `creds` in CONNECT; returns it after a successful PING/PONG.
async fn raw_ok(server: &causeway::ServerHandle, creds: serde_json::Value) -> RawClient {
    let mut c = RawClient::connect(server.local_addr()).await;
    assert_eq!(c.info["auth_required"], json!(true), "{}", c.info);
    c.send_connect(creds).await;
    c.ping_pong().await;
    c
}

/// Raw connection sending `creds` in CONNECT; asserts it is refused and closed.
async fn raw_refused(server: &causeway::ServerHandle, creds: serde_json::Value) {
    let mut c = RawClient::connect(server.local_addr()).await;
    c.send_connect(creds).await;
    c.send(b"PING\r\n").await;
    c.expect_err_and_close("Authorization Violation").await;
}

#[tokio::test]
async fn user_and_password() {
    let server = start(with_auth(user_pass("alice", "s3cret"))).await;
    let client = connect_user(server.client_url(), "alice", "s3cret")
        .await
        .expect("correct credentials refused");
    let mut sub = client.subscribe("in").await.unwrap();
    client.publish("in", "ok".into()).await.unwrap();
    assert_eq!(next_msg(&mut sub).await.payload.as_ref(), b"ok");

    let err = connect_user(server.client_url(), "alice", "wrong")
        .await
        .expect_err("wrong password accepted");
    assert_eq!(
        err.kind(),
        ConnectErrorKind::AuthorizationViolation,
        "{err}"
    );
    let err = connect_user(server.client_url(), "bob", "s3cret")
        .await
        .expect_err("wrong user accepted");
    assert_eq!(
        err.kind(),
        ConnectErrorKind::AuthorizationViolation,
        "{err}"
    );

    raw_ok(&server, json!({"user": "alice", "pass": "s3cret"})).await;
    raw_refused(&server, json!({"user": "alice", "pass": "S3CRET"})).await;
    raw_refused(&server, json!({"user": "alice"})).await;
    raw_refused(&server, json!({})).await;
}

#[tokio::test]
async fn bcrypt_password() {
    let hash_2b = bcrypt::hash("hunter2", 4).unwrap();
    let hash_2a = bcrypt::hash_with_result("hunter2", 4)
        .unwrap()
        .format_for_version(bcrypt::Version::TwoA);
    assert!(hash_2a.starts_with("$2a$"));
    for hash in [hash_2b, hash_2a] {
        let server = start(with_auth(user_pass("carol", &hash))).await;
        connect_user(server.client_url(), "carol", "hunter2")
            .await
            .unwrap_or_else(|e| panic!("bcrypt {hash}: correct password refused: {e}"));
        raw_ok(&server, json!({"user": "carol", "pass": "hunter2"})).await;
        raw_refused(&server, json!({"user": "carol", "pass": "hunter3"})).await;
        // The hash itself is not a password.
        raw_refused(&server, json!({"user": "carol", "pass": hash})).await;
    }
}

#[tokio::test]
async fn token() {
    let auth = AuthConfig {
        token: Some("t0ken-value".into()),
        ..AuthConfig::default()
    };
    let server = start(with_auth(auth)).await;
    within(
        TIMEOUT,
        "connect",
        ConnectOptions::with_token("t0ken-value".into()).connect(server.client_url()),
    )
    .await
    .expect("correct token refused");
    let err = within(
        TIMEOUT,
        "connect",
        ConnectOptions::with_token("other".into())
            .max_reconnects(1)
            .connect(server.client_url()),
    )
    .await
    .expect_err("wrong token accepted");
    assert_eq!(
        err.kind(),
        ConnectErrorKind::AuthorizationViolation,
        "{err}"
    );
    raw_ok(&server, json!({"auth_token": "t0ken-value"})).await;
    raw_refused(&server, json!({"auth_token": "t0ken"})).await;
    raw_refused(&server, json!({"user": "t0ken-value"})).await;
}

#[tokio::test]
async fn bcrypt_token() {
    let auth = AuthConfig {
        token: Some(bcrypt::hash("tok", 4).unwrap()),
        ..AuthConfig::default()
    };
    let server = start(with_auth(auth)).await;
    raw_ok(&server, json!({"auth_token": "tok"})).await;
    raw_refused(&server, json!({"auth_token": "tok2"})).await;
}

fn users_config() -> Config {
    let restricted = Permissions {
        publish: Some(SubjectPermission {
            allow: strings(&["allowed.>", "shared"]),
            deny: strings(&["allowed.secret"]),
        }),
        subscribe: Some(SubjectPermission {
            allow: strings(&["feed.*", "shared"]),
            deny: strings(&["feed.private"]),
        }),
        ..Permissions::default()
    };
    let no_secrets = Permissions {
        publish: None,
        subscribe: Some(SubjectPermission {
            allow: Vec::new(),
            deny: strings(&["secret.>"]),
        }),
        ..Permissions::default()
    };
    with_auth(AuthConfig {
        users: vec![
            User {
                user: "admin".into(),
                password: "admin-pw".into(),
                permissions: None,
                ..User::default()
            },
            User {
                user: "limited".into(),
                password: "limited-pw".into(),
                permissions: Some(restricted),
                ..User::default()
            },
            User {
                user: "nosecrets".into(),
                password: "ns-pw".into(),
                permissions: Some(no_secrets),
                ..User::default()
            },
        ],
        ..AuthConfig::default()
    })
}

#[tokio::test]
async fn publish_permissions() {
    let server = start(users_config()).await;
    let mut admin = raw_ok(&server, json!({"user": "admin", "pass": "admin-pw"})).await;
    admin.send(b"SUB > 1\r\n").await;
    admin.ping_pong().await;
    let mut c = raw_ok(&server, json!({"user": "limited", "pass": "limited-pw"})).await;
    for subject in ["other", "allowed", "allowed.secret", "sharedx"] {
        c.send(format!("PUB {subject} 1\r\nx\r\n").as_bytes()).await;
        c.expect_err_and_stay(&format!(
            "Permissions Violation for Publish to \"{subject}\""
        ))
        .await;
    }
    c.send(b"HPUB other 12 12\r\nNATS/1.0\r\n\r\n\r\n").await;
    c.expect_err_and_stay("Permissions Violation for Publish to \"other\"")
        .await;
    c.send(b"PUB allowed.a 2\r\nok\r\nPUB allowed.b.c 2\r\nok\r\nPUB shared 2\r\nok\r\n")
        .await;
    c.ping_pong().await;
    // Only the permitted messages reached the admin's catch-all subscription.
    let got: Vec<String> = parse_msgs(&admin.ping_pong().await)
        .into_iter()
        .map(|m| m.subject)
        .collect();
    assert_eq!(got, vec!["allowed.a", "allowed.b.c", "shared"]);
}

#[tokio::test]
async fn subscribe_permissions() {
    let server = start(users_config()).await;
    let mut c = raw_ok(&server, json!({"user": "limited", "pass": "limited-pw"})).await;
    for (sid, subject) in ["other", "feed", "feed.a.b", "feed.private", ">"]
        .iter()
        .enumerate()
    {
        c.send(format!("SUB {subject} {sid}\r\n").as_bytes()).await;
        c.expect_err_and_stay(&format!(
            "Permissions Violation for Subscription to \"{subject}\""
        ))
        .await;
    }
    c.send(b"SUB feed.public 10\r\nSUB shared 11\r\n").await;
    assert!(c.ping_pong().await.is_empty(), "permitted SUB refused");

    let mut admin = raw_ok(&server, json!({"user": "admin", "pass": "admin-pw"})).await;
    admin.send(b"PUB other 1\r\n1\r\nPUB feed.private 1\r\n2\r\nPUB feed.public 1\r\n3\r\nPUB shared 1\r\n4\r\n")
        .await;
    admin.ping_pong().await;
    let got: Vec<(String, String)> = parse_msgs(&c.ping_pong().await)
        .into_iter()
        .map(|m| (m.subject, m.sid))
        .collect();
    assert_eq!(
        got,
        vec![
            ("feed.public".into(), "10".into()),
            ("shared".into(), "11".into())
        ]
    );
}

#[tokio::test]
async fn wildcard_subscription_does_not_leak_denied_subjects() {
    // nats-server accepts a wildcard SUB that overlaps a deny rule but withholds the messages
    // on denied subjects from it.
    let server = start(users_config()).await;
    let mut c = raw_ok(&server, json!({"user": "nosecrets", "pass": "ns-pw"})).await;
    c.send(b"SUB secret.plans 1\r\n").await;
    c.expect_err_and_stay("Permissions Violation for Subscription to \"secret.plans\"")
        .await;
    c.send(b"SUB > 2\r\n").await;
    assert!(c.ping_pong().await.is_empty(), "SUB > refused");
    let mut admin = raw_ok(&server, json!({"user": "admin", "pass": "admin-pw"})).await;
    admin
        .send(b"PUB secret.plans 1\r\nS\r\nPUB public.news 1\r\nP\r\n")
        .await;
    admin.ping_pong().await;
    let got: Vec<String> = parse_msgs(&c.ping_pong().await)
        .into_iter()
        .map(|m| m.subject)
        .collect();
    assert_eq!(got, vec!["public.news"]);
}

#[tokio::test]
async fn permissions_from_config_text_and_async_nats_error_events() {
    let text = r#"
        authorization {
          users = [
            {user: a, password: b, permissions: { publish: { deny: ["secret.>"] }, subscribe: "public.>" } }
          ]
        }
    "#;
    let mut config = causeway::config::from_conf_text(text, None).expect("config text rejected");
    config.host = "127.0.0.1".into();
    config.port = 0;
    let server = start(config).await;

    let mut raw = raw_ok(&server, json!({"user": "a", "pass": "b"})).await;
    raw.send(b"PUB secret.x 1\r\n1\r\n").await;
    raw.expect_err_and_stay("Permissions Violation for Publish to \"secret.x\"")
        .await;
    raw.send(b"SUB private.x 1\r\n").await;
    raw.expect_err_and_stay("Permissions Violation for Subscription to \"private.x\"")
        .await;
    raw.send(b"SUB public.> 2\r\nPUB public.news 2\r\nhi\r\n")
        .await;
    let got = parse_msgs(&raw.ping_pong().await);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].subject, "public.news");
    raw_refused(&server, json!({"user": "a", "pass": "c"})).await;

    // async-nats reports the violation as a server error event and keeps the connection.
    let (client, mut rx) = common::connect_with_events(
        ConnectOptions::with_user_and_password("a".into(), "b".into()),
        &server.client_url(),
    )
    .await;
    let mut public = client.subscribe("public.>").await.unwrap();
    client.publish("secret.plan", "no".into()).await.unwrap();
    client.flush().await.unwrap();
    let text = within(TIMEOUT, "permission error event", async {
        loop {
            match rx.recv().await.expect("event stream ended") {
                Event::ServerError(ServerError::Other(text)) => return text,
                _ => continue,
            }
        }
    })
    .await;
    assert!(
        text.contains("Permissions Violation for Publish to \"secret.plan\""),
        "{text}"
    );
    // The connection is still usable.
    client.publish("public.after", "yes".into()).await.unwrap();
    let m = next_msg(&mut public).await;
    assert_eq!(m.subject.as_str(), "public.after");
}

/// nkey users: the server puts a nonce in INFO, async-nats signs it with the user's seed; a
/// seed whose public key is not configured, a forged signature, a replayed one and an empty
/// user name are all refused, and the user's permissions hold.
#[tokio::test]
async fn nkey_users_sign_the_nonce() {
    let alice = nkeys::KeyPair::new_user();
    let stranger = nkeys::KeyPair::new_user();
    let conf = format!(
        r#"authorization {{ users: [
             {{ nkey: {}, permissions: {{ publish: {{ allow: ["ok.>"] }} }} }}
             {{ user: bob, password: pw }}
           ] }}"#,
        alice.public_key()
    );
    let cfg = common::loopback_conf(&conf);
    let server = start(cfg).await;
    let connect = |seed: String| {
        within(
            TIMEOUT,
            "nkey connect",
            ConnectOptions::with_nkey(seed).connect(server.client_url()),
        )
    };
    let nc = connect(alice.seed().expect("seed"))
        .await
        .expect("alice signs in with her nkey");
    let bob = connect_user(server.client_url(), "bob", "pw")
        .await
        .expect("bob");
    let mut watch = bob.subscribe(">").await.expect("subscribe");
    bob.flush().await.expect("flush");
    nc.publish("no.1", "denied".into()).await.expect("publish");
    nc.publish("ok.1", "allowed".into()).await.expect("publish");
    nc.flush().await.expect("flush");
    assert_eq!(next_msg(&mut watch).await.subject.as_str(), "ok.1");
    assert!(
        connect(stranger.seed().expect("seed")).await.is_err(),
        "an unknown nkey signed in"
    );

    // On the wire: the INFO nonce signed by hand, and what is refused.
    let sign = |kp: &nkeys::KeyPair, data: &[u8]| {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(kp.sign(data).expect("sign"))
    };
    let mut raw = RawClient::connect(server.local_addr()).await;
    let nonce = raw.info["nonce"]
        .as_str()
        .expect("nonce in INFO")
        .to_string();
    raw.send_connect(json!({"nkey": alice.public_key(), "sig": sign(&alice, nonce.as_bytes())}))
        .await;
    raw.ping_pong().await;
    raw_refused(
        &server,
        json!({"nkey": alice.public_key(), "sig": sign(&stranger, nonce.as_bytes())}),
    )
    .await;
    // A signature of another connection's nonce does not open this one.
    raw_refused(
        &server,
        json!({"nkey": alice.public_key(), "sig": sign(&alice, nonce.as_bytes())}),
    )
    .await;
    raw_refused(&server, json!({"user": "", "pass": ""})).await;
    server.shutdown().await;
}

/// `$SYS.REQ.USER.INFO`: who asked, their account and permissions, in nats-server's shape.
async fn user_info(addr: std::net::SocketAddr, user: Option<&str>) -> serde_json::Value {
    let mut opts = async_nats::ConnectOptions::new();
    if let Some(u) = user {
        opts = opts.user_and_password(u.into(), u.into());
    }
    let nc = opts.connect(addr.to_string()).await.expect("connect");
    let m = nc
        .request("$SYS.REQ.USER.INFO", "".into())
        .await
        .expect("user info");
    let mut v: serde_json::Value = serde_json::from_slice(&m.payload).expect("json");
    // nats-server lists permissions in its sublist's order: compared as sets.
    for side in ["publish", "subscribe"] {
        for list in ["allow", "deny"] {
            if let Some(a) = v["data"]["permissions"][side][list].as_array_mut() {
                a.sort_by_key(|x| x.to_string());
            }
        }
    }
    v
}

#[tokio::test]
async fn user_info_matches_nats_server() {
    const CONF: &str = r#"
accounts {
  A: { users: [
    { user: a, password: a, permissions: {
        publish: { allow: ["app.>", "$SYS.REQ.USER.INFO", "_INBOX.>"], deny: ["app.secret"] },
        subscribe: { allow: ["_INBOX.>", "work.> q"] } } },
    { user: b, password: b }
  ] }
}
"#;
    let plain = common::start_default().await;
    let plain_ref = common::reference::RefServer::start("");
    let ours = common::start(common::loopback_conf(CONF)).await;
    let theirs = common::reference::RefServer::start(CONF);
    let cases = [
        (plain.local_addr(), plain_ref.addr, None),
        (ours.local_addr(), theirs.addr, Some("a")),
        (ours.local_addr(), theirs.addr, Some("b")),
    ];
    for (mine, reference, user) in cases {
        let a = user_info(mine, user).await;
        let b = user_info(reference, user).await;
        assert_eq!(
            a["data"], b["data"],
            "{user:?}: causeway vs nats-server 2.15.1"
        );
        let keys = |v: &serde_json::Value| {
            let mut k: Vec<String> = v["server"]
                .as_object()
                .map(|o| o.keys().cloned().collect())
                .unwrap_or_default();
            k.retain(|k| k != "feature_flags");
            k.sort();
            k
        };
        assert_eq!(keys(&a), keys(&b), "server fields");
    }
    let a = user_info(ours.local_addr(), Some("a")).await;
    assert_eq!(a["data"]["account"], "A", "{a}");
    // The answer goes to the asker's own subscription only: a reply subject someone else
    // listens on (or a stream captures) gets nothing.
    let spy = async_nats::connect(plain.local_addr().to_string())
        .await
        .unwrap();
    let mut spied = spy.subscribe("spy").await.unwrap();
    spy.flush().await.unwrap();
    let asker = async_nats::connect(plain.local_addr().to_string())
        .await
        .unwrap();
    asker
        .publish_with_reply("$SYS.REQ.USER.INFO", "spy", "".into())
        .await
        .unwrap();
    asker.flush().await.unwrap();
    let got = tokio::time::timeout(
        std::time::Duration::from_millis(300),
        futures::StreamExt::next(&mut spied),
    )
    .await;
    assert!(got.is_err(), "{got:?}");
    assert_eq!(
        a["data"]["permissions"]["publish"]["deny"][0], "app.secret",
        "{a}"
    );
    plain.shutdown().await;
    ours.shutdown().await;
}
