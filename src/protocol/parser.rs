//! Incremental, zero-copy parser for the client side of the NATS protocol.
//!
//! [`parse`] looks at the front of a read buffer and either returns one complete operation whose
//! fields borrow from that buffer, or says how many bytes it needs before it can. Nothing is
//! consumed until a whole frame (control line plus payload) is present, so a frame split across
//! any number of TCP reads parses the same as one that arrived whole.

use memchr::memchr;

/// Limits the parser enforces.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Maximum control line length, including the CRLF.
    pub max_control_line: usize,
    /// Maximum payload (headers + body) of PUB/HPUB.
    pub max_payload: usize,
}

/// One operation sent by a client. Every slice borrows from the read buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum ClientOp<'a> {
    /// `CONNECT <json>`.
    Connect(&'a [u8]),
    /// `PUB` or `HPUB`; `headers` is `Some` for HPUB and holds the raw header block.
    Pub {
        /// Destination subject.
        subject: &'a [u8],
        /// Optional reply subject.
        reply: Option<&'a [u8]>,
        /// Raw `NATS/1.0` header block (HPUB only).
        headers: Option<&'a [u8]>,
        /// Message body.
        payload: &'a [u8],
    },
    /// `SUB <subject> [queue] <sid>`.
    Sub {
        /// Subject, possibly with wildcards.
        subject: &'a [u8],
        /// Queue group.
        queue: Option<&'a [u8]>,
        /// Subscription id chosen by the client.
        sid: &'a [u8],
    },
    /// `UNSUB <sid> [max]`.
    Unsub {
        /// Subscription id.
        sid: &'a [u8],
        /// Auto-unsubscribe after this many more messages.
        max: Option<u64>,
    },
    /// `PING`.
    Ping,
    /// `PONG`.
    Pong,
    /// `+OK` or `-ERR` sent by a client: accepted and ignored, as nats-server does.
    Ignored,
}

/// Result of one parse attempt.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed<'a> {
    /// A complete operation and the number of bytes it occupied.
    Op(ClientOp<'a>, usize),
    /// The buffer holds an incomplete frame; at least this many bytes in total are needed.
    Incomplete(usize),
}

/// A protocol violation. The display text is nats-server's `-ERR` text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// Control line longer than the limit.
    #[error("maximum control line exceeded")]
    MaxControlLine,
    /// Payload larger than max_payload.
    #[error("Maximum Payload Violation")]
    MaxPayload,
    /// Unknown operation keyword.
    #[error("Unknown Protocol Operation")]
    UnknownOp,
    /// Arguments of a known operation are malformed.
    #[error("Unknown Protocol Operation")]
    BadArgs(&'static str),
}

/// Parses one operation from the front of `buf`.
pub fn parse<'a>(buf: &'a [u8], limits: &Limits) -> Result<Parsed<'a>, ParseError> {
    let Some(nl) = memchr(b'\n', buf) else {
        if !could_be_op(buf) {
            return Err(ParseError::UnknownOp);
        }
        if buf.len() > limits.max_control_line {
            return Err(ParseError::MaxControlLine);
        }
        return Ok(Parsed::Incomplete(buf.len() + 1));
    };
    if nl + 1 > limits.max_control_line {
        return Err(ParseError::MaxControlLine);
    }
    let line_end = if nl > 0 && buf[nl - 1] == b'\r' {
        nl - 1
    } else {
        nl
    };
    let line = &buf[..line_end];
    let after = nl + 1;
    let (op, rest) = split_op(line);
    match op.len() {
        3 if eq_ci(op, b"PUB") => parse_pub(buf, rest, after, limits, false),
        4 if eq_ci(op, b"HPUB") => parse_pub(buf, rest, after, limits, true),
        3 if eq_ci(op, b"SUB") => {
            let mut args = [&[][..]; 3];
            match split_args(rest, &mut args) {
                2 => Ok(Parsed::Op(
                    ClientOp::Sub {
                        subject: args[0],
                        queue: None,
                        sid: args[1],
                    },
                    after,
                )),
                3 => Ok(Parsed::Op(
                    ClientOp::Sub {
                        subject: args[0],
                        queue: Some(args[1]),
                        sid: args[2],
                    },
                    after,
                )),
                _ => Err(ParseError::BadArgs("SUB")),
            }
        }
        5 if eq_ci(op, b"UNSUB") => {
            let mut args = [&[][..]; 2];
            match split_args(rest, &mut args) {
                1 => Ok(Parsed::Op(
                    ClientOp::Unsub {
                        sid: args[0],
                        max: None,
                    },
                    after,
                )),
                2 => {
                    let max = parse_u64(args[1]).ok_or(ParseError::BadArgs("UNSUB"))?;
                    Ok(Parsed::Op(
                        ClientOp::Unsub {
                            sid: args[0],
                            max: Some(max),
                        },
                        after,
                    ))
                }
                _ => Err(ParseError::BadArgs("UNSUB")),
            }
        }
        4 if eq_ci(op, b"PING") => Ok(Parsed::Op(ClientOp::Ping, after)),
        4 if eq_ci(op, b"PONG") => Ok(Parsed::Op(ClientOp::Pong, after)),
        7 if eq_ci(op, b"CONNECT") => Ok(Parsed::Op(ClientOp::Connect(trim(rest)), after)),
        3 if eq_ci(op, b"+OK") => Ok(Parsed::Op(ClientOp::Ignored, after)),
        4 if eq_ci(op, b"-ERR") => Ok(Parsed::Op(ClientOp::Ignored, after)),
        _ => Err(ParseError::UnknownOp),
    }
}

fn parse_pub<'a>(
    buf: &'a [u8],
    rest: &'a [u8],
    after: usize,
    limits: &Limits,
    with_headers: bool,
) -> Result<Parsed<'a>, ParseError> {
    let mut args = [&[][..]; 4];
    let n = split_args(rest, &mut args);
    let name = if with_headers { "HPUB" } else { "PUB" };
    let (subject, reply, hdr_len, total) = match (with_headers, n) {
        (false, 2) => (args[0], None, 0, args[1]),
        (false, 3) => (args[0], Some(args[1]), 0, args[2]),
        (true, 3) => (args[0], None, parse_len(args[1], name)?, args[2]),
        (true, 4) => (args[0], Some(args[1]), parse_len(args[2], name)?, args[3]),
        _ => return Err(ParseError::BadArgs(name)),
    };
    let total = parse_len(total, name)?;
    if total > limits.max_payload {
        return Err(ParseError::MaxPayload);
    }
    if hdr_len > total {
        return Err(ParseError::BadArgs(name));
    }
    let end = after + total;
    if buf.len() < end + 2 {
        return Ok(Parsed::Incomplete(end + 2));
    }
    // The payload is followed by exactly CRLF (nats-server: anything else, a bare LF
    // included, is an unknown operation).
    if &buf[end..end + 2] != b"\r\n" {
        return Err(ParseError::UnknownOp);
    }
    let consumed = end + 2;
    let data = &buf[after..end];
    let (headers, payload) = if with_headers {
        (Some(&data[..hdr_len]), &data[hdr_len..])
    } else {
        (None, data)
    };
    Ok(Parsed::Op(
        ClientOp::Pub {
            subject,
            reply,
            headers,
            payload,
        },
        consumed,
    ))
}

/// True if the start of an unterminated line could still become a known operation. A line
/// starts with its keyword: leading whitespace is an unknown operation, as on nats-server.
fn could_be_op(buf: &[u8]) -> bool {
    const OPS: [&[u8]; 9] = [
        b"PUB", b"HPUB", b"SUB", b"UNSUB", b"PING", b"PONG", b"CONNECT", b"+OK", b"-ERR",
    ];
    let word = &buf[..buf.iter().position(|&b| is_ws(b)).unwrap_or(buf.len())];
    let complete = word.len() < buf.len();
    buf.is_empty()
        || OPS.iter().any(|op| {
            if complete {
                eq_ci(word, op)
            } else {
                word.len() <= op.len() && eq_ci(word, &op[..word.len()])
            }
        })
}

#[inline]
pub(crate) fn eq_ci(a: &[u8], upper: &[u8]) -> bool {
    a.len() == upper.len()
        && a.iter()
            .zip(upper)
            .all(|(x, y)| x.to_ascii_uppercase() == *y)
}

#[inline]
fn is_ws(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

/// Splits the operation keyword (at the very start of the line) from the rest of the line.
pub(crate) fn split_op(line: &[u8]) -> (&[u8], &[u8]) {
    let end = line.iter().position(|&b| is_ws(b)).unwrap_or(line.len());
    (&line[..end], &line[end..])
}

pub(crate) fn trim(s: &[u8]) -> &[u8] {
    let start = s.iter().position(|&b| !is_ws(b)).unwrap_or(s.len());
    let end = s.iter().rposition(|&b| !is_ws(b)).map_or(start, |e| e + 1);
    &s[start..end.max(start)]
}

/// Splits whitespace-separated arguments into `out`; returns how many there were (which may
/// exceed `out.len()`, meaning too many).
pub(crate) fn split_args<'a>(s: &'a [u8], out: &mut [&'a [u8]]) -> usize {
    let mut n = 0;
    let mut i = 0;
    while i < s.len() {
        while i < s.len() && is_ws(s[i]) {
            i += 1;
        }
        if i == s.len() {
            break;
        }
        let start = i;
        while i < s.len() && !is_ws(s[i]) {
            i += 1;
        }
        if n < out.len() {
            out[n] = &s[start..i];
        }
        n += 1;
    }
    n
}

pub(crate) fn parse_u64(s: &[u8]) -> Option<u64> {
    if s.is_empty() || s.len() > 19 {
        return None;
    }
    s.iter().try_fold(0u64, |acc, &b| {
        b.is_ascii_digit().then(|| acc * 10 + u64::from(b - b'0'))
    })
}

fn parse_len(s: &[u8], name: &'static str) -> Result<usize, ParseError> {
    parse_u64(s)
        .and_then(|v| usize::try_from(v).ok())
        .ok_or(ParseError::BadArgs(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    const L: Limits = Limits {
        max_control_line: 4096,
        max_payload: 1024,
    };

    fn op(buf: &[u8]) -> (ClientOp<'_>, usize) {
        match parse(buf, &L).expect("parse") {
            Parsed::Op(op, n) => (op, n),
            Parsed::Incomplete(n) => panic!("incomplete, need {n}"),
        }
    }

    #[test]
    fn pub_and_split_frames() {
        let frame = b"PUB foo.bar reply 5\r\nhello\r\n";
        let (o, n) = op(frame);
        assert_eq!(n, frame.len());
        assert_eq!(
            o,
            ClientOp::Pub {
                subject: b"foo.bar",
                reply: Some(b"reply"),
                headers: None,
                payload: b"hello"
            }
        );
        for cut in 0..frame.len() {
            assert!(matches!(
                parse(&frame[..cut], &L),
                Ok(Parsed::Incomplete(_))
            ));
        }
    }

    #[test]
    fn hpub() {
        let frame = b"hpub s 12 14\r\nNATS/1.0\r\n\r\nhi\r\n";
        let (o, _) = op(frame);
        assert_eq!(
            o,
            ClientOp::Pub {
                subject: b"s",
                reply: None,
                headers: Some(b"NATS/1.0\r\n\r\n"),
                payload: b"hi"
            }
        );
    }

    #[test]
    fn sub_unsub_ping_case_insensitive() {
        assert_eq!(
            op(b"sub a q 1\r\n").0,
            ClientOp::Sub {
                subject: b"a",
                queue: Some(b"q"),
                sid: b"1"
            }
        );
        assert_eq!(
            op(b"UnSub 1 5\r\n").0,
            ClientOp::Unsub {
                sid: b"1",
                max: Some(5)
            }
        );
        assert_eq!(op(b"ping\r\n").0, ClientOp::Ping);
        assert_eq!(op(b"PONG\n").0, ClientOp::Pong);
        assert_eq!(op(b"CONNECT {}\r\n").0, ClientOp::Connect(b"{}"));
    }

    #[test]
    fn errors() {
        assert_eq!(parse(b"FOO\r\n", &L), Err(ParseError::UnknownOp));
        assert_eq!(parse(b"PUB a 2000\r\n", &L), Err(ParseError::MaxPayload));
        assert_eq!(parse(&vec![b'A'; 5000], &L), Err(ParseError::UnknownOp));
        let mut long = b"PUB ".to_vec();
        long.extend(vec![b'a'; 5000]);
        assert_eq!(parse(&long, &L), Err(ParseError::MaxControlLine));
        assert_eq!(parse(b"PU", &L), Ok(Parsed::Incomplete(3)));
        assert_eq!(parse(b"XYZ", &L), Err(ParseError::UnknownOp));
        assert!(parse(b"PUB a b c d\r\n", &L).is_err());
        assert!(parse(b"PUB a x\r\n", &L).is_err());
        assert!(parse(b"PUB a 2\r\nabcd", &L).is_err());
        assert!(parse(b"UNSUB\r\n", &L).is_err());
    }

    /// Random bytes and random mutations of valid frames never panic, and whatever parses
    /// reports a length within the buffer.
    #[test]
    fn random_input_never_panics() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let valid: [&[u8]; 6] = [
            b"PUB foo 5\r\nhello\r\n",
            b"HPUB foo r 12 14\r\nNATS/1.0\r\n\r\nhi\r\n",
            b"SUB foo q 1\r\n",
            b"UNSUB 1 10\r\n",
            b"CONNECT {\"verbose\":false}\r\n",
            b"PING\r\n",
        ];
        for _ in 0..20_000 {
            let mut buf: Vec<u8> = if rng.random_bool(0.5) {
                (0..rng.random_range(0..64)).map(|_| rng.random()).collect()
            } else {
                valid[rng.random_range(0..valid.len())].to_vec()
            };
            for _ in 0..rng.random_range(0..4) {
                if !buf.is_empty() {
                    let i = rng.random_range(0..buf.len());
                    buf[i] = rng.random();
                }
            }
            let mut pos = 0;
            while pos < buf.len() {
                match parse(&buf[pos..], &L) {
                    Ok(Parsed::Op(_, n)) => {
                        assert!(n > 0 && pos + n <= buf.len());
                        pos += n;
                    }
                    Ok(Parsed::Incomplete(need)) => {
                        assert!(need > buf.len() - pos);
                        break;
                    }
                    Err(_) => break,
                }
            }
        }
    }
}
