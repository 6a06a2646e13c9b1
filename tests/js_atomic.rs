//! Atomic batch publish (`allow_atomic`, nats-server 2.12): staged messages answered empty, the
//! commit's pub ack with `batch` and `count`, `eob` commits, gaps, refusals and all-or-nothing,
//! sent as raw headers with async-nats to causeway and nats-server 2.15.1 side by side.

mod common;

use std::net::SocketAddr;

use async_nats::HeaderMap;
use serde_json::{json, Value};

/// Publishes `subject` with `pairs` as headers and returns the reply: "empty", or its JSON.
async fn send(nc: &async_nats::Client, subject: &str, pairs: &[(&str, &str)]) -> String {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.insert(*k, *v);
    }
    match nc
        .request_with_headers(subject.to_string(), h, "x".into())
        .await
    {
        Ok(m) if m.payload.is_empty() => "empty".into(),
        Ok(m) => serde_json::from_slice::<Value>(&m.payload)
            .map_or_else(|_| format!("{:?}", m.payload), |v| v.to_string()),
        Err(e) => format!("{:?}", e.kind()),
    }
}

async fn messages(nc: &async_nats::Client, stream: &str) -> String {
    let m = nc
        .request(format!("$JS.API.STREAM.INFO.{stream}"), "".into())
        .await
        .expect("info");
    let v: Value = serde_json::from_slice(&m.payload).unwrap_or(Value::Null);
    format!(
        "messages {} last {}",
        v["state"]["messages"], v["state"]["last_seq"]
    )
}

async fn scenario(addr: SocketAddr) -> Vec<String> {
    let nc = async_nats::connect(addr.to_string())
        .await
        .expect("connect");
    for cfg in [
        json!({"name": "A", "subjects": ["a.>"], "allow_atomic": true}),
        json!({"name": "P", "subjects": ["p.>"]}),
    ] {
        let subject = format!("$JS.API.STREAM.CREATE.{}", cfg["name"].as_str().unwrap());
        nc.request(subject, cfg.to_string().into())
            .await
            .expect("create");
    }
    let (id, seq, commit) = ("Nats-Batch-Id", "Nats-Batch-Sequence", "Nats-Batch-Commit");
    let long = "x".repeat(65);
    let steps: Vec<(&str, Vec<(&str, &str)>)> = vec![
        ("p.1", vec![(id, "b0"), (seq, "1")]),
        ("a.1", vec![(id, "b1"), (seq, "1")]),
        ("a.2", vec![(id, "b1"), (seq, "2")]),
        ("a.3", vec![(id, "b1"), (seq, "3"), (commit, "1")]),
        // A gap abandons the batch.
        ("a.4", vec![(id, "b2"), (seq, "1")]),
        ("a.4", vec![(id, "b2"), (seq, "3")]),
        ("a.4", vec![(id, "b2"), (seq, "2"), (commit, "1")]),
        ("a.4", vec![(id, "b3"), (seq, "2")]),
        ("a.4", vec![(id, "b3")]),
        ("a.4", vec![(id, long.as_str()), (seq, "1")]),
        ("a.4", vec![(id, "b4"), (seq, "1"), (commit, "yes")]),
        // End of batch: the commit message is not stored.
        ("a.x", vec![(id, "b5"), (seq, "1")]),
        ("a.y", vec![(id, "b5"), (seq, "2")]),
        ("a.z", vec![(id, "b5"), (seq, "3"), (commit, "eob")]),
        ("a.z", vec![(id, "b6"), (seq, "1"), (commit, "eob")]),
        // All or nothing: a duplicate id in the batch refuses all of it.
        ("a.d", vec![(id, "b7"), (seq, "1"), ("Nats-Msg-Id", "m1")]),
        (
            "a.d",
            vec![(id, "b7"), (seq, "2"), ("Nats-Msg-Id", "m1"), (commit, "1")],
        ),
        ("a.e", vec![(id, "b8"), (seq, "1")]),
        (
            "a.e",
            vec![
                (id, "b8"),
                (seq, "2"),
                ("Nats-Expected-Last-Sequence", "5"),
                (commit, "1"),
            ],
        ),
        (
            "a.f",
            vec![
                (id, "b9"),
                (seq, "1"),
                ("Nats-Expected-Last-Msg-Id", "m1"),
                (commit, "1"),
            ],
        ),
        (
            "a.g",
            vec![
                (id, "b10"),
                (seq, "1"),
                ("Nats-Expected-Last-Sequence", "5"),
            ],
        ),
        ("a.h", vec![(id, "b10"), (seq, "2"), (commit, "1")]),
    ];
    let mut seen = Vec::new();
    for (subject, pairs) in &steps {
        seen.push(format!(
            "{subject} {pairs:?}: {}",
            send(&nc, subject, pairs).await
        ));
    }
    seen.push(messages(&nc, "A").await);
    // The message that took the eob commit carries the commit header.
    let m = nc
        .request(
            "$JS.API.STREAM.MSG.GET.A",
            json!({"last_by_subj": "a.y"}).to_string().into(),
        )
        .await
        .expect("get");
    let v: Value = serde_json::from_slice(&m.payload).unwrap_or(Value::Null);
    use base64::Engine;
    let hdrs = base64::engine::general_purpose::STANDARD
        .decode(v["message"]["hdrs"].as_str().unwrap_or_default())
        .unwrap_or_default();
    let mut lines: Vec<String> = String::from_utf8_lossy(&hdrs)
        .lines()
        .filter(|l| l.contains(':'))
        .map(str::to_string)
        .collect();
    lines.sort();
    seen.push(format!("a.y headers {lines:?}"));
    seen
}

#[tokio::test]
async fn atomic_batches_match_nats_server() {
    let ours = common::js::same_observations("atomic batches", scenario).await;
    assert!(
        ours[3].ends_with(r#"{"batch":"b1","count":3,"seq":3,"stream":"A"}"#),
        "{}",
        ours[3]
    );
}

/// A batch committed is durable as a whole: after a restart every message is there.
#[tokio::test]
async fn a_committed_batch_survives_a_restart() {
    let env = common::js::JsEnv::new().await;
    env.stream(json!({"name": "A", "subjects": ["a.>"], "allow_atomic": true}))
        .await;
    for i in 1..=5 {
        let s = i.to_string();
        let mut pairs = vec![("Nats-Batch-Id", "r1"), ("Nats-Batch-Sequence", s.as_str())];
        if i == 5 {
            pairs.push(("Nats-Batch-Commit", "1"));
        }
        send(&env.nc, &format!("a.{i}"), &pairs).await;
    }
    // A batch left open is not stored.
    send(
        &env.nc,
        "a.6",
        &[("Nats-Batch-Id", "r2"), ("Nats-Batch-Sequence", "1")],
    )
    .await;
    let env = env.restart().await;
    assert_eq!(messages(&env.nc, "A").await, "messages 5 last 5");
    env.stop().await;
}
