//! KV key operations with async-nats: put and get (latest and by revision), create, update
//! (compare-and-set), delete, purge, purging delete markers, key listings, history, and
//! concurrent compare-and-set from several connections.

mod common;

use std::sync::Arc;

use async_nats::jetstream::kv::{CreateErrorKind, Operation, UpdateErrorKind};
use async_nats::jetstream::{self, stream::StorageType};
use common::js::{connect, JsEnv};
use common::kv::{bucket, chain_text, get_str, history, js_code, keys, row, summary};
use common::{within, TIMEOUT};
use tokio::sync::Barrier;

#[tokio::test]
async fn put_get_and_revisions() {
    let env = JsEnv::new().await;
    for (name, storage) in [("revf", StorageType::File), ("revm", StorageType::Memory)] {
        let mut cfg = bucket(name, 5);
        cfg.storage = storage;
        let store = env.js.create_key_value(cfg).await.unwrap();
        assert_eq!(store.get("nothing").await.unwrap(), None);
        assert!(store.entry("nothing").await.unwrap().is_none());

        let r1 = store.put("a", "one".into()).await.unwrap();
        let r2 = store.put("b", "uno".into()).await.unwrap();
        let r3 = store.put("a", "two".into()).await.unwrap();
        assert_eq!((r1, r2, r3), (1, 2, 3), "revisions are stream sequences");
        assert_eq!(get_str(&store, "a").await.as_deref(), Some("two"));
        assert_eq!(get_str(&store, "b").await.as_deref(), Some("uno"));

        let e = store.entry("a").await.unwrap().expect("entry");
        assert_eq!((e.bucket.as_str(), e.key.as_str()), (name, "a"));
        assert_eq!((e.revision, e.operation), (3, Operation::Put));
        assert_eq!(e.value, "two");

        let old = store
            .entry_for_revision("a", 1)
            .await
            .unwrap()
            .expect("rev 1");
        assert_eq!((old.revision, old.value.as_ref()), (1, b"one".as_ref()));
        // A revision that belongs to another key is not this key's entry.
        assert!(store.entry_for_revision("a", 2).await.unwrap().is_none());
        assert!(store.entry_for_revision("a", 99).await.unwrap().is_none());

        // Keys may be hierarchical and use the full allowed alphabet; values may be empty
        // or binary.
        let key = "path/to_the=key-1.sub.x";
        store.put(key, vec![0u8, 255, 10, 13].into()).await.unwrap();
        assert_eq!(
            store.get(key).await.unwrap().unwrap(),
            vec![0u8, 255, 10, 13]
        );
        store.put("empty", "".into()).await.unwrap();
        let e = store.entry("empty").await.unwrap().expect("empty value");
        assert_eq!((e.operation, e.value.len()), (Operation::Put, 0));
        assert_eq!(store.get("empty").await.unwrap().unwrap().len(), 0);
    }
}

#[tokio::test]
async fn create_and_update_compare_and_set() {
    let env = JsEnv::new().await;
    let store = env.js.create_key_value(bucket("cas", 10)).await.unwrap();
    let r1 = store
        .create("k", "first".into())
        .await
        .expect("create absent");
    let err = store
        .create("k", "second".into())
        .await
        .expect_err("exists");
    assert_eq!(err.kind(), CreateErrorKind::AlreadyExists, "{err:?}");
    assert_eq!(get_str(&store, "k").await.as_deref(), Some("first"));

    let r2 = store.update("k", "v2".into(), r1).await.expect("update");
    assert_eq!(r2, r1 + 1);
    let err = store
        .update("k", "stale".into(), r1)
        .await
        .expect_err("stale");
    assert_eq!(err.kind(), UpdateErrorKind::WrongLastRevision, "{err:?}");
    assert_eq!(js_code(&err), Some(10071), "{}", chain_text(&err));
    assert_eq!(get_str(&store, "k").await.as_deref(), Some("v2"));
    // Updating a key that does not exist, with a non-zero revision, also fails.
    let err = store.update("nokey", "x".into(), r2).await.err().unwrap();
    assert_eq!(err.kind(), UpdateErrorKind::WrongLastRevision);
    // Revision 0 means "must not exist".
    let r = store.update("fresh", "x".into(), 0).await.expect("rev 0");
    assert!(store.update("fresh", "y".into(), 0).await.is_err());

    // After a delete (and after a purge) the key can be created again.
    store.delete("k").await.unwrap();
    let r3 = store
        .create("k", "reborn".into())
        .await
        .expect("create after delete");
    assert_eq!(get_str(&store, "k").await.as_deref(), Some("reborn"));
    store.purge("k").await.unwrap();
    let r4 = store
        .create("k", "again".into())
        .await
        .expect("create after purge");
    assert!(r4 > r3 && r3 > r);

    // Deletes and purges with an expected revision.
    let err = store.delete_expect_revision("k", Some(r3)).await.err();
    assert_eq!(err.unwrap().kind(), UpdateErrorKind::WrongLastRevision);
    store
        .delete_expect_revision("k", Some(r4))
        .await
        .expect("delete at rev");
    let del = store.entry("k").await.unwrap().unwrap();
    assert_eq!(del.operation, Operation::Delete);
    let err = store.purge_expect_revision("k", Some(r4)).await.err();
    assert_eq!(err.unwrap().kind(), UpdateErrorKind::WrongLastRevision);
    store
        .purge_expect_revision("k", Some(del.revision))
        .await
        .unwrap();
    assert_eq!(
        store.entry("k").await.unwrap().unwrap().operation,
        Operation::Purge
    );
}

#[tokio::test]
async fn delete_purge_and_purge_deletes() {
    let env = JsEnv::new().await;
    let store = env.js.create_key_value(bucket("dp", 10)).await.unwrap();
    for v in ["1", "2", "3"] {
        store.put("a", v.into()).await.unwrap();
    }
    store.put("b", "x".into()).await.unwrap();
    store.delete("a").await.unwrap();
    assert_eq!(store.get("a").await.unwrap(), None);
    let e = store.entry("a").await.unwrap().expect("delete marker");
    assert_eq!(
        (e.operation, e.revision, e.value.len()),
        (Operation::Delete, 5, 0)
    );
    assert_eq!(
        summary(&history(&store, "a").await),
        vec![
            row("a", Operation::Put, "1"),
            row("a", Operation::Put, "2"),
            row("a", Operation::Put, "3"),
            row("a", Operation::Delete, ""),
        ]
    );
    assert_eq!(keys(&store).await, vec!["b"]);

    // Purge removes the older history and leaves one marker.
    store.put("c", "1".into()).await.unwrap();
    store.put("c", "2".into()).await.unwrap();
    store.purge("c").await.unwrap();
    let h = history(&store, "c").await;
    assert_eq!(summary(&h), vec![row("c", Operation::Purge, "")]);
    assert_eq!(h[0].revision, 8);
    assert_eq!(store.get("c").await.unwrap(), None);
    let status = common::kv::status(&env.js, "dp").await;
    assert_eq!(status.values(), 6, "a: 3 puts + delete, b, c: purge marker");

    // Purging the delete markers (what other clients call PurgeDeletes): a stream purge
    // per marked key, keeping nothing.
    let stream = env.js.get_stream("KV_dp").await.unwrap();
    for key in ["a", "c"] {
        let marker = store.entry(key).await.unwrap().unwrap();
        assert_ne!(marker.operation, Operation::Put);
        let purged = stream
            .purge()
            .filter(format!("$KV.dp.{key}"))
            .await
            .unwrap();
        assert!(purged.success);
    }
    assert!(history(&store, "a").await.is_empty());
    assert!(history(&store, "c").await.is_empty());
    assert!(store.entry("a").await.unwrap().is_none());
    let status = common::kv::status(&env.js, "dp").await;
    assert_eq!(status.values(), 1, "only b is left");
    assert_eq!(keys(&store).await, vec!["b"]);

    // Purge with keep: the newest value stays.
    for v in ["1", "2", "3"] {
        store.put("b", v.into()).await.unwrap();
    }
    let purged = stream.purge().filter("$KV.dp.b").keep(1).await.unwrap();
    assert_eq!(purged.purged, 3);
    assert_eq!(
        summary(&history(&store, "b").await),
        vec![row("b", Operation::Put, "3")]
    );
}

#[tokio::test]
async fn keys_history_and_filters() {
    let env = JsEnv::new().await;
    let store = env.js.create_key_value(bucket("list", 4)).await.unwrap();
    assert!(keys(&store).await.is_empty(), "empty bucket");
    for k in [
        "users.alice",
        "users.bob",
        "groups.admin",
        "groups.ops",
        "top",
    ] {
        store.put(k, k.into()).await.unwrap();
    }
    for i in 0..6 {
        store.put("top", i.to_string().into()).await.unwrap();
    }
    store.delete("groups.ops").await.unwrap();
    assert_eq!(
        keys(&store).await,
        vec!["groups.admin", "top", "users.alice", "users.bob"]
    );

    // History keeps the last `history` values, oldest first, with increasing revisions.
    let h = history(&store, "top").await;
    let values: Vec<_> = summary(&h).into_iter().map(|r| r.2).collect();
    assert_eq!(values, vec!["2", "3", "4", "5"]);
    assert!(h.windows(2).all(|w| w[0].revision < w[1].revision));
    assert_eq!(h.last().unwrap().revision, 11);
    assert!(history(&store, "never").await.is_empty());

    // Filtered listings: a wildcard watch with history replays the matching keys.
    let mut w = store.watch_with_history("users.*").await.unwrap();
    let got = common::kv::next_entries(&mut w, 2).await;
    let mut names: Vec<_> = got.iter().map(|e| e.key.clone()).collect();
    names.sort();
    assert_eq!(names, vec!["users.alice", "users.bob"]);
    assert!(got.last().unwrap().seen_current);
    let mut w = store
        .watch_many_with_history(["groups.>", "top"])
        .await
        .unwrap();
    let got = common::kv::next_entries(&mut w, 3).await;
    let mut rows = summary(&got);
    rows.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        rows,
        vec![
            row("groups.admin", Operation::Put, "groups.admin"),
            row("groups.ops", Operation::Delete, ""),
            row("top", Operation::Put, "5"),
        ]
    );
    common::kv::assert_quiet(&mut w, std::time::Duration::from_millis(300)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_compare_and_set_has_one_winner_per_round() {
    const CLIENTS: usize = 4;
    const ROUNDS: usize = 50;
    let env = JsEnv::new().await;
    let store = env.js.create_key_value(bucket("race", 1)).await.unwrap();
    let start = store.put("counter", "0".into()).await.unwrap();
    let url = env.server.client_url();
    let barrier = Arc::new(Barrier::new(CLIENTS));
    let mut tasks = Vec::new();
    for id in 0..CLIENTS {
        let url = url.clone();
        let barrier = barrier.clone();
        tasks.push(tokio::spawn(async move {
            let js = jetstream::new(connect(&url).await);
            let store = js.get_key_value("race").await.unwrap();
            let mut outcome = Vec::with_capacity(ROUNDS);
            for round in 0..ROUNDS {
                barrier.wait().await;
                let seen = store.entry("counter").await.unwrap().unwrap().revision;
                barrier.wait().await;
                let value = format!("{round}:{id}");
                let result = store.update("counter", value.into(), seen).await;
                let won = match result {
                    Ok(rev) => Some((seen, rev)),
                    Err(e) if e.kind() == UpdateErrorKind::WrongLastRevision => None,
                    Err(e) => panic!("client {id} round {round}: {e:?}"),
                };
                outcome.push(won);
                barrier.wait().await;
            }
            outcome
        }));
    }
    let mut results = Vec::new();
    for t in tasks {
        results.push(
            within(TIMEOUT * 6, "CAS clients", t)
                .await
                .expect("client panicked"),
        );
    }
    // winners[round] = the clients whose update succeeded in that round.
    let winners: Vec<Vec<_>> = (0..ROUNDS)
        .map(|round| {
            results
                .iter()
                .enumerate()
                .filter_map(|(c, outcome)| outcome[round].map(|w| (c, w)))
                .collect()
        })
        .collect();
    let mut expected_seen = start;
    for (round, won) in winners.iter().enumerate() {
        assert_eq!(won.len(), 1, "round {round}: winners {won:?}");
        let (_, (seen, rev)) = won[0];
        assert_eq!(seen, expected_seen, "round {round} read a stale revision");
        assert_eq!(rev, seen + 1, "round {round}");
        expected_seen = rev;
    }
    let last = store.entry("counter").await.unwrap().unwrap();
    assert_eq!(last.revision, start + ROUNDS as u64);
    let winner = winners[ROUNDS - 1][0].0;
    assert_eq!(last.value, format!("{}:{winner}", ROUNDS - 1));
}
