//! nats-server 2.11's versioning metadata on streams and consumers: `_nats.req.level` (the
//! JetStream API level the asset's configuration needs), and in answers `_nats.ver` and
//! `_nats.level` (this server's version and level). Clients read them to tell which features a
//! server and an asset support. The keys are never stored: they are stripped from what clients
//! send and worked out from the configuration for each answer.

use serde_json::{json, Map, Value};

use super::config::{ConsumerConfig, PriorityPolicy, StreamConfig};
use crate::protocol::info::{API_LEVEL, PROTOCOL_VERSION};

const REQUIRED_LEVEL: &str = "_nats.req.level";
const SERVER_VERSION: &str = "_nats.ver";
const SERVER_LEVEL: &str = "_nats.level";

/// Removes the versioning keys from metadata a client sent (an absent map stays absent, one
/// left empty goes).
pub(crate) fn strip(metadata: &mut Option<Map<String, Value>>) {
    if let Some(m) = metadata {
        for key in [REQUIRED_LEVEL, SERVER_VERSION, SERVER_LEVEL] {
            m.remove(key);
        }
        if m.is_empty() {
            *metadata = None;
        }
    }
}

/// The API level a stream's configuration needs: per-message TTLs and delete markers are 1,
/// counters, atomic batches, message schedules and async persistence 2.
pub(crate) fn stream_level(cfg: &StreamConfig) -> u32 {
    let async_persist = cfg.persist_mode.as_deref() == Some("async");
    if cfg.allow_msg_counter || cfg.allow_atomic || cfg.allow_msg_schedules || async_persist {
        2
    } else {
        u32::from(cfg.allow_msg_ttl || cfg.subject_delete_marker_ttl > 0)
    }
}

/// The API level a consumer's configuration needs: pausing and priority groups are 1.
pub(crate) fn consumer_level(cfg: &ConsumerConfig) -> u32 {
    let priority = cfg.priority_policy != PriorityPolicy::None
        || cfg.priority_timeout != 0
        || !cfg.priority_groups.is_empty();
    u32::from(cfg.pause_until.is_some() || priority)
}

/// Puts the versioning keys into the `metadata` of a configuration's JSON.
pub(crate) fn annotate(config: &mut Value, required: u32) {
    let mut m = match config.get("metadata") {
        Some(Value::Object(m)) => m.clone(),
        _ => Map::new(),
    };
    m.insert(REQUIRED_LEVEL.into(), json!(required.to_string()));
    m.insert(SERVER_VERSION.into(), json!(PROTOCOL_VERSION));
    m.insert(SERVER_LEVEL.into(), json!(API_LEVEL.to_string()));
    config["metadata"] = Value::Object(m);
}

/// The header a request names the API level it needs with.
const REQUIRED_LEVEL_HEADER: &str = "Nats-Required-Api-Level";

/// False if the request's headers ask for a higher API level than this server's, or for one
/// that is not a number (nats-server refuses both).
pub(crate) fn level_met(headers: Option<&[u8]>) -> bool {
    match headers.and_then(|h| super::headers::get(h, REQUIRED_LEVEL_HEADER)) {
        None | Some("") => true,
        Some(v) => v.trim().parse::<u32>().is_ok_and(|n| n <= API_LEVEL),
    }
}
