//! Core NATS behaviour seen through the real `async-nats` client: publish/subscribe, every
//! wildcard form, queue groups, request/reply, no-responders, headers and payload sizes up to
//! `max_payload`. Connection-level behaviour (restart, no-echo, ordering) is in
//! `client_session.rs`.

mod common;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use async_nats::{HeaderMap, PublishErrorKind, RequestErrorKind};
use bytes::Bytes;
use causeway::Config;
use common::{
    assert_no_msg, nats_client, next_msg, pattern, start, start_default, sync, within, TIMEOUT,
};
use futures::StreamExt;

#[tokio::test]
async fn publish_reaches_subscriber_on_another_connection() {
    let server = start_default().await;
    let sub_client = nats_client(&server).await;
    let pub_client = nats_client(&server).await;
    let mut sub = sub_client.subscribe("greet").await.unwrap();
    sync(&sub_client).await;
    pub_client
        .publish("greet", Bytes::from_static(b"hello"))
        .await
        .unwrap();
    pub_client.flush().await.unwrap();
    let m = next_msg(&mut sub).await;
    assert_eq!(m.subject.as_str(), "greet");
    assert_eq!(m.payload.as_ref(), b"hello");
    assert!(m.reply.is_none());
    assert_no_msg(&mut sub, Duration::from_millis(200)).await;
}

#[tokio::test]
async fn every_wildcard_form_matches_exactly_the_right_subjects() {
    let server = start_default().await;
    let client = nats_client(&server).await;
    let subjects = [
        "foo",
        "bar",
        "foo.bar",
        "foo.baz",
        "a.bar",
        "foo.bar.baz",
        "foo.x.baz",
        "x.y.z",
    ];
    let table: &[(&str, &[&str])] = &[
        ("foo.*", &["foo.bar", "foo.baz"]),
        ("*.bar", &["foo.bar", "a.bar"]),
        ("foo.>", &["foo.bar", "foo.baz", "foo.bar.baz", "foo.x.baz"]),
        (">", &subjects),
        ("foo.*.baz", &["foo.bar.baz", "foo.x.baz"]),
        ("*.*", &["foo.bar", "foo.baz", "a.bar"]),
        ("*", &["foo", "bar"]),
        ("foo.bar", &["foo.bar"]),
        ("foo.bar.*", &["foo.bar.baz"]),
        ("*.*.*", &["foo.bar.baz", "foo.x.baz", "x.y.z"]),
        (
            "*.>",
            &[
                "foo.bar",
                "foo.baz",
                "a.bar",
                "foo.bar.baz",
                "foo.x.baz",
                "x.y.z",
            ],
        ),
        ("foo.bar.baz.>", &[]),
    ];
    let mut subs = Vec::new();
    for (pat, _) in table {
        subs.push(client.subscribe(pat.to_string()).await.unwrap());
    }
    client.flush().await.unwrap();
    for s in subjects {
        client.publish(s, Bytes::from(s)).await.unwrap();
    }
    client.flush().await.unwrap();
    for ((pat, expected), sub) in table.iter().zip(subs.iter_mut()) {
        let mut got = Vec::new();
        for _ in 0..expected.len() {
            let m = next_msg(sub).await;
            assert_eq!(m.payload.as_ref(), m.subject.as_bytes());
            got.push(m.subject.to_string());
        }
        // Messages from one publisher arrive in publish order.
        let want: Vec<&str> = subjects
            .iter()
            .copied()
            .filter(|s| expected.contains(s))
            .collect();
        assert_eq!(got, want, "pattern {pat}");
        assert_no_msg(sub, Duration::from_millis(100)).await;
    }
}

/// Receives `total` messages from `subs` (tagged by index), then checks nothing more comes.
async fn collect_tagged(subs: Vec<async_nats::Subscriber>, total: usize) -> Vec<(usize, String)> {
    let mut merged = futures::stream::select_all(
        subs.into_iter()
            .enumerate()
            .map(|(i, s)| s.map(move |m| (i, String::from_utf8(m.payload.to_vec()).unwrap()))),
    );
    let mut got = Vec::new();
    while got.len() < total {
        let next = within(TIMEOUT, "queue group deliveries", merged.next()).await;
        got.push(next.expect("subscriptions ended"));
    }
    if let Ok(Some(extra)) = tokio::time::timeout(Duration::from_millis(300), merged.next()).await {
        panic!("extra delivery {extra:?}");
    }
    got
}

#[tokio::test]
async fn queue_group_delivers_each_message_once_across_members() {
    let server = start_default().await;
    let c1 = nats_client(&server).await;
    let c2 = nats_client(&server).await;
    let publisher = nats_client(&server).await;
    let mut subs = Vec::new();
    for c in [&c1, &c1, &c2, &c2] {
        subs.push(c.queue_subscribe("work", "workers".into()).await.unwrap());
    }
    sync(&c1).await;
    sync(&c2).await;
    for i in 0..400 {
        publisher
            .publish("work", Bytes::from(i.to_string()))
            .await
            .unwrap();
    }
    publisher.flush().await.unwrap();
    let got = collect_tagged(subs, 400).await;
    let distinct: HashSet<&String> = got.iter().map(|(_, p)| p).collect();
    assert_eq!(distinct.len(), 400, "some message delivered twice");
    let mut per_member = [0usize; 4];
    for (i, _) in &got {
        per_member[*i] += 1;
    }
    assert!(
        per_member.iter().all(|n| *n > 0),
        "a member got nothing: {per_member:?}"
    );
}

#[tokio::test]
async fn each_queue_group_and_plain_subscriber_gets_one_copy() {
    let server = start_default().await;
    let c = nats_client(&server).await;
    let publisher = nats_client(&server).await;
    let subs = vec![
        c.queue_subscribe("jobs.*", "g1".into()).await.unwrap(),
        c.queue_subscribe("jobs.*", "g1".into()).await.unwrap(),
        c.queue_subscribe("jobs.>", "g2".into()).await.unwrap(),
        c.queue_subscribe("jobs.*", "g2".into()).await.unwrap(),
        c.subscribe("jobs.*").await.unwrap(),
    ];
    sync(&c).await;
    for i in 0..100 {
        publisher
            .publish(format!("jobs.{i}"), Bytes::from(i.to_string()))
            .await
            .unwrap();
    }
    publisher.flush().await.unwrap();
    let got = collect_tagged(subs, 300).await;
    let mut per_target: HashMap<&str, HashSet<&String>> = HashMap::new();
    for (i, p) in &got {
        let target = ["g1", "g1", "g2", "g2", "plain"][*i];
        assert!(
            per_target.entry(target).or_default().insert(p),
            "{target} got {p} twice"
        );
    }
    for target in ["g1", "g2", "plain"] {
        assert_eq!(per_target[target].len(), 100, "{target}");
    }
}

#[tokio::test]
async fn request_reply_round_trip() {
    let server = start_default().await;
    let responder = nats_client(&server).await;
    let requester = nats_client(&server).await;
    let mut svc = responder.subscribe("svc.upper").await.unwrap();
    sync(&responder).await;
    let task = tokio::spawn(async move {
        while let Some(m) = svc.next().await {
            let reply = m.reply.expect("request without reply subject");
            let up = String::from_utf8_lossy(&m.payload).to_uppercase();
            responder.publish(reply, Bytes::from(up)).await.unwrap();
        }
    });
    let resp = within(
        TIMEOUT,
        "request",
        requester.request("svc.upper", "abc".into()),
    )
    .await
    .unwrap();
    assert_eq!(resp.payload.as_ref(), b"ABC");
    // Concurrent requests each get their own answer.
    let futs = (0..20).map(|i| requester.request("svc.upper", Bytes::from(format!("r{i}"))));
    let answers = within(
        TIMEOUT,
        "concurrent requests",
        futures::future::join_all(futs),
    )
    .await;
    for (i, a) in answers.into_iter().enumerate() {
        assert_eq!(a.unwrap().payload, Bytes::from(format!("R{i}")));
    }
    task.abort();
}

#[tokio::test]
async fn request_without_responders_fails_fast() {
    let server = start_default().await;
    let client = nats_client(&server).await;
    let started = std::time::Instant::now();
    let err = within(
        TIMEOUT,
        "request",
        client.request("nobody.home", "x".into()),
    )
    .await
    .expect_err("request to nobody succeeded");
    assert_eq!(err.kind(), RequestErrorKind::NoResponders, "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "no-responders was not immediate"
    );
}

#[tokio::test]
async fn headers_round_trip_with_multiple_values() {
    let server = start_default().await;
    let client = nats_client(&server).await;
    let mut sub = client.subscribe("h").await.unwrap();
    client.flush().await.unwrap();
    let mut headers = HeaderMap::new();
    headers.insert("X-Single", "one");
    headers.append("X-Multi", "first");
    headers.append("X-Multi", "second");
    headers.insert("Content-Type", "text/plain; charset=utf-8");
    client
        .publish_with_headers("h", headers, "body".into())
        .await
        .unwrap();
    let m = next_msg(&mut sub).await;
    assert_eq!(m.payload.as_ref(), b"body");
    let h = m.headers.expect("headers lost");
    assert_eq!(h.get("X-Single").map(|v| v.as_str()), Some("one"));
    let multi: Vec<&str> = h.get_all("X-Multi").map(|v| v.as_str()).collect();
    assert_eq!(multi, vec!["first", "second"]);
    assert_eq!(
        h.get("Content-Type").map(|v| v.as_str()),
        Some("text/plain; charset=utf-8")
    );
    assert!(m.status.is_none(), "plain headers reported a status");

    // Headers with an empty payload.
    let mut headers = HeaderMap::new();
    headers.insert("Only", "headers");
    client
        .publish_with_headers("h", headers, Bytes::new())
        .await
        .unwrap();
    let m = next_msg(&mut sub).await;
    assert!(m.payload.is_empty());
    assert_eq!(
        m.headers.unwrap().get("Only").map(|v| v.as_str()),
        Some("headers")
    );
}

#[tokio::test]
async fn payloads_up_to_max_payload_round_trip_intact() {
    let server = start_default().await;
    let client = nats_client(&server).await;
    assert_eq!(client.server_info().max_payload, 1024 * 1024);
    let mut sub = client.subscribe("sizes").await.unwrap();
    client.flush().await.unwrap();
    for size in [0, 1, 64 * 1024, 1024 * 1024 - 1, 1024 * 1024] {
        let body = Bytes::from(pattern(size));
        client.publish("sizes", body.clone()).await.unwrap();
        let m = next_msg(&mut sub).await;
        assert_eq!(m.payload.len(), size);
        assert!(m.payload == body, "payload of {size} bytes corrupted");
    }
}

#[tokio::test]
async fn publishing_over_max_payload_is_rejected() {
    let server = start(Config {
        max_payload: 4096,
        ..Config::loopback()
    })
    .await;
    let client = nats_client(&server).await;
    assert_eq!(client.server_info().max_payload, 4096);
    let err = client
        .publish("big", Bytes::from(vec![0u8; 4097]))
        .await
        .expect_err("oversized publish accepted");
    assert_eq!(err.kind(), PublishErrorKind::MaxPayloadExceeded);
    // Exactly the limit is fine and the connection is still usable.
    let mut sub = client.subscribe("big").await.unwrap();
    client.flush().await.unwrap();
    client
        .publish("big", Bytes::from(vec![7u8; 4096]))
        .await
        .unwrap();
    assert_eq!(next_msg(&mut sub).await.payload.len(), 4096);
}
