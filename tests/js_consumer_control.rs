//! Steering consumers with the requests of nats-server 2.11-2.14, run against causeway and
//! nats-server 2.15.1 side by side with async-nats: `CONSUMER.RESET` (to the ack floor or to a
//! sequence, with nats-server's refusals), priority groups (`overflow`, `pinned_client` with
//! `Nats-Pin-Id` and `CONSUMER.UNPIN`, `prioritized`) and their validation.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use async_nats::jetstream::{self, consumer::pull, consumer::PullConsumer, stream};
use futures::StreamExt;
use serde_json::{json, Value};

/// Runs `scenario` on causeway (an embedded JetStream server) and on nats-server 2.15.1 and
/// asserts both observed the same; returns causeway's observations.
async fn on_both<F, Fut>(what: &str, scenario: F) -> Vec<String>
where
    F: Fn(SocketAddr) -> Fut,
    Fut: std::future::Future<Output = Vec<String>>,
{
    let env = common::js::JsEnv::new().await;
    let theirs = common::reference::RefServer::jetstream();
    let ours = scenario(env.server.local_addr()).await;
    let reference = scenario(theirs.addr).await;
    for (i, (a, b)) in ours.iter().zip(&reference).enumerate() {
        assert_eq!(
            a, b,
            "{what}, observation {i}: causeway vs nats-server 2.15.1"
        );
    }
    assert_eq!(
        ours.len(),
        reference.len(),
        "{what}: {ours:?} vs {reference:?}"
    );
    env.stop().await;
    ours
}

async fn context(addr: SocketAddr) -> (async_nats::Client, jetstream::Context) {
    let nc = async_nats::ConnectOptions::new()
        .request_timeout(Some(Duration::from_secs(1)))
        .connect(addr.to_string())
        .await
        .expect("connect");
    (nc.clone(), jetstream::new(nc))
}

/// A raw `$JS.API` request: the reply's JSON, or the status of a reply without a body
/// ("no responders").
async fn api(nc: &async_nats::Client, subject: &str, body: &str) -> String {
    let subject = format!("$JS.API.{subject}");
    match nc.request(subject, body.to_string().into()).await {
        Ok(m) if m.payload.is_empty() => format!("status {:?}", m.status),
        Ok(m) => {
            let v: Value = serde_json::from_slice(&m.payload).unwrap_or(Value::Null);
            summary(&v)
        }
        Err(e) => format!("request error {:?}", e.kind()),
    }
}

/// What of a consumer reply the comparison looks at (not times or server names).
fn summary(v: &Value) -> String {
    if !v["error"].is_null() {
        return format!("error {}", v["error"]);
    }
    json!({
        "type": v["type"],
        "reset_seq": v["reset_seq"],
        "delivered": v["delivered"],
        "ack_floor": v["ack_floor"],
        "num_ack_pending": v["num_ack_pending"],
        "num_pending": v["num_pending"],
        "num_redelivered": v["num_redelivered"],
    })
    .to_string()
}

/// Fetches up to `n` messages and returns their stream sequences, acking those in `ack`.
async fn fetch(c: &PullConsumer, n: usize, ack: &[u64]) -> Vec<u64> {
    let mut got = Vec::new();
    let mut msgs = c
        .fetch()
        .max_messages(n)
        .expires(Duration::from_millis(500))
        .messages()
        .await
        .expect("fetch");
    while let Some(m) = msgs.next().await {
        let m = m.expect("message");
        let seq = m.info().expect("info").stream_sequence;
        if ack.contains(&seq) {
            m.double_ack().await.expect("ack");
        }
        got.push(seq);
    }
    got
}

async fn consumer(js: &jetstream::Context, stream: &str, cfg: Value) -> PullConsumer {
    let name = cfg["durable_name"].as_str().unwrap_or_default().to_string();
    let body = json!({"stream_name": stream, "config": cfg}).to_string();
    let subject = format!("$JS.API.CONSUMER.CREATE.{stream}.{name}");
    let reply = js
        .client()
        .request(subject, body.into())
        .await
        .expect("create consumer");
    let v: Value = serde_json::from_slice(&reply.payload).unwrap_or(Value::Null);
    assert!(v["error"].is_null(), "{v}");
    js.get_stream(stream)
        .await
        .expect("stream")
        .get_consumer(&name)
        .await
        .expect("consumer")
}

async fn reset_scenario(addr: SocketAddr) -> Vec<String> {
    let (nc, js) = context(addr).await;
    let mut seen = Vec::new();
    js.create_stream(stream::Config {
        name: "S".into(),
        subjects: vec!["s.>".into()],
        ..Default::default()
    })
    .await
    .expect("stream");
    for i in 1..=10 {
        js.publish(format!("s.{i}"), "x".into())
            .await
            .expect("publish")
            .await
            .expect("ack");
    }
    let all = consumer(
        &js,
        "S",
        json!({"durable_name": "A", "ack_policy": "explicit"}),
    )
    .await;
    seen.push(format!("{:?}", fetch(&all, 5, &[1, 2]).await));
    // To the ack floor: 3, 4 and 5 come again.
    seen.push(api(&nc, "CONSUMER.RESET.S.A", "").await);
    seen.push(format!("{:?}", fetch(&all, 3, &[3, 4, 5]).await));
    // Forward and back to a sequence.
    seen.push(api(&nc, "CONSUMER.RESET.S.A", r#"{"seq":8}"#).await);
    seen.push(format!("{:?}", fetch(&all, 5, &[]).await));
    seen.push(api(&nc, "CONSUMER.RESET.S.A", r#"{"seq":2}"#).await);
    seen.push(format!("{:?}", fetch(&all, 2, &[2]).await));
    // Past the end, a bad body, a consumer or stream that does not exist (nats-server leaves
    // those unanswered: the request times out).
    seen.push(api(&nc, "CONSUMER.RESET.S.A", r#"{"seq":100}"#).await);
    // (Only the code: Go's decoder words type errors its own way.)
    let bad = api(&nc, "CONSUMER.RESET.S.A", r#"{"seq":"x"}"#).await;
    seen.push(format!("{}", bad.contains("\"err_code\":10025")));
    seen.push(api(&nc, "CONSUMER.RESET.S.nope", "").await);
    seen.push(api(&nc, "CONSUMER.RESET.nope.A", "").await);
    // Start sequence and deliver-new consumers: never below where they were told to start.
    let by_seq = json!({"durable_name": "B", "ack_policy": "explicit",
        "deliver_policy": "by_start_sequence", "opt_start_seq": 5});
    consumer(&js, "S", by_seq).await;
    seen.push(api(&nc, "CONSUMER.RESET.S.B", r#"{"seq":3}"#).await);
    seen.push(api(&nc, "CONSUMER.RESET.S.B", r#"{"seq":6}"#).await);
    let new = json!({"durable_name": "N", "ack_policy": "explicit", "deliver_policy": "new"});
    consumer(&js, "S", new).await;
    seen.push(api(&nc, "CONSUMER.RESET.S.N", r#"{"seq":2}"#).await);
    seen.push(api(&nc, "CONSUMER.RESET.S.N", "").await);
    // async-nats' own call.
    let mut c = js
        .get_stream("S")
        .await
        .expect("stream")
        .get_consumer::<pull::Config>("A")
        .await
        .expect("consumer");
    let r = c.reset(Some(9)).await.expect("reset");
    seen.push(format!("{} {}", r.reset_seq, r.info.num_pending));
    seen
}

#[tokio::test]
async fn consumer_reset_matches_nats_server() {
    let seen = on_both("consumer reset", reset_scenario).await;
    // The scenario really moved the consumer: the second fetch started at the ack floor.
    assert_eq!(seen[0], "[1, 2, 3, 4, 5]");
    assert_eq!(seen[2], "[3, 4, 5]");
    assert_eq!(seen[4], "[8, 9, 10]");
    assert_eq!(seen[9], "request error TimedOut");
    assert!(seen[11].contains("10204"), "{}", seen[11]);
}

async fn reset_workqueue_scenario(addr: SocketAddr) -> Vec<String> {
    let (nc, js) = context(addr).await;
    js.create_stream(stream::Config {
        name: "W".into(),
        subjects: vec!["w.>".into()],
        retention: stream::RetentionPolicy::WorkQueue,
        ..Default::default()
    })
    .await
    .expect("stream");
    for i in 1..=6 {
        js.publish(format!("w.{i}"), "x".into())
            .await
            .expect("publish")
            .await
            .expect("ack");
    }
    let c = consumer(
        &js,
        "W",
        json!({"durable_name": "C", "ack_policy": "explicit"}),
    )
    .await;
    let mut seen = vec![format!("{:?}", fetch(&c, 2, &[1]).await)];
    // Forward past messages nobody acked: they stay in the stream.
    seen.push(api(&nc, "CONSUMER.RESET.W.C", r#"{"seq":5}"#).await);
    let state = js
        .get_stream("W")
        .await
        .expect("stream")
        .info()
        .await
        .expect("info")
        .state
        .clone();
    seen.push(format!("{} {}", state.messages, state.first_sequence));
    seen.push(format!("{:?}", fetch(&c, 5, &[5, 6]).await));
    seen
}

#[tokio::test]
async fn consumer_reset_on_a_work_queue_matches_nats_server() {
    on_both("work-queue reset", reset_workqueue_scenario).await;
}

#[tokio::test]
async fn a_reset_survives_a_restart() {
    let env = common::js::JsEnv::new().await;
    env.stream(json!({"name": "S", "subjects": ["s.>"]})).await;
    for _ in 0..6 {
        env.publish("s.x", "x").await;
    }
    let cfg = json!({"durable_name": "A", "ack_policy": "explicit"});
    let c = consumer(&env.js, "S", cfg).await;
    assert_eq!(fetch(&c, 3, &[1, 2, 3]).await, vec![1, 2, 3]);
    let v = env.api("CONSUMER.RESET.S.A", r#"{"seq":5}"#).await;
    assert_eq!(v["reset_seq"], 5, "{v}");
    let env = env.restart().await;
    let v = env.api("CONSUMER.INFO.S.A", "").await;
    assert_eq!(
        (
            &v["delivered"]["stream_seq"],
            &v["ack_floor"]["stream_seq"],
            &v["num_pending"]
        ),
        (&json!(4), &json!(4), &json!(2)),
        "{v}"
    );
    let c = env
        .js
        .get_stream("S")
        .await
        .unwrap()
        .get_consumer("A")
        .await
        .unwrap();
    assert_eq!(fetch(&c, 5, &[]).await, vec![5, 6]);
    env.stop().await;
}
