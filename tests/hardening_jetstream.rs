//! JetStream API answers to bad input, compared live with nats-server 2.15.1: every request
//! goes to both servers from a raw client, and the `error` objects (code, err_code and the
//! exact description) must be equal, as must the paging fields of listings and the
//! normalised limits of accepted configs.

mod common;

use common::reference::{same_answers, ApiClient, RefServer};
use serde_json::{json, Value};

/// The two servers, each with streams `S` (`s.>`) and `OTHER` (`o.>`).
struct Pair {
    _ours: causeway::ServerHandle,
    _theirs: RefServer,
    _dir: tempfile::TempDir,
    ours_addr: std::net::SocketAddr,
    theirs_addr: std::net::SocketAddr,
    a: ApiClient,
    b: ApiClient,
}

impl Pair {
    async fn new() -> Pair {
        let dir = tempfile::tempdir().unwrap();
        let ours = common::start(common::js::js_config(dir.path())).await;
        let theirs = RefServer::jetstream();
        let (ours_addr, theirs_addr) = (ours.local_addr(), theirs.addr);
        let mut pair = Pair {
            a: ApiClient::connect(ours_addr).await,
            b: ApiClient::connect(theirs_addr).await,
            _ours: ours,
            _theirs: theirs,
            _dir: dir,
            ours_addr,
            theirs_addr,
        };
        for (name, subj) in [("S", "s.>"), ("OTHER", "o.>")] {
            let body = json!({"name": name, "subjects": [subj]}).to_string();
            let (x, y) = pair
                .both(&format!("STREAM.CREATE.{name}"), body.as_bytes())
                .await;
            assert!(
                x.get("error").is_none() && y.get("error").is_none(),
                "{x} {y}"
            );
        }
        pair
    }

    async fn both(&mut self, subject: &str, body: &[u8]) -> (Value, Value) {
        let x = self.a.api(subject, body).await;
        let y = self.b.api(subject, body).await;
        (x, y)
    }

    /// Both refuse with the same error object; returns it.
    async fn same_error(&mut self, subject: &str, body: &[u8]) -> Value {
        let (x, y) = self.both(subject, body).await;
        let what = format!("$JS.API.{subject} {:?}", String::from_utf8_lossy(body));
        assert!(
            y.get("error").is_some(),
            "{what}: nats-server accepted: {y}"
        );
        assert_eq!(
            x["error"], y["error"],
            "{what}: causeway {x} vs nats-server {y}"
        );
        x["error"].clone()
    }
}

#[tokio::test]
async fn stream_config_errors_match_nats_server() {
    let mut p = Pair::new().await;
    let cases: Vec<(&str, Value, u64)> = vec![
        ("ALL", json!({"name": "ALL", "subjects": [">"]}), 10052),
        (
            "API",
            json!({"name": "API", "subjects": ["$JS.API.>"]}),
            10052,
        ),
        (
            "API2",
            json!({"name": "API2", "subjects": ["$JS.API.STREAM.INFO.*"]}),
            10052,
        ),
        ("JS", json!({"name": "JS", "subjects": ["$JS.>"]}), 10052),
        ("SYS", json!({"name": "SYS", "subjects": ["$SYS.>"]}), 10052),
        (
            "R",
            json!({"name": "R", "subjects": ["r"], "num_replicas": -1}),
            10133,
        ),
        (
            "R3",
            json!({"name": "R3", "subjects": ["r3"], "num_replicas": 3}),
            10074,
        ),
        (
            "AGE",
            json!({"name": "AGE", "subjects": ["age"], "max_age": -5}),
            10052,
        ),
        (
            "DUP",
            json!({"name": "DUP", "subjects": ["dup"], "duplicate_window": -5}),
            10052,
        ),
        (
            "U",
            json!({"name": "U", "subjects": ["u"], "bogus": 1}),
            10025,
        ),
        (
            "OV",
            json!({"name": "OV", "subjects": ["a.*", "a.b"]}),
            10052,
        ),
        (
            "OV2",
            json!({"name": "OV2", "subjects": ["b.>", "b.*"]}),
            10052,
        ),
        (
            "BAD",
            json!({"name": "BAD", "subjects": ["foo..bar"]}),
            10052,
        ),
        (
            "TAKEN",
            json!({"name": "TAKEN", "subjects": ["s.x"]}),
            10065,
        ),
        ("MISMATCH", json!({"name": "OTHERNAME"}), 10056),
        ("a*b", json!({"name": "a*b"}), 10052),
        ("a/b", json!({"name": "a/b"}), 10128),
    ];
    for (name, body, code) in cases {
        let e = p
            .same_error(
                &format!("STREAM.CREATE.{name}"),
                body.to_string().as_bytes(),
            )
            .await;
        assert_eq!(e["err_code"], code, "{name}: {e}");
    }
    for body in [&b""[..], b"null", b"{}", b"{"] {
        p.same_error("STREAM.CREATE.X", body).await;
    }
    // An array is refused by both (Go and serde word it differently).
    let (x, y) = p.both("STREAM.CREATE.X", b"[]").await;
    assert_eq!(x["error"]["err_code"], 10025, "{x}");
    assert_eq!(y["error"]["err_code"], 10025, "{y}");
    // The API's own subjects are fine with no_ack, as on nats-server.
    let body = json!({"name": "API", "subjects": ["$JS.API.>"], "no_ack": true}).to_string();
    let (x, y) = p.both("STREAM.CREATE.API", body.as_bytes()).await;
    assert!(
        x.get("error").is_none() && y.get("error").is_none(),
        "{x} {y}"
    );
    let (x, y) = p.both("STREAM.DELETE.API", b"").await;
    assert_eq!(x["success"], y["success"], "{x} {y}");
}

#[tokio::test]
async fn negative_limits_are_normalised_as_on_nats_server() {
    let mut p = Pair::new().await;
    let body = json!({"name": "N", "subjects": ["n"], "max_msgs": -5, "max_bytes": -5,
        "max_msg_size": -5, "max_msgs_per_subject": -5, "max_consumers": -5});
    let (x, y) = p.both("STREAM.CREATE.N", body.to_string().as_bytes()).await;
    for key in [
        "max_msgs",
        "max_bytes",
        "max_msg_size",
        "max_msgs_per_subject",
        "max_consumers",
    ] {
        assert_eq!(x["config"][key], y["config"][key], "{key}: {x} vs {y}");
        assert_eq!(x["config"][key], -1, "{key}: {x}");
    }
    let body = json!({"stream_name": "N", "config": {"max_ack_pending": -5, "max_deliver": -5}});
    let (x, y) = p
        .both("CONSUMER.CREATE.N", body.to_string().as_bytes())
        .await;
    for key in ["max_ack_pending", "max_deliver"] {
        assert_eq!(x["config"][key], y["config"][key], "{key}: {x} vs {y}");
    }
}

#[tokio::test]
async fn consumer_create_errors_match_nats_server() {
    let mut p = Pair::new().await;
    let create = |cfg: Value| json!({"stream_name": "S", "config": cfg}).to_string();
    let cases: Vec<(&str, String, u64)> = vec![
        (
            "CONSUMER.CREATE.S",
            create(json!({"ack_policy": "explicit", "ack_wait": -1})),
            10183,
        ),
        (
            "CONSUMER.CREATE.S",
            json!({"stream_name": "OTHER", "config": {}}).to_string(),
            10056,
        ),
        ("CONSUMER.CREATE.S", String::new(), 10056),
        (
            "CONSUMER.CREATE.S",
            create(json!({"durable_name": "D"})),
            10020,
        ),
        (
            "CONSUMER.CREATE.S.N1",
            create(json!({"durable_name": "N2"})),
            10017,
        ),
        (
            "CONSUMER.DURABLE.CREATE.S.D1",
            create(json!({"name": "D1"})),
            10018,
        ),
        (
            "CONSUMER.DURABLE.CREATE.S.D1",
            create(json!({"durable_name": "D2"})),
            10017,
        ),
        ("CONSUMER.CREATE.S", create(json!({"name": "a.b"})), 10052),
        ("CONSUMER.CREATE.S", create(json!({"name": "a b"})), 10052),
        ("CONSUMER.CREATE.S", create(json!({"name": "a/b"})), 10127),
        (
            "CONSUMER.CREATE.S",
            create(json!({"name": "na\u{0}me"})),
            10012,
        ),
        ("CONSUMER.CREATE.S", create(json!({"bogus": 1})), 10025),
        ("CONSUMER.CREATE.S", "{".to_string(), 10025),
    ];
    for (subject, body, code) in cases {
        let e = p.same_error(subject, body.as_bytes()).await;
        assert_eq!(e["err_code"], code, "{subject} {body}: {e}");
    }
}

#[tokio::test]
async fn listings_keep_their_paging_fields_as_on_nats_server() {
    let mut p = Pair::new().await;
    let body = json!({"stream_name": "S", "config": {"durable_name": "C1"}}).to_string();
    p.both("CONSUMER.DURABLE.CREATE.S.C1", body.as_bytes())
        .await;
    for (subject, body) in [
        ("STREAM.NAMES", &b"{"[..]),
        ("STREAM.LIST", b"{"),
        ("STREAM.NAMES", br#"{"bogus":1}"#),
        ("CONSUMER.NAMES.S", b"{"),
        ("CONSUMER.LIST.S", b"{"),
        ("STREAM.NAMES", br#"{"offset":1000}"#),
        ("STREAM.LIST", br#"{"offset":1000}"#),
        ("CONSUMER.NAMES.S", br#"{"offset":1000}"#),
        ("CONSUMER.LIST.S", br#"{"offset":1000}"#),
        ("STREAM.NAMES", br#"{"offset":1}"#),
        ("STREAM.NAMES", br#"{"subject":"nomatch"}"#),
    ] {
        let (x, y) = p.both(subject, body).await;
        let what = format!("{subject} {}", String::from_utf8_lossy(body));
        for key in ["error", "total", "offset", "limit"] {
            assert_eq!(
                x[key], y[key],
                "{what} {key}: causeway {x} vs nats-server {y}"
            );
        }
        let list = if subject.starts_with("STREAM") {
            "streams"
        } else {
            "consumers"
        };
        if subject.ends_with("NAMES") || subject.contains("NAMES.") || x[list].is_null() {
            assert_eq!(
                x[list], y[list],
                "{what} {list}: causeway {x} vs nats-server {y}"
            );
        } else {
            let n = |v: &Value| v[list].as_array().map(Vec::len);
            assert_eq!(n(&x), n(&y), "{what}: causeway {x} vs nats-server {y}");
        }
    }
}

#[tokio::test]
async fn a_direct_get_nobody_answers_gets_the_same_503() {
    let mut p = Pair::new().await;
    let body = json!({"name": "ND", "subjects": ["nd"]}).to_string();
    p.both("STREAM.CREATE.ND", body.as_bytes()).await;
    let steps: [(usize, &[u8]); 2] = [
        (0, b"CONNECT {\"verbose\":false,\"headers\":true,\"no_responders\":true}\r\nSUB _INBOX.x 1\r\n"),
        (0, b"PUB $JS.API.DIRECT.GET.ND _INBOX.x 11\r\n{\"seq\":999}\r\n"),
    ];
    let got = same_answers("direct get 503", p.ours_addr, p.theirs_addr, &steps).await;
    assert!(
        got[1]
            .0
            .contains("NATS/1.0 503\r\nNats-Subject: $JS.API.DIRECT.GET.ND\r\n"),
        "{:?}",
        got[1]
    );
}
