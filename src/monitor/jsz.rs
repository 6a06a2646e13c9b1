//! `/jsz` (JetStream on this server: configuration, usage, meta group, and per stream detail)
//! and `/healthz` (ready for clients; with JetStream, its meta group has a leader).

use std::time::SystemTime;

use hyper::StatusCode;
use serde_json::{json, Value};

use super::format::{nanos, timestamp};
use super::query::Query;
use super::{Answer, Monitor};
use crate::config::SyncPolicy;

impl Monitor {
    /// `config` of `/jsz` and `/varz`'s `jetstream` block.
    pub(crate) fn jetstream_config(&self) -> Value {
        let js = &self.shared.config.jetstream;
        let mut v = json!({
            "max_memory": self.js.as_ref().map_or(js.max_memory, |j| j.max_memory()),
            "max_storage": self.js.as_ref().map_or(js.max_file, |j| j.max_file()),
            "store_dir": js.store_dir.display().to_string(),
        });
        if let Some(domain) = &js.domain {
            v["domain"] = json!(domain);
        }
        match js.sync {
            SyncPolicy::Always => v["sync_always"] = json!(true),
            SyncPolicy::Interval(d) => v["sync_interval"] = json!(nanos(d)),
            SyncPolicy::Never => {}
        }
        v
    }

    /// `/jsz`: with `accounts`/`streams`/`config`, the account and stream detail (one
    /// account here: the server's JetStream serves `$G`).
    pub(crate) fn jsz(&self, q: &Query) -> Result<Value, String> {
        let e = |r: Result<bool, super::query::QueryError>| r.map_err(|e| e.0);
        let accounts = e(q.bool("accounts"))?;
        let streams = e(q.bool("streams"))?;
        let config = e(q.bool("config"))?;
        let consumers = e(q.bool("consumers"))?;
        let mut v = json!({
            "server_id": self.shared.server_id,
            "now": timestamp(SystemTime::now()),
            "config": self.jetstream_config(),
            "memory": 0, "storage": 0, "reserved_memory": 0, "reserved_storage": 0,
            "accounts": 0, "ha_assets": 0,
            "streams": 0, "consumers": 0, "messages": 0, "bytes": 0,
            "total": 0,
        });
        let Some(js) = &self.js else {
            v["disabled"] = json!(true);
            return Ok(v);
        };
        let usage = js.usage();
        for key in [
            "memory",
            "storage",
            "reserved_memory",
            "reserved_storage",
            "streams",
            "consumers",
            "messages",
            "bytes",
        ] {
            v[key] = usage[key].clone();
        }
        v["accounts"] = json!(1);
        v["api"] = js.api_stats();
        if let Some(meta) = js.meta_cluster() {
            v["meta_cluster"] = meta;
        }
        if accounts || streams || config {
            let mut detail = json!({ "name": "$G", "id": "$G", "api": js.api_stats() });
            for key in ["memory", "storage", "reserved_memory", "reserved_storage"] {
                detail[key] = usage[key].clone();
            }
            if streams || config {
                let list: Vec<Value> = js
                    .stream_details()
                    .into_iter()
                    .map(|info| stream_detail(info, config, consumers))
                    .collect();
                if !list.is_empty() {
                    detail["stream_detail"] = json!(list);
                }
            }
            v["account_details"] = json!([detail]);
            v["total"] = json!(1);
        }
        Ok(v)
    }

    /// `/healthz`: `{"status":"ok"}`, or 503 `unavailable` while JetStream (configured) is
    /// not running or, in a cluster, its meta group has no leader.
    pub(crate) fn healthz(&self, q: &Query) -> Answer {
        for key in [
            "js-enabled-only",
            "js-server-only",
            "js-meta-only",
            "js-enabled",
            "details",
        ] {
            if let Err(e) = q.bool(key) {
                return health(StatusCode::BAD_REQUEST, "error", &e.0);
            }
        }
        if !self.shared.config.jetstream.enabled {
            return Answer::Health(StatusCode::OK, json!({"status": "ok"}));
        }
        let Some(js) = &self.js else {
            return health(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "JetStream not enabled",
            );
        };
        if q.bool("js-enabled-only").unwrap_or(false) {
            return Answer::Health(StatusCode::OK, json!({"status": "ok"}));
        }
        if let Some(meta) = js.meta_cluster() {
            if meta["leader"].as_str().is_none_or(str::is_empty) {
                return health(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    "JetStream has not established contact with a meta leader",
                );
            }
        }
        Answer::Health(StatusCode::OK, json!({"status": "ok"}))
    }
}

fn health(status: StatusCode, word: &str, error: &str) -> Answer {
    Answer::Health(status, json!({"status": word, "error": error}))
}

/// One stream in `account_details[].stream_detail` (its config and consumers when asked).
fn stream_detail(info: Value, with_config: bool, with_consumers: bool) -> Value {
    let name = info["config"]["name"].clone();
    let mut d = json!({
        "name": name,
        "created": info["created"].clone(),
        "state": info["state"].clone(),
    });
    if !info["cluster"].is_null() {
        d["cluster"] = info["cluster"].clone();
    }
    if with_config {
        d["config"] = info["config"].clone();
    }
    let consumers = &info["consumer_detail"];
    if with_consumers && consumers.as_array().is_some_and(|c| !c.is_empty()) {
        d["consumer_detail"] = consumers.clone();
    }
    d
}
