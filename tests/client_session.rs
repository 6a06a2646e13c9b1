//! Connection-level behaviour through `async-nats`: resubscription after a server restart on
//! the same port, auto-unsubscribe, no-echo, fan-out to many subscribers and per-publisher
//! ordering.

mod common;

use std::time::Duration;

use async_nats::ConnectOptions;
use bytes::Bytes;
use causeway::Config;
use common::{assert_no_msg, nats_client, next_msg, start, start_default, sync, within, TIMEOUT};
use futures::StreamExt;

#[tokio::test]
async fn subscription_survives_server_restart_on_same_port() {
    let server = start_default().await;
    let port = server.local_addr().port();
    let client = within(
        TIMEOUT,
        "connect",
        ConnectOptions::new()
            .reconnect_delay_callback(|_| Duration::from_millis(100))
            .connect(server.client_url()),
    )
    .await
    .unwrap();
    let mut sub = client.subscribe("persist").await.unwrap();
    client.flush().await.unwrap();
    within(TIMEOUT, "shutdown", server.shutdown()).await;

    let server = start(Config {
        port,
        ..Config::loopback()
    })
    .await;
    assert_eq!(server.local_addr().port(), port);
    // Publish from a fresh connection until the resubscribed client sees a message.
    let other = nats_client(&server).await;
    let received = within(TIMEOUT, "message after reconnect", async {
        loop {
            other.publish("persist", "again".into()).await.unwrap();
            other.flush().await.unwrap();
            if let Ok(Some(m)) = tokio::time::timeout(Duration::from_millis(200), sub.next()).await
            {
                return m;
            }
        }
    })
    .await;
    assert_eq!(received.payload.as_ref(), b"again");
}

#[tokio::test]
async fn unsubscribe_after_delivers_exactly_n() {
    let server = start_default().await;
    let client = nats_client(&server).await;
    let mut sub = client.subscribe("limited").await.unwrap();
    sub.unsubscribe_after(3).await.unwrap();
    client.flush().await.unwrap();
    for i in 0..6 {
        client
            .publish("limited", Bytes::from(i.to_string()))
            .await
            .unwrap();
    }
    client.flush().await.unwrap();
    for i in 0..3 {
        assert_eq!(next_msg(&mut sub).await.payload, Bytes::from(i.to_string()));
    }
    let end = within(TIMEOUT, "subscription end", sub.next()).await;
    assert!(end.is_none(), "got a 4th message: {end:?}");
}

#[tokio::test]
async fn no_echo_hides_own_messages() {
    let server = start_default().await;
    let quiet = within(
        TIMEOUT,
        "connect",
        ConnectOptions::new().no_echo().connect(server.client_url()),
    )
    .await
    .unwrap();
    let other = nats_client(&server).await;
    let mut own = quiet.subscribe("echo").await.unwrap();
    let mut theirs = other.subscribe("echo").await.unwrap();
    // quiet's subscription is in place once `theirs` sees quiet's later publish.
    sync(&other).await;
    quiet.publish("echo", "from-quiet".into()).await.unwrap();
    quiet.flush().await.unwrap();
    assert_eq!(next_msg(&mut theirs).await.payload.as_ref(), b"from-quiet");
    other.publish("echo", "from-other".into()).await.unwrap();
    other.flush().await.unwrap();
    // The quiet client's first message is the other client's, not its own.
    assert_eq!(next_msg(&mut own).await.payload.as_ref(), b"from-other");
    assert_no_msg(&mut own, Duration::from_millis(200)).await;
}

#[tokio::test]
async fn many_subscribers_each_receive_a_copy() {
    let server = start_default().await;
    let clients = [nats_client(&server).await, nats_client(&server).await];
    let mut subs = Vec::new();
    for i in 0..200 {
        let c = &clients[i % 2];
        subs.push(
            c.subscribe(if i % 4 == 0 { "fan.>" } else { "fan.out" })
                .await
                .unwrap(),
        );
    }
    for c in &clients {
        sync(c).await;
    }
    let publisher = nats_client(&server).await;
    publisher.publish("fan.out", "x".into()).await.unwrap();
    publisher.flush().await.unwrap();
    for sub in subs.iter_mut() {
        assert_eq!(next_msg(sub).await.payload.as_ref(), b"x");
    }
}

#[tokio::test]
async fn order_from_one_publisher_is_preserved() {
    let server = start_default().await;
    // Room for every message, so a briefly unscheduled reader cannot make the client drop any.
    let sub_client = within(
        TIMEOUT,
        "connect",
        ConnectOptions::new()
            .subscription_capacity(20_000)
            .connect(server.client_url()),
    )
    .await
    .unwrap();
    let publisher = nats_client(&server).await;
    let mut sub = sub_client.subscribe("ordered").await.unwrap();
    sync(&sub_client).await;
    const N: u32 = 10_000;
    let reader = tokio::spawn(async move {
        for i in 0..N {
            let m = next_msg(&mut sub).await;
            assert_eq!(m.payload, Bytes::from(i.to_string()), "out of order");
        }
    });
    for i in 0..N {
        publisher
            .publish("ordered", Bytes::from(i.to_string()))
            .await
            .unwrap();
    }
    publisher.flush().await.unwrap();
    within(Duration::from_secs(30), "ordered reader", reader)
        .await
        .expect("reader failed");
}
