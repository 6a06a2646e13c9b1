//! Encoders for what the server sends: MSG/HMSG frames, INFO, -ERR and the fixed replies.
//!
//! Frames are appended straight into a connection's outbound buffer, so delivering one message
//! to a subscriber is one bounds check and a few `extend_from_slice` calls.

use bytes::{BufMut, BytesMut};

/// `PING\r\n`.
pub const PING: &[u8] = b"PING\r\n";
/// `PONG\r\n`.
pub const PONG: &[u8] = b"PONG\r\n";
/// `+OK\r\n`.
pub const OK: &[u8] = b"+OK\r\n";

/// Number of bytes [`write_msg`] will append.
#[inline]
pub fn msg_len(
    subject: &[u8],
    sid: &[u8],
    reply: Option<&[u8]>,
    headers: Option<&[u8]>,
    payload: &[u8],
) -> usize {
    // "HMSG " + subject + " " + sid + [" " reply] + [" " hdr] + " " + total + CRLF + data + CRLF
    5 + subject.len()
        + 1
        + sid.len()
        + reply.map_or(0, |r| r.len() + 1)
        + headers.map_or(0, |h| h.len() + 21)
        + 21
        + 2
        + payload.len()
        + 2
}

/// Appends `MSG` (or `HMSG` when `headers` is set) for one subscriber.
#[inline]
pub fn write_msg(
    out: &mut BytesMut,
    subject: &[u8],
    sid: &[u8],
    reply: Option<&[u8]>,
    headers: Option<&[u8]>,
    payload: &[u8],
) {
    out.reserve(msg_len(subject, sid, reply, headers, payload));
    let mut num = itoa::Buffer::new();
    match headers {
        Some(_) => out.put_slice(b"HMSG "),
        None => out.put_slice(b"MSG "),
    }
    out.put_slice(subject);
    out.put_u8(b' ');
    out.put_slice(sid);
    out.put_u8(b' ');
    if let Some(reply) = reply {
        out.put_slice(reply);
        out.put_u8(b' ');
    }
    put_sizes_and_body(out, &mut num, headers, payload);
}

/// The end of a message frame (`MSG`/`HMSG`, and the route's `RMSG`/`HRMSG`): the header
/// length (if any) and total length, CRLF, headers, payload, CRLF.
pub(crate) fn put_sizes_and_body(
    out: &mut BytesMut,
    num: &mut itoa::Buffer,
    headers: Option<&[u8]>,
    payload: &[u8],
) {
    let hlen = headers.map_or(0, |h| h.len());
    if headers.is_some() {
        out.put_slice(num.format(hlen).as_bytes());
        out.put_u8(b' ');
    }
    out.put_slice(num.format(hlen + payload.len()).as_bytes());
    out.put_slice(b"\r\n");
    if let Some(h) = headers {
        out.put_slice(h);
    }
    out.put_slice(payload);
    out.put_slice(b"\r\n");
}

/// Appends `-ERR '<text>'\r\n`.
pub fn write_err(out: &mut BytesMut, text: &str) {
    out.put_slice(b"-ERR '");
    out.put_slice(text.as_bytes());
    out.put_slice(b"'\r\n");
}

/// Appends `INFO <json>\r\n`.
pub fn write_info(out: &mut BytesMut, json: &str) {
    out.put_slice(b"INFO ");
    out.put_slice(json.as_bytes());
    out.put_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn msg_frames() {
        let mut b = BytesMut::new();
        write_msg(&mut b, b"foo", b"1", None, None, b"hello");
        assert_eq!(&b[..], b"MSG foo 1 5\r\nhello\r\n");
        b.clear();
        write_msg(
            &mut b,
            b"foo",
            b"9",
            Some(b"r"),
            Some(b"NATS/1.0\r\n\r\n"),
            b"hi",
        );
        assert_eq!(&b[..], b"HMSG foo 9 r 12 14\r\nNATS/1.0\r\n\r\nhi\r\n");
        assert!(msg_len(b"foo", b"9", Some(b"r"), Some(b"NATS/1.0\r\n\r\n"), b"hi") >= b.len());
        b.clear();
        write_err(&mut b, "Stale Connection");
        assert_eq!(&b[..], b"-ERR 'Stale Connection'\r\n");
    }
}
