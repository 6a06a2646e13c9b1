//! A stream's part of message tracing (the `js` event of `Nats-Trace-Dest`, see
//! `server::trace`): what the stream decided about a traced publish, worded as nats-server
//! words it (its Go error texts where it has them), and trace-only publishes, checked and
//! not stored.

use super::errors::ApiError;
use super::headers;
use super::runner::Replies;
use super::stream::{Applied, Decision, Stream};
use crate::server::trace::TraceTag;
use crate::server::Message;

/// What the event says of a duplicate.
const DUPLICATE: &str = "msgid is duplicate";

/// A trace-only publish: checked, not stored; answered only when refused, as on nats-server.
pub(super) fn trace_only(stream: &mut Stream, m: &Message, tag: &TraceTag, replies: &mut Replies) {
    match stream.check_publish(&m.subject, m.headers.as_deref(), &m.payload) {
        Ok(Decision::Duplicate(_)) => tag.stream_decided("", false, Some(DUPLICATE)),
        Ok(Decision::Append(_)) => {
            tag.stream_decided(&m.subject, stream.uninterested(&m.subject), None)
        }
        Err(e) => {
            tag.stream_decided("", false, Some(&error_text(&e, m)));
            if let (Some(reply), false) = (&m.reply, stream.config.no_ack) {
                replies.answer(reply.clone(), stream.pub_error(&e));
            }
        }
    }
}

/// The event of a traced, delivered publish: the outcome of storing it.
pub(super) fn trace_outcome(
    tag: &TraceTag,
    m: &Message,
    no_interest: bool,
    result: &Result<Applied, ApiError>,
) {
    match result {
        Ok(Applied::Stored(_)) => tag.stream_decided(&m.subject, no_interest, None),
        Ok(Applied::Duplicate(_)) => tag.stream_decided("", false, Some(DUPLICATE)),
        Err(e) => tag.stream_decided("", false, Some(&error_text(e, m))),
        Ok(_) => {}
    }
}

/// A refusal as nats-server's trace event words it: the Go error its publish path returned.
fn error_text(e: &ApiError, m: &Message) -> String {
    let get = |k: &str| m.headers.as_deref().and_then(|h| headers::get(h, k));
    let last = e.description.rsplit(": ").next().unwrap_or_default();
    match e.err_code {
        10071 => match get(headers::EXPECTED_LAST_SEQ).filter(|want| *want != last) {
            Some(want) => format!("last sequence mismatch: {want} vs {last}"),
            None => {
                let want = get(headers::EXPECTED_LAST_SUBJ_SEQ).unwrap_or_default();
                format!("last sequence by subject mismatch: {want} vs {last}")
            }
        },
        10070 => {
            let want = get(headers::EXPECTED_LAST_MSG_ID).unwrap_or_default();
            format!("last msgid mismatch: {want:?} vs {last:?}")
        }
        10054 => "maximum payload exceeded".into(),
        10166 => "message TTL disabled".into(),
        10060 | 10077 | 10111 => e.description.clone(),
        _ => format!("{} ({})", e.description, e.err_code),
    }
}
