//! Message tracing (`Nats-Trace-Dest`, `Nats-Trace-Only`): the trace events (ingress, egress
//! to each subscription or why not, JetStream's decision) and what is delivered or stored,
//! run against causeway and nats-server 2.15.1 side by side with async-nats.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use async_nats::{Client, HeaderMap, Subscriber};
use futures::StreamExt;
use serde_json::{json, Value};

async fn named(addr: SocketAddr, name: &str) -> Client {
    async_nats::ConnectOptions::new()
        .name(name)
        .connect(addr.to_string())
        .await
        .expect("connect")
}

/// An event with what differs between runs and servers (times, connection ids, the server
/// object) left out.
fn normalized(mut event: Value) -> String {
    let server_named = event["server"]["name"].is_string();
    if let Some(map) = event.as_object_mut() {
        map.remove("server");
    }
    for e in event["events"].as_array_mut().into_iter().flatten() {
        if let Some(map) = e.as_object_mut() {
            map.remove("ts");
            map.remove("cid");
        }
    }
    format!("server named: {server_named}; {event}")
}

/// The next trace event, or "none" within `wait`.
async fn next_event(traces: &mut Subscriber, wait: Duration) -> String {
    match tokio::time::timeout(wait, traces.next()).await {
        Ok(Some(m)) => match serde_json::from_slice::<Value>(&m.payload) {
            Ok(v) => normalized(v),
            Err(_) => format!("not JSON: {:?}", m.payload),
        },
        _ => "none".into(),
    }
}

/// What `sub` received within a short wait: subject and headers, or "nothing".
async fn received(sub: &mut Subscriber) -> String {
    match tokio::time::timeout(Duration::from_millis(300), sub.next()).await {
        Ok(Some(m)) => {
            let mut h: Vec<String> = m
                .headers
                .iter()
                .flat_map(|h| h.iter())
                .map(|(k, v)| format!("{k}={:?}", v.iter().map(|x| x.as_str()).collect::<Vec<_>>()))
                .collect();
            h.sort();
            format!("{} {h:?}", m.subject)
        }
        _ => "nothing".into(),
    }
}

async fn scenario(addr: SocketAddr) -> Vec<String> {
    let publisher = named(addr, "pub").await;
    let subscriber = named(addr, "subber").await;
    let watcher = named(addr, "watcher").await;
    let mut seen = Vec::new();
    let mut traces = watcher.subscribe("trace.dest").await.expect("sub");
    let mut plain = subscriber.subscribe("t.>").await.expect("sub");
    let mut queue = subscriber
        .queue_subscribe("q.work", "g".into())
        .await
        .expect("sub");
    for cfg in [
        json!({"name": "S", "subjects": ["js.>"]}),
        json!({"name": "I", "subjects": ["ji.>"], "retention": "interest"}),
    ] {
        let name = cfg["name"].as_str().expect("name").to_string();
        publisher
            .request(
                format!("$JS.API.STREAM.CREATE.{name}"),
                cfg.to_string().into(),
            )
            .await
            .expect("stream");
    }
    subscriber.flush().await.expect("flush");
    watcher.flush().await.expect("flush");

    let cases: Vec<(&str, Vec<(&str, &str)>)> = vec![
        (
            "t.a",
            vec![("Nats-Trace-Dest", "trace.dest"), ("X-App", "1")],
        ),
        (
            "t.b",
            vec![
                ("Nats-Trace-Dest", "trace.dest"),
                ("Nats-Trace-Only", "true"),
            ],
        ),
        ("t.c", vec![("Nats-Trace-Only", "true")]),
        (
            "t.d",
            vec![("Nats-Trace-Dest", "bad.*"), ("Nats-Trace-Only", "1")],
        ),
        ("q.work", vec![("Nats-Trace-Dest", "trace.dest")]),
        ("nobody", vec![("Nats-Trace-Dest", "trace.dest")]),
        ("js.x", vec![("Nats-Trace-Dest", "trace.dest")]),
        (
            "js.y",
            vec![("Nats-Trace-Dest", "trace.dest"), ("Nats-Trace-Only", "on")],
        ),
        (
            "js.z",
            vec![
                ("Nats-Trace-Dest", "trace.dest"),
                ("Nats-Expected-Last-Sequence", "99"),
            ],
        ),
        (
            "ji.a",
            vec![
                ("Nats-Trace-Dest", "trace.dest"),
                ("Nats-Trace-Only", "true"),
            ],
        ),
        (
            "js.m",
            vec![("Nats-Trace-Dest", "trace.dest"), ("Nats-Msg-Id", "m1")],
        ),
        (
            "js.m",
            vec![("Nats-Trace-Dest", "trace.dest"), ("Nats-Msg-Id", "m1")],
        ),
        (
            "js.e",
            vec![
                ("Nats-Trace-Dest", "trace.dest"),
                ("Nats-Expected-Stream", "T"),
            ],
        ),
        (
            "js.t",
            vec![("Nats-Trace-Dest", "trace.dest"), ("Nats-TTL", "5s")],
        ),
        (
            "js.l",
            vec![
                ("Nats-Trace-Dest", "trace.dest"),
                ("Nats-Expected-Last-Msg-Id", "zz"),
            ],
        ),
        (
            "js.s",
            vec![
                ("Nats-Trace-Dest", "trace.dest"),
                ("Nats-Expected-Last-Subject-Sequence", "5"),
            ],
        ),
        (
            "js.o",
            vec![
                ("Nats-Trace-Dest", "trace.dest"),
                ("Nats-Trace-Only", "true"),
                ("Nats-Rollup", "all"),
            ],
        ),
    ];
    for (subject, pairs) in cases {
        let mut h = HeaderMap::new();
        for (k, v) in &pairs {
            h.insert(*k, *v);
        }
        publisher
            .publish_with_headers(subject, h, "data".into())
            .await
            .expect("publish");
        publisher.flush().await.expect("flush");
        let event = next_event(&mut traces, Duration::from_millis(1500)).await;
        let got = if subject.starts_with('q') {
            received(&mut queue).await
        } else {
            received(&mut plain).await
        };
        seen.push(format!(
            "{subject} {pairs:?}: {event}; subscriber got {got}"
        ));
    }
    // What the stream stored: js.x only, with its trace disabled.
    let info = publisher
        .request("$JS.API.STREAM.INFO.S", "".into())
        .await
        .expect("info");
    let info: Value = serde_json::from_slice(&info.payload).unwrap_or_default();
    seen.push(format!("S holds {}", info["state"]["messages"]));
    let got = publisher
        .request(
            "$JS.API.STREAM.MSG.GET.S",
            json!({"seq": 1}).to_string().into(),
        )
        .await
        .expect("get");
    let got: Value = serde_json::from_slice(&got.payload).unwrap_or_default();
    use base64::Engine;
    let hdrs = base64::engine::general_purpose::STANDARD
        .decode(got["message"]["hdrs"].as_str().unwrap_or_default())
        .unwrap_or_default();
    seen.push(format!("stored: {:?}", String::from_utf8_lossy(&hdrs)));
    seen
}

#[tokio::test]
async fn trace_events_match_nats_server() {
    let ours = common::js::same_observations("message tracing", scenario).await;
    assert!(ours[0].contains("\"type\":\"eg\""), "{}", ours[0]);
    assert!(ours[1].ends_with("subscriber got nothing"), "{}", ours[1]);
    assert!(ours[6].contains("\"type\":\"js\""), "{}", ours[6]);
}
