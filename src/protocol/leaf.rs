//! The leaf node protocol spoken between a hub and a leaf server (nats-server's, so either
//! side may be a stock nats-server): a zero-copy parser for what a peer sends ([`parse`]) and
//! the encoders for what we send. A leaf connection is bound to one account at each end, so
//! no line names one:
//!
//! ```text
//! INFO {json}                                 hub -> leaf at connect (and again after CONNECT)
//! CONNECT {json}                              leaf -> hub: identity and credentials
//! LS+ <subject> [<queue> <weight>]            interest (a queue's weight: its member count)
//! LS- <subject> [<queue>]                     interest gone
//! LMSG <subject> [reply] <size>               a message for the peer's plain subscribers
//! LMSG <subject> + <reply> <q>... <size>      ... and for one member of each of these groups
//! LMSG <subject> | <q>... <size>              (the same without a reply subject)
//! HMSG <subject> ... <hdr_size> <size>        the same with a header block
//! PING, PONG, -ERR '<text>', +OK
//! ```
//!
//! A JetStream delivery (routed by a consumer's deliver subject, shown with the stored
//! message's subject) crosses as `LMSG <deliver subject> $JS.ACK...@<subject>`.

use super::parser::{eq_ci, parse_u64, split_args, trim, ParseError};
use super::route::{control_line, msg_frame, write_frame, Frame, RouteLimits};
use bytes::{BufMut, BytesMut};

/// One operation received on a leaf connection; every slice borrows from the read buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum LeafOp<'a> {
    /// `CONNECT <json>`.
    Connect(&'a [u8]),
    /// `INFO <json>`.
    Info(&'a [u8]),
    /// `LS+`: the peer has interest in `subject` (for `queue` with `weight` members).
    Sub {
        /// The subject, wildcards as written.
        subject: &'a [u8],
        /// The queue group and its member count.
        queue: Option<(&'a [u8], u64)>,
    },
    /// `LS-`: the peer's interest is gone.
    Unsub {
        /// The subject.
        subject: &'a [u8],
        /// The queue group.
        queue: Option<&'a [u8]>,
    },
    /// `LMSG` / `HMSG`.
    Msg {
        /// Destination subject.
        subject: &'a [u8],
        /// Reply subject.
        reply: Option<&'a [u8]>,
        /// Queue groups to deliver to, separated by whitespace (empty: plain subscribers only).
        queues: &'a [u8],
        /// Raw header block (HMSG only).
        headers: Option<&'a [u8]>,
        /// Body.
        payload: &'a [u8],
    },
    /// `PING`.
    Ping,
    /// `PONG`.
    Pong,
    /// `+OK`.
    Ok,
    /// `-ERR <text>`.
    Err(&'a [u8]),
}

/// Result of one parse attempt.
#[derive(Debug, PartialEq, Eq)]
pub enum LeafParsed<'a> {
    /// A complete operation and the bytes it occupied.
    Op(LeafOp<'a>, usize),
    /// More bytes are needed: at least this many in total.
    Incomplete(usize),
}

/// Parses one operation from the front of `buf`.
pub fn parse<'a>(buf: &'a [u8], limits: &RouteLimits) -> Result<LeafParsed<'a>, ParseError> {
    let (op, rest, after) = match control_line(buf, limits)? {
        Ok(line) => line,
        Err(needed) => return Ok(LeafParsed::Incomplete(needed)),
    };
    let done = |op| Ok(LeafParsed::Op(op, after));
    match op {
        _ if eq_ci(op, b"LMSG") || eq_ci(op, b"HMSG") => {
            let with_headers = op[0].eq_ignore_ascii_case(&b'H');
            Ok(
                match msg_frame(buf, rest, after, limits, with_headers, false)? {
                    Err(needed) => LeafParsed::Incomplete(needed),
                    Ok((f, end)) => LeafParsed::Op(
                        LeafOp::Msg {
                            subject: f.subject,
                            reply: f.reply,
                            queues: f.queues,
                            headers: f.headers,
                            payload: f.payload,
                        },
                        end,
                    ),
                },
            )
        }
        _ if eq_ci(op, b"LS+") => {
            let mut args = [&[][..]; 3];
            match split_args(rest, &mut args) {
                1 => done(LeafOp::Sub {
                    subject: args[0],
                    queue: None,
                }),
                3 => {
                    let weight = parse_u64(args[2]).ok_or(ParseError::BadArgs("LS+"))?;
                    done(LeafOp::Sub {
                        subject: args[0],
                        queue: Some((args[1], weight)),
                    })
                }
                _ => Err(ParseError::BadArgs("LS+")),
            }
        }
        _ if eq_ci(op, b"LS-") => {
            let mut args = [&[][..]; 2];
            match split_args(rest, &mut args) {
                n @ (1 | 2) => done(LeafOp::Unsub {
                    subject: args[0],
                    queue: (n == 2).then_some(args[1]),
                }),
                _ => Err(ParseError::BadArgs("LS-")),
            }
        }
        _ if eq_ci(op, b"PING") => done(LeafOp::Ping),
        _ if eq_ci(op, b"PONG") => done(LeafOp::Pong),
        _ if eq_ci(op, b"INFO") => done(LeafOp::Info(trim(rest))),
        _ if eq_ci(op, b"CONNECT") => done(LeafOp::Connect(trim(rest))),
        _ if eq_ci(op, b"+OK") => done(LeafOp::Ok),
        _ if eq_ci(op, b"-ERR") => done(LeafOp::Err(trim(rest))),
        _ => Err(ParseError::UnknownOp),
    }
}

/// Appends `LS+ <subject> [<queue> <weight>]`.
pub fn write_sub(out: &mut BytesMut, subject: &[u8], queue: Option<(&[u8], u64)>) {
    out.put_slice(b"LS+ ");
    out.put_slice(subject);
    if let Some((q, weight)) = queue {
        out.put_u8(b' ');
        out.put_slice(q);
        out.put_u8(b' ');
        out.put_slice(itoa::Buffer::new().format(weight).as_bytes());
    }
    out.put_slice(b"\r\n");
}

/// Appends `LS- <subject> [<queue>]`.
pub fn write_unsub(out: &mut BytesMut, subject: &[u8], queue: Option<&[u8]>) {
    out.put_slice(b"LS- ");
    out.put_slice(subject);
    if let Some(q) = queue {
        out.put_u8(b' ');
        out.put_slice(q);
    }
    out.put_slice(b"\r\n");
}

/// Number of bytes [`write_msg`] appends (at most).
pub fn msg_len(
    subject: &[u8],
    reply: Option<&[u8]>,
    queue: Option<&[u8]>,
    headers: Option<&[u8]>,
    payload: &[u8],
) -> usize {
    let queues = queue.map_or(0, |q| q.len() + 1);
    super::route::msg_len(&[], subject, reply, &[], headers, payload) + queues + 2
}

/// Appends an `LMSG` (or `HMSG` with `headers`) frame for the peer's plain subscribers and,
/// with `queue`, one member of that group.
pub fn write_msg(
    out: &mut BytesMut,
    subject: &[u8],
    reply: Option<&[u8]>,
    queue: Option<&[u8]>,
    headers: Option<&[u8]>,
    payload: &[u8],
) {
    let queues: &[&[u8]] = match &queue {
        Some(q) => std::slice::from_ref(q),
        None => &[],
    };
    let msg = Frame {
        subject,
        reply,
        queues,
        headers,
        payload,
    };
    write_frame(out, [b"LMSG ", b"HMSG "], None, &msg);
}

/// A JetStream delivery's reply (`$JS.ACK....@<subject>`) split into the reply and the
/// subject its receivers see; `None` for any other reply.
pub fn split_delivery(reply: &[u8]) -> Option<(&[u8], &[u8])> {
    if !reply.starts_with(b"$JS.ACK.") {
        return None;
    }
    let mut dots = 0;
    for (i, &b) in reply.iter().enumerate() {
        match b {
            b'.' => dots += 1,
            b'@' if dots >= 8 => return Some((&reply[..i], &reply[i + 1..])),
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: RouteLimits = RouteLimits {
        max_control_line: 4096,
        max_payload: 1 << 20,
    };

    fn one(buf: &[u8]) -> LeafOp<'_> {
        match parse(buf, &LIMITS).unwrap() {
            LeafParsed::Op(op, n) => {
                assert_eq!(n, buf.len(), "{op:?}");
                op
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn interest_lines() {
        let sub = |subject, queue| LeafOp::Sub { subject, queue };
        assert_eq!(one(b"LS+ foo.>\r\n"), sub(&b"foo.>"[..], None));
        assert_eq!(
            one(b"LS+ foo q 3\r\n"),
            sub(&b"foo"[..], Some((&b"q"[..], 3)))
        );
        let unsub = LeafOp::Unsub {
            subject: &b"foo"[..],
            queue: Some(&b"q"[..]),
        };
        assert_eq!(one(b"LS- foo q\r\n"), unsub);
        assert!(parse(b"LS+ foo q\r\n", &LIMITS).is_err());
    }

    /// (subject, reply, queue, headers)
    type Case<'a> = (
        &'a [u8],
        Option<&'a [u8]>,
        Option<&'a [u8]>,
        Option<&'a [u8]>,
    );

    #[test]
    fn messages_round_trip() {
        let cases: [Case; 4] = [
            (b"a.b", None, None, None),
            (b"a.b", Some(b"_INBOX.1"), None, None),
            (
                b"a.b",
                Some(b"_INBOX.1"),
                Some(b"workers"),
                Some(b"NATS/1.0\r\nA: b\r\n\r\n"),
            ),
            (b"a.b", None, Some(b"workers"), None),
        ];
        for (subject, reply, queue, headers) in cases {
            let mut b = BytesMut::new();
            write_msg(&mut b, subject, reply, queue, headers, b"hello");
            assert!(b.len() <= msg_len(subject, reply, queue, headers, b"hello"));
            let want = LeafOp::Msg {
                subject,
                reply,
                queues: queue.unwrap_or_default(),
                headers,
                payload: &b"hello"[..],
            };
            assert_eq!(one(&b), want, "{}", String::from_utf8_lossy(&b));
        }
    }

    #[test]
    fn deliveries_name_their_deliver_subject() {
        let reply = b"$JS.ACK.S.c.1.5.5.1700000000.0@$JS.S.abc";
        assert_eq!(
            split_delivery(reply),
            Some((&b"$JS.ACK.S.c.1.5.5.1700000000.0"[..], &b"$JS.S.abc"[..]))
        );
        assert_eq!(split_delivery(b"_INBOX.a@b"), None);
        assert_eq!(split_delivery(b"$JS.ACK.S.c.1.5@x"), None);
    }
}
