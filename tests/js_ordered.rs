//! What consumers see when their stream is deleted under them, and how an async-nats ordered
//! consumer recovers once the stream is back: the status a waiting pull request gets, and
//! the messages and errors an ordered `messages()` stream yields, run against causeway and
//! nats-server 2.15.1 side by side.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use async_nats::jetstream::{self, consumer, stream};
use futures::StreamExt;
use serde_json::json;

async fn make_stream(js: &jetstream::Context) {
    js.create_stream(stream::Config {
        name: "O".into(),
        subjects: vec!["o.>".into()],
        ..Default::default()
    })
    .await
    .expect("stream");
}

async fn publish(js: &jetstream::Context, range: std::ops::Range<u32>) {
    for i in range {
        let ack = js.publish(format!("o.{i}"), format!("{i}").into()).await;
        ack.expect("publish").await.expect("ack");
    }
}

/// The next item of an ordered consumer's messages within `wait`: its payload, the error's
/// kind, or nothing.
async fn next_item(msgs: &mut consumer::pull::Ordered, wait: Duration) -> String {
    match tokio::time::timeout(wait, msgs.next()).await {
        Ok(Some(Ok(m))) => format!("message {}", String::from_utf8_lossy(&m.payload)),
        Ok(Some(Err(e))) => format!("error {:?}", e.kind()),
        Ok(None) => "ended".into(),
        Err(_) => "nothing".into(),
    }
}

async fn scenario(addr: SocketAddr) -> Vec<String> {
    let nc = async_nats::connect(addr.to_string())
        .await
        .expect("connect");
    let js = jetstream::new(nc.clone());
    let mut seen = Vec::new();
    make_stream(&js).await;
    publish(&js, 0..3).await;

    // A pull request waiting on a consumer whose stream goes away.
    let c = js
        .get_stream("O")
        .await
        .expect("stream")
        .create_consumer(consumer::pull::Config {
            durable_name: Some("W".into()),
            deliver_policy: consumer::DeliverPolicy::New,
            ..Default::default()
        })
        .await
        .expect("consumer");
    let inbox = nc.new_inbox();
    let mut waiting = nc.subscribe(inbox.clone()).await.expect("sub");
    let pull = json!({"batch": 1, "expires": 5_000_000_000u64}).to_string();
    nc.publish_with_reply(
        format!("$JS.API.CONSUMER.MSG.NEXT.O.{}", c.cached_info().name),
        inbox,
        pull.into(),
    )
    .await
    .expect("pull");
    nc.flush().await.expect("flush");

    // An ordered consumer reading the stream.
    let ordered = js
        .get_stream("O")
        .await
        .expect("stream")
        .create_consumer(consumer::pull::OrderedConfig::default())
        .await
        .expect("ordered");
    let mut msgs = ordered.messages().await.expect("messages");
    for _ in 0..3 {
        seen.push(next_item(&mut msgs, Duration::from_secs(5)).await);
    }

    js.delete_stream("O").await.expect("delete");
    let status = match tokio::time::timeout(Duration::from_secs(2), waiting.next()).await {
        Ok(Some(m)) => format!(
            "waiting pull: {:?} {:?}",
            m.status.map(|s| s.as_u16()),
            m.description
        ),
        _ => "waiting pull: nothing".into(),
    };
    seen.push(status);

    // The stream comes back with new messages: the ordered consumer carries on.
    make_stream(&js).await;
    publish(&js, 3..5).await;
    let mut tail = Vec::new();
    for _ in 0..6 {
        let item = next_item(&mut msgs, Duration::from_secs(20)).await;
        let done = item == "message 4" || item == "ended" || item == "nothing";
        if tail.last() != Some(&item) {
            tail.push(item);
        }
        if done {
            break;
        }
    }
    seen.push(format!("after the stream came back: {tail:?}"));
    seen
}

#[tokio::test]
async fn consumers_of_a_deleted_stream_behave_as_on_nats_server() {
    let ours = common::js::same_observations("deleted stream", scenario).await;
    assert_eq!(ours[0], "message 0");
}
