//! The embedded server and its in-process client: messages flow both ways between in-process
//! and TCP (`async-nats`) clients, request/reply across the two, queue groups, no-responders,
//! unsubscribe on drop, and a graceful `shutdown()` that TCP clients observe.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use async_nats::{ConnectOptions, Event, HeaderMap, RequestErrorKind};
use bytes::Bytes;
use causeway::{ClientError, Subscriber};
use common::{
    assert_no_msg, contains, nats_client, next_msg, start_default, sync, within, RawClient, TIMEOUT,
};
use futures::StreamExt;

/// Next message of an in-process subscriber, bounded by [`TIMEOUT`].
async fn next_local(sub: &mut Subscriber) -> causeway::Message {
    within(TIMEOUT, "an in-process message", sub.next())
        .await
        .expect("in-process subscription ended")
}

#[tokio::test]
async fn in_process_publish_reaches_tcp_subscriber() {
    let server = start_default().await;
    let local = server.client();
    let tcp = nats_client(&server).await;
    let mut sub = tcp.subscribe("events.>").await.unwrap();
    sync(&tcp).await;
    local
        .publish("events.created", Bytes::from_static(b"one"))
        .await
        .unwrap();
    local
        .publish_with_reply("events.updated", "answers.here", Bytes::from_static(b"two"))
        .await
        .unwrap();
    let m = next_msg(&mut sub).await;
    assert_eq!(
        (m.subject.as_str(), m.payload.as_ref()),
        ("events.created", &b"one"[..])
    );
    assert!(m.reply.is_none());
    let m = next_msg(&mut sub).await;
    assert_eq!(
        (m.subject.as_str(), m.payload.as_ref()),
        ("events.updated", &b"two"[..])
    );
    assert_eq!(m.reply.as_deref(), Some("answers.here"));
}

#[tokio::test]
async fn tcp_publish_reaches_in_process_subscriber() {
    let server = start_default().await;
    let local = server.client();
    let mut sub = local.subscribe("orders.*").await.unwrap();
    let tcp = nats_client(&server).await;
    tcp.publish_with_reply("orders.new", "r.1", "payload".into())
        .await
        .unwrap();
    tcp.publish("orders.new.deep", "no".into()).await.unwrap();
    tcp.publish("orders.old", "yes".into()).await.unwrap();
    tcp.flush().await.unwrap();
    let m = next_local(&mut sub).await;
    assert_eq!(m.subject, "orders.new");
    assert_eq!(m.reply.as_deref(), Some("r.1"));
    assert_eq!(m.payload.as_ref(), b"payload");
    assert!(m.headers.is_none());
    let m = next_local(&mut sub).await;
    assert_eq!(
        m.subject, "orders.old",
        "wildcard matched too deep a subject"
    );
}

#[tokio::test]
async fn in_process_clients_see_each_other() {
    let server = start_default().await;
    let a = server.client();
    let b = server.client();
    let mut sub = b.subscribe("x.>").await.unwrap();
    a.publish("x.y", Bytes::from_static(b"z")).await.unwrap();
    let m = next_local(&mut sub).await;
    assert_eq!((m.subject.as_str(), m.payload.as_ref()), ("x.y", &b"z"[..]));
}

#[tokio::test]
async fn headers_cross_between_in_process_and_tcp() {
    let server = start_default().await;
    let local = server.client();
    let tcp = nats_client(&server).await;

    let mut local_sub = local.subscribe("hdr.in").await.unwrap();
    let mut headers = HeaderMap::new();
    headers.insert("X-Key", "value");
    headers.append("X-Multi", "a");
    headers.append("X-Multi", "b");
    tcp.publish_with_headers("hdr.in", headers, "body".into())
        .await
        .unwrap();
    tcp.flush().await.unwrap();
    let m = next_local(&mut local_sub).await;
    assert_eq!(m.payload.as_ref(), b"body");
    let raw = m.headers.expect("headers lost on the way in");
    assert!(raw.starts_with(b"NATS/1.0"), "{raw:?}");
    assert!(raw.ends_with(b"\r\n\r\n"), "{raw:?}");
    for line in [
        &b"X-Key: value\r\n"[..],
        b"X-Multi: a\r\n",
        b"X-Multi: b\r\n",
    ] {
        assert!(contains(&raw, line), "{raw:?} lacks {line:?}");
    }

    let mut tcp_sub = tcp.subscribe("hdr.out").await.unwrap();
    sync(&tcp).await;
    local
        .publish_with_headers(
            "hdr.out",
            Bytes::from_static(b"NATS/1.0\r\nA: 1\r\nB: two words\r\n\r\n"),
            Bytes::from_static(b"data"),
        )
        .await
        .unwrap();
    let m = next_msg(&mut tcp_sub).await;
    assert_eq!(m.payload.as_ref(), b"data");
    let h = m.headers.expect("headers lost on the way out");
    assert_eq!(h.get("A").map(|v| v.as_str()), Some("1"));
    assert_eq!(h.get("B").map(|v| v.as_str()), Some("two words"));
}

#[tokio::test]
async fn tcp_request_to_in_process_responder() {
    let server = start_default().await;
    let local = server.client();
    let mut svc = local.subscribe("svc.double").await.unwrap();
    let responder = tokio::spawn(async move {
        while let Some(m) = svc.next().await {
            let n: u64 = String::from_utf8_lossy(&m.payload).parse().unwrap();
            let reply = m.reply.expect("request without reply");
            local
                .publish(reply, Bytes::from((n * 2).to_string()))
                .await
                .unwrap();
        }
    });
    let tcp = nats_client(&server).await;
    for n in [0u64, 1, 21, 1000] {
        let resp = within(
            TIMEOUT,
            "request",
            tcp.request("svc.double", n.to_string().into()),
        )
        .await
        .unwrap();
        assert_eq!(resp.payload, Bytes::from((n * 2).to_string()));
    }
    responder.abort();
}

#[tokio::test]
async fn in_process_request_to_tcp_responder() {
    let server = start_default().await;
    let tcp = nats_client(&server).await;
    let mut svc = tcp.subscribe("svc.rev").await.unwrap();
    sync(&tcp).await;
    let responder_client = tcp.clone();
    let responder = tokio::spawn(async move {
        while let Some(m) = svc.next().await {
            let rev: String = String::from_utf8_lossy(&m.payload).chars().rev().collect();
            responder_client
                .publish(m.reply.unwrap(), Bytes::from(rev))
                .await
                .unwrap();
        }
    });
    let local = server.client();
    let resp = within(TIMEOUT, "request", local.request("svc.rev", "abc".into()))
        .await
        .unwrap();
    assert_eq!(resp.payload.as_ref(), b"cba");
    responder.abort();
}

#[tokio::test]
async fn in_process_request_without_responders() {
    let server = start_default().await;
    let local = server.client();
    let res = within(TIMEOUT, "request", local.request("nobody", Bytes::new())).await;
    assert!(matches!(res, Err(ClientError::NoResponders)), "{res:?}");
}

#[tokio::test]
async fn in_process_request_times_out_when_responder_is_silent() {
    let server = start_default().await;
    let local = server.client();
    let _silent = local.subscribe("svc.silent").await.unwrap();
    let started = std::time::Instant::now();
    let res = within(
        TIMEOUT,
        "request",
        local.request("svc.silent", Bytes::new()),
    )
    .await;
    assert!(matches!(res, Err(ClientError::Timeout)), "{res:?}");
    assert!(
        started.elapsed() >= Duration::from_secs(4),
        "timed out too early"
    );
}

#[tokio::test]
async fn queue_group_spans_in_process_and_tcp_members() {
    let server = start_default().await;
    let local = server.client();
    let mut l1 = local.queue_subscribe("q.work", "pool").await.unwrap();
    let mut l2 = local.queue_subscribe("q.work", "pool").await.unwrap();
    let tcp = nats_client(&server).await;
    let mut t1 = tcp.queue_subscribe("q.work", "pool".into()).await.unwrap();
    sync(&tcp).await;
    let publisher = server.client();
    for i in 0..300 {
        publisher
            .publish("q.work", Bytes::from(i.to_string()))
            .await
            .unwrap();
    }
    let mut seen = HashSet::new();
    let mut per_member = [0usize; 3];
    within(TIMEOUT, "queue deliveries", async {
        while seen.len() < 300 {
            let (idx, payload) = tokio::select! {
                Some(m) = l1.next() => (0, m.payload),
                Some(m) = l2.next() => (1, m.payload),
                Some(m) = t1.next() => (2, m.payload),
            };
            assert!(seen.insert(payload.clone()), "delivered twice: {payload:?}");
            per_member[idx] += 1;
        }
    })
    .await;
    assert!(per_member.iter().all(|n| *n > 0), "{per_member:?}");
    // Nothing more is delivered to any member.
    let extra = tokio::time::timeout(Duration::from_millis(300), async {
        tokio::select! {
            Some(m) = l1.next() => m.payload,
            Some(m) = l2.next() => m.payload,
            Some(m) = t1.next() => m.payload,
        }
    })
    .await;
    assert!(extra.is_err(), "extra delivery: {extra:?}");
}

#[tokio::test]
async fn dropping_a_subscriber_unsubscribes() {
    let server = start_default().await;
    let local = server.client();
    let sub = local.subscribe("gone").await.unwrap();
    let mut kept = local.subscribe("kept").await.unwrap();
    drop(sub);
    let tcp = nats_client(&server).await;
    let err = within(TIMEOUT, "request", tcp.request("gone", "?".into()))
        .await
        .expect_err("dropped subscriber still answered");
    assert_eq!(err.kind(), RequestErrorKind::NoResponders);
    let res = within(TIMEOUT, "request", local.request("gone", Bytes::new())).await;
    assert!(matches!(res, Err(ClientError::NoResponders)), "{res:?}");
    tcp.publish("kept", "still".into()).await.unwrap();
    tcp.flush().await.unwrap();
    assert_eq!(next_local(&mut kept).await.payload.as_ref(), b"still");
}

#[tokio::test]
async fn shutdown_flushes_queued_messages_then_announces_ldm_and_closes() {
    let server = start_default().await;
    let mut raw = RawClient::connect_ready(server.local_addr()).await;
    raw.send(b"SUB burst 1\r\n").await;
    raw.ping_pong().await;
    let local = server.client();
    for i in 0..2000 {
        local
            .publish("burst", Bytes::from(format!("{i:05}")))
            .await
            .unwrap();
    }
    within(TIMEOUT, "shutdown", server.shutdown()).await;
    for i in 0..2000 {
        let m = raw.read_msg().await;
        assert_eq!(
            m.payload,
            format!("{i:05}").into_bytes(),
            "lost or reordered"
        );
    }
    let line = raw.read_line().await;
    let json = line
        .strip_prefix("INFO ")
        .expect("expected INFO after the messages");
    let info: serde_json::Value = serde_json::from_str(json).unwrap();
    assert_eq!(info["ldm"], serde_json::json!(true), "{info}");
    raw.expect_closed().await;
    // Clients of a stopped server are refused.
    let res = local.publish("burst", Bytes::new()).await;
    assert!(matches!(res, Err(ClientError::ServerClosed)), "{res:?}");
}

#[tokio::test]
async fn shutdown_is_seen_by_async_nats_and_ends_local_subscribers() {
    let server = start_default().await;
    let addr = server.local_addr();
    let (tcp, mut rx) =
        common::connect_with_events(ConnectOptions::new(), &server.client_url()).await;
    let mut tcp_sub = tcp.subscribe("any").await.unwrap();
    sync(&tcp).await;
    let mut local_sub = server.client().subscribe("any").await.unwrap();

    within(TIMEOUT, "shutdown", server.shutdown()).await;
    within(TIMEOUT, "a Disconnected event", async {
        while let Some(e) = rx.recv().await {
            if matches!(e, Event::Disconnected) {
                return;
            }
        }
        panic!("event stream ended");
    })
    .await;
    assert_ne!(
        tcp.connection_state(),
        async_nats::connection::State::Connected
    );
    assert!(
        within(TIMEOUT, "local subscriber end", local_sub.next())
            .await
            .is_none(),
        "local subscriber still open after shutdown"
    );
    assert_no_msg(&mut tcp_sub, Duration::from_millis(100)).await;
    // Nothing listens on the port any more.
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}
