//! scratch (deleted before hand-off)
mod common;
use async_nats::jetstream::kv;
use common::js::JsEnv;
use futures::StreamExt;
use std::time::Duration;

#[tokio::test]
async fn scratch() {
    let env = JsEnv::new().await;
    let store = env
        .js
        .create_key_value(kv::Config {
            bucket: "pttl".into(),
            history: 3,
            limit_markers: Some(Duration::from_secs(1)),
            ..Default::default()
        })
        .await
        .unwrap();
    store.put("k", "1".into()).await.unwrap();
    store
        .purge_with_ttl("k", Duration::from_secs(1))
        .await
        .unwrap();
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_millis(1000)).await;
        println!("{:?}", common::kv::history(&store, "k").await);
        println!("{}", env.info("KV_pttl").await["state"]);
    }
    let store = env
        .js
        .create_key_value(kv::Config {
            bucket: "aged".into(),
            history: 3,
            max_age: Duration::from_secs(1),
            limit_markers: Some(Duration::from_secs(2)),
            ..Default::default()
        })
        .await
        .unwrap();
    println!("{}", env.info("KV_aged").await["config"]);
    let mut w = store.watch_all().await.unwrap();
    store.put("k", "1".into()).await.unwrap();
    for _ in 0..3 {
        println!(
            "{:?}",
            tokio::time::timeout(Duration::from_secs(2), w.next()).await
        );
        println!("{}", env.info("KV_aged").await["state"]);
    }
}
