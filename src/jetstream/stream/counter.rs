//! Counter streams (`allow_msg_counter`, nats-server 2.12): a publish carries `Nats-Incr: <n>`
//! (any size, signed) and no payload; applying it stores `{"val":"<total>"}`, the subject's
//! last total plus `n`, and the pub ack names the new total. The total is worked out inside
//! apply from the applied state, so every replica stores the same value.

use num_bigint::BigInt;

use super::Stream;
use crate::jetstream::errors::ApiError;
use crate::jetstream::headers;

/// The increment header.
const INCR: &str = "Nats-Incr";

/// The increment a publish carries, if any (10171 if it is not a number).
pub(super) fn increment(hdrs: Option<&[u8]>) -> Result<Option<BigInt>, ApiError> {
    match hdrs.and_then(|h| headers::get(h, INCR)) {
        None | Some("") => Ok(None),
        Some(v) => {
            let digits = v.strip_prefix('+').unwrap_or(v);
            digits.parse::<BigInt>().map(Some).map_err(|_| invalid())
        }
    }
}

/// The checks nats-server makes of a publish to (or with an increment for) a stream.
pub(super) fn check(allowed: bool, hdrs: Option<&[u8]>, payload: &[u8]) -> Result<(), ApiError> {
    let Some(_) = increment(hdrs)? else {
        return if allowed { Err(missing()) } else { Ok(()) };
    };
    if !allowed {
        return Err(err(10168, "message counters is disabled"));
    }
    if !payload.is_empty() {
        return Err(err(10170, "message counter has payload"));
    }
    let clashes = [
        headers::ROLLUP,
        headers::EXPECTED_STREAM,
        headers::EXPECTED_LAST_MSG_ID,
        headers::EXPECTED_LAST_SUBJ_SEQ_SUBJ,
        headers::EXPECTED_LAST_SEQ,
        headers::EXPECTED_LAST_SUBJ_SEQ,
    ];
    let h = hdrs.unwrap_or_default();
    if clashes.iter().any(|k| headers::get(h, k).is_some()) {
        return Err(invalid());
    }
    Ok(())
}

impl Stream {
    /// The payload a counter publish on `subject` stores: the subject's last total plus the
    /// increment in `hdrs` (10172 if the last message is not a counter).
    pub(super) fn counted(&self, subject: &str, hdrs: Option<&[u8]>) -> Result<Vec<u8>, ApiError> {
        let incr = increment(hdrs)?.ok_or_else(missing)?;
        let last = match self.store.last_seq_for_subject(subject) {
            Some(seq) => match self.store.get(seq) {
                Ok(Some(m)) => value_of(&m.payload).ok_or_else(broken)?,
                _ => BigInt::default(),
            },
            None => BigInt::default(),
        };
        let total = last + incr;
        Ok(format!("{{\"val\":\"{total}\"}}").into_bytes())
    }

    /// The total a counter message holds (its pub ack's `val`).
    pub(crate) fn counter_value(&self, seq: u64) -> Option<String> {
        if !self.config.allow_msg_counter {
            return None;
        }
        let m = self.store.get(seq).ok().flatten()?;
        value_of(&m.payload).map(|v| v.to_string())
    }
}

/// The `val` of a counter message's `{"val":"<n>"}` payload.
fn value_of(payload: &[u8]) -> Option<BigInt> {
    #[derive(serde::Deserialize)]
    struct Counter {
        val: String,
    }
    let c: Counter = serde_json::from_slice(payload).ok()?;
    if c.val.is_empty() {
        return Some(BigInt::default());
    }
    c.val.parse().ok()
}

fn err(err_code: u32, text: &str) -> ApiError {
    ApiError::new(400, err_code, text)
}

fn invalid() -> ApiError {
    err(10171, "message counter increment is invalid")
}

fn missing() -> ApiError {
    err(10169, "message counter increment is missing")
}

fn broken() -> ApiError {
    err(10172, "message counter is broken")
}
