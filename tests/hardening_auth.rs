//! Authorization that must not fail open, compared live with nats-server 2.15.1 running the
//! same config text: `allow_responses`, `default_permissions`, `no_auth_user`, queue-group
//! permissions (and their `-ERR` texts), and publish denies that empty tokens cannot dodge.

mod common;

use common::reference::{same_answers, RefServer};
use common::start;

/// Starts causeway on a loopback port from config `text`.
async fn causeway_with(text: &str) -> causeway::ServerHandle {
    let cfg = common::loopback_conf(text);
    start(cfg).await
}

fn login(user: &str) -> Vec<u8> {
    format!(
        "CONNECT {{\"verbose\":false,\"pedantic\":false,\"user\":\"{user}\",\"pass\":\"p\"}}\r\n"
    )
    .into_bytes()
}

fn pub_violation(subj: &str) -> String {
    format!("-ERR 'Permissions Violation for Publish to \"{subj}\"'\r\n")
}

const RESPONSES: &str = r#"
authorization { users: [
  {user: svc, password: p, permissions: { subscribe: "req.>", allow_responses: true }}
  {user: svc2, password: p, permissions: { subscribe: "req2.>", allow_responses: {max: 2, expires: "1m"} }}
  {user: cli, password: p}
] }
"#;

#[tokio::test]
async fn allow_responses_permits_replies_only() {
    let ours = causeway_with(RESPONSES).await;
    let theirs = RefServer::start(RESPONSES);
    let (svc, svc2, cli) = (login("svc"), login("svc2"), login("cli"));
    let steps: Vec<(usize, &[u8])> = vec![
        (0, &svc),
        (0, b"SUB req.> 1\r\n"),
        (1, &cli),
        (1, b"SUB _INBOX.r1 9\r\nSUB _INBOX.r2 8\r\n"),
        (0, b"PUB random.subj 2\r\nhi\r\n"),
        (1, b"PUB req.a _INBOX.r1 3\r\nreq\r\n"),
        (0, b""),
        (0, b"PUB _INBOX.r1 4\r\nrsp1\r\n"),
        (1, b""),
        (0, b"PUB _INBOX.r1 4\r\nrsp2\r\n"),
        (0, b"PUB _INBOX.never 1\r\nx\r\n"),
        (0, b"PUB req.c _INBOX.svc 1\r\nx\r\n"),
        (2, &svc2),
        (2, b"SUB req2.> 1\r\n"),
        (1, b"PUB req2.a _INBOX.r2 3\r\nreq\r\n"),
        (2, b""),
        (2, b"PUB _INBOX.r2 1\r\na\r\nPUB _INBOX.r2 1\r\nb\r\n"),
        (2, b"PUB _INBOX.r2 1\r\nc\r\n"),
        (1, b""),
    ];
    let got = same_answers("allow_responses", ours.local_addr(), theirs.addr, &steps).await;
    assert_eq!(got[4].0, pub_violation("random.subj"));
    assert_eq!(got[6].0, "MSG req.a 1 _INBOX.r1 3\r\nreq\r\n");
    assert_eq!(got[7].0, "", "the first reply is allowed");
    assert_eq!(got[8].0, "MSG _INBOX.r1 9 4\r\nrsp1\r\n");
    assert_eq!(got[9].0, pub_violation("_INBOX.r1"), "one reply only");
    assert_eq!(got[10].0, pub_violation("_INBOX.never"));
    assert_eq!(got[11].0, pub_violation("req.c"));
    assert_eq!(got[16].0, "", "max: 2 allows two replies");
    assert_eq!(got[17].0, pub_violation("_INBOX.r2"));
    assert_eq!(
        got[18].0,
        "MSG _INBOX.r2 8 1\r\na\r\nMSG _INBOX.r2 8 1\r\nb\r\n"
    );
    ours.shutdown().await;
}

const DEFAULTS: &str = r#"
authorization {
  default_permissions: { publish: "pub.>", subscribe: { deny: "secret.>" } }
  users: [
    {user: a, password: p}
    {user: b, password: p, permissions: {publish: ">"}}
    {user: q, password: p, permissions: {subscribe: "work.> workers"}}
    {user: d, password: p, permissions: {publish: {deny: "foo.secret"}}}
  ]
}
no_auth_user: a
"#;

#[tokio::test]
async fn default_permissions_no_auth_user_and_queue_rules() {
    let ours = causeway_with(DEFAULTS).await;
    let theirs = RefServer::start(DEFAULTS);
    let anonymous: &[u8] = b"CONNECT {\"verbose\":false,\"pedantic\":false}\r\n";
    let bad: &[u8] = b"CONNECT {\"verbose\":false,\"user\":\"a\",\"pass\":\"bad\"}\r\n";
    let (b, q, d) = (login("b"), login("q"), login("d"));
    let steps: Vec<(usize, &[u8])> = vec![
        (0, anonymous),
        (0, b"PUB pub.x 1\r\nx\r\n"),
        (0, b"PUB other 1\r\nx\r\n"),
        (0, b"PUB other..x 1\r\nx\r\n"),
        (0, b"SUB secret.x 1\r\n"),
        (0, b"SUB secret.* grp 2\r\n"),
        (0, b"SUB > 3\r\n"),
        (1, &b),
        (1, b"PUB secret.x 1\r\ns\r\nPUB pub.y 1\r\np\r\n"),
        (0, b""),
        (2, &q),
        (2, b"SUB work.a workers 1\r\n"),
        (2, b"SUB work.a other 2\r\n"),
        (2, b"SUB work.a 3\r\n"),
        (3, &d),
        (3, b"PUB foo.secret 1\r\nx\r\n"),
        (3, b"PUB foo..secret 1\r\nx\r\nPUB foo.secret. 1\r\nx\r\n"),
        (0, b""),
        (4, bad),
    ];
    let got = same_answers("defaults", ours.local_addr(), theirs.addr, &steps).await;
    assert_eq!(got[1].0, "", "anonymous is user a, who may publish pub.>");
    assert_eq!(got[2].0, pub_violation("other"));
    assert_eq!(
        got[3].0,
        pub_violation("other..x"),
        "an empty token is no way around it"
    );
    assert_eq!(
        got[4].0,
        "-ERR 'Permissions Violation for Subscription to \"secret.x\"'\r\n"
    );
    assert_eq!(
        got[5].0,
        "-ERR 'Permissions Violation for Subscription to \"secret.*\" using queue \"grp\"'\r\n"
    );
    assert_eq!(
        got[9].0, "MSG pub.y 3 1\r\np\r\n",
        "deny filtered at delivery"
    );
    assert_eq!(got[11].0, "");
    assert_eq!(
        got[12].0,
        "-ERR 'Permissions Violation for Subscription to \"work.a\" using queue \"other\"'\r\n"
    );
    assert_eq!(
        got[13].0,
        "-ERR 'Permissions Violation for Subscription to \"work.a\"'\r\n"
    );
    assert_eq!(got[15].0, pub_violation("foo.secret"));
    assert_eq!(got[17].0, "", "foo..secret reached no one");
    assert_eq!(
        got[18],
        ("-ERR 'Authorization Violation'\r\n".to_string(), true),
        "bad credentials do not fall back to no_auth_user"
    );
    ours.shutdown().await;
}
