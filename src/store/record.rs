//! The on-disk record: framing, CRC, decoding and a scanner that resynchronises after damage.
//!
//! ```text
//! offset size field
//!      0    4 magic  C7 A5 E1 0B
//!      4    1 kind   1 = message, 2 = tombstone (seq = deleted seq), 3 = purge (seq = floor:
//!                    every seq below it is gone; time = the stream's last_time then)
//!      5    1 flags  bit 0: the message has a header block (distinguishes empty from none)
//!      6    2 reserved, zero
//!      8    4 total length of the record, CRC included (u32 LE)
//!     12    8 seq (u64 LE)
//!     20    8 time, unix ns (i64 LE)
//!     28    2 subject length (u16 LE)
//!     30    4 header length (u32 LE)
//!     34    4 payload length (u32 LE)
//!     38    . subject, headers, payload
//!    end-4  4 CRC32 (crc32fast) of every byte before it
//! ```
//!
//! Tombstone and purge records have no body (42 bytes). Decoding never trusts a length before
//! the sum and the CRC agree, so arbitrary bytes cannot make it panic or over-read.

use memchr::memmem;

/// First bytes of every record; a scanner looks for them to find the next record after damage.
pub(crate) const MAGIC: [u8; 4] = [0xC7, 0xA5, 0xE1, 0x0B];
/// Fixed header length.
pub(crate) const HEADER: usize = 38;
/// Header plus CRC: the size of a record with an empty body.
pub(crate) const OVERHEAD: usize = HEADER + 4;
/// Largest record accepted when decoding (guards against absurd length fields).
pub(crate) const MAX_RECORD: usize = 1 << 30;

const FLAG_HEADERS: u8 = 1;

/// Record kinds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Msg = 1,
    Tombstone = 2,
    Purge = 3,
    /// "The stream's ops are applied through this index" (in the `seq` field): written with
    /// each sync, so the log says how far it reflects the replicated op log.
    Applied = 4,
}

/// A decoded record borrowing from the buffer it was read from.
#[derive(Debug)]
pub(crate) struct RecordRef<'a> {
    pub(crate) kind: Kind,
    pub(crate) seq: u64,
    pub(crate) time: i64,
    pub(crate) subject: &'a [u8],
    pub(crate) headers: Option<&'a [u8]>,
    /// Byte range of the headers within the record (empty if none).
    pub(crate) headers_at: (usize, usize),
    /// Byte range of the payload within the record.
    pub(crate) payload_at: (usize, usize),
    /// Total record length.
    pub(crate) len: usize,
}

/// Why bytes are not a record.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum DecodeError {
    /// The buffer ends before the record does.
    Incomplete,
    /// The bytes are not a valid record.
    Invalid(&'static str),
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut x = [0u8; 8];
    x.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(x)
}

/// Encoded length of a message record.
pub(crate) fn msg_len(subject: &str, headers: Option<&[u8]>, payload: &[u8]) -> usize {
    OVERHEAD + subject.len() + headers.map_or(0, <[u8]>::len) + payload.len()
}

/// Appends a message record to `buf`; returns its length. The caller has checked that the
/// subject fits a u16, the rest a u32, and the whole record [`MAX_RECORD`].
pub(crate) fn encode_msg(
    buf: &mut Vec<u8>,
    seq: u64,
    time: i64,
    subject: &str,
    headers: Option<&[u8]>,
    payload: &[u8],
) -> usize {
    let hdr = headers.unwrap_or(&[]);
    let flags = if headers.is_some() { FLAG_HEADERS } else { 0 };
    let body = [subject.as_bytes(), hdr, payload];
    encode(buf, Kind::Msg, flags, seq, time, &body)
}

/// Appends a tombstone or purge record; returns its length.
pub(crate) fn encode_marker(buf: &mut Vec<u8>, kind: Kind, seq: u64, time: i64) -> usize {
    encode(buf, kind, 0, seq, time, &[&[], &[], &[]])
}

fn encode(
    buf: &mut Vec<u8>,
    kind: Kind,
    flags: u8,
    seq: u64,
    time: i64,
    body: &[&[u8]; 3],
) -> usize {
    let start = buf.len();
    let len = OVERHEAD + body.iter().map(|b| b.len()).sum::<usize>();
    buf.reserve(len);
    buf.extend_from_slice(&MAGIC);
    buf.extend_from_slice(&[kind as u8, flags, 0, 0]);
    buf.extend_from_slice(&(len as u32).to_le_bytes());
    buf.extend_from_slice(&seq.to_le_bytes());
    buf.extend_from_slice(&time.to_le_bytes());
    buf.extend_from_slice(&(body[0].len() as u16).to_le_bytes());
    buf.extend_from_slice(&(body[1].len() as u32).to_le_bytes());
    buf.extend_from_slice(&(body[2].len() as u32).to_le_bytes());
    for part in body {
        buf.extend_from_slice(part);
    }
    let crc = crc32fast::hash(&buf[start..]);
    buf.extend_from_slice(&crc.to_le_bytes());
    len
}

/// Decodes the record at the start of `b`, verifying framing and CRC.
pub(crate) fn decode(b: &[u8]) -> Result<RecordRef<'_>, DecodeError> {
    if b.len() < HEADER {
        return if MAGIC.starts_with(&b[..b.len().min(4)]) {
            Err(DecodeError::Incomplete)
        } else {
            Err(DecodeError::Invalid("bad magic"))
        };
    }
    if b[..4] != MAGIC {
        return Err(DecodeError::Invalid("bad magic"));
    }
    let kind = match b[4] {
        1 => Kind::Msg,
        2 => Kind::Tombstone,
        3 => Kind::Purge,
        4 => Kind::Applied,
        _ => return Err(DecodeError::Invalid("unknown record kind")),
    };
    let flags = b[5];
    if flags & !FLAG_HEADERS != 0 || b[6] != 0 || b[7] != 0 {
        return Err(DecodeError::Invalid("bad flags"));
    }
    let len = u32_at(b, 8) as usize;
    let subj = u16_at(b, 28) as usize;
    let hdr = u32_at(b, 30) as usize;
    let pay = u32_at(b, 34) as usize;
    if len > MAX_RECORD || len != OVERHEAD + subj + hdr + pay {
        return Err(DecodeError::Invalid("inconsistent lengths"));
    }
    if kind != Kind::Msg && len != OVERHEAD {
        return Err(DecodeError::Invalid("marker with a body"));
    }
    if kind == Kind::Msg && subj == 0 {
        return Err(DecodeError::Invalid("empty subject"));
    }
    if b.len() < len {
        return Err(DecodeError::Incomplete);
    }
    if crc32fast::hash(&b[..len - 4]) != u32_at(b, len - 4) {
        return Err(DecodeError::Invalid("crc mismatch"));
    }
    let s0 = HEADER;
    let h0 = s0 + subj;
    let p0 = h0 + hdr;
    Ok(RecordRef {
        kind,
        seq: u64_at(b, 12),
        time: u64_at(b, 20) as i64,
        subject: &b[s0..h0],
        headers: (flags & FLAG_HEADERS != 0).then(|| &b[h0..p0]),
        headers_at: (h0, p0),
        payload_at: (p0, p0 + pay),
        len,
    })
}

/// What a scan meets, in file order.
pub(crate) enum Scanned<'a> {
    /// A valid record at this offset.
    Record(u64, RecordRef<'a>),
    /// Damaged bytes `[offset, offset + len)` followed by a valid record.
    Damaged(u64, u64),
}

/// Walks every record in `buf`. After damage it resumes at the next magic whose record
/// decodes. Returns where the trailing run of undecodable bytes starts (`buf.len()` if none).
pub(crate) fn scan<'a>(buf: &'a [u8], mut f: impl FnMut(Scanned<'a>)) -> usize {
    let mut at = 0;
    while at < buf.len() {
        match decode(&buf[at..]) {
            Ok(rec) => {
                let len = rec.len;
                f(Scanned::Record(at as u64, rec));
                at += len;
            }
            Err(_) => match resync(buf, at + 1) {
                Some(next) => {
                    f(Scanned::Damaged(at as u64, (next - at) as u64));
                    at = next;
                }
                None => return at,
            },
        }
    }
    buf.len()
}

/// The offset of the next valid record at or after `from`.
fn resync(buf: &[u8], from: usize) -> Option<usize> {
    let rest = buf.get(from..)?;
    memmem::find_iter(rest, &MAGIC)
        .map(|i| from + i)
        .find(|&at| decode(&buf[at..]).is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_damage() {
        let mut buf = Vec::new();
        let a = encode_msg(&mut buf, 1, 10, "a.b", Some(b"NATS/1.0\r\n\r\n"), b"hello");
        let b = encode_msg(&mut buf, 2, 11, "c", None, b"");
        encode_marker(&mut buf, Kind::Tombstone, 1, 12);
        let rec = decode(&buf).unwrap();
        assert_eq!(
            (rec.kind, rec.seq, rec.time, rec.len),
            (Kind::Msg, 1, 10, a)
        );
        assert_eq!(rec.subject, b"a.b");
        assert_eq!(rec.headers, Some(&b"NATS/1.0\r\n\r\n"[..]));
        assert_eq!(&buf[rec.payload_at.0..rec.payload_at.1], b"hello");
        let rec2 = decode(&buf[a..]).unwrap();
        assert_eq!((rec2.seq, rec2.headers, rec2.len), (2, None, b));

        // Flip a byte in the first record: the scan skips it and finds the rest.
        let mut bad = buf.clone();
        bad[HEADER + 1] ^= 0xff;
        let mut seen = Vec::new();
        let end = scan(&bad, |s| match s {
            Scanned::Record(at, r) => seen.push((at, r.seq, r.kind)),
            Scanned::Damaged(at, len) => seen.push((at, len, Kind::Purge)),
        });
        assert_eq!(end, bad.len());
        assert_eq!(seen[0], (0, a as u64, Kind::Purge));
        assert_eq!(seen[1], (a as u64, 2, Kind::Msg));
        assert_eq!(seen[2].2, Kind::Tombstone);

        // A torn tail is reported as the end of valid data.
        let torn = &buf[..buf.len() - 3];
        let end = scan(torn, |_| {});
        assert_eq!(end, a + b);
        // Garbage never panics.
        for n in 0..buf.len() {
            let _ = decode(&buf[n..]);
        }
        assert_eq!(decode(&[0xC7, 0xA5]).err(), Some(DecodeError::Incomplete));
    }
}
