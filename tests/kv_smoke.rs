//! KV smoke test (development aid).

use async_nats::jetstream;
use futures::StreamExt;

#[tokio::test]
async fn kv_basics() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = causeway::Config::loopback();
    cfg.jetstream.enabled = true;
    cfg.jetstream.store_dir = dir.path().to_path_buf();
    let server = causeway::Server::start(cfg).await.unwrap();
    let nc = async_nats::connect(server.client_url()).await.unwrap();
    let js = jetstream::new(nc);
    let kv = js
        .create_key_value(jetstream::kv::Config {
            bucket: "cfg".into(),
            history: 5,
            ..Default::default()
        })
        .await
        .unwrap();
    let r1 = kv.put("a", "1".into()).await.unwrap();
    let r2 = kv.put("a", "2".into()).await.unwrap();
    assert_eq!(kv.get("a").await.unwrap().unwrap(), "2");
    assert!(kv.create("a", "x".into()).await.is_err());
    kv.update("a", "3".into(), r2).await.unwrap();
    assert!(kv.update("a", "4".into(), r1).await.is_err());
    kv.delete("a").await.unwrap();
    assert!(kv.get("a").await.unwrap().is_none());
    kv.create("a", "again".into()).await.unwrap();
    kv.put("b", "1".into()).await.unwrap();
    let mut keys: Vec<String> = kv.keys().await.unwrap().map(|k| k.unwrap()).collect().await;
    keys.sort();
    assert_eq!(keys, vec!["a", "b"]);
    let hist: Vec<_> = kv.history("a").await.unwrap().collect().await;
    assert!(hist.len() >= 3, "{}", hist.len());
    let mut w = kv.watch_all().await.unwrap();
    kv.put("c", "9".into()).await.unwrap();
    let e = tokio::time::timeout(std::time::Duration::from_secs(5), w.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(e.key == "a" || e.key == "b" || e.key == "c");
    let again = js
        .create_key_value(jetstream::kv::Config {
            bucket: "cfg".into(),
            history: 5,
            ..Default::default()
        })
        .await;
    assert!(again.is_ok(), "{again:?}");
    let os = js
        .create_object_store(jetstream::object_store::Config {
            bucket: "files".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let data = vec![7u8; 300_000];
    os.put("blob", &mut data.as_slice()).await.unwrap();
    let mut obj = os.get("blob").await.unwrap();
    let mut back = Vec::new();
    tokio::io::AsyncReadExt::read_to_end(&mut obj, &mut back)
        .await
        .unwrap();
    assert_eq!(back, data);
    server.shutdown().await;
}

#[tokio::test]
async fn kv_per_key_ttl() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = causeway::Config::loopback();
    cfg.jetstream.enabled = true;
    cfg.jetstream.store_dir = dir.path().to_path_buf();
    let server = causeway::Server::start(cfg).await.unwrap();
    let nc = async_nats::connect(server.client_url()).await.unwrap();
    let js = jetstream::new(nc);
    let kv = js
        .create_key_value(jetstream::kv::Config {
            bucket: "ttl".into(),
            limit_markers: Some(std::time::Duration::from_secs(5)),
            ..Default::default()
        })
        .await
        .unwrap();
    let mut w = kv.watch("k").await.unwrap();
    kv.create_with_ttl("k", "v".into(), std::time::Duration::from_secs(1))
        .await
        .unwrap();
    let first = tokio::time::timeout(std::time::Duration::from_secs(5), w.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(first.operation, async_nats::jetstream::kv::Operation::Put);
    let second = tokio::time::timeout(std::time::Duration::from_secs(5), w.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_ne!(second.operation, async_nats::jetstream::kv::Operation::Put);
    assert!(kv.get("k").await.unwrap().is_none());
    server.shutdown().await;
}
