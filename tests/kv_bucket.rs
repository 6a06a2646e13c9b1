//! KV buckets with async-nats: the stream config a bucket is created with (history, TTL, value
//! size, byte limit, storage, description, metadata, republish) and how the server echoes it,
//! creating the same bucket twice, opening, status, deleting, and the limits being enforced.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use async_nats::jetstream::context::{CreateKeyValueErrorKind, KeyValueErrorKind};
use async_nats::jetstream::kv;
use async_nats::jetstream::stream::{self, DiscardPolicy, Republish, StorageType};
use common::js::{wait_until, JsEnv};
use common::kv::{bucket, get_str, js_code};
use common::{next_msg, within, TIMEOUT};

fn full_config() -> kv::Config {
    kv::Config {
        bucket: "settings".into(),
        description: "application settings".into(),
        history: 10,
        max_age: Duration::from_secs(3600),
        max_value_size: 1024,
        max_bytes: 1 << 20,
        storage: StorageType::Memory,
        republish: Some(Republish {
            source: "$KV.settings.>".into(),
            destination: "repub.settings.>".into(),
            headers_only: false,
        }),
        ..Default::default()
    }
}

#[tokio::test]
async fn bucket_config_is_applied_and_echoed() {
    let env = JsEnv::new().await;
    let store = within(TIMEOUT, "create", env.js.create_key_value(full_config()))
        .await
        .expect("create bucket");
    assert_eq!(store.name, "settings");
    assert_eq!(store.stream_name, "KV_settings");

    let status = store.status().await.expect("status");
    assert_eq!(status.bucket(), "settings");
    assert_eq!(status.history(), 10);
    assert_eq!(status.max_age(), Duration::from_secs(3600));
    assert_eq!(status.values(), 0);
    let c = &status.info.config;
    assert_eq!(c.name, "KV_settings");
    assert_eq!(c.subjects, vec!["$KV.settings.>".to_string()]);
    assert_eq!(c.description.as_deref(), Some("application settings"));
    assert_eq!(c.max_messages_per_subject, 10);
    assert_eq!(c.max_message_size, 1024);
    assert_eq!(c.max_bytes, 1 << 20);
    assert_eq!(c.max_messages, -1);
    assert_eq!(c.max_consumers, -1);
    assert_eq!(c.storage, StorageType::Memory);
    assert_eq!(c.discard, DiscardPolicy::New);
    assert_eq!(c.num_replicas, 1);
    assert!(c.allow_rollup && c.deny_delete && c.allow_direct, "{c:?}");
    assert!(!c.deny_purge && !c.sealed, "{c:?}");
    // The duplicate window defaults to two minutes, capped by the TTL.
    assert_eq!(c.duplicate_window, Duration::from_secs(120));
    assert_eq!(c.republish, full_config().republish);

    // Creating it again with the same config is not an error and gives the same bucket.
    let again = within(
        TIMEOUT,
        "create again",
        env.js.create_key_value(full_config()),
    )
    .await
    .unwrap_or_else(|e| panic!("second create_key_value failed: {e:?}"));
    assert_eq!(
        again.status().await.unwrap().info.config,
        status.info.config
    );
    let opened = env.js.get_key_value("settings").await.expect("open");
    let opened_status = opened.status().await.unwrap();
    assert_eq!(opened_status.info.config, status.info.config);
    assert_eq!(opened_status.history(), 10);

    // A different config for the same name is refused (stream name in use, 10058).
    let mut other = full_config();
    other.history = 3;
    let err = env.js.create_key_value(other).await.expect_err("refused");
    assert_eq!(err.kind(), CreateKeyValueErrorKind::BucketCreate, "{err:?}");
    assert_eq!(js_code(&err), Some(10058), "{err:?}");
}

#[tokio::test]
async fn bucket_defaults_and_history_bounds() {
    let env = JsEnv::new().await;
    let plain = env.js.create_key_value(bucket("plain", 0)).await.unwrap();
    let c = plain.status().await.unwrap().info.config;
    assert_eq!(c.max_messages_per_subject, 1, "history 0 means 1");
    assert_eq!(c.storage, StorageType::File);
    assert_eq!(c.max_age, Duration::ZERO);
    assert_eq!(c.max_bytes, -1);
    assert_eq!(c.max_message_size, -1);
    assert_eq!(c.duplicate_window, Duration::from_secs(120));
    assert_eq!(c.description.as_deref().unwrap_or(""), "");
    // Same default config again.
    env.js.create_key_value(bucket("plain", 0)).await.unwrap();

    let deep = env.js.create_key_value(bucket("deep", 64)).await.unwrap();
    assert_eq!(deep.status().await.unwrap().history(), 64);
    for i in 0..70 {
        deep.put("k", i.to_string().into()).await.unwrap();
    }
    let hist = common::kv::history(&deep, "k").await;
    assert_eq!(hist.len(), 64);
    assert_eq!(hist[0].value, "6");
    assert_eq!(hist[63].value, "69");

    let err = env.js.create_key_value(bucket("toodeep", 65)).await.err();
    assert_eq!(
        err.expect("history 65 refused").kind(),
        CreateKeyValueErrorKind::TooLongHistory
    );
    assert!(env.js.get_stream("KV_toodeep").await.is_err());
}

#[tokio::test]
async fn bucket_metadata_via_stream_config() {
    let env = JsEnv::new().await;
    // async-nats's kv::Config has no metadata; create the bucket's stream the way a client
    // that does would, then open it as a bucket.
    let metadata = HashMap::from([
        ("owner".to_string(), "team-a".to_string()),
        ("purpose".to_string(), "tests".to_string()),
    ]);
    env.js
        .create_stream(stream::Config {
            name: "KV_meta".into(),
            subjects: vec!["$KV.meta.>".into()],
            max_messages_per_subject: 3,
            allow_rollup: true,
            deny_delete: true,
            allow_direct: true,
            discard: DiscardPolicy::New,
            max_messages: -1,
            max_bytes: -1,
            max_message_size: -1,
            metadata: metadata.clone(),
            ..Default::default()
        })
        .await
        .expect("create stream");
    let store = env.js.get_key_value("meta").await.expect("open");
    let status = store.status().await.unwrap();
    assert_eq!(status.history(), 3);
    for (k, v) in &metadata {
        assert_eq!(status.info.config.metadata.get(k), Some(v), "{status:?}");
    }
    store.put("x", "1".into()).await.unwrap();
    assert_eq!(get_str(&store, "x").await.as_deref(), Some("1"));
}

#[tokio::test]
async fn open_status_and_delete_bucket() {
    let env = JsEnv::new().await;
    let err = env.js.get_key_value("missing").await.expect_err("absent");
    assert_eq!(err.kind(), KeyValueErrorKind::GetBucket);

    let store = env.js.create_key_value(bucket("gone", 2)).await.unwrap();
    store.put("a", "1".into()).await.unwrap();
    store.put("a", "2".into()).await.unwrap();
    store.put("b", "1".into()).await.unwrap();
    let status = common::kv::status(&env.js, "gone").await;
    assert_eq!(status.values(), 3);
    assert_eq!(status.info.state.last_sequence, 3);

    let deleted = env.js.delete_key_value("gone").await.expect("delete");
    assert!(deleted.success);
    let err = env.js.get_key_value("gone").await.expect_err("deleted");
    assert_eq!(err.kind(), KeyValueErrorKind::GetBucket);
    assert!(env.js.delete_key_value("gone").await.is_err());

    // A new bucket of that name starts from scratch.
    let fresh = env.js.create_key_value(bucket("gone", 2)).await.unwrap();
    assert_eq!(fresh.get("a").await.unwrap(), None);
    assert_eq!(fresh.put("a", "new".into()).await.unwrap(), 1);
}

#[tokio::test]
async fn ttl_expires_values() {
    let env = JsEnv::new().await;
    let store = env
        .js
        .create_key_value(kv::Config {
            bucket: "short".into(),
            max_age: Duration::from_secs(1),
            ..Default::default()
        })
        .await
        .unwrap();
    let c = store.status().await.unwrap().info.config;
    assert_eq!(c.max_age, Duration::from_secs(1));
    assert_eq!(c.duplicate_window, Duration::from_secs(1), "capped by TTL");
    store.put("k", "v".into()).await.unwrap();
    assert_eq!(get_str(&store, "k").await.as_deref(), Some("v"));
    wait_until(Duration::from_secs(5), "the value to expire", || async {
        store.get("k").await.unwrap().is_none()
    })
    .await;
    assert_eq!(common::kv::status(&env.js, "short").await.values(), 0);
    // The revision counter keeps going after expiry.
    assert_eq!(store.put("k", "w".into()).await.unwrap(), 2);
}

#[tokio::test]
async fn value_size_and_byte_limits() {
    let env = JsEnv::new().await;
    let small = env
        .js
        .create_key_value(kv::Config {
            bucket: "small".into(),
            max_value_size: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    small
        .put("ok", vec![1u8; 100].into())
        .await
        .expect("100 bytes");
    let err = small.put("big", vec![1u8; 101].into()).await.err();
    let err = err.expect("101 bytes refused");
    assert_eq!(js_code(&err), Some(10054), "{err:?}");
    assert_eq!(small.get("big").await.unwrap(), None);

    let capped = env
        .js
        .create_key_value(kv::Config {
            bucket: "capped".into(),
            max_bytes: 4096,
            ..Default::default()
        })
        .await
        .unwrap();
    let mut stored = 0;
    let mut refused = None;
    for i in 0..10 {
        match capped.put(format!("k{i}"), vec![7u8; 1000].into()).await {
            Ok(_) => stored += 1,
            Err(e) => {
                refused = Some(e);
                break;
            }
        }
    }
    let err = refused.expect("the byte limit refused a put (discard new)");
    assert!(
        (1..=4).contains(&stored),
        "stored {stored} values of 1000 bytes"
    );
    // nats-server answers "maximum bytes exceeded" with the store-failed code.
    assert_eq!(js_code(&err), Some(10077), "{err:?}");
    assert!(
        common::kv::chain_text(&err).contains("maximum bytes exceeded"),
        "{err:?}"
    );
    let state = common::kv::status(&env.js, "capped").await.info.state;
    assert_eq!(state.messages, stored);
    assert!(state.bytes <= 4096, "{state:?}");
    // The values that made it are intact.
    assert_eq!(capped.get("k0").await.unwrap().unwrap().len(), 1000);
}

#[tokio::test]
async fn republish_copies_puts_and_deletes() {
    let env = JsEnv::new().await;
    let mut sub = env.nc.subscribe("repub.settings.>").await.unwrap();
    common::sync(&env.nc).await;
    let store = env.js.create_key_value(full_config()).await.unwrap();
    let r1 = store.put("color", "blue".into()).await.unwrap();
    let m = next_msg(&mut sub).await;
    assert_eq!(m.subject.as_str(), "repub.settings.color");
    assert_eq!(m.payload, "blue");
    let h = m.headers.expect("republish headers");
    assert_eq!(
        h.get("Nats-Stream").map(|v| v.as_str()),
        Some("KV_settings")
    );
    assert_eq!(
        h.get("Nats-Subject").map(|v| v.as_str()),
        Some("$KV.settings.color")
    );
    assert_eq!(
        h.get("Nats-Sequence").map(|v| v.to_string()),
        Some(r1.to_string())
    );
    assert_eq!(h.get("Nats-Last-Sequence").map(|v| v.as_str()), Some("0"));

    store.delete("color").await.unwrap();
    let m = next_msg(&mut sub).await;
    assert_eq!(m.subject.as_str(), "repub.settings.color");
    assert!(m.payload.is_empty());
    let h = m.headers.expect("headers");
    assert_eq!(h.get("KV-Operation").map(|v| v.as_str()), Some("DEL"));
    assert_eq!(
        h.get("Nats-Last-Sequence").map(|v| v.to_string()),
        Some(r1.to_string())
    );
}
