//! KV and Object Store across restarts: a graceful shutdown of the embedded server and
//! `kill -9` of the binary keep every acknowledged put, the revision numbers and the config, and
//! a watcher created after the restart with `watch_all_from_revision` resumes exactly where a
//! previous watcher stopped.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use async_nats::jetstream::kv::{Operation, Store};
use async_nats::jetstream::{self, object_store};
use common::child::ChildServer;
use common::js::{connect, JsEnv};
use common::kv::{bucket, get_str, history, keys, next_entries, read_object, summary};
use common::{pattern, within, TIMEOUT};

const BIN: &str = env!("CARGO_BIN_EXE_causeway");

/// Checks that every `(revision -> (key, value))` in `acked` is readable, that the latest value
/// of each key is its highest acknowledged revision, and that a watcher from `from` replays
/// exactly the acknowledged entries from there on.
async fn verify_acked(store: &Store, acked: &BTreeMap<u64, (String, String)>, from: u64) {
    let mut latest: BTreeMap<&str, (u64, &str)> = BTreeMap::new();
    for (&rev, (key, value)) in acked {
        let e = store
            .entry_for_revision(key.as_str(), rev)
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("acknowledged revision {rev} ({key}) is missing"));
        assert_eq!(e.value, value.as_bytes(), "revision {rev}");
        latest.insert(key, (rev, value));
    }
    for (key, (rev, value)) in &latest {
        let e = store.entry(*key).await.unwrap().expect("latest entry");
        assert_eq!((e.revision, e.value.as_ref()), (*rev, value.as_bytes()));
    }
    let expected: Vec<_> = acked.range(from..).collect();
    let mut w = store.watch_all_from_revision(from).await.unwrap();
    let got = next_entries(&mut w, expected.len()).await;
    for (e, (rev, (key, value))) in got.iter().zip(&expected) {
        assert_eq!((e.revision, &e.key), (**rev, key), "resumed watch order");
        assert_eq!(e.value, value.as_bytes());
    }
    common::kv::assert_quiet(&mut w, Duration::from_millis(200)).await;
}

#[tokio::test]
async fn graceful_restart_keeps_kv_and_objects() {
    let env = JsEnv::new().await;
    let mut cfg = bucket("durable", 5);
    cfg.description = "survives restarts".into();
    let store = env.js.create_key_value(cfg.clone()).await.unwrap();
    let mut acked = BTreeMap::new();
    for (key, value) in [("a", "a1"), ("b", "b1"), ("a", "a2"), ("c", "c1")] {
        let rev = store.put(key, value.into()).await.unwrap();
        acked.insert(rev, (key.to_string(), value.to_string()));
    }
    let rev = store.update("a", "a3".into(), 3).await.unwrap();
    acked.insert(rev, ("a".into(), "a3".into()));
    store.delete("b").await.unwrap();
    acked.insert(6, ("b".into(), String::new()));
    let objects = env
        .js
        .create_object_store(object_store::Config {
            bucket: "files".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let blob = pattern(1 << 20);
    objects.put("blob", &mut blob.as_slice()).await.unwrap();

    // A watcher that processed up to revision 3 before the restart.
    let mut w = store.watch_all_from_revision(1).await.unwrap();
    let processed = next_entries(&mut w, 3).await.last().unwrap().revision;
    drop(w);
    drop(store);
    drop(objects);

    let env = env.restart().await;
    let store = env
        .js
        .get_key_value("durable")
        .await
        .expect("bucket after restart");
    let status = store.status().await.unwrap();
    assert_eq!(status.history(), 5);
    assert_eq!(status.values(), 6);
    assert_eq!(
        status.info.config.description.as_deref(),
        Some("survives restarts")
    );
    // The same create call still matches the recovered config.
    env.js.create_key_value(cfg).await.expect("same config");

    assert_eq!(get_str(&store, "a").await.as_deref(), Some("a3"));
    assert_eq!(
        store.entry("b").await.unwrap().unwrap().operation,
        Operation::Delete
    );
    assert_eq!(keys(&store).await, vec!["a", "c"]);
    let h = summary(&history(&store, "a").await);
    assert_eq!(h.len(), 3, "{h:?}");
    verify_acked(&store, &acked, processed + 1).await;
    assert_eq!(
        store.put("d", "d1".into()).await.unwrap(),
        7,
        "revisions continue"
    );
    let err = store.update("a", "stale".into(), 3).await;
    assert!(err.is_err(), "CAS still checks the recovered revision");

    let objects = env.js.get_object_store("files").await.unwrap();
    assert_eq!(read_object(&objects, "blob").await, blob);
    env.stop().await;
}

/// Puts `key-<task>` values from `tasks` concurrent connections until `stop` or an error;
/// returns every acknowledged revision.
async fn writers(url: String, tasks: usize, stop: usize) -> BTreeMap<u64, (String, String)> {
    let mut handles = Vec::new();
    for t in 0..tasks {
        let url = url.clone();
        handles.push(tokio::spawn(async move {
            let js = jetstream::ContextBuilder::new()
                .timeout(Duration::from_secs(2))
                .build(connect(&url).await);
            let store = js.get_key_value("crash").await.unwrap();
            let mut acked = Vec::new();
            for i in 0..stop {
                let key = format!("key-{t}.{}", i % 7);
                let value = format!("{t}/{i}");
                match store.put(&key, value.clone().into()).await {
                    Ok(rev) => acked.push((rev, (key, value))),
                    Err(_) => break,
                }
            }
            acked
        }));
    }
    let mut all = BTreeMap::new();
    for h in handles {
        let acked = within(TIMEOUT * 6, "writers", h).await.expect("writer");
        for (rev, kv) in acked {
            assert!(all.insert(rev, kv).is_none(), "revision {rev} acked twice");
        }
    }
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_keeps_acknowledged_puts_and_watch_position() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = ChildServer::spawn(BIN, dir.path(), -1);
    let addr = server.wait_ready().await;
    let url = format!("nats://{addr}");
    let js = jetstream::new(connect(&url).await);
    let store = js.create_key_value(bucket("crash", 3)).await.unwrap();
    let objects = js
        .create_object_store(object_store::Config {
            bucket: "crashfiles".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let blob = pattern(3 << 20);
    objects.put("blob", &mut blob.as_slice()).await.unwrap();

    // Phase one: a settled batch, a watcher that processes part of it.
    let mut acked = writers(url.clone(), 3, 40).await;
    assert_eq!(acked.len(), 120);
    let mut w = store.watch_all_from_revision(1).await.unwrap();
    let processed = next_entries(&mut w, 50).await.last().unwrap().revision;
    drop(w);

    // Phase two: writers running while the server is killed.
    let burst = tokio::spawn(writers(url.clone(), 2, 100_000));
    common::js::wait_until(TIMEOUT, "writes after the watcher", || async {
        js.get_key_value("crash")
            .await
            .unwrap()
            .status()
            .await
            .unwrap()
            .info
            .state
            .last_sequence
            > 200
    })
    .await;
    server.kill9();
    let during = within(TIMEOUT * 3, "writers to notice", burst)
        .await
        .expect("writers");
    assert!(!during.is_empty(), "some puts were acknowledged mid-burst");
    acked.extend(during);
    drop((store, objects, js));

    let mut server = ChildServer::spawn(BIN, dir.path(), -1);
    let addr = server.wait_ready().await;
    let js = jetstream::new(connect(&format!("nats://{addr}")).await);
    let store = js
        .get_key_value("crash")
        .await
        .expect("bucket after kill -9");
    assert_eq!(store.status().await.unwrap().history(), 3);
    let last = *acked.keys().next_back().unwrap();
    let state = store.status().await.unwrap().info.state;
    assert!(state.last_sequence >= last, "{state:?} < acked {last}");

    // Puts in flight at the kill may have been stored without their ack reaching the client;
    // they count towards a key's history (3). Every acknowledged value must be in its key's
    // history unless three newer values of that key are.
    let mut by_key: BTreeMap<&str, Vec<(u64, &str)>> = BTreeMap::new();
    for (rev, (key, value)) in &acked {
        by_key.entry(key).or_default().push((*rev, value));
    }
    let mut stored = BTreeMap::new();
    for (key, revs) in by_key {
        let h = history(&store, key).await;
        let in_history: Vec<_> = h.iter().map(|e| e.revision).collect();
        assert!(h.len() <= 3, "{key}: {in_history:?}");
        for (rev, value) in revs {
            match h.iter().find(|e| e.revision == rev) {
                Some(e) => assert_eq!(e.value, value.as_bytes(), "{key}@{rev}"),
                None => assert!(
                    h.len() == 3 && h[0].revision > rev,
                    "{key}: acknowledged revision {rev} missing, history {in_history:?}"
                ),
            }
        }
        for e in h {
            stored.insert(e.revision, (e.key, e.value));
        }
    }
    assert_eq!(
        stored.len() as u64,
        state.messages,
        "every stored value is accounted for"
    );

    // A watcher created now, resuming after the last revision processed before the crash,
    // replays exactly the stored values from there on, in order.
    let expected: Vec<_> = stored.range(processed + 1..).collect();
    let mut w = store.watch_all_from_revision(processed + 1).await.unwrap();
    let got = next_entries(&mut w, expected.len()).await;
    for (e, (rev, (key, value))) in got.iter().zip(&expected) {
        assert_eq!((e.revision, &e.key, &e.value), (**rev, key, value));
    }
    assert!(got.last().unwrap().seen_current);
    common::kv::assert_quiet(&mut w, Duration::from_millis(200)).await;
    let next = store.put("after", "restart".into()).await.unwrap();
    assert_eq!(next, state.last_sequence + 1, "revisions continue");
    let objects = js.get_object_store("crashfiles").await.unwrap();
    assert_eq!(read_object(&objects, "blob").await, blob);
    server.terminate().await;
}
