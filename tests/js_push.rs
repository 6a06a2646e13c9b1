//! Push consumers (deliver_subject, deliver_group, idle heartbeats, flow control) and ordered
//! consumers (async-nats's pull and push `ordered` flavours).

mod common;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use async_nats::jetstream::consumer::{pull, push, AckPolicy};
use async_nats::StatusCode;
use common::js::{wait_until, JsEnv};
use common::{next_msg, within, TIMEOUT};
use futures::StreamExt;
use serde_json::json;

async fn stream_with(n: usize, size: usize) -> JsEnv {
    let env = JsEnv::new().await;
    env.stream(json!({"name": "S", "subjects": ["s.>"]})).await;
    for i in 0..n {
        let mut p = format!("m{i}:").into_bytes();
        p.resize(size.max(p.len()), b'.');
        env.publish("s.x", p).await;
    }
    env
}

fn text(payload: &[u8]) -> String {
    let s = String::from_utf8_lossy(payload);
    s.split(':').next().unwrap_or("").to_string()
}

#[tokio::test]
async fn push_consumer_delivers_and_takes_acks() {
    let env = stream_with(5, 0).await;
    let s = env.js.get_stream("S").await.unwrap();
    let c = s
        .create_consumer(push::Config {
            durable_name: Some("P".into()),
            deliver_subject: "deliver.p".into(),
            ack_policy: AckPolicy::Explicit,
            ..Default::default()
        })
        .await
        .expect("push consumer");
    let v = env.consumer_info("S", "P").await;
    assert_eq!(v["config"]["deliver_subject"], "deliver.p");
    let mut msgs = c.messages().await.unwrap();
    let mut got = Vec::new();
    within(TIMEOUT, "5 pushed messages", async {
        while got.len() < 5 {
            let m = msgs.next().await.unwrap().expect("push message");
            assert_eq!(m.subject.as_str(), "s.x");
            got.push(text(&m.payload));
            m.ack().await.unwrap();
        }
    })
    .await;
    assert_eq!(got, ["m0", "m1", "m2", "m3", "m4"]);
    // Live messages follow.
    env.publish("s.y", "m5:").await;
    let m = within(TIMEOUT, "a live push", msgs.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(text(&m.payload), "m5");
    m.double_ack().await.unwrap();
    wait_until(TIMEOUT, "acks applied", || async {
        let v = env.consumer_info("S", "P").await;
        v["num_ack_pending"] == 0 && v["num_pending"] == 0
    })
    .await;
    env.stop().await;
}

#[tokio::test]
async fn deliver_group_spreads_each_message_once() {
    let env = stream_with(0, 0).await;
    let s = env.js.get_stream("S").await.unwrap();
    s.create_consumer(push::Config {
        durable_name: Some("G".into()),
        deliver_subject: "deliver.g".into(),
        deliver_group: Some("workers".into()),
        ack_policy: AckPolicy::None,
        ..Default::default()
    })
    .await
    .expect("push consumer with group");
    let mut a = env
        .nc
        .queue_subscribe("deliver.g", "workers".into())
        .await
        .unwrap();
    let mut b = env
        .nc
        .queue_subscribe("deliver.g", "workers".into())
        .await
        .unwrap();
    common::sync(&env.nc).await;
    for i in 0..40 {
        env.publish("s.x", format!("m{i}:")).await;
    }
    let mut seen = Vec::new();
    within(TIMEOUT, "40 group deliveries", async {
        while seen.len() < 40 {
            let m = tokio::select! {
                Some(m) = a.next() => m,
                Some(m) = b.next() => m,
            };
            seen.push(text(&m.payload));
        }
    })
    .await;
    let distinct: HashSet<&String> = seen.iter().collect();
    assert_eq!(
        distinct.len(),
        40,
        "a message went to both members: {seen:?}"
    );
    common::assert_no_msg(&mut a, Duration::from_millis(200)).await;
    common::assert_no_msg(&mut b, Duration::from_millis(50)).await;
    env.stop().await;
}

#[tokio::test]
async fn idle_heartbeats_on_a_quiet_push_consumer() {
    let env = stream_with(1, 0).await;
    let mut sub = env.nc.subscribe("deliver.hb").await.unwrap();
    common::sync(&env.nc).await;
    let s = env.js.get_stream("S").await.unwrap();
    s.create_consumer(push::Config {
        durable_name: Some("HB".into()),
        deliver_subject: "deliver.hb".into(),
        ack_policy: AckPolicy::None,
        idle_heartbeat: Duration::from_millis(200),
        ..Default::default()
    })
    .await
    .expect("push consumer with heartbeat");
    let first = next_msg(&mut sub).await;
    assert_eq!(text(&first.payload), "m0");
    let started = Instant::now();
    let mut beats = 0;
    while beats < 3 {
        let m = next_msg(&mut sub).await;
        assert_eq!(m.status, Some(StatusCode::IDLE_HEARTBEAT), "{m:?}");
        assert!(m.payload.is_empty());
        let h = m.headers.as_ref().expect("heartbeat headers");
        assert_eq!(h.get("Nats-Last-Consumer").map(|v| v.as_str()), Some("1"));
        assert_eq!(h.get("Nats-Last-Stream").map(|v| v.as_str()), Some("1"));
        beats += 1;
    }
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(400) && took < Duration::from_secs(3),
        "3 heartbeats at 200 ms took {took:?}"
    );
    env.stop().await;
}

#[tokio::test]
async fn flow_control_stalls_until_answered() {
    // More bytes than the server sends between flow-control requests (2 MiB).
    const N: usize = 3000;
    let env = stream_with(N, 1024).await;
    let mut sub = env.nc.subscribe("deliver.fc").await.unwrap();
    common::sync(&env.nc).await;
    let s = env.js.get_stream("S").await.unwrap();
    s.create_consumer(push::Config {
        durable_name: Some("FC".into()),
        deliver_subject: "deliver.fc".into(),
        ack_policy: AckPolicy::None,
        flow_control: true,
        idle_heartbeat: Duration::from_secs(1),
        ..Default::default()
    })
    .await
    .expect("push consumer with flow control");
    // Read without answering flow control: delivery must stall short of everything.
    let mut data = 0;
    let mut fc_reply = None;
    loop {
        match tokio::time::timeout(Duration::from_millis(700), sub.next()).await {
            Ok(Some(m)) if m.status.is_none() => data += 1,
            Ok(Some(m)) => {
                if m.status == Some(StatusCode::IDLE_HEARTBEAT) && m.reply.is_some() {
                    fc_reply = m.reply.clone();
                }
            }
            Ok(None) => panic!("subscription ended"),
            Err(_) => break,
        }
    }
    let fc_reply = fc_reply.expect("no flow control request arrived");
    assert!(
        data > 0 && data < N,
        "{data} of {N} delivered without answering"
    );
    // Answer this and every later request: the rest arrives.
    env.nc.publish(fc_reply, "".into()).await.unwrap();
    within(
        Duration::from_secs(20),
        "the rest after flow control",
        async {
            while data < N {
                let m = sub.next().await.expect("subscription ended");
                match (m.status, m.reply) {
                    (None, _) => data += 1,
                    (Some(_), Some(reply)) => env.nc.publish(reply, "".into()).await.unwrap(),
                    _ => {}
                }
            }
        },
    )
    .await;

    // async-nats answers flow control itself.
    let c = s
        .create_consumer(push::Config {
            durable_name: Some("FC2".into()),
            deliver_subject: "deliver.fc2".into(),
            ack_policy: AckPolicy::None,
            flow_control: true,
            idle_heartbeat: Duration::from_secs(1),
            ..Default::default()
        })
        .await
        .unwrap();
    let mut msgs = c.messages().await.unwrap();
    let mut n = 0;
    within(
        Duration::from_secs(20),
        "all messages via async-nats",
        async {
            while n < N {
                msgs.next().await.unwrap().expect("push message");
                n += 1;
            }
        },
    )
    .await;
    env.stop().await;
}

#[tokio::test]
async fn ordered_pull_consumer_reads_in_order() {
    let env = stream_with(100, 10).await;
    let s = env.js.get_stream("S").await.unwrap();
    let c = s
        .create_consumer(pull::OrderedConfig {
            filter_subject: "s.>".into(),
            ..Default::default()
        })
        .await
        .expect("ordered pull consumer");
    let mut msgs = c.messages().await.expect("ordered messages");
    let mut got = Vec::new();
    within(TIMEOUT, "100 ordered messages", async {
        while got.len() < 101 {
            if got.len() == 100 {
                env.publish("s.z", "m100:").await;
            }
            let m = msgs.next().await.unwrap().expect("ordered message");
            got.push(text(&m.payload));
        }
    })
    .await;
    let want: Vec<String> = (0..=100).map(|i| format!("m{i}")).collect();
    assert_eq!(got, want);
    env.stop().await;
}

#[tokio::test]
async fn ordered_push_consumer_reads_in_order() {
    let env = stream_with(100, 10).await;
    let s = env.js.get_stream("S").await.unwrap();
    let c = s
        .create_consumer(push::OrderedConfig {
            deliver_subject: env.nc.new_inbox(),
            ..Default::default()
        })
        .await
        .expect("ordered push consumer");
    let v = env.consumer_info("S", &c.cached_info().name).await;
    assert_eq!(v["config"]["flow_control"], true, "{v}");
    let mut msgs = c.messages().await.expect("ordered messages");
    let mut got = Vec::new();
    within(TIMEOUT, "101 ordered messages", async {
        while got.len() < 101 {
            if got.len() == 100 {
                env.publish("s.z", "m100:").await;
            }
            let m = msgs.next().await.unwrap().expect("ordered message");
            got.push(text(&m.payload));
        }
    })
    .await;
    let want: Vec<String> = (0..=100).map(|i| format!("m{i}")).collect();
    assert_eq!(got, want);
    env.stop().await;
}
