//! Quick JetStream smoke test with async-nats (development aid; the full suite is js_*.rs).

mod common;

use async_nats::jetstream;
use futures::StreamExt;

#[tokio::test]
async fn stream_publish_fetch_ack() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = causeway::Config::loopback();
    cfg.jetstream.enabled = true;
    cfg.jetstream.store_dir = dir.path().to_path_buf();
    let server = causeway::Server::start(cfg).await.unwrap();
    let nc = async_nats::connect(server.client_url()).await.unwrap();
    let js = jetstream::new(nc);
    let stream = js
        .create_stream(jetstream::stream::Config {
            name: "ORDERS".into(),
            subjects: vec!["orders.>".into()],
            ..Default::default()
        })
        .await
        .unwrap();
    for i in 0..10 {
        let ack = js
            .publish(format!("orders.{i}"), "x".into())
            .await
            .unwrap()
            .await
            .unwrap();
        assert_eq!(ack.sequence, i + 1);
    }
    let mut stream = stream;
    let info = stream.info().await.unwrap();
    assert_eq!(info.state.messages, 10);
    let consumer = stream
        .create_consumer(jetstream::consumer::pull::Config {
            durable_name: Some("c1".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    let mut msgs = consumer.fetch().max_messages(20).messages().await.unwrap();
    let mut n = 0;
    while let Some(m) = msgs.next().await {
        let m = m.unwrap();
        m.ack().await.unwrap();
        n += 1;
    }
    assert_eq!(n, 10);
    server.shutdown().await;
}
