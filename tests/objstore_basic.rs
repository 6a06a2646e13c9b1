//! Object Store with async-nats: creating, opening and deleting stores, chunked puts (a 20 MiB
//! object and an empty one), reading back with the content verified, info, list, watch,
//! delete, replacing an object, links to objects and to other stores, metadata updates, and
//! sealing.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use async_nats::jetstream::object_store::{
    self, GetErrorKind, ObjectInfo, ObjectMetadata, UpdateMetadata,
};
use async_nats::jetstream::stream::StorageType;
use common::js::JsEnv;
use common::kv::{collect, read_object};
use common::{pattern, within, TIMEOUT};
use futures::StreamExt;

fn store_config(bucket: &str) -> object_store::Config {
    object_store::Config {
        bucket: bucket.into(),
        ..Default::default()
    }
}

async fn next_info(w: &mut object_store::Watch) -> ObjectInfo {
    within(TIMEOUT, "an object store watch update", w.next())
        .await
        .expect("watch ended")
        .expect("watch error")
}

async fn names(store: &object_store::ObjectStore) -> Vec<String> {
    let list = store.list().await.expect("list");
    let mut names: Vec<_> = collect(list).await.into_iter().map(|i| i.name).collect();
    names.sort();
    names
}

/// Messages currently in the store's stream.
async fn stream_messages(env: &JsEnv, bucket: &str) -> u64 {
    env.info(&format!("OBJ_{bucket}")).await["state"]["messages"]
        .as_u64()
        .expect("state.messages")
}

#[tokio::test]
async fn create_open_and_delete_stores() {
    let env = JsEnv::new().await;
    let cfg = object_store::Config {
        bucket: "assets".into(),
        description: Some("build assets".into()),
        max_bytes: 64 << 20,
        storage: StorageType::Memory,
        ..Default::default()
    };
    env.js
        .create_object_store(cfg.clone())
        .await
        .expect("create");
    let info = env.info("OBJ_assets").await;
    let c = &info["config"];
    assert_eq!(
        c["subjects"],
        serde_json::json!(["$O.assets.C.>", "$O.assets.M.>"])
    );
    assert_eq!(c["description"], "build assets");
    assert_eq!(c["max_bytes"], 64 << 20);
    assert_eq!(c["storage"], "memory");
    assert_eq!(c["discard"], "new");
    assert_eq!(c["allow_rollup_hdrs"], true);
    assert_eq!(c["allow_direct"], true);
    // The same config again is fine.
    env.js.create_object_store(cfg).await.expect("create again");
    let store = env.js.get_object_store("assets").await.expect("open");
    assert!(names(&store).await.is_empty());

    assert!(env.js.get_object_store("nope").await.is_err());
    env.js.delete_object_store("assets").await.expect("delete");
    assert!(env.js.get_object_store("assets").await.is_err());
    assert!(env.js.get_stream("OBJ_assets").await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_and_empty_objects_round_trip() {
    let env = JsEnv::new().await;
    let store = env
        .js
        .create_object_store(store_config("blobs"))
        .await
        .unwrap();
    let big = pattern(20 << 20);
    let info = within(
        Duration::from_secs(120),
        "20 MiB put",
        store.put("big.bin", &mut big.as_slice()),
    )
    .await
    .expect("put 20 MiB");
    assert_eq!(info.size, big.len());
    assert!(
        info.chunks >= 160,
        "128 KiB chunks at most: {}",
        info.chunks
    );
    assert!(info.digest.as_deref().unwrap().starts_with("SHA-256="));
    assert_eq!(read_object(&store, "big.bin").await, big);

    let empty = store
        .put("empty", &mut &b""[..])
        .await
        .expect("put 0 bytes");
    assert_eq!((empty.size, empty.chunks), (0, 0));
    assert!(read_object(&store, "empty").await.is_empty());

    let small = store
        .put(
            ObjectMetadata {
                name: "notes/readme.txt".into(),
                description: Some("a text".into()),
                chunk_size: Some(7),
                metadata: HashMap::from([("lang".to_string(), "en".to_string())]),
                ..Default::default()
            },
            &mut &b"hello object store"[..],
        )
        .await
        .unwrap();
    assert_eq!(small.size, 18);
    assert!(
        small.chunks >= 2,
        "chunks of at most 7 bytes: {}",
        small.chunks
    );
    assert_eq!(
        read_object(&store, "notes/readme.txt").await,
        b"hello object store"
    );

    let info = store.info("notes/readme.txt").await.expect("info");
    assert_eq!(info.description.as_deref(), Some("a text"));
    assert_eq!(info.metadata.get("lang").map(String::as_str), Some("en"));
    assert_eq!((info.size, info.bucket.as_str()), (18, "blobs"));
    assert_eq!(info.chunks, small.chunks);
    assert_eq!(info.nuid, small.nuid);
    assert_eq!(info.digest, small.digest);
    assert!(!info.deleted);
    let err = store.info("missing").await.err().unwrap();
    assert_eq!(err.kind(), object_store::InfoErrorKind::NotFound);
    let err = store.get("missing").await.err().unwrap();
    assert_eq!(err.kind(), GetErrorKind::NotFound);

    let big_chunks = store.info("big.bin").await.unwrap().chunks as u64;
    assert_eq!(
        stream_messages(&env, "blobs").await,
        (big_chunks + 1) + 1 + (small.chunks as u64 + 1),
        "chunks plus one meta message per object"
    );
}

#[tokio::test]
async fn list_watch_replace_and_delete() {
    let env = JsEnv::new().await;
    let store = env
        .js
        .create_object_store(store_config("docs"))
        .await
        .unwrap();
    store.put("a", &mut &b"first a"[..]).await.unwrap();
    store.put("b", &mut &b"bee"[..]).await.unwrap();
    let mut history = store.watch_with_history().await.unwrap();
    let mut updates = store.watch().await.unwrap();
    let mut seen = vec![
        next_info(&mut history).await.name,
        next_info(&mut history).await.name,
    ];
    seen.sort();
    assert_eq!(seen, vec!["a", "b"]);
    assert_eq!(names(&store).await, vec!["a", "b"]);
    let before = stream_messages(&env, "docs").await;
    assert_eq!(before, 4, "one chunk and one meta per object");

    // Replacing an object swaps its chunks; the old ones are purged.
    let replaced = store.put("a", &mut &b"second a, longer"[..]).await.unwrap();
    let u = next_info(&mut updates).await;
    assert_eq!((u.name.as_str(), u.size, u.deleted), ("a", 16, false));
    assert_eq!(u.nuid, replaced.nuid);
    assert_eq!(next_info(&mut history).await.nuid, replaced.nuid);
    assert_eq!(read_object(&store, "a").await, b"second a, longer");
    assert_eq!(stream_messages(&env, "docs").await, 4);

    // Deleting leaves a deleted meta entry and removes the chunks.
    store.delete("b").await.expect("delete");
    let u = next_info(&mut updates).await;
    assert_eq!(
        (u.name.as_str(), u.deleted, u.size, u.chunks),
        ("b", true, 0, 0)
    );
    assert_eq!(names(&store).await, vec!["a"]);
    assert_eq!(
        store.get("b").await.err().unwrap().kind(),
        GetErrorKind::NotFound
    );
    let info = store.info("b").await.expect("deleted info");
    assert!(info.deleted);
    assert_eq!(
        stream_messages(&env, "docs").await,
        3,
        "a chunk, a meta, b meta"
    );
    assert!(store.delete("never").await.is_err());

    // A new object with the deleted name works again.
    store.put("b", &mut &b"bee again"[..]).await.unwrap();
    assert_eq!(read_object(&store, "b").await, b"bee again");
    let u = next_info(&mut updates).await;
    assert_eq!((u.name.as_str(), u.deleted), ("b", false));
}

#[tokio::test]
async fn links_to_objects_and_stores() {
    let env = JsEnv::new().await;
    let main = env
        .js
        .create_object_store(store_config("main"))
        .await
        .unwrap();
    let other = env
        .js
        .create_object_store(store_config("other"))
        .await
        .unwrap();
    let target = main
        .put("target", &mut &b"linked content"[..])
        .await
        .unwrap();
    let remote = other.put("remote", &mut &b"far away"[..]).await.unwrap();

    let link = main.add_link("alias", &target).await.expect("add_link");
    let opts = link.options.clone().expect("options");
    let l = opts.link.expect("link");
    assert_eq!(
        (l.bucket.as_str(), l.name.as_deref()),
        ("main", Some("target"))
    );
    assert_eq!(read_object(&main, "alias").await, b"linked content");

    // A link to an object in another store.
    main.add_link("cross", &remote)
        .await
        .expect("cross-store link");
    assert_eq!(read_object(&main, "cross").await, b"far away");

    // A link to a whole store cannot be read as an object.
    let blink = main
        .add_bucket_link("to-other", "other")
        .await
        .expect("bucket link");
    let l = blink.options.unwrap().link.unwrap();
    assert_eq!((l.bucket.as_str(), l.name), ("other", None));
    let err = main.get("to-other").await.err().unwrap();
    assert_eq!(err.kind(), GetErrorKind::BucketLink);

    // An object cannot be turned into a link, and a link to a deleted object is refused.
    assert!(main.add_bucket_link("target", "other").await.is_err());
    other.delete("remote").await.unwrap();
    let gone = other.info("remote").await.unwrap();
    assert!(main.add_link("dead", &gone).await.is_err());
    assert_eq!(
        names(&main).await,
        vec!["alias", "cross", "target", "to-other"]
    );
}

#[tokio::test]
async fn update_metadata_and_rename() {
    let env = JsEnv::new().await;
    let store = env
        .js
        .create_object_store(store_config("meta"))
        .await
        .unwrap();
    let meta = ObjectMetadata {
        name: "report".into(),
        metadata: HashMap::from([("q".to_string(), "1".to_string())]),
        ..Default::default()
    };
    let orig = store.put(meta, &mut &b"q1 numbers"[..]).await.unwrap();
    store.put("taken", &mut &b"x"[..]).await.unwrap();

    let updated = store
        .update_metadata(
            "report",
            UpdateMetadata {
                name: "report".into(),
                description: Some("quarterly".into()),
                // async-nats 0.51 only applies the name and description.
                ..Default::default()
            },
        )
        .await
        .expect("update metadata");
    assert_eq!(updated.description.as_deref(), Some("quarterly"));
    let info = store.info("report").await.unwrap();
    assert_eq!(info.description.as_deref(), Some("quarterly"));
    assert_eq!(info.metadata.get("q").map(String::as_str), Some("1"));
    assert_eq!(
        (info.nuid.as_str(), info.size),
        (orig.nuid.as_str(), orig.size)
    );
    assert_eq!(read_object(&store, "report").await, b"q1 numbers");

    // Renaming onto an existing name is refused; onto a fresh name moves the object.
    let clash = UpdateMetadata {
        name: "taken".into(),
        ..Default::default()
    };
    assert!(store.update_metadata("report", clash).await.is_err());
    let rename = UpdateMetadata {
        name: "report-2024".into(),
        description: Some("renamed".into()),
        ..Default::default()
    };
    store
        .update_metadata("report", rename)
        .await
        .expect("rename");
    assert_eq!(read_object(&store, "report-2024").await, b"q1 numbers");
    assert!(store.info("report").await.is_err());
    assert_eq!(names(&store).await, vec!["report-2024", "taken"]);
}

#[tokio::test]
async fn sealed_store_is_read_only() {
    let env = JsEnv::new().await;
    let mut store = env
        .js
        .create_object_store(store_config("vault"))
        .await
        .unwrap();
    store.put("doc", &mut &b"kept"[..]).await.unwrap();
    store.seal().await.expect("seal");
    let info = env.info("OBJ_vault").await;
    assert_eq!(info["config"]["sealed"], true, "{info}");
    let store = env.js.get_object_store("vault").await.unwrap();
    assert_eq!(read_object(&store, "doc").await, b"kept");
    assert!(store.put("more", &mut &b"no"[..]).await.is_err());
    assert!(store.delete("doc").await.is_err());
    assert_eq!(read_object(&store, "doc").await, b"kept");
    assert_eq!(names(&store).await, vec!["doc"]);
}
