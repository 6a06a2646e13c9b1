//! Acknowledgements: ack policies none/all/explicit, ack_wait expiry and redelivery (with
//! `num_redelivered`, `num_pending`, `num_ack_pending` in consumer info), `-NAK` with and
//! without delay, `+WPI`, `+TERM`, AckSync, `max_deliver` with its advisory, `backoff` and
//! `max_ack_pending`.

mod common;

use std::time::{Duration, Instant};

use async_nats::jetstream::consumer::{pull, AckPolicy, PullConsumer};
use async_nats::jetstream::AckKind;
use common::js::{batch, delivered, fetch, payloads, request, stream_seq, JsEnv};
use common::{next_msg, TIMEOUT};
use serde_json::json;

async fn setup(n: u64, name: &str, cfg: pull::Config) -> (JsEnv, PullConsumer) {
    let env = JsEnv::new().await;
    env.stream(json!({"name": "S", "subjects": ["s.>"]})).await;
    for i in 1..=n {
        env.publish("s.x", format!("m{i}")).await;
    }
    let s = env.js.get_stream("S").await.unwrap();
    let c = s
        .create_consumer(pull::Config {
            durable_name: Some(name.into()),
            ..cfg
        })
        .await
        .expect("create consumer");
    (env, c)
}

fn num(v: &serde_json::Value, key: &str) -> u64 {
    v[key]
        .as_u64()
        .unwrap_or_else(|| panic!("{key} missing: {v}"))
}

#[tokio::test]
async fn ack_policies_none_all_explicit() {
    let (env, none) = setup(
        5,
        "NONE",
        pull::Config {
            ack_policy: AckPolicy::None,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(fetch(&none, 3).await.len(), 3);
    let v = env.consumer_info("S", "NONE").await;
    assert_eq!(num(&v, "num_ack_pending"), 0, "{v}");
    assert_eq!(v["ack_floor"]["stream_seq"], 3, "{v}");
    assert_eq!(num(&v, "num_pending"), 2, "{v}");

    let s = env.js.get_stream("S").await.unwrap();
    let all: PullConsumer = s
        .create_consumer(pull::Config {
            durable_name: Some("ALL".into()),
            ack_policy: AckPolicy::All,
            ..Default::default()
        })
        .await
        .unwrap();
    let got = fetch(&all, 5).await;
    assert_eq!(got.len(), 5);
    got[2].double_ack().await.unwrap(); // acks 1..=3
    let v = env.consumer_info("S", "ALL").await;
    assert_eq!(num(&v, "num_ack_pending"), 2, "{v}");
    assert_eq!(v["ack_floor"]["stream_seq"], 3, "{v}");

    let explicit: PullConsumer = s
        .create_consumer(pull::Config {
            durable_name: Some("EXP".into()),
            ack_policy: AckPolicy::Explicit,
            ..Default::default()
        })
        .await
        .unwrap();
    let got = fetch(&explicit, 5).await;
    got[1].double_ack().await.unwrap();
    got[3].double_ack().await.unwrap();
    let v = env.consumer_info("S", "EXP").await;
    assert_eq!(num(&v, "num_ack_pending"), 3, "{v}");
    assert_eq!(v["ack_floor"]["stream_seq"], 0, "{v}");
    got[0].double_ack().await.unwrap();
    let v = env.consumer_info("S", "EXP").await;
    assert_eq!(v["ack_floor"]["stream_seq"], 2, "{v}");
    assert_eq!(num(&v, "num_ack_pending"), 2, "{v}");
    env.stop().await;
}

#[tokio::test]
async fn ack_wait_expiry_redelivers_and_counts() {
    let (env, c) = setup(
        3,
        "AW",
        pull::Config {
            ack_wait: Duration::from_secs(1),
            ..Default::default()
        },
    )
    .await;
    let got = fetch(&c, 3).await;
    assert!(got.iter().all(|m| delivered(m) == 1));
    got[0].double_ack().await.unwrap();
    let v = env.consumer_info("S", "AW").await;
    assert_eq!(num(&v, "num_ack_pending"), 2, "{v}");
    assert_eq!(num(&v, "num_pending"), 0, "{v}");
    assert_eq!(num(&v, "num_redelivered"), 0, "{v}");
    // Not before ack_wait.
    assert!(fetch(&c, 3).await.is_empty(), "redelivered before ack_wait");

    let again = batch(&c, 2, Duration::from_secs(3)).await;
    assert_eq!(payloads(&again), ["m2", "m3"]);
    assert!(again.iter().all(|m| delivered(m) == 2), "delivery counts");
    let v = env.consumer_info("S", "AW").await;
    assert_eq!(num(&v, "num_redelivered"), 2, "{v}");
    assert_eq!(num(&v, "num_ack_pending"), 2, "{v}");
    assert_eq!(num(&v, "num_pending"), 0, "{v}");
    for m in &again {
        m.double_ack().await.unwrap();
    }
    let v = env.consumer_info("S", "AW").await;
    assert_eq!(num(&v, "num_ack_pending"), 0, "{v}");
    assert_eq!(v["ack_floor"]["stream_seq"], 3, "{v}");
    env.stop().await;
}

#[tokio::test]
async fn nak_redelivers_now_or_after_the_delay() {
    let (env, c) = setup(1, "NAK", pull::Config::default()).await;
    let m = fetch(&c, 1).await.remove(0);
    m.ack_with(AckKind::Nak(None)).await.unwrap();
    let again = batch(&c, 1, Duration::from_secs(2)).await;
    assert_eq!(again.len(), 1, "NAK did not redeliver");
    assert_eq!(delivered(&again[0]), 2);

    let started = Instant::now();
    again[0]
        .ack_with(AckKind::Nak(Some(Duration::from_millis(800))))
        .await
        .unwrap();
    let third = batch(&c, 1, Duration::from_secs(4)).await;
    assert_eq!(third.len(), 1);
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(600),
        "NAK delay ignored: {took:?}"
    );
    assert_eq!(delivered(&third[0]), 3);
    third[0].double_ack().await.unwrap();
    assert_eq!(
        num(&env.consumer_info("S", "NAK").await, "num_ack_pending"),
        0
    );
    env.stop().await;
}

#[tokio::test]
async fn in_progress_extends_the_ack_deadline() {
    let (env, c) = setup(
        1,
        "WPI",
        pull::Config {
            ack_wait: Duration::from_millis(1500),
            ..Default::default()
        },
    )
    .await;
    let m = fetch(&c, 1).await.remove(0);
    // Keep it in progress for well over ack_wait.
    for _ in 0..8 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        m.ack_with(AckKind::Progress).await.unwrap();
    }
    assert!(
        fetch(&c, 1).await.is_empty(),
        "redelivered while in progress"
    );
    // Stop reporting progress: it comes back.
    let again = batch(&c, 1, Duration::from_secs(4)).await;
    assert_eq!(again.len(), 1);
    assert_eq!(delivered(&again[0]), 2);
    env.stop().await;
}

#[tokio::test]
async fn term_stops_redelivery() {
    let (env, c) = setup(
        2,
        "TERM",
        pull::Config {
            ack_wait: Duration::from_millis(300),
            ..Default::default()
        },
    )
    .await;
    let mut adv = env
        .nc
        .subscribe("$JS.EVENT.ADVISORY.CONSUMER.MSG_TERMINATED.S.TERM")
        .await
        .unwrap();
    common::sync(&env.nc).await;
    let got = fetch(&c, 2).await;
    got[0].double_ack_with(AckKind::Term).await.unwrap();
    got[1].double_ack().await.unwrap();
    let a = next_msg(&mut adv).await;
    let a: serde_json::Value = serde_json::from_slice(&a.payload).unwrap();
    assert_eq!(a["stream_seq"], 1, "{a}");
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(
        fetch(&c, 2).await.is_empty(),
        "terminated message redelivered"
    );
    let v = env.consumer_info("S", "TERM").await;
    assert_eq!(num(&v, "num_ack_pending"), 0, "{v}");
    env.stop().await;
}

#[tokio::test]
async fn ack_sync_gets_an_empty_reply() {
    let (env, c) = setup(1, "SYNC", pull::Config::default()).await;
    let m = fetch(&c, 1).await.remove(0);
    let reply = m.reply.clone().expect("ack subject");
    let r = request(&env.nc, &reply, &[], "+ACK").await;
    assert!(r.payload.is_empty(), "{r:?}");
    assert_eq!(
        num(&env.consumer_info("S", "SYNC").await, "num_ack_pending"),
        0
    );
    env.stop().await;
}

#[tokio::test]
async fn max_deliver_stops_and_advises() {
    let (env, c) = setup(
        2,
        "MD",
        pull::Config {
            ack_wait: Duration::from_millis(300),
            max_deliver: 2,
            ..Default::default()
        },
    )
    .await;
    let mut adv = env
        .nc
        .subscribe("$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.S.MD")
        .await
        .unwrap();
    common::sync(&env.nc).await;
    let first = fetch(&c, 2).await;
    assert_eq!(first.len(), 2);
    first[1].double_ack().await.unwrap();
    let second = batch(&c, 1, Duration::from_secs(3)).await;
    assert_eq!(second.len(), 1);
    assert_eq!(stream_seq(&second[0]), 1);
    assert_eq!(delivered(&second[0]), 2);
    // Not acked again: no third delivery, an advisory instead (nats-server notices it when
    // the consumer next looks for a message to deliver, i.e. on a pull).
    assert!(batch(&c, 1, Duration::from_millis(800)).await.is_empty());
    let a = next_msg(&mut adv).await;
    let a: serde_json::Value = serde_json::from_slice(&a.payload).unwrap();
    assert_eq!(
        a["type"], "io.nats.jetstream.advisory.v1.max_deliver",
        "{a}"
    );
    assert_eq!(a["stream"], "S");
    assert_eq!(a["consumer"], "MD");
    assert_eq!(a["stream_seq"], 1);
    assert_eq!(a["deliveries"], 2);
    assert!(fetch(&c, 1).await.is_empty());
    env.stop().await;
}

#[tokio::test]
async fn backoff_spaces_redeliveries() {
    let (env, c) = setup(
        1,
        "BO",
        pull::Config {
            backoff: vec![Duration::from_millis(300), Duration::from_secs(2)],
            max_deliver: 4,
            ..Default::default()
        },
    )
    .await;
    let v = env.consumer_info("S", "BO").await;
    assert_eq!(
        v["config"]["backoff"],
        json!([300_000_000u64, 2_000_000_000u64])
    );
    let t0 = Instant::now();
    assert_eq!(fetch(&c, 1).await.len(), 1);
    let r1 = batch(&c, 1, Duration::from_secs(3)).await;
    let t1 = t0.elapsed();
    assert_eq!(r1.len(), 1);
    assert_eq!(delivered(&r1[0]), 2);
    let r2 = batch(&c, 1, Duration::from_secs(5)).await;
    let t2 = t0.elapsed();
    assert_eq!(r2.len(), 1);
    assert_eq!(delivered(&r2[0]), 3);
    assert!(
        t1 >= Duration::from_millis(250) && t1 < Duration::from_millis(1500),
        "first redelivery after {t1:?}, backoff[0] is 300 ms"
    );
    assert!(
        t2 - t1 >= Duration::from_millis(1700),
        "second redelivery {:?} after the first, backoff[1] is 2 s",
        t2 - t1
    );
    env.stop().await;
}

#[tokio::test]
async fn max_ack_pending_caps_unacked_deliveries() {
    let (env, c) = setup(
        10,
        "MAP",
        pull::Config {
            max_ack_pending: 3,
            ..Default::default()
        },
    )
    .await;
    let got = batch(&c, 10, Duration::from_millis(700)).await;
    assert_eq!(
        payloads(&got),
        ["m1", "m2", "m3"],
        "more than max_ack_pending"
    );
    let v = env.consumer_info("S", "MAP").await;
    assert_eq!(num(&v, "num_ack_pending"), 3, "{v}");
    assert_eq!(num(&v, "num_pending"), 7, "{v}");
    got[0].double_ack().await.unwrap();
    let more = batch(&c, 10, Duration::from_millis(700)).await;
    assert_eq!(payloads(&more), ["m4"]);
    // Ack everything as it comes: all ten get through.
    for m in got[1..].iter().chain(&more) {
        m.double_ack().await.unwrap();
    }
    let mut rest = Vec::new();
    common::within(TIMEOUT, "the remaining messages", async {
        while rest.len() < 6 {
            for m in batch(&c, 10, Duration::from_millis(300)).await {
                m.double_ack().await.unwrap();
                rest.push(String::from_utf8_lossy(&m.payload).into_owned());
            }
        }
    })
    .await;
    assert_eq!(rest, ["m5", "m6", "m7", "m8", "m9", "m10"]);
    env.stop().await;
}
