//! What a consumer delivers: deliver policies (all, last, new, by_start_sequence,
//! by_start_time, last_per_subject), `filter_subject` and `filter_subjects` (with the matching
//! `num_pending`), `headers_only` (`Nats-Msg-Size`, empty payload) and `replay_policy:
//! original` (paced like the original publishes).

mod common;

use std::time::{Duration, Instant};

use async_nats::jetstream::consumer::{pull, AckPolicy, DeliverPolicy, PullConsumer, ReplayPolicy};
use common::js::{batch, fetch, payloads, JsEnv};
use serde_json::json;

async fn consumer(env: &JsEnv, name: &str, cfg: pull::Config) -> PullConsumer {
    let s = env.js.get_stream("S").await.unwrap();
    s.create_consumer(pull::Config {
        durable_name: Some(name.into()),
        ack_policy: AckPolicy::None,
        ..cfg
    })
    .await
    .unwrap_or_else(|e| panic!("create consumer {name}: {e}"))
}

#[tokio::test]
async fn deliver_policies() {
    let env = JsEnv::new().await;
    env.stream(json!({"name": "S", "subjects": ["s.>"]})).await;
    // seq 1..4: s.a=1 s.b=2 | s.a=3 s.b=4, with a pause in the middle for by_start_time.
    env.publish("s.a", "1").await;
    env.publish("s.b", "2").await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let middle = time::OffsetDateTime::now_utc();
    tokio::time::sleep(Duration::from_millis(50)).await;
    env.publish("s.a", "3").await;
    env.publish("s.b", "4").await;

    let policies = [
        ("ALL", DeliverPolicy::All),
        ("LAST", DeliverPolicy::Last),
        ("NEW", DeliverPolicy::New),
        ("SEQ", DeliverPolicy::ByStartSequence { start_sequence: 3 }),
        ("TIME", DeliverPolicy::ByStartTime { start_time: middle }),
        ("LPS", DeliverPolicy::LastPerSubject),
    ];
    let mut consumers = Vec::new();
    for (name, policy) in policies {
        let c = consumer(
            &env,
            name,
            pull::Config {
                deliver_policy: policy,
                // Last per subject needs a filter (nats-server refuses it without one).
                filter_subject: if name == "LPS" {
                    "s.>".into()
                } else {
                    String::new()
                },
                ..Default::default()
            },
        )
        .await;
        consumers.push((name, c));
    }
    // Published after the consumers exist: every policy sees it.
    env.publish("s.c", "5").await;

    let expected: [(&str, &[&str]); 6] = [
        ("ALL", &["1", "2", "3", "4", "5"]),
        ("LAST", &["4", "5"]),
        ("NEW", &["5"]),
        ("SEQ", &["3", "4", "5"]),
        ("TIME", &["3", "4", "5"]),
        ("LPS", &["3", "4", "5"]),
    ];
    for ((name, c), (ename, want)) in consumers.iter().zip(expected) {
        assert_eq!(*name, ename);
        let got = fetch(c, 10).await;
        assert_eq!(payloads(&got), want, "deliver policy {name}");
    }
    // The policy is echoed in consumer info.
    let v = env.consumer_info("S", "SEQ").await;
    assert_eq!(v["config"]["deliver_policy"], "by_start_sequence");
    assert_eq!(v["config"]["opt_start_seq"], 3);
    let v = env.consumer_info("S", "LPS").await;
    assert_eq!(v["config"]["deliver_policy"], "last_per_subject");
    env.stop().await;
}

#[tokio::test]
async fn filter_subject_and_filter_subjects() {
    let env = JsEnv::new().await;
    env.stream(json!({"name": "S", "subjects": ["s.>"]})).await;
    for (i, s) in ["s.a", "s.b", "s.c", "s.a", "s.b", "s.c", "s.a.deep"]
        .iter()
        .enumerate()
    {
        env.publish(s, format!("{s}:{}", i + 1)).await;
    }
    let one = consumer(
        &env,
        "ONE",
        pull::Config {
            filter_subject: "s.a".into(),
            ..Default::default()
        },
    )
    .await;
    let v = env.consumer_info("S", "ONE").await;
    assert_eq!(v["num_pending"], 2, "{v}");
    assert_eq!(payloads(&fetch(&one, 10).await), ["s.a:1", "s.a:4"]);

    let many = consumer(
        &env,
        "MANY",
        pull::Config {
            filter_subjects: vec!["s.b".into(), "s.a.>".into()],
            ..Default::default()
        },
    )
    .await;
    let v = env.consumer_info("S", "MANY").await;
    assert_eq!(v["num_pending"], 3, "{v}");
    assert_eq!(
        v["config"]["filter_subjects"],
        json!(["s.b", "s.a.>"]),
        "{v}"
    );
    assert_eq!(
        payloads(&fetch(&many, 10).await),
        ["s.b:2", "s.b:5", "s.a.deep:7"]
    );
    // New messages are filtered the same way.
    env.publish("s.c", "s.c:8").await;
    env.publish("s.b", "s.b:9").await;
    assert_eq!(payloads(&fetch(&many, 10).await), ["s.b:9"]);
    assert!(fetch(&one, 10).await.is_empty());

    // A filter outside the stream's subjects is accepted, as on nats-server since 2.10 (it
    // matches nothing).
    let v = env
        .api(
            "CONSUMER.CREATE.S.OUT.other",
            json!({"stream_name": "S", "config": {"durable_name": "OUT",
                "filter_subject": "other"}})
            .to_string(),
        )
        .await;
    assert!(v.get("error").is_none(), "{v}");
    assert_eq!(v["num_pending"], 0, "{v}");
    env.stop().await;
}

#[tokio::test]
async fn headers_only_sends_size_and_no_payload() {
    let env = JsEnv::new().await;
    env.stream(json!({"name": "S", "subjects": ["s.>"]})).await;
    env.publish_h("s.x", &[("X-Keep", "me")], vec![b'p'; 1234])
        .await;
    let c = consumer(
        &env,
        "HO",
        pull::Config {
            headers_only: true,
            ..Default::default()
        },
    )
    .await;
    let got = fetch(&c, 1).await;
    assert_eq!(got.len(), 1);
    let m = &got[0];
    assert!(
        m.payload.is_empty(),
        "payload delivered: {} bytes",
        m.payload.len()
    );
    let h = m.headers.as_ref().expect("headers");
    assert_eq!(h.get("Nats-Msg-Size").map(|v| v.as_str()), Some("1234"));
    assert_eq!(h.get("X-Keep").map(|v| v.as_str()), Some("me"));
    env.stop().await;
}

#[tokio::test]
async fn replay_original_paces_messages() {
    let env = JsEnv::new().await;
    env.stream(json!({"name": "S", "subjects": ["s.>"]})).await;
    // Three messages 400 ms apart.
    for i in 0..3 {
        if i > 0 {
            tokio::time::sleep(Duration::from_millis(400)).await;
        }
        env.publish("s.x", format!("{i}")).await;
    }
    let instant = consumer(&env, "FAST", pull::Config::default()).await;
    let started = Instant::now();
    assert_eq!(fetch(&instant, 3).await.len(), 3);
    assert!(started.elapsed() < Duration::from_millis(500));

    let c = consumer(
        &env,
        "ORIG",
        pull::Config {
            replay_policy: ReplayPolicy::Original,
            ..Default::default()
        },
    )
    .await;
    let started = Instant::now();
    let got = batch(&c, 3, Duration::from_secs(5)).await;
    let took = started.elapsed();
    assert_eq!(payloads(&got), ["0", "1", "2"]);
    // Roughly the original 800 ms spread (generous bounds for a loaded machine).
    assert!(
        took >= Duration::from_millis(600),
        "replayed too fast: {took:?}"
    );
    assert!(
        took < Duration::from_secs(4),
        "replayed too slowly: {took:?}"
    );
    env.stop().await;
}
