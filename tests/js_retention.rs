//! Retention policies: workqueue (a message goes once it is acked; consumers must not overlap)
//! and interest (a message stays until every consumer interested in it acked it; nothing is
//! kept without consumers).

mod common;

use std::time::Duration;

use async_nats::jetstream::consumer::{pull, PullConsumer};
use common::js::{assert_err, batch, fetch, payloads, wait_until, JsEnv};
use common::TIMEOUT;
use serde_json::json;

async fn consumer(env: &JsEnv, stream: &str, name: &str, filter: &str) -> PullConsumer {
    let s = env.js.get_stream(stream).await.unwrap();
    s.create_consumer(pull::Config {
        durable_name: Some(name.into()),
        filter_subject: filter.into(),
        ack_wait: Duration::from_millis(500),
        ..Default::default()
    })
    .await
    .unwrap_or_else(|e| panic!("create {name}: {e}"))
}

fn messages(v: &serde_json::Value) -> u64 {
    v["state"]["messages"].as_u64().unwrap()
}

#[tokio::test]
async fn workqueue_removes_acked_messages() {
    let env = JsEnv::new().await;
    let v = env
        .stream(json!({"name": "WQ", "subjects": ["wq.>"], "retention": "workqueue"}))
        .await;
    assert_eq!(v["config"]["retention"], "workqueue");
    let a = consumer(&env, "WQ", "A", "wq.a").await;
    for i in 1..=4 {
        env.publish("wq.a", format!("a{i}")).await;
    }
    env.publish("wq.b", "b1").await;
    assert_eq!(messages(&env.info("WQ").await), 5);

    let got = fetch(&a, 2).await;
    assert_eq!(payloads(&got), ["a1", "a2"]);
    for m in &got {
        m.double_ack().await.unwrap();
    }
    wait_until(TIMEOUT, "acked work to leave the stream", || async {
        messages(&env.info("WQ").await) == 3
    })
    .await;
    assert_err(&env.msg_get("WQ", 1).await, 10037);
    assert_err(&env.msg_get("WQ", 2).await, 10037);

    // Unacked work is redelivered, not removed.
    let got = fetch(&a, 2).await;
    assert_eq!(payloads(&got), ["a3", "a4"]);
    got[1].double_ack().await.unwrap();
    let again = batch(&a, 1, Duration::from_secs(3)).await;
    assert_eq!(payloads(&again), ["a3"]);
    assert_eq!(common::js::delivered(&again[0]), 2);
    assert_eq!(messages(&env.info("WQ").await), 2); // a3 (unacked), b1
    again[0].double_ack().await.unwrap();
    assert_eq!(messages(&env.info("WQ").await), 1); // b1

    // Overlapping filters are refused; disjoint ones are fine.
    for (name, filter, code) in [("B", "wq.>", 10100), ("C", "wq.a", 10100), ("D", "", 10099)] {
        let mut cfg = json!({"durable_name": name, "ack_policy": "explicit"});
        if !filter.is_empty() {
            cfg["filter_subject"] = json!(filter);
        }
        let v = env
            .api(
                &format!("CONSUMER.DURABLE.CREATE.WQ.{name}"),
                json!({"stream_name": "WQ", "config": cfg}).to_string(),
            )
            .await;
        assert_err(&v, code);
    }
    let b = consumer(&env, "WQ", "BB", "wq.b").await;
    let got = fetch(&b, 5).await;
    assert_eq!(payloads(&got), ["b1"]);
    got[0].double_ack().await.unwrap();
    let info = env.info("WQ").await;
    assert_eq!(messages(&info), 0, "{info}");
    env.stop().await;
}

#[tokio::test]
async fn interest_keeps_messages_until_every_consumer_acked() {
    let env = JsEnv::new().await;
    env.stream(json!({"name": "IN", "subjects": ["in.>"], "retention": "interest"}))
        .await;
    // No consumers: nothing is kept, but the publish is acked.
    let v = env.publish("in.x", "nobody").await;
    assert_eq!(v["seq"], 1, "{v}");
    assert_eq!(messages(&env.info("IN").await), 0);

    let one = consumer(&env, "IN", "ONE", "").await;
    let two = consumer(&env, "IN", "TWO", "in.x").await;
    env.publish("in.x", "both").await; // 2
    env.publish("in.y", "only one").await; // 3
    assert_eq!(messages(&env.info("IN").await), 2);

    // ONE acks both; seq 2 is still wanted by TWO, seq 3 by nobody else.
    for m in fetch(&one, 5).await {
        m.double_ack().await.unwrap();
    }
    wait_until(TIMEOUT, "seq 3 to go", || async {
        env.msg_get("IN", 3).await.get("error").is_some()
    })
    .await;
    assert_eq!(messages(&env.info("IN").await), 1);
    assert!(env.msg_get("IN", 2).await.get("error").is_none());

    // TWO acks it too: gone.
    let got = fetch(&two, 5).await;
    assert_eq!(payloads(&got), ["both"]);
    got[0].double_ack().await.unwrap();
    wait_until(TIMEOUT, "seq 2 to go", || async {
        messages(&env.info("IN").await) == 0
    })
    .await;
    assert_eq!(env.info("IN").await["state"]["last_seq"], 3);
    env.stop().await;
}
