//! The `$JS.API` requests that steer one existing consumer: pause and resume
//! (`CONSUMER.PAUSE`) and reset to a sequence or to the ack floor (`CONSUMER.RESET`), each a
//! change of replicated state through the stream's `apply`; and `CONSUMER.UNPIN`, which ends a
//! priority group's pin (leader-local, as on nats-server).

use serde::Deserialize;
use serde_json::{json, Value};

use super::api::{consumer_info, parse_or_default};
use super::config::DeliverPolicy;
use super::consumer::Outgoing;
use super::errors::ApiError;
use super::stream::{Op, Stream};
use super::time::{now_nanos, parse_rfc3339, rfc3339};

#[derive(Deserialize, Default)]
struct PauseReq {
    pause_until: Option<String>,
}

/// `CONSUMER.PAUSE`: a pause deadline in the future pauses; anything else resumes.
pub(crate) fn pause(s: &mut Stream, name: &str, body: &[u8]) -> Result<Value, ApiError> {
    let req: PauseReq = parse_or_default(body)?;
    let Some(c) = s.consumers.get(name) else {
        return Err(ApiError::consumer_not_found());
    };
    let mut cfg = c.config.clone();
    let created = c.created;
    cfg.pause_until = req
        .pause_until
        .filter(|p| parse_rfc3339(p).is_some_and(|t| t > now_nanos()));
    let paused = cfg.pause_until.is_some();
    let until = cfg.pause_until.clone();
    s.apply(Op::ConsumerCreate {
        name: name.to_string(),
        config: Box::new(cfg),
        created,
    })?;
    let mut v = json!({ "paused": paused, "pause_until": until.unwrap_or_else(|| rfc3339(0)) });
    if paused {
        if let Some(t) = s.consumers.get(name).and_then(|c| c.paused_until()) {
            v["pause_remaining"] = json!(t - now_nanos());
        }
    }
    Ok(v)
}

#[derive(Deserialize, Default)]
struct ResetReq {
    #[serde(default)]
    seq: u64,
}

/// `CONSUMER.RESET`: an empty request (or `seq` 0) starts the consumer again just after its
/// ack floor; a `seq` is allowed for `deliver_policy` all, and by start sequence or time when
/// it is not below the configured start. Answers the consumer's info and `reset_seq`.
pub(crate) fn reset(
    s: &mut Stream,
    name: &str,
    body: &[u8],
    cluster: &Value,
) -> Result<Value, ApiError> {
    let req: ResetReq = parse_or_default(body)?;
    let Some(c) = s.consumers.get(name) else {
        return Err(ApiError::consumer_not_found());
    };
    let seq = if req.seq == 0 {
        c.ack_floor().1 + 1
    } else {
        check_reset(s, &c.config, req.seq)?;
        req.seq
    };
    s.apply(Op::ConsumerReset {
        consumer: name.to_string(),
        seq,
    })?;
    let c = s
        .consumers
        .get(name)
        .ok_or_else(ApiError::consumer_not_found)?;
    let mut v = consumer_info(s, c, cluster);
    v["reset_seq"] = json!(seq);
    Ok(v)
}

/// Whether a consumer configured as `cfg` may be reset to `seq` (nats-server's rules).
fn check_reset(s: &Stream, cfg: &super::config::ConsumerConfig, seq: u64) -> Result<(), ApiError> {
    let below = match cfg.deliver_policy {
        DeliverPolicy::All => None,
        DeliverPolicy::ByStartSequence => {
            (seq < cfg.opt_start_seq.unwrap_or(0)).then_some("below start seq")
        }
        DeliverPolicy::ByStartTime => {
            let start = cfg.opt_start_time.as_deref().and_then(parse_rfc3339);
            let first = s.store.seq_for_time(start.unwrap_or(0));
            (seq < first).then_some("below start time")
        }
        _ => Some("not allowed"),
    };
    match below {
        Some(why) => Err(ApiError::invalid_reset(why)),
        None => Ok(()),
    }
}

#[derive(Deserialize)]
struct UnpinReq {
    #[serde(default)]
    group: String,
}

/// `CONSUMER.UNPIN`: `{"group": ...}`; the answer carries no fields but its type.
pub(crate) fn unpin(
    s: &mut Stream,
    name: &str,
    body: &[u8],
    out: &mut Vec<Outgoing>,
) -> Result<Value, ApiError> {
    let req: UnpinReq = serde_json::from_slice(body).map_err(|e| ApiError::from_json(&e))?;
    let stream = s.name().to_string();
    let c = s
        .consumers
        .get_mut(name)
        .ok_or_else(ApiError::consumer_not_found)?;
    c.unpin(&stream, &req.group, out)?;
    Ok(json!({}))
}
