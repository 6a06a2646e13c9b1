//! Key-Value and Object Store helpers for the async-nats tests: bounded reads of watchers,
//! history and key listings, reading whole objects, and pulling the server's error code out of
//! a client error.

use std::time::Duration;

use async_nats::jetstream::kv::{self, Entry, Operation};
use async_nats::jetstream::object_store::ObjectStore;
use futures::{Stream, StreamExt};

use super::{within, TIMEOUT};

/// A KV config for `bucket` with `history` values per key, everything else default.
pub fn bucket(bucket: &str, history: i64) -> kv::Config {
    kv::Config {
        bucket: bucket.to_string(),
        history,
        ..Default::default()
    }
}

/// The next entry of a KV watcher, bounded by [`TIMEOUT`].
pub async fn next_entry(watch: &mut kv::Watch) -> Entry {
    within(TIMEOUT, "a KV watch entry", watch.next())
        .await
        .expect("watch ended")
        .expect("watch error")
}

/// The next `n` entries of a KV watcher, each bounded by [`TIMEOUT`].
pub async fn next_entries(watch: &mut kv::Watch, n: usize) -> Vec<Entry> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(next_entry(watch).await);
    }
    out
}

/// Asserts that a KV watcher yields nothing within `dur`.
pub async fn assert_quiet(watch: &mut kv::Watch, dur: Duration) {
    if let Ok(Some(e)) = tokio::time::timeout(dur, watch.next()).await {
        panic!("unexpected watch entry: {e:?}");
    }
}

/// Collects a finite stream of results (history, keys, object list), bounded by [`TIMEOUT`].
pub async fn collect<T, E: std::fmt::Debug>(s: impl Stream<Item = Result<T, E>>) -> Vec<T> {
    within(TIMEOUT, "the end of a listing", s.collect::<Vec<_>>())
        .await
        .into_iter()
        .map(|r| r.expect("listing error"))
        .collect()
}

/// The whole history of `key`.
pub async fn history(store: &kv::Store, key: &str) -> Vec<Entry> {
    let h = within(TIMEOUT, "history", store.history(key))
        .await
        .expect("history failed");
    collect(h).await
}

/// The keys of `store`, sorted.
pub async fn keys(store: &kv::Store) -> Vec<String> {
    let k = within(TIMEOUT, "keys", store.keys())
        .await
        .expect("keys failed");
    let mut keys = collect(k).await;
    keys.sort();
    keys
}

/// `(key, operation, value)` of each entry, for compact assertions.
pub fn summary(entries: &[Entry]) -> Vec<(String, Operation, String)> {
    entries
        .iter()
        .map(|e| {
            (
                e.key.clone(),
                e.operation,
                String::from_utf8_lossy(&e.value).into_owned(),
            )
        })
        .collect()
}

/// Shorthand for building an expected [`summary`] row.
pub fn row(key: &str, op: Operation, value: &str) -> (String, Operation, String) {
    (key.to_string(), op, value.to_string())
}

/// The latest value of `key` as a string (`None` if absent or deleted).
pub async fn get_str(store: &kv::Store, key: &str) -> Option<String> {
    within(TIMEOUT, "KV get", store.get(key))
        .await
        .expect("get failed")
        .map(|v| String::from_utf8_lossy(&v).into_owned())
}

/// Reads object `name` completely (the client verifies the digest at the end).
pub async fn read_object(store: &ObjectStore, name: &str) -> Vec<u8> {
    use tokio::io::AsyncReadExt;
    let mut obj = within(TIMEOUT, "object get", store.get(name))
        .await
        .unwrap_or_else(|e| panic!("get {name} failed: {e}"));
    let mut out = Vec::new();
    within(
        Duration::from_secs(60),
        "object read",
        obj.read_to_end(&mut out),
    )
    .await
    .unwrap_or_else(|e| panic!("reading {name} failed: {e}"));
    out
}

/// The JetStream API error code somewhere in the source chain of `err`, if any.
pub fn js_code(err: &(dyn std::error::Error + 'static)) -> Option<u64> {
    let mut cur = Some(err);
    while let Some(e) = cur {
        if let Some(js) = e.downcast_ref::<async_nats::jetstream::Error>() {
            return Some(js.error_code().0);
        }
        cur = e.source();
    }
    // Some error kinds carry the JetStream error inside the kind instead of as a source.
    let text = format!("{err:?}");
    let at = text.find("ErrorCode(")? + "ErrorCode(".len();
    let digits: String = text[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

/// Fresh status of `bucket` (a `Store`'s own `status()` returns the info cached when it was
/// opened).
pub async fn status(js: &async_nats::jetstream::Context, bucket: &str) -> kv::bucket::Status {
    let store = within(TIMEOUT, "open bucket", js.get_key_value(bucket))
        .await
        .expect("open bucket");
    store.status().await.expect("status")
}

/// The full text of `err` and its sources.
pub fn chain_text(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut cur = err.source();
    while let Some(e) = cur {
        out.push_str(": ");
        out.push_str(&e.to_string());
        cur = e.source();
    }
    out
}
