//! Bad input to the JetStream API: malformed JSON and fields of the wrong type (10025),
//! invalid stream and consumer names, invalid configuration values, unknown API subjects,
//! streams and consumers, and malformed pull requests. Every request gets an answer (each is
//! bounded by a timeout) carrying nats-server's err_code, and the server keeps working.

mod common;

use async_nats::StatusCode;
use common::js::{assert_ack, assert_err, assert_type, first_reply, JsEnv};
use serde_json::json;

/// Sends every (subject, body) and checks the answer is `<kind>_response` with `code`.
async fn expect_all(env: &JsEnv, kind: &str, code: u64, cases: &[(&str, &[u8])]) {
    for (subject, body) in cases {
        let v = env.api(subject, body.to_vec()).await;
        assert_type(&v, kind);
        assert_eq!(
            common::js::err_code(&v),
            Some(code),
            "$JS.API.{subject} with {:?}: {v}",
            String::from_utf8_lossy(body)
        );
    }
}

/// After abuse: the server still answers normal requests.
async fn still_works(env: &JsEnv) {
    let v = env.api("INFO", "").await;
    assert!(v.get("error").is_none(), "{v}");
    env.stream(json!({"name": "OK", "subjects": ["ok.>"]}))
        .await;
    assert_ack(&env.publish("ok.1", "fine").await, "OK", 1);
}

#[tokio::test]
async fn malformed_json_is_invalid_json() {
    let env = JsEnv::new().await;
    env.stream(json!({"name": "S", "subjects": ["s.>"]})).await;
    expect_all(
        &env,
        "stream_create",
        10025,
        &[
            ("STREAM.CREATE.X", b"{bad"),
            ("STREAM.CREATE.X", b"[]"),
            ("STREAM.CREATE.X", b"\"just a string\""),
            ("STREAM.CREATE.X", b"\xff\xfe\x00garbage"),
            ("STREAM.CREATE.X", br#"{"name":"X","subjects":"x"}"#),
            ("STREAM.CREATE.X", br#"{"name":"X","max_msgs":"ten"}"#),
            ("STREAM.CREATE.X", br#"{"name":"X","storage":"floppy"}"#),
            ("STREAM.CREATE.X", br#"{"name":"X","retention":1.5}"#),
            ("STREAM.CREATE.X", br#"{"name":"X","max_age":"1h"}"#),
        ],
    )
    .await;
    expect_all(
        &env,
        "consumer_create",
        10025,
        &[
            ("CONSUMER.CREATE.S", b"{bad"),
            ("CONSUMER.CREATE.S.C", b"{\"config\":"),
            (
                "CONSUMER.CREATE.S",
                br#"{"stream_name":"S","config":{"ack_policy":7}}"#,
            ),
            (
                "CONSUMER.CREATE.S",
                br#"{"stream_name":"S","config":{"ack_wait":"5s"}}"#,
            ),
            (
                "CONSUMER.CREATE.S",
                br#"{"stream_name":"S","config":{"deliver_policy":"sometimes"}}"#,
            ),
            (
                "CONSUMER.DURABLE.CREATE.S.D",
                br#"{"stream_name":"S","config":{"durable_name":5}}"#,
            ),
        ],
    )
    .await;
    expect_all(
        &env,
        "stream_update",
        10025,
        &[("STREAM.UPDATE.S", b"{bad")],
    )
    .await;
    expect_all(&env, "stream_purge", 10025, &[("STREAM.PURGE.S", b"{bad")]).await;
    expect_all(
        &env,
        "stream_msg_get",
        10025,
        &[
            ("STREAM.MSG.GET.S", b"{bad"),
            ("STREAM.MSG.GET.S", br#"{"seq":"one"}"#),
        ],
    )
    .await;
    expect_all(
        &env,
        "stream_msg_delete",
        10025,
        &[("STREAM.MSG.DELETE.S", b"{bad")],
    )
    .await;
    assert_eq!(env.api("STREAM.NAMES", "").await["total"], 1);
    still_works(&env).await;
    env.stop().await;
}

#[tokio::test]
async fn empty_or_null_create_bodies_are_a_name_mismatch() {
    // nats-server 2.15 decodes an empty body as null: no name, so the name in the subject
    // does not match (10056), for streams and consumers alike.
    let env = JsEnv::new().await;
    let cases: [(&str, &[u8]); 3] = [
        ("STREAM.CREATE.X", b""),
        ("STREAM.CREATE.X", b"null"),
        ("STREAM.CREATE.X", b"{}"),
    ];
    expect_all(&env, "stream_create", 10056, &cases).await;
    env.stream(json!({"name": "S", "subjects": ["s.>"]})).await;
    let cases: [(&str, &[u8]); 3] = [
        ("CONSUMER.CREATE.S", b""),
        ("CONSUMER.CREATE.S", b"null"),
        (
            "CONSUMER.CREATE.S",
            br#"{"stream_name":"OTHER","config":{}}"#,
        ),
    ];
    expect_all(&env, "consumer_create", 10056, &cases).await;
    still_works(&env).await;
    env.stop().await;
}

#[tokio::test]
async fn invalid_names_are_refused() {
    let env = JsEnv::new().await;
    env.stream(json!({"name": "S", "subjects": ["s.>"]})).await;
    // Consumer names with '.', '*', '>' or whitespace: 10052 (nats-server 2.15); a durable
    // name on the ephemeral create subject is 10020 whatever it is.
    for name in ["a.b", "a*", "x>y", "*", ">", "a b", "a\tb"] {
        let body = json!({"stream_name": "S", "config": {"name": name}}).to_string();
        let v = env.api("CONSUMER.CREATE.S", body).await;
        assert_type(&v, "consumer_create");
        assert_err(&v, 10052);
        let body = json!({"stream_name": "S", "config": {"durable_name": name}}).to_string();
        assert_err(&env.api("CONSUMER.CREATE.S", body).await, 10020);
    }
    for name in ["x*", "x>"] {
        let body = json!({"stream_name": "S", "config": {"durable_name": name}}).to_string();
        let v = env
            .api(&format!("CONSUMER.DURABLE.CREATE.S.{name}"), body)
            .await;
        assert_err(&v, 10052);
    }
    // Path separators (10127), NUL (10012), too long (10102).
    for (name, code) in [("a/b", 10127), ("a\\b", 10127), ("na\u{0}me", 10012)] {
        let body = json!({"stream_name": "S", "config": {"name": name}}).to_string();
        assert_err(&env.api("CONSUMER.CREATE.S", body).await, code);
    }
    let long = "x".repeat(300);
    let body = json!({"stream_name": "S", "config": {"durable_name": long}}).to_string();
    assert_err(
        &env.api(&format!("CONSUMER.DURABLE.CREATE.S.{long}"), body)
            .await,
        10102,
    );
    // A stream name with a '.' cannot be addressed by a create subject; the server still
    // answers (nats-server stays silent here; an error response is better than a hang).
    let v = env
        .api("STREAM.CREATE.a.b", json!({"name": "a.b"}).to_string())
        .await;
    assert!(v.get("error").is_some(), "{v}");
    // Path separators: 10128.
    let v = env
        .api("STREAM.CREATE.a/b", json!({"name": "a/b"}).to_string())
        .await;
    assert_err(&v, 10128);
    assert_eq!(env.api("STREAM.NAMES", "").await["total"], 1);
    assert_eq!(env.api("CONSUMER.NAMES.S", "").await["total"], 0);
    still_works(&env).await;
    env.stop().await;
}

#[tokio::test]
async fn invalid_stream_config_values_are_10052() {
    // nats-server reports these as 10052 (stream configuration invalid).
    let env = JsEnv::new().await;
    let cases = [
        json!({"name": "a*b"}),
        json!({"name": "a>b"}),
        json!({"name": "C1", "num_replicas": 7}),
        json!({"name": "C2", "subjects": ["a..b"]}),
        json!({"name": "C3", "sealed": true}),
        json!({"name": "C4", "duplicate_window": -5}),
        json!({"name": "C5", "max_age": 1_000_000_000u64, "duplicate_window": 5_000_000_000u64}),
    ];
    let mut wrong = Vec::new();
    for cfg in cases {
        let name = cfg["name"].as_str().unwrap();
        let v = env
            .api(&format!("STREAM.CREATE.{name}"), cfg.to_string())
            .await;
        assert_type(&v, "stream_create");
        if common::js::err_code(&v) != Some(10052) {
            wrong.push(format!("{cfg} -> {v}"));
        }
    }
    assert!(wrong.is_empty(), "expected 10052:\n{}", wrong.join("\n"));
    assert_eq!(env.api("STREAM.NAMES", "").await["total"], 0);
    env.stop().await;
}

#[tokio::test]
async fn replicas_above_one_are_not_supported_standalone() {
    // nats-server without clustering: 10074 "replicas > 1 not supported in non-clustered mode".
    let env = JsEnv::new().await;
    let v = env
        .api(
            "STREAM.CREATE.R3",
            json!({"name": "R3", "num_replicas": 3}).to_string(),
        )
        .await;
    assert_err(&v, 10074);
    env.stop().await;
}

#[tokio::test]
async fn invalid_consumer_configs_are_refused() {
    let env = JsEnv::new().await;
    env.stream(json!({"name": "S", "subjects": ["s.>"]})).await;
    let create = |cfg: serde_json::Value| json!({"stream_name": "S", "config": cfg}).to_string();
    let v = env
        .api(
            "CONSUMER.CREATE.S",
            create(json!({"deliver_subject": "x.*"})),
        )
        .await;
    assert_err(&v, 10079);
    let v = env
        .api(
            "CONSUMER.CREATE.S",
            create(json!({"deliver_policy": "by_start_sequence"})),
        )
        .await;
    assert!(v.get("error").is_some(), "{v}");
    // A durable name that differs from the subject's: 10017; a durable create without one:
    // 10018; a different `name` in the body: the subject's name wins (nats-server 2.15).
    let v = env
        .api(
            "CONSUMER.CREATE.S.C",
            json!({"stream_name": "S", "config": {"durable_name": "OTHER"}}).to_string(),
        )
        .await;
    assert_err(&v, 10017);
    let v = env
        .api(
            "CONSUMER.DURABLE.CREATE.S.D",
            json!({"stream_name": "S", "config": {"name": "D"}}).to_string(),
        )
        .await;
    assert_err(&v, 10018);
    let v = env
        .api("CONSUMER.CREATE.S.C", create(json!({"ack_wait": -1})))
        .await;
    assert_err(&v, 10183);
    let v = env
        .api(
            "CONSUMER.CREATE.S.C",
            json!({"stream_name": "S", "config": {"name": "OTHER"}}).to_string(),
        )
        .await;
    assert_eq!(v["name"], "C", "{v}");
    assert_eq!(env.api("CONSUMER.NAMES.S", "").await["total"], 1);
    still_works(&env).await;
    env.stop().await;
}

#[tokio::test]
async fn unknown_subjects_streams_and_consumers_are_answered() {
    let env = JsEnv::new().await;
    let v = env.api("NOPE", "").await;
    assert!(v.get("error").is_some(), "{v}");
    let v = env.api("STREAM.FROB.X", "").await;
    assert!(v.get("error").is_some(), "{v}");
    assert_err(&env.api("CONSUMER.INFO.NOPE.C", "").await, 10059);
    assert_err(&env.api("CONSUMER.DELETE.NOPE.C", "").await, 10059);
    assert_err(&env.api("CONSUMER.LIST.NOPE", "").await, 10059);
    assert_err(&env.api("CONSUMER.PAUSE.NOPE.C", "").await, 10059);
    env.stream(json!({"name": "S"})).await;
    assert_err(&env.api("CONSUMER.PAUSE.S.C", "").await, 10014);
    // A pull for a stream that does not exist: "no responders", as from nats-server.
    let m = first_reply(&env.nc, "$JS.API.CONSUMER.MSG.NEXT.NOPE.C", "1").await;
    assert_eq!(m.status, Some(StatusCode::NO_RESPONDERS), "{m:?}");
    still_works(&env).await;
    env.stop().await;
}

#[tokio::test]
async fn malformed_pull_requests_get_400() {
    let env = JsEnv::new().await;
    env.stream(json!({"name": "S", "subjects": ["s.>"]})).await;
    env.api_ok(
        "CONSUMER.DURABLE.CREATE.S.D",
        json!({"stream_name": "S", "config": {"durable_name": "D", "ack_policy": "explicit"}}),
    )
    .await;
    for body in [r#"{"batch":"x"}"#, "{bad", r#"{"batch":-1}"#] {
        let m = first_reply(&env.nc, "$JS.API.CONSUMER.MSG.NEXT.S.D", body).await;
        assert_eq!(m.status.map(|s| s.as_u16()), Some(400), "{body}: {m:?}");
    }
    // Garbage on an ack subject is ignored without harm.
    env.publish("s.x", "m").await;
    env.nc
        .publish("$JS.ACK.S.D.x.y.z.w.v", "+ACK".into())
        .await
        .unwrap();
    env.nc
        .publish("$JS.ACK.S.NOPE.1.1.1.1.0", "+ACK".into())
        .await
        .unwrap();
    let v = env.consumer_info("S", "D").await;
    assert_eq!(v["num_pending"], 1, "{v}");
    still_works(&env).await;
    env.stop().await;
}
