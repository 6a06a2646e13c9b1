//! The replicated form of an [`Op`]: a versioned, hand-framed binary entry, what a Raft log
//! will carry. The hot op, `Append`, is a compact binary record (a 128-byte publish costs a few
//! dozen bytes of framing, not JSON's array of numbers); ops that carry a configuration hold
//! the canonical JSON of the normalised config, so the API's JSON shape and the log format can
//! only change together, and a golden-file test says when they do.
//!
//! ```text
//! entry   = version:u8 (1) tag:u8 body
//! str     = len:u32le bytes (UTF-8)        blob = len:u32le bytes
//! opt<T>  = 0 | 1 T                        num  = u64le / i64le
//! Append(1)         seq:u64 subject:str headers:opt<blob> payload:blob time:i64 msg_id:opt<str> rollup:u8 (0 none, 1 subject, 2 all)
//!                   expect_last_seq:opt<u64> expect_subject_seq:opt<u64> expect_subject:opt<str> expect_msg_id:opt<str>
//! Delete(2)         seq:u64
//! Purge(3)          filter:opt<str> seq:opt<u64> keep:opt<u64>
//! Expire(4)         before:i64
//! UpdateConfig(5)   config:blob (JSON)
//! ConsumerCreate(6) name:str created:i64 config:blob (JSON)
//! ConsumerDelete(7) name:str
//! ExpireTtl(10)     now:i64
//! Batch(11)         count:u32 (entry:blob)*   several ops, each a whole entry, as one Raft entry
//! Ack(8)            consumer:str seq:u64 kind:u8 (0 ack, 1 term)
//! Delivered(9)      consumer:str cursor:u64 dseq:u64 initial_taken:u32
//!                   sent:count:u32 (sseq:u64 dseq:u64 count:u64 time:i64)* dropped:count:u32 u64*
//! ConsumerReset(12) consumer:str seq:u64
//! ```

use super::{Expect, Op, Rollup};
use crate::jetstream::consumer::{AckKind, Deliveries, Sent};

/// The entry format this build writes.
pub(crate) const VERSION: u8 = 1;

/// Why bytes are not an entry.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum CodecError {
    /// The entry ends before its fields do.
    #[error("entry truncated")]
    Truncated,
    /// Bytes follow the last field.
    #[error("{0} bytes after the entry")]
    Trailing(usize),
    /// A format version this build does not read.
    #[error("unknown entry version {0}")]
    Version(u8),
    /// An op tag this version does not define.
    #[error("unknown op tag {0}")]
    Tag(u8),
    /// A string that is not UTF-8, or a flag that is not 0/1.
    #[error("malformed {0}")]
    Malformed(&'static str),
    /// A configuration that does not decode.
    #[error("bad configuration: {0}")]
    Config(String),
}

/// Encodes one op as an entry.
pub(crate) fn encode(op: &Op) -> Vec<u8> {
    let mut w = Writer(Vec::with_capacity(64));
    w.u8(VERSION);
    match op {
        Op::Append {
            seq,
            subject,
            headers,
            payload,
            time,
            msg_id,
            rollup,
            expect,
        } => {
            w.u8(1);
            w.u64(*seq);
            w.blob(subject.as_bytes());
            w.opt(headers.as_deref(), Writer::blob);
            w.blob(payload);
            w.i64(*time);
            w.opt(msg_id.as_deref().map(str::as_bytes), Writer::blob);
            w.u8(match rollup {
                None => 0,
                Some(Rollup::Subject) => 1,
                Some(Rollup::All) => 2,
            });
            w.opt(expect.last_seq, Writer::u64);
            w.opt(expect.last_subject_seq, Writer::u64);
            w.opt(
                expect.last_subject.as_deref().map(str::as_bytes),
                Writer::blob,
            );
            w.opt(
                expect.last_msg_id.as_deref().map(str::as_bytes),
                Writer::blob,
            );
        }
        Op::Delete { seq } => {
            w.u8(2);
            w.u64(*seq);
        }
        Op::Purge { filter, seq, keep } => {
            w.u8(3);
            w.opt(filter.as_deref().map(str::as_bytes), Writer::blob);
            w.opt(*seq, Writer::u64);
            w.opt(*keep, Writer::u64);
        }
        Op::Expire { before } => {
            w.u8(4);
            w.i64(*before);
        }
        Op::ExpireTtl { now } => {
            w.u8(10);
            w.i64(*now);
        }
        Op::UpdateConfig(cfg) => {
            w.u8(5);
            w.blob(&json(cfg.as_ref()));
        }
        Op::ConsumerCreate {
            name,
            config,
            created,
        } => {
            w.u8(6);
            w.blob(name.as_bytes());
            w.i64(*created);
            w.blob(&json(config.as_ref()));
        }
        Op::ConsumerDelete { name } => {
            w.u8(7);
            w.blob(name.as_bytes());
        }
        Op::Ack {
            consumer,
            seq,
            kind,
        } => {
            w.u8(8);
            w.blob(consumer.as_bytes());
            w.u64(*seq);
            w.u8(match kind {
                AckKind::Ack => 0,
                AckKind::Term => 1,
            });
        }
        Op::Delivered {
            consumer,
            deliveries: d,
        } => {
            w.u8(9);
            w.blob(consumer.as_bytes());
            w.u64(d.cursor);
            w.u64(d.dseq);
            w.u32(d.initial_taken);
            w.u32(count(d.sent.len()));
            for s in &d.sent {
                w.u64(s.sseq);
                w.u64(s.dseq);
                w.u64(s.count);
                w.i64(s.time);
            }
            w.u32(count(d.dropped.len()));
            for s in &d.dropped {
                w.u64(*s);
            }
        }
        Op::ConsumerReset { consumer, seq } => {
            w.u8(12);
            w.blob(consumer.as_bytes());
            w.u64(*seq);
        }
    }
    w.0
}

/// Tag of a batch entry.
const BATCH: u8 = 11;

/// One entry holding several encoded entries (from [`encode`]), applied in order: a
/// replicated stream's leader proposes what queued up meanwhile as one Raft entry.
pub(crate) fn encode_batch(entries: &[Vec<u8>]) -> Vec<u8> {
    let size = entries.iter().map(|e| e.len() + 4).sum::<usize>() + 6;
    let mut w = Writer(Vec::with_capacity(size));
    w.u8(VERSION);
    w.u8(BATCH);
    w.u32(count(entries.len()));
    for e in entries {
        w.blob(e);
    }
    w.0
}

/// Decodes an entry that is one op or a batch of them (a batch does not nest).
pub(crate) fn decode_ops(bytes: &[u8]) -> Result<Vec<Op>, CodecError> {
    if bytes.get(1) != Some(&BATCH) {
        return decode(bytes).map(|op| vec![op]);
    }
    let mut r = Reader(bytes);
    let version = r.u8()?;
    if version != VERSION {
        return Err(CodecError::Version(version));
    }
    r.u8()?;
    let n = r.len(4)?;
    let mut ops = Vec::with_capacity(n);
    for _ in 0..n {
        ops.push(decode(r.blob()?)?);
    }
    match r.0.len() {
        0 => Ok(ops),
        n => Err(CodecError::Trailing(n)),
    }
}

/// Decodes one entry.
pub(crate) fn decode(bytes: &[u8]) -> Result<Op, CodecError> {
    let mut r = Reader(bytes);
    let version = r.u8()?;
    if version != VERSION {
        return Err(CodecError::Version(version));
    }
    let op = match r.u8()? {
        1 => Op::Append {
            seq: r.u64()?,
            subject: r.string()?,
            headers: r.opt(|r| r.blob().map(<[u8]>::to_vec))?,
            payload: r.blob()?.to_vec(),
            time: r.i64()?,
            msg_id: r.opt(Reader::string)?,
            rollup: match r.u8()? {
                0 => None,
                1 => Some(Rollup::Subject),
                2 => Some(Rollup::All),
                _ => return Err(CodecError::Malformed("rollup")),
            },
            expect: Expect {
                last_seq: r.opt(Reader::u64)?,
                last_subject_seq: r.opt(Reader::u64)?,
                last_subject: r.opt(Reader::string)?,
                last_msg_id: r.opt(Reader::string)?,
            },
        },
        2 => Op::Delete { seq: r.u64()? },
        3 => Op::Purge {
            filter: r.opt(Reader::string)?,
            seq: r.opt(Reader::u64)?,
            keep: r.opt(Reader::u64)?,
        },
        4 => Op::Expire { before: r.i64()? },
        10 => Op::ExpireTtl { now: r.i64()? },
        5 => Op::UpdateConfig(Box::new(from_json(r.blob()?)?)),
        6 => Op::ConsumerCreate {
            name: r.string()?,
            created: r.i64()?,
            config: Box::new(from_json(r.blob()?)?),
        },
        7 => Op::ConsumerDelete { name: r.string()? },
        8 => Op::Ack {
            consumer: r.string()?,
            seq: r.u64()?,
            kind: match r.u8()? {
                0 => AckKind::Ack,
                1 => AckKind::Term,
                _ => return Err(CodecError::Malformed("ack kind")),
            },
        },
        9 => Op::Delivered {
            consumer: r.string()?,
            deliveries: deliveries(&mut r)?,
        },
        12 => Op::ConsumerReset {
            consumer: r.string()?,
            seq: r.u64()?,
        },
        tag => return Err(CodecError::Tag(tag)),
    };
    match r.0.len() {
        0 => Ok(op),
        n => Err(CodecError::Trailing(n)),
    }
}

fn deliveries(r: &mut Reader<'_>) -> Result<Deliveries, CodecError> {
    let (cursor, dseq, initial_taken) = (r.u64()?, r.u64()?, r.u32()?);
    let n = r.len(32)?;
    let mut sent = Vec::with_capacity(n);
    for _ in 0..n {
        sent.push(Sent {
            sseq: r.u64()?,
            dseq: r.u64()?,
            count: r.u64()?,
            time: r.i64()?,
        });
    }
    let n = r.len(8)?;
    let mut dropped = Vec::with_capacity(n);
    for _ in 0..n {
        dropped.push(r.u64()?);
    }
    Ok(Deliveries {
        cursor,
        dseq,
        initial_taken,
        sent,
        dropped,
    })
}

/// A list's length as framed (lists are bounded by a pump's batch, far under 4 billion).
fn count(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

fn json<T: serde::Serialize>(v: &T) -> Vec<u8> {
    // Serializing these plain structs cannot fail.
    serde_json::to_vec(v).unwrap_or_default()
}

fn from_json<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    serde_json::from_slice(bytes).map_err(|e| CodecError::Config(e.to_string()))
}

struct Writer(Vec<u8>);

impl Writer {
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn i64(&mut self, v: i64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn blob(&mut self, b: &[u8]) {
        // Entries are bounded by max_payload (well under 4 GiB).
        self.0
            .extend_from_slice(&u32::try_from(b.len()).unwrap_or(u32::MAX).to_le_bytes());
        self.0.extend_from_slice(b);
    }
    fn opt<T>(&mut self, v: Option<T>, put: impl FnOnce(&mut Self, T)) {
        match v {
            None => self.u8(0),
            Some(v) => {
                self.u8(1);
                put(self, v);
            }
        }
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], CodecError> {
        if self.0.len() < n {
            return Err(CodecError::Truncated);
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }
    fn u8(&mut self) -> Result<u8, CodecError> {
        Ok(self.take(1)?[0])
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N], CodecError> {
        self.take(N)?.try_into().map_err(|_| CodecError::Truncated)
    }
    fn u32(&mut self) -> Result<u32, CodecError> {
        Ok(u32::from_le_bytes(self.array()?))
    }
    fn u64(&mut self) -> Result<u64, CodecError> {
        Ok(u64::from_le_bytes(self.array()?))
    }
    /// A list length whose items take at least `item` bytes each: checked against what is
    /// left, so a damaged count cannot ask for a huge allocation.
    fn len(&mut self, item: usize) -> Result<usize, CodecError> {
        let n = self.u32()? as usize;
        if n.saturating_mul(item) > self.0.len() {
            return Err(CodecError::Truncated);
        }
        Ok(n)
    }
    fn i64(&mut self) -> Result<i64, CodecError> {
        Ok(i64::from_le_bytes(self.array()?))
    }
    fn blob(&mut self) -> Result<&'a [u8], CodecError> {
        let len = u32::from_le_bytes(self.array()?) as usize;
        self.take(len)
    }
    fn string(&mut self) -> Result<String, CodecError> {
        let b = self.blob()?;
        String::from_utf8(b.to_vec()).map_err(|_| CodecError::Malformed("string"))
    }
    fn opt<T>(
        &mut self,
        get: impl FnOnce(&mut Self) -> Result<T, CodecError>,
    ) -> Result<Option<T>, CodecError> {
        match self.u8()? {
            0 => Ok(None),
            1 => get(self).map(Some),
            _ => Err(CodecError::Malformed("option flag")),
        }
    }
}

#[cfg(test)]
#[path = "codec_tests.rs"]
mod tests;
