//! Parsing what clients send a consumer: pull requests (`$JS.API.CONSUMER.MSG.NEXT` bodies and
//! `+NXT` acks) and `-NAK` delays.

use std::time::Duration;

use serde::Deserialize;

use crate::jetstream::config::null_as_default;

#[derive(Deserialize, Default)]
struct PullJson {
    #[serde(default, deserialize_with = "null_as_default")]
    batch: i64,
    #[serde(default, deserialize_with = "null_as_default")]
    expires: i64,
    #[serde(default, deserialize_with = "null_as_default")]
    max_bytes: i64,
    #[serde(default, deserialize_with = "null_as_default")]
    no_wait: bool,
    #[serde(default, deserialize_with = "null_as_default")]
    idle_heartbeat: i64,
    #[serde(flatten)]
    group: PullGroup,
}

/// A pull request's priority-group fields (nats-server reads them from every JSON request).
#[derive(Deserialize, Default, Clone, Debug)]
pub(super) struct PullGroup {
    #[serde(default, deserialize_with = "null_as_default")]
    pub group: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub min_pending: i64,
    #[serde(default, deserialize_with = "null_as_default")]
    pub min_ack_pending: i64,
    /// The `Nats-Pin-Id` the client holds.
    #[serde(default, deserialize_with = "null_as_default")]
    pub id: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub priority: i64,
}

/// A parsed pull request.
pub(super) struct Pull {
    pub batch: u64,
    pub expires: i64,
    pub max_bytes: u64,
    pub no_wait: bool,
    pub idle_heartbeat: i64,
    /// Present for a JSON request.
    pub group: Option<PullGroup>,
}

pub(super) fn parse_pull(body: &[u8]) -> Result<Pull, String> {
    let text = std::str::from_utf8(body).unwrap_or("").trim();
    if text.is_empty() {
        return Ok(Pull {
            batch: 1,
            expires: 0,
            max_bytes: 0,
            no_wait: false,
            idle_heartbeat: 0,
            group: None,
        });
    }
    if let Ok(n) = text.parse::<u64>() {
        return Ok(Pull {
            batch: n.max(1),
            expires: 0,
            max_bytes: 0,
            no_wait: false,
            idle_heartbeat: 0,
            group: None,
        });
    }
    let j: PullJson = serde_json::from_str(text).map_err(|_| "Bad Request".to_string())?;
    if j.batch < 0 || j.expires < 0 || j.max_bytes < 0 {
        return Err("Bad Request".into());
    }
    if j.idle_heartbeat > 0 && j.expires > 0 && j.idle_heartbeat * 2 > j.expires {
        return Err("Bad Request - heartbeat value too large".into());
    }
    Ok(Pull {
        batch: j.batch.max(1) as u64,
        expires: j.expires,
        max_bytes: j.max_bytes as u64,
        no_wait: j.no_wait,
        idle_heartbeat: j.idle_heartbeat,
        group: Some(j.group),
    })
}

pub(super) fn parse_nak_delay(rest: &str) -> Option<Duration> {
    let rest = rest.trim();
    if rest.is_empty() {
        return None;
    }
    if rest.starts_with('{') {
        #[derive(Deserialize)]
        struct Delay {
            delay: i64,
        }
        return serde_json::from_str::<Delay>(rest)
            .ok()
            .map(|d| Duration::from_nanos(d.delay.max(0) as u64));
    }
    crate::config::parse_duration(rest)
}
