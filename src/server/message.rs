//! The owned form of a message, as in-process subscribers and internal handlers (JetStream)
//! receive it: a leaf module, so routing, delivery and the in-process client all use it
//! without depending on each other.

use bytes::Bytes;

/// A message received by an in-process subscriber or an internal handler.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Subject it was published to.
    pub subject: String,
    /// Reply subject, if any.
    pub reply: Option<String>,
    /// Raw `NATS/1.0` header block, if the message had headers.
    pub headers: Option<Bytes>,
    /// Body.
    pub payload: Bytes,
    /// The message trace it belongs to, if its publisher asked for one (internal handlers
    /// only).
    pub(crate) trace: super::trace::TraceTag,
}
