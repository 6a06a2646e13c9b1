//! Publishing into streams: the pub ack JSON, `Nats-Msg-Id` de-duplication (within the window,
//! after it, and across a restart), the `Nats-Expected-*` headers, per-message TTL
//! (`Nats-TTL`: validation, expiry, delete markers, restart), publishes no stream captures,
//! and the same through async-nats's `send_publish`.

mod common;

use std::time::Duration;

use async_nats::jetstream::context::PublishErrorKind;
use async_nats::jetstream::message::PublishMessage;
use common::js::{assert_ack, assert_err, msg_data, try_request, JsEnv};
use serde_json::json;

#[tokio::test]
async fn pub_ack_json_shape() {
    let env = JsEnv::new().await;
    env.stream(json!({"name": "PA", "subjects": ["pa.>"]}))
        .await;
    let v = env.publish("pa.one", "hello").await;
    let obj = v.as_object().expect("pub ack is a JSON object");
    assert_eq!(obj["stream"], "PA");
    assert_eq!(obj["seq"], 1);
    assert!(obj.get("duplicate").is_none_or(|d| d == false), "{v}");
    assert!(obj.get("error").is_none(), "{v}");
    assert_ack(&env.publish("pa.two", "").await, "PA", 2);
    // Nothing captures this subject: no responders.
    let r = try_request(&env.nc, "nobody.here", &[], "x").await;
    assert!(
        matches!(&r, Err(e) if e.kind() == async_nats::RequestErrorKind::NoResponders),
        "{r:?}"
    );
    let r = env
        .js
        .publish("nobody.here", "x".into())
        .await
        .unwrap()
        .await;
    assert_eq!(r.unwrap_err().kind(), PublishErrorKind::StreamNotFound);
    env.stop().await;
}

#[tokio::test]
async fn msg_id_dedup_within_and_after_the_window() {
    let env = JsEnv::new().await;
    env.stream(json!({"name": "DW", "subjects": ["dw"], "duplicate_window": 1_000_000_000u64}))
        .await;
    let id = [("Nats-Msg-Id", "order-1")];
    assert_ack(&env.publish_h("dw", &id, "first").await, "DW", 1);
    let v = env.publish_h("dw", &id, "second").await;
    assert_eq!(v["duplicate"], true, "{v}");
    assert_eq!(v["seq"], 1, "{v}");
    assert_eq!(v["stream"], "DW", "{v}");
    // Other ids are not duplicates.
    assert_ack(
        &env.publish_h("dw", &[("Nats-Msg-Id", "order-2")], "x")
            .await,
        "DW",
        2,
    );
    assert_eq!(env.info("DW").await["state"]["messages"], 2);
    assert_eq!(msg_data(&env.msg_get("DW", 1).await), b"first");

    // After the window the id is forgotten.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_ack(&env.publish_h("dw", &id, "third").await, "DW", 3);
    env.stop().await;
}

#[tokio::test]
async fn msg_id_dedup_survives_restart() {
    let env = JsEnv::new().await;
    env.stream(json!({"name": "DR", "subjects": ["dr"]})).await;
    for i in 1..=3u64 {
        let id = format!("id-{i}");
        assert_ack(
            &env.publish_h("dr", &[("Nats-Msg-Id", &id)], format!("m{i}"))
                .await,
            "DR",
            i,
        );
    }
    let env = env.restart().await;
    for i in 1..=3u64 {
        let id = format!("id-{i}");
        let v = env.publish_h("dr", &[("Nats-Msg-Id", &id)], "again").await;
        assert_eq!(v["duplicate"], true, "{id} after restart: {v}");
        assert_eq!(v["seq"], i, "{v}");
    }
    assert_ack(
        &env.publish_h("dr", &[("Nats-Msg-Id", "id-4")], "m4").await,
        "DR",
        4,
    );
    assert_eq!(env.info("DR").await["state"]["messages"], 4);
    env.stop().await;
}

#[tokio::test]
async fn expected_stream_and_last_sequence() {
    let env = JsEnv::new().await;
    env.stream(json!({"name": "EX", "subjects": ["ex.>"]}))
        .await;
    assert_ack(
        &env.publish_h("ex.a", &[("Nats-Expected-Stream", "EX")], "1")
            .await,
        "EX",
        1,
    );
    let v = env
        .publish_h("ex.a", &[("Nats-Expected-Stream", "OTHER")], "x")
        .await;
    assert_err(&v, 10060);

    assert_ack(
        &env.publish_h("ex.b", &[("Nats-Expected-Last-Sequence", "1")], "2")
            .await,
        "EX",
        2,
    );
    let v = env
        .publish_h("ex.b", &[("Nats-Expected-Last-Sequence", "1")], "x")
        .await;
    assert_err(&v, 10071);
    assert_eq!(v["error"]["description"], "wrong last sequence: 2");
    assert_eq!(env.info("EX").await["state"]["messages"], 2);
    env.stop().await;
}

#[tokio::test]
async fn expected_last_subject_sequence_and_msg_id() {
    let env = JsEnv::new().await;
    env.stream(json!({"name": "ES", "subjects": ["es.>"]}))
        .await;
    let h = |s: &'static str| [("Nats-Expected-Last-Subject-Sequence", s)];
    // 0: nothing on this subject yet.
    assert_ack(&env.publish_h("es.k", &h("0"), "v1").await, "ES", 1);
    let v = env.publish_h("es.k", &h("0"), "v1 again").await;
    assert_err(&v, 10071);
    assert_eq!(v["error"]["description"], "wrong last sequence: 1");
    // Another subject is independent of es.k.
    assert_ack(&env.publish_h("es.other", &h("0"), "o").await, "ES", 2);
    assert_ack(&env.publish_h("es.k", &h("1"), "v2").await, "ES", 3);
    let v = env.publish_h("es.k", &h("1"), "stale").await;
    assert_err(&v, 10071);
    assert_eq!(v["error"]["description"], "wrong last sequence: 3");

    // Expected last msg id.
    assert_ack(
        &env.publish_h("es.m", &[("Nats-Msg-Id", "a")], "a").await,
        "ES",
        4,
    );
    assert_ack(
        &env.publish_h(
            "es.m",
            &[("Nats-Msg-Id", "b"), ("Nats-Expected-Last-Msg-Id", "a")],
            "b",
        )
        .await,
        "ES",
        5,
    );
    let v = env
        .publish_h("es.m", &[("Nats-Expected-Last-Msg-Id", "a")], "c")
        .await;
    assert_err(&v, 10070);
    assert_eq!(env.info("ES").await["state"]["messages"], 5);

    // The same checks through async-nats's publish builder.
    let ack = env
        .js
        .send_publish(
            "es.n",
            PublishMessage::build().expected_last_subject_sequence(0),
        )
        .await
        .unwrap()
        .await
        .expect("expected_last_subject_sequence(0) on a fresh subject");
    assert_eq!(ack.sequence, 6);
    let err = env
        .js
        .send_publish("es.n", PublishMessage::build().expected_last_sequence(1))
        .await
        .unwrap()
        .await
        .unwrap_err();
    assert_eq!(err.kind(), PublishErrorKind::WrongLastSequence);
    let err = env
        .js
        .send_publish(
            "es.n",
            PublishMessage::build().expected_last_message_id("nope"),
        )
        .await
        .unwrap()
        .await
        .unwrap_err();
    assert_eq!(err.kind(), PublishErrorKind::WrongLastMessageId);
    let ack = env
        .js
        .send_publish(
            "es.n",
            PublishMessage::build()
                .message_id("b2")
                .expected_stream("ES")
                .payload("ok".into()),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    assert_eq!(ack.sequence, 7);
    let dup = env
        .js
        .send_publish("es.n", PublishMessage::build().message_id("b2"))
        .await
        .unwrap()
        .await
        .unwrap();
    assert!(dup.duplicate);
    assert_eq!(dup.sequence, 7);
    env.stop().await;
}

#[tokio::test]
async fn per_message_ttl_validation_and_expiry() {
    let env = JsEnv::new().await;
    // TTLs not allowed on the stream: 10166.
    env.stream(json!({"name": "T1", "subjects": ["t1"]})).await;
    let v = env.publish_h("t1", &[("Nats-TTL", "5s")], "x").await;
    assert_err(&v, 10166);
    assert_eq!(env.info("T1").await["state"]["messages"], 0);

    let v = env
        .stream(
            json!({"name": "T2", "subjects": ["t2.>"], "allow_msg_ttl": true,
            "subject_delete_marker_ttl": 60_000_000_000u64}),
        )
        .await;
    assert_eq!(v["config"]["allow_msg_ttl"], true);
    // Invalid values (below one second, garbage): 10165.
    for bad in ["500ms", "abc", "-3s"] {
        let v = env.publish_h("t2.x", &[("Nats-TTL", bad)], "x").await;
        assert_err(&v, 10165);
    }
    assert_eq!(env.info("T2").await["state"]["messages"], 0);

    assert_ack(&env.publish("t2.keep", "no ttl").await, "T2", 1);
    assert_ack(
        &env.publish_h("t2.never", &[("Nats-TTL", "never")], "forever")
            .await,
        "T2",
        2,
    );
    assert_ack(
        &env.publish_h("t2.gone", &[("Nats-TTL", "1s")], "short")
            .await,
        "T2",
        3,
    );
    assert_ack(
        &env.publish_h("t2.gone2", &[("Nats-TTL", "1")], "short")
            .await,
        "T2",
        4,
    );
    assert_eq!(msg_data(&env.msg_get("T2", 3).await), b"short");
    // The TTL'd messages go; the subject that became empty gets a MaxAge delete marker.
    common::js::wait_until(Duration::from_secs(6), "TTL expiry", || async {
        env.msg_get("T2", 3).await.get("error").is_some()
            && env.msg_get("T2", 4).await.get("error").is_some()
    })
    .await;
    let v = env
        .api("STREAM.MSG.GET.T2", r#"{"last_by_subj":"t2.gone"}"#)
        .await;
    assert!(v.get("error").is_none(), "no delete marker: {v}");
    assert!(msg_data(&v).is_empty(), "{v}");
    let hdrs = v["message"]["hdrs"].as_str().expect("marker headers");
    let hdrs = base64_decode(hdrs);
    assert!(hdrs.contains("Nats-Marker-Reason: MaxAge"), "{hdrs:?}");
    assert_eq!(msg_data(&env.msg_get("T2", 1).await), b"no ttl");
    assert_eq!(msg_data(&env.msg_get("T2", 2).await), b"forever");

    // max_age empties a subject the same way: a marker replaces the aged message.
    env.stream(
        json!({"name": "T3", "subjects": ["t3.>"], "max_age": 3_000_000_000u64,
        "subject_delete_marker_ttl": 60_000_000_000u64}),
    )
    .await;
    assert_ack(&env.publish("t3.old", "aged").await, "T3", 1);
    common::js::wait_until(Duration::from_secs(10), "max_age expiry", || async {
        env.msg_get("T3", 1).await.get("error").is_some()
    })
    .await;
    let v = env
        .api("STREAM.MSG.GET.T3", r#"{"last_by_subj":"t3.old"}"#)
        .await;
    let hdrs = base64_decode(v["message"]["hdrs"].as_str().expect("marker headers"));
    assert!(hdrs.contains("Nats-Marker-Reason: MaxAge"), "{hdrs:?}");
    env.stop().await;
}

#[tokio::test]
async fn per_message_ttl_survives_restart() {
    let env = JsEnv::new().await;
    env.stream(json!({"name": "TR", "subjects": ["tr"], "allow_msg_ttl": true}))
        .await;
    assert_ack(
        &env.publish_h("tr", &[("Nats-TTL", "2s")], "soon gone")
            .await,
        "TR",
        1,
    );
    assert_ack(&env.publish("tr", "stays").await, "TR", 2);
    let env = env.restart().await;
    assert_eq!(msg_data(&env.msg_get("TR", 1).await), b"soon gone");
    common::js::wait_until(
        Duration::from_secs(8),
        "TTL expiry after restart",
        || async { env.msg_get("TR", 1).await.get("error").is_some() },
    )
    .await;
    assert_eq!(msg_data(&env.msg_get("TR", 2).await), b"stays");
    env.stop().await;
}

fn base64_decode(s: &str) -> String {
    use base64::Engine;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(s)
        .expect("base64");
    String::from_utf8(raw).expect("utf-8 headers")
}
