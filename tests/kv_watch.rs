//! KV watchers with async-nats: initial values then live updates, updates only, from a
//! revision, several key filters, deletes and purges as such, and per-key TTLs (limit markers)
//! whose expiry a watcher sees as a marker.

mod common;

use std::time::Duration;

use async_nats::jetstream::kv::{self, Operation};
use common::js::{wait_until, JsEnv};
use common::kv::{assert_quiet, bucket, history, next_entries, next_entry, row, summary};

const QUIET: Duration = Duration::from_millis(300);

#[tokio::test]
async fn watch_with_history_replays_then_follows() {
    let env = JsEnv::new().await;
    let store = env.js.create_key_value(bucket("w", 5)).await.unwrap();
    store.put("a", "a1".into()).await.unwrap();
    store.put("a", "a2".into()).await.unwrap();
    store.put("b", "b1".into()).await.unwrap();
    store.put("c", "c1".into()).await.unwrap();
    store.delete("c").await.unwrap();

    let mut w = store.watch_with_history(">").await.unwrap();
    let initial = next_entries(&mut w, 3).await;
    assert_eq!(
        summary(&initial),
        vec![
            row("a", Operation::Put, "a2"),
            row("b", Operation::Put, "b1"),
            row("c", Operation::Delete, ""),
        ],
        "last value per key, in revision order"
    );
    let revs: Vec<_> = initial.iter().map(|e| e.revision).collect();
    assert_eq!(revs, vec![2, 3, 5]);
    let deltas: Vec<_> = initial.iter().map(|e| e.delta).collect();
    assert_eq!(
        deltas,
        vec![2, 1, 0],
        "pending count down to the current state"
    );
    assert!(
        initial[2].seen_current,
        "last initial value marks the watcher current"
    );
    assert!(initial.iter().all(|e| e.bucket == "w"));
    assert_quiet(&mut w, QUIET).await;

    store.put("b", "b2".into()).await.unwrap();
    store.delete("a").await.unwrap();
    store.put("d", "d1".into()).await.unwrap();
    store.purge("b").await.unwrap();
    let live = next_entries(&mut w, 4).await;
    assert_eq!(
        summary(&live),
        vec![
            row("b", Operation::Put, "b2"),
            row("a", Operation::Delete, ""),
            row("d", Operation::Put, "d1"),
            row("b", Operation::Purge, ""),
        ]
    );
    let revs: Vec<_> = live.iter().map(|e| e.revision).collect();
    assert_eq!(revs, vec![6, 7, 8, 9]);
    assert!(live.iter().all(|e| e.seen_current));
    assert_quiet(&mut w, QUIET).await;
}

#[tokio::test]
async fn watch_on_empty_bucket_and_single_key() {
    let env = JsEnv::new().await;
    let store = env.js.create_key_value(bucket("empty", 1)).await.unwrap();
    let mut all = store.watch_with_history(">").await.unwrap();
    let mut one = store.watch_with_history("x").await.unwrap();
    assert_quiet(&mut all, QUIET).await;
    store.put("y", "1".into()).await.unwrap();
    store.put("x", "2".into()).await.unwrap();
    let e = next_entry(&mut all).await;
    assert_eq!((e.key.as_str(), e.revision, e.seen_current), ("y", 1, true));
    assert_eq!(next_entry(&mut all).await.key, "x");
    let e = next_entry(&mut one).await;
    assert_eq!((e.key.as_str(), e.revision), ("x", 2));
    assert_quiet(&mut one, QUIET).await;
}

#[tokio::test]
async fn updates_only_watchers() {
    let env = JsEnv::new().await;
    let store = env.js.create_key_value(bucket("upd", 3)).await.unwrap();
    store.put("k", "old".into()).await.unwrap();
    store.put("other", "old".into()).await.unwrap();

    // In async-nats 0.51 `watch` and `watch_all` deliver new changes only.
    let mut key = store.watch("k").await.unwrap();
    let mut all = store.watch_all().await.unwrap();
    let mut prefix = store.watch("grp.*").await.unwrap();
    assert_quiet(&mut all, QUIET).await;

    store.put("k", "new".into()).await.unwrap();
    store.put("grp.one", "g".into()).await.unwrap();
    store.put("grp.one.deeper", "no".into()).await.unwrap();
    store.delete("k").await.unwrap();

    assert_eq!(
        summary(&next_entries(&mut key, 2).await),
        vec![
            row("k", Operation::Put, "new"),
            row("k", Operation::Delete, "")
        ]
    );
    assert_quiet(&mut key, QUIET).await;
    let got = next_entries(&mut all, 4).await;
    let revs: Vec<_> = got.iter().map(|e| e.revision).collect();
    assert_eq!(revs, vec![3, 4, 5, 6]);
    assert_eq!(got[3].operation, Operation::Delete);
    let e = next_entry(&mut prefix).await;
    assert_eq!((e.key.as_str(), e.revision), ("grp.one", 4));
    assert_quiet(&mut prefix, QUIET).await;
}

#[tokio::test]
async fn watch_many_filters_several_keys() {
    let env = JsEnv::new().await;
    let store = env.js.create_key_value(bucket("many", 1)).await.unwrap();
    store.put("a", "before".into()).await.unwrap();
    store.put("c.1", "before".into()).await.unwrap();
    let mut w = store.watch_many(["a", "c.*"]).await.unwrap();
    assert_quiet(&mut w, QUIET).await;
    for k in ["a", "b", "c.1", "c.2", "d"] {
        store.put(k, "after".into()).await.unwrap();
    }
    store.delete("c.1").await.unwrap();
    assert_eq!(
        summary(&next_entries(&mut w, 4).await),
        vec![
            row("a", Operation::Put, "after"),
            row("c.1", Operation::Put, "after"),
            row("c.2", Operation::Put, "after"),
            row("c.1", Operation::Delete, ""),
        ]
    );
    assert_quiet(&mut w, QUIET).await;
}

#[tokio::test]
async fn watch_from_revision_resumes() {
    let env = JsEnv::new().await;
    let store = env.js.create_key_value(bucket("resume", 10)).await.unwrap();
    for i in 1..=6 {
        let key = if i % 2 == 0 { "even" } else { "odd" };
        store.put(key, i.to_string().into()).await.unwrap();
    }
    store.delete("odd").await.unwrap();

    // All keys from revision 4 on, history included (not just the last value per key).
    let mut w = store.watch_all_from_revision(4).await.unwrap();
    let got = next_entries(&mut w, 4).await;
    assert_eq!(
        summary(&got),
        vec![
            row("even", Operation::Put, "4"),
            row("odd", Operation::Put, "5"),
            row("even", Operation::Put, "6"),
            row("odd", Operation::Delete, ""),
        ]
    );
    assert_eq!(got[0].revision, 4);
    assert!(got[3].seen_current);
    store.put("odd", "8".into()).await.unwrap();
    assert_eq!(next_entry(&mut w).await.revision, 8);

    // One key from revision 3: only that key's entries at or after it.
    let mut w = store.watch_from_revision("odd", 3).await.unwrap();
    let revs: Vec<_> = next_entries(&mut w, 4)
        .await
        .iter()
        .map(|e| e.revision)
        .collect();
    assert_eq!(revs, vec![3, 5, 7, 8]);
    assert_quiet(&mut w, QUIET).await;

    // Past the end: nothing until something new arrives.
    let mut w = store.watch_all_from_revision(100).await.unwrap();
    assert_quiet(&mut w, QUIET).await;
}

fn ttl_bucket(name: &str, marker_ttl: Duration) -> kv::Config {
    kv::Config {
        bucket: name.into(),
        history: 3,
        limit_markers: Some(marker_ttl),
        ..Default::default()
    }
}

#[tokio::test]
async fn per_key_ttl_expiry_is_seen_as_marker() {
    let env = JsEnv::new().await;
    let store = env
        .js
        .create_key_value(ttl_bucket("ttl", Duration::from_secs(2)))
        .await
        .expect("bucket with limit markers");
    let c = common::kv::status(&env.js, "ttl").await.info.config;
    assert!(c.allow_message_ttl, "{c:?}");
    assert_eq!(c.subject_delete_marker_ttl, Some(Duration::from_secs(2)));

    let mut w = store.watch_all().await.unwrap();
    let rev = store
        .create_with_ttl("session", "token".into(), Duration::from_secs(1))
        .await
        .expect("create with ttl");
    store.put("keep", "forever".into()).await.unwrap();
    let put = next_entry(&mut w).await;
    assert_eq!(
        (put.key.as_str(), put.operation, put.revision),
        ("session", Operation::Put, rev)
    );
    assert_eq!(next_entry(&mut w).await.key, "keep");
    // Expiry after ~1 s: the server writes a marker that the watcher reports as a purge.
    let marker = next_entry(&mut w).await;
    assert_eq!(marker.key, "session");
    assert_eq!(marker.operation, Operation::Purge, "{marker:?}");
    assert!(marker.revision > rev);
    assert_eq!(store.get("session").await.unwrap(), None);
    assert_eq!(
        common::kv::get_str(&store, "keep").await.as_deref(),
        Some("forever")
    );
    // The key can be created again once expired.
    store
        .create("session", "again".into())
        .await
        .expect("recreate");
    // The marker itself goes away after the marker TTL.
    wait_until(Duration::from_secs(8), "the marker to expire", || async {
        history(&store, "session").await.len() == 1
    })
    .await;
}

#[tokio::test]
async fn purge_with_ttl_marker_expires() {
    let env = JsEnv::new().await;
    let store = env
        .js
        .create_key_value(ttl_bucket("pttl", Duration::from_secs(1)))
        .await
        .unwrap();
    store.put("k", "1".into()).await.unwrap();
    store.put("k", "2".into()).await.unwrap();
    let mut w = store.watch("k").await.unwrap();
    store
        .purge_with_ttl("k", Duration::from_secs(1))
        .await
        .expect("purge with ttl");
    let e = next_entry(&mut w).await;
    assert_eq!((e.operation, e.revision), (Operation::Purge, 3));
    assert_eq!(
        summary(&history(&store, "k").await),
        vec![row("k", Operation::Purge, "")]
    );
    wait_until(
        Duration::from_secs(6),
        "the purge marker to expire",
        || async { history(&store, "k").await.is_empty() },
    )
    .await;
    assert_eq!(common::kv::status(&env.js, "pttl").await.values(), 0);
}

#[tokio::test]
async fn bucket_max_age_with_limit_markers_notifies_watchers() {
    let env = JsEnv::new().await;
    let store = env
        .js
        .create_key_value(kv::Config {
            max_age: Duration::from_secs(1),
            ..ttl_bucket("aged", Duration::from_secs(2))
        })
        .await
        .unwrap();
    let mut w = store.watch_all().await.unwrap();
    let rev = store.put("k", "v".into()).await.unwrap();
    assert_eq!(next_entry(&mut w).await.revision, rev);
    let marker = next_entry(&mut w).await;
    assert_eq!(
        (marker.key.as_str(), marker.operation),
        ("k", Operation::Purge)
    );
    assert_eq!(store.get("k").await.unwrap(), None);
}

#[tokio::test]
async fn ttl_needs_limit_markers() {
    let env = JsEnv::new().await;
    let store = env.js.create_key_value(bucket("nottl", 1)).await.unwrap();
    let err = store
        .create_with_ttl("k", "v".into(), Duration::from_secs(1))
        .await
        .expect_err("per-message TTL is off for this bucket");
    // nats-server: "per-message TTL is disabled" (10166).
    assert_eq!(common::kv::js_code(&err), Some(10166), "{err:?}");
    assert_eq!(store.get("k").await.unwrap(), None);
}
