//! Stream limits and policies: `max_msgs` with discard old/new, `max_bytes`, `max_age`,
//! `max_msgs_per_subject` (KV-style history, `discard_new_per_subject`), `max_msg_size`,
//! `sealed`, `deny_delete`, `deny_purge`, `allow_rollup_hdrs` (`Nats-Rollup: sub` and `all`)
//! and `no_ack`.

mod common;

use std::time::Duration;

use common::js::{assert_ack, assert_err, msg_data, wait_until, JsEnv};
use common::{assert_no_msg, TIMEOUT};
use serde_json::json;

fn messages(v: &serde_json::Value) -> u64 {
    v["state"]["messages"].as_u64().unwrap()
}

#[tokio::test]
async fn max_msgs_discard_old_drops_the_oldest() {
    let env = JsEnv::new().await;
    env.stream(json!({"name": "O", "subjects": ["o.>"], "max_msgs": 3}))
        .await;
    for i in 1..=5 {
        assert_ack(&env.publish("o.x", format!("m{i}")).await, "O", i);
    }
    let info = env.info("O").await;
    assert_eq!(messages(&info), 3, "{info}");
    assert_eq!(info["state"]["first_seq"], 3);
    assert_eq!(info["state"]["last_seq"], 5);
    assert_err(&env.msg_get("O", 2).await, 10037);
    assert_eq!(msg_data(&env.msg_get("O", 3).await), b"m3");
    env.stop().await;
}

#[tokio::test]
async fn max_msgs_discard_new_refuses_publishes() {
    let env = JsEnv::new().await;
    env.stream(json!({"name": "N", "subjects": ["n.>"], "max_msgs": 2, "discard": "new"}))
        .await;
    assert_ack(&env.publish("n.x", "1").await, "N", 1);
    assert_ack(&env.publish("n.x", "2").await, "N", 2);
    let v = env.publish("n.x", "3").await;
    assert_err(&v, 10077);
    assert_eq!(v["error"]["description"], "maximum messages exceeded");
    assert_eq!(v["error"]["code"], 503);
    let info = env.info("N").await;
    assert_eq!(messages(&info), 2);
    assert_eq!(info["state"]["last_seq"], 2);
    assert_eq!(msg_data(&env.msg_get("N", 1).await), b"1");
    // async-nats reports the refusal as an error on the ack future.
    let ack = env.js.publish("n.x", "4".into()).await.unwrap().await;
    assert!(ack.is_err(), "publish beyond max_msgs was acked: {ack:?}");
    env.stop().await;
}

#[tokio::test]
async fn max_bytes_with_discard_old_and_new() {
    let env = JsEnv::new().await;
    env.stream(json!({"name": "BO", "subjects": ["bo"], "max_bytes": 1000}))
        .await;
    for i in 1..=20u64 {
        assert_ack(&env.publish("bo", vec![b'o'; 100]).await, "BO", i);
    }
    let info = env.info("BO").await;
    let bytes = info["state"]["bytes"].as_u64().unwrap();
    assert!(bytes <= 1000, "bytes over max_bytes: {info}");
    assert!(messages(&info) >= 1 && messages(&info) < 10, "{info}");
    assert_eq!(info["state"]["last_seq"], 20);
    assert_err(&env.msg_get("BO", 1).await, 10037);

    env.stream(json!({"name": "BN", "subjects": ["bn"], "max_bytes": 1000, "discard": "new"}))
        .await;
    let mut refused = None;
    for i in 1..=20u64 {
        let v = env.publish("bn", vec![b'n'; 100]).await;
        if v.get("error").is_some() {
            refused = Some((i, v));
            break;
        }
    }
    // With discard new nothing already stored may be dropped to make room.
    let v = env.msg_get("BN", 1).await;
    assert_eq!(
        msg_data(&v),
        vec![b'n'; 100],
        "discard new dropped the oldest message: {v}; stream {}",
        env.info("BN").await
    );
    let (at, v) = refused.expect("max_bytes with discard new never refused a publish");
    assert!(at > 1, "the first message was refused");
    assert_err(&v, 10077);
    assert_eq!(v["error"]["description"], "maximum bytes exceeded");
    let info = env.info("BN").await;
    assert_eq!(messages(&info), at - 1, "{info}");
    assert!(info["state"]["bytes"].as_u64().unwrap() <= 1000, "{info}");
    env.stop().await;
}

#[tokio::test]
async fn max_age_expires_messages() {
    let env = JsEnv::new().await;
    let v = env
        .stream(json!({"name": "AGE", "subjects": ["age"], "max_age": 2_000_000_000u64}))
        .await;
    assert_eq!(v["config"]["max_age"], 2_000_000_000u64);
    assert_eq!(v["config"]["duplicate_window"], 2_000_000_000u64);
    for i in 1..=3 {
        assert_ack(&env.publish("age", format!("{i}")).await, "AGE", i);
    }
    assert_eq!(messages(&env.info("AGE").await), 3);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        messages(&env.info("AGE").await),
        3,
        "expired before max_age"
    );
    wait_until(Duration::from_secs(8), "messages to age out", || async {
        messages(&env.info("AGE").await) == 0
    })
    .await;
    assert_err(&env.msg_get("AGE", 1).await, 10037);
    // New messages are stored again, with new sequences.
    assert_ack(&env.publish("age", "later").await, "AGE", 4);
    env.stop().await;
}

#[tokio::test]
async fn max_msgs_per_subject_keeps_history() {
    let env = JsEnv::new().await;
    env.stream(json!({"name": "KV", "subjects": ["kv.>"], "max_msgs_per_subject": 2}))
        .await;
    for (i, (k, v)) in [("a", "1"), ("a", "2"), ("b", "1"), ("a", "3"), ("a", "4")]
        .iter()
        .enumerate()
    {
        assert_ack(
            &env.publish(&format!("kv.{k}"), *v).await,
            "KV",
            i as u64 + 1,
        );
    }
    let info = env.info("KV").await;
    assert_eq!(messages(&info), 3, "{info}"); // a=3, a=4, b=1
    assert_err(&env.msg_get("KV", 1).await, 10037);
    assert_err(&env.msg_get("KV", 2).await, 10037);
    let last = env
        .api("STREAM.MSG.GET.KV", r#"{"last_by_subj":"kv.a"}"#)
        .await;
    assert_eq!(msg_data(&last), b"4");
    assert_eq!(msg_data(&env.msg_get("KV", 3).await), b"1");

    // discard new per subject: the subject is full, others are not.
    env.stream(
        json!({"name": "KN", "subjects": ["kn.>"], "max_msgs_per_subject": 1,
        "discard": "new", "discard_new_per_subject": true}),
    )
    .await;
    assert_ack(&env.publish("kn.a", "1").await, "KN", 1);
    let v = env.publish("kn.a", "2").await;
    assert_err(&v, 10077);
    assert_eq!(
        v["error"]["description"],
        "maximum messages per subject exceeded"
    );
    assert_ack(&env.publish("kn.b", "1").await, "KN", 2);
    env.stop().await;
}

#[tokio::test]
async fn max_msg_size_refuses_large_messages() {
    let env = JsEnv::new().await;
    env.stream(json!({"name": "SZ", "subjects": ["sz"], "max_msg_size": 64}))
        .await;
    assert_ack(&env.publish("sz", vec![b'x'; 64]).await, "SZ", 1);
    let v = env.publish("sz", vec![b'x'; 65]).await;
    assert_err(&v, 10054);
    assert_eq!(messages(&env.info("SZ").await), 1);
    env.stop().await;
}

#[tokio::test]
async fn sealed_stream_refuses_changes() {
    let env = JsEnv::new().await;
    let cfg = json!({"name": "SE", "subjects": ["se"]});
    env.stream(cfg.clone()).await;
    assert_ack(&env.publish("se", "before").await, "SE", 1);
    let mut sealed = cfg.clone();
    sealed["sealed"] = json!(true);
    let v = env.api_ok("STREAM.UPDATE.SE", sealed).await;
    assert_eq!(v["config"]["sealed"], true);

    let v = env.publish("se", "after").await;
    assert_err(&v, 10109);
    assert!(env.api("STREAM.PURGE.SE", "").await.get("error").is_some());
    assert!(env
        .api("STREAM.MSG.DELETE.SE", r#"{"seq":1}"#)
        .await
        .get("error")
        .is_some());
    // A sealed stream cannot be unsealed.
    let v = env.api("STREAM.UPDATE.SE", cfg.to_string()).await;
    assert!(v.get("error").is_some(), "unsealed: {v}");
    let info = env.info("SE").await;
    assert_eq!(info["config"]["sealed"], true);
    assert_eq!(messages(&info), 1);
    assert_eq!(msg_data(&env.msg_get("SE", 1).await), b"before");
    env.stop().await;
}

#[tokio::test]
async fn deny_delete_and_deny_purge() {
    let env = JsEnv::new().await;
    env.stream(json!({"name": "DD", "subjects": ["dd"], "deny_delete": true, "deny_purge": true}))
        .await;
    for i in 1..=3 {
        assert_ack(&env.publish("dd", format!("{i}")).await, "DD", i);
    }
    let v = env.api("STREAM.MSG.DELETE.DD", r#"{"seq":2}"#).await;
    assert_err(&v, 10057);
    let v = env.api("STREAM.PURGE.DD", "").await;
    assert_err(&v, 10110);
    assert_eq!(messages(&env.info("DD").await), 3);
    assert_eq!(msg_data(&env.msg_get("DD", 2).await), b"2");
    env.stop().await;
}

#[tokio::test]
async fn rollup_subject_and_all() {
    let env = JsEnv::new().await;
    env.stream(json!({"name": "RU", "subjects": ["ru.>"], "allow_rollup_hdrs": true}))
        .await;
    for (i, s) in ["ru.a", "ru.b", "ru.a", "ru.b", "ru.a"].iter().enumerate() {
        assert_ack(&env.publish(s, format!("{s}{i}")).await, "RU", i as u64 + 1);
    }
    // Rollup of one subject: only the new message remains on ru.a.
    let v = env
        .publish_h("ru.a", &[("Nats-Rollup", "sub")], "a-rollup")
        .await;
    assert_ack(&v, "RU", 6);
    assert_eq!(messages(&env.info("RU").await), 3, "ru.b x2 + rollup");
    for seq in [1, 3, 5] {
        assert_err(&env.msg_get("RU", seq).await, 10037);
    }
    assert_eq!(msg_data(&env.msg_get("RU", 2).await), b"ru.b1");

    // Rollup of everything: only the new message remains.
    let v = env
        .publish_h("ru.c", &[("Nats-Rollup", "all")], "all-rollup")
        .await;
    assert_ack(&v, "RU", 7);
    let info = env.info("RU").await;
    assert_eq!(messages(&info), 1, "{info}");
    assert_eq!(info["state"]["first_seq"], 7);
    assert_eq!(msg_data(&env.msg_get("RU", 7).await), b"all-rollup");

    // Without allow_rollup_hdrs the header is refused (nats-server: 10111).
    env.stream(json!({"name": "NR", "subjects": ["nr"]})).await;
    let v = env.publish_h("nr", &[("Nats-Rollup", "sub")], "x").await;
    assert_err(&v, 10111);
    assert_eq!(messages(&env.info("NR").await), 0);
    env.stop().await;
}

#[tokio::test]
async fn no_ack_stream_stores_without_answering() {
    let env = JsEnv::new().await;
    let v = env
        .stream(json!({"name": "NA", "subjects": ["na"], "no_ack": true}))
        .await;
    assert_eq!(v["config"]["no_ack"], true);
    let inbox = env.nc.new_inbox();
    let mut sub = env.nc.subscribe(inbox.clone()).await.unwrap();
    env.nc
        .publish_with_reply("na", inbox, "quiet".into())
        .await
        .unwrap();
    env.nc.flush().await.unwrap();
    wait_until(TIMEOUT, "the no_ack message to be stored", || async {
        messages(&env.info("NA").await) == 1
    })
    .await;
    assert_no_msg(&mut sub, Duration::from_millis(300)).await;
    assert_eq!(msg_data(&env.msg_get("NA", 1).await), b"quiet");
    env.stop().await;
}
