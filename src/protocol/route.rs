//! The route protocol spoken between the servers of one cluster: a zero-copy parser for what a
//! peer sends ([`parse`]) and the encoders for what we send. It follows nats-server's route
//! protocol in shape (text control lines, an account token, CRLF-framed payloads):
//!
//! ```text
//! CONNECT {json}                                  dialer -> acceptor: identity and credentials
//! INFO {json}                                     both ways at connect, again on any change
//! RS+ <acc> <subject> [<queue> <weight>]          first local subscription on (subject, queue)
//! RS- <acc> <subject> [<queue>]                   last one gone
//! RMSG <acc> <subject> [reply] <size>             a message for the peer's plain subscribers
//! RMSG <acc> <subject> + <reply> <q>... <size>    ... and for its members of these groups
//! RMSG <acc> <subject> | <q>... <size>            (the same without a reply subject)
//! HRMSG <acc> <subject> ... <hdr_size> <size>     the same with a header block
//! RMSGD <acc> <to> <subject> [reply] <size>       a delivery: for the peer's subscribers of
//! HRMSGD <acc> <to> <subject> ... <size>          `to`, shown to them as `subject` (causeway's)
//! PING, PONG, -ERR '<text>', +OK
//! ```
//!
//! `<acc>` names the account whose subjects the line is about (`$G`, the global account, or an
//! account of `accounts {}`); deliveries (`RMSGD`) are always `$G`'s (JetStream runs there in
//! a cluster). A queue list only appears with five or more arguments, so a reply subject that
//! happens to be `+` or `|` is never mistaken for a marker.

use bytes::{BufMut, BytesMut};
use memchr::memchr;

use super::parser::{eq_ci, parse_u64, split_args, split_op, trim, ParseError};

/// The global account's name on the wire.
pub const GLOBAL_ACCOUNT: &[u8] = b"$G";

/// Limits for a route connection.
#[derive(Debug, Clone, Copy)]
pub struct RouteLimits {
    /// Longest control line accepted, CRLF included.
    pub max_control_line: usize,
    /// Largest payload (headers + body) accepted.
    pub max_payload: usize,
}

/// One operation received on a route; every slice borrows from the read buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum RouteOp<'a> {
    /// `CONNECT <json>`.
    Connect(&'a [u8]),
    /// `INFO <json>`.
    Info(&'a [u8]),
    /// `RS+`: the peer has interest in `subject` (for `queue`, when set).
    Sub {
        /// The account.
        account: &'a [u8],
        /// The subject, wildcards as written.
        subject: &'a [u8],
        /// The queue group.
        queue: Option<&'a [u8]>,
    },
    /// `RS-`: the peer's interest is gone.
    Unsub {
        /// The account.
        account: &'a [u8],
        /// The subject, wildcards as written.
        subject: &'a [u8],
        /// The queue group.
        queue: Option<&'a [u8]>,
    },
    /// `RMSG` / `HRMSG`.
    Msg {
        /// The account.
        account: &'a [u8],
        /// Destination subject.
        subject: &'a [u8],
        /// Reply subject.
        reply: Option<&'a [u8]>,
        /// Queue groups to deliver to, separated by whitespace (empty: plain subscribers only).
        queues: &'a [u8],
        /// Raw header block (HRMSG only).
        headers: Option<&'a [u8]>,
        /// Body.
        payload: &'a [u8],
    },
    /// `RMSGD` / `HRMSGD`: a delivery routed by `to` and shown as `subject` (a JetStream
    /// consumer's message for a subscriber of its deliver subject on the peer).
    Delivery {
        /// The subject the message is routed by.
        to: &'a [u8],
        /// The subject the receivers see.
        subject: &'a [u8],
        /// Reply subject.
        reply: Option<&'a [u8]>,
        /// Raw header block (HRMSGD only).
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
pub enum RouteParsed<'a> {
    /// A complete operation and the bytes it occupied.
    Op(RouteOp<'a>, usize),
    /// More bytes are needed: at least this many in total.
    Incomplete(usize),
}

/// The names in a `queues` field of [`RouteOp::Msg`].
pub fn queue_names(queues: &[u8]) -> impl Iterator<Item = &[u8]> {
    queues
        .split(|&b| b == b' ' || b == b'\t')
        .filter(|q| !q.is_empty())
}

/// Parses one operation from the front of `buf`.
pub fn parse<'a>(buf: &'a [u8], limits: &RouteLimits) -> Result<RouteParsed<'a>, ParseError> {
    let (op, rest, after) = match control_line(buf, limits)? {
        Ok(line) => line,
        Err(needed) => return Ok(RouteParsed::Incomplete(needed)),
    };
    let done = |op| Ok(RouteParsed::Op(op, after));
    match op {
        _ if eq_ci(op, b"RMSG") => parse_msg(buf, rest, after, limits, false),
        _ if eq_ci(op, b"HRMSG") => parse_msg(buf, rest, after, limits, true),
        _ if eq_ci(op, b"RMSGD") => parse_delivery(buf, rest, after, limits, false),
        _ if eq_ci(op, b"HRMSGD") => parse_delivery(buf, rest, after, limits, true),
        _ if eq_ci(op, b"RS+") || eq_ci(op, b"RS-") => {
            let mut args = [&[][..]; 4];
            let n = split_args(rest, &mut args);
            let plus = op[2] == b'+';
            let queue = match (plus, n) {
                (_, 2) => None,
                (true, 4) | (false, 3) => Some(args[2]),
                _ => return Err(ParseError::BadArgs("RS")),
            };
            let (account, subject) = (args[0], args[1]);
            done(if plus {
                RouteOp::Sub {
                    account,
                    subject,
                    queue,
                }
            } else {
                RouteOp::Unsub {
                    account,
                    subject,
                    queue,
                }
            })
        }
        _ if eq_ci(op, b"PING") => done(RouteOp::Ping),
        _ if eq_ci(op, b"PONG") => done(RouteOp::Pong),
        _ if eq_ci(op, b"INFO") => done(RouteOp::Info(trim(rest))),
        _ if eq_ci(op, b"CONNECT") => done(RouteOp::Connect(trim(rest))),
        _ if eq_ci(op, b"+OK") => done(RouteOp::Ok),
        _ if eq_ci(op, b"-ERR") => done(RouteOp::Err(trim(rest))),
        _ => Err(ParseError::UnknownOp),
    }
}

/// The control line at the front of `buf`: its operation, its arguments and where it ends;
/// `Ok(Err(n))` while no whole line is buffered (at least `n` bytes are needed).
#[allow(clippy::type_complexity)]
pub(super) fn control_line<'a>(
    buf: &'a [u8],
    limits: &RouteLimits,
) -> Result<Result<(&'a [u8], &'a [u8], usize), usize>, ParseError> {
    let Some(nl) = memchr(b'\n', buf) else {
        if buf.len() > limits.max_control_line {
            return Err(ParseError::MaxControlLine);
        }
        return Ok(Err(buf.len() + 1));
    };
    if nl + 1 > limits.max_control_line {
        return Err(ParseError::MaxControlLine);
    }
    let line_end = if nl > 0 && buf[nl - 1] == b'\r' {
        nl - 1
    } else {
        nl
    };
    let (op, rest) = split_op(&buf[..line_end]);
    Ok(Ok((op, rest, nl + 1)))
}

fn parse_msg<'a>(
    buf: &'a [u8],
    rest: &'a [u8],
    after: usize,
    limits: &RouteLimits,
    with_headers: bool,
) -> Result<RouteParsed<'a>, ParseError> {
    Ok(
        match msg_frame(buf, rest, after, limits, with_headers, true)? {
            Err(needed) => RouteParsed::Incomplete(needed),
            Ok((f, end)) => RouteParsed::Op(
                RouteOp::Msg {
                    account: f.account,
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

/// The fields of a message frame: a route's `RMSG`/`HRMSG` (with an account), or a leaf
/// node's `LMSG`/`HMSG` (without: a leaf connection is bound to one account).
pub(super) struct MsgFrame<'a> {
    pub account: &'a [u8],
    pub subject: &'a [u8],
    pub reply: Option<&'a [u8]>,
    pub queues: &'a [u8],
    pub headers: Option<&'a [u8]>,
    pub payload: &'a [u8],
}

/// Parses a message frame whose control line's arguments are `rest` (the line ends at
/// `after`): `[account] subject [reply | + reply q... | "|" q...] [hdr_size] size`.
/// `Ok(Err(n))` while fewer than `n` bytes are buffered; with the frame, where it ends.
#[allow(clippy::type_complexity)]
pub(super) fn msg_frame<'a>(
    buf: &'a [u8],
    rest: &'a [u8],
    after: usize,
    limits: &RouteLimits,
    with_headers: bool,
    accounted: bool,
) -> Result<Result<(MsgFrame<'a>, usize), usize>, ParseError> {
    const NAME: &str = "RMSG";
    let mut args = [&[][..]; 6];
    let n = split_args(rest, &mut args);
    // Sizes at the end: [hdr] total.
    let sizes = if with_headers { 2 } else { 1 };
    let base = usize::from(accounted);
    if n < 1 + base + sizes {
        return Err(ParseError::BadArgs(NAME));
    }
    let account = if accounted { args[0] } else { &[][..] };
    let subject = args[base];
    let fixed = n - sizes; // account, subject and what sits between them and the sizes
    let (reply, queues) = if fixed <= base + 2 {
        ((fixed == base + 2).then_some(args[base + 1]), &[][..])
    } else {
        // Queue form: "+ reply q..." or "| q...". The queue names are the text between the
        // marker (and reply) and the sizes.
        let (reply, skip) = match args[base + 1] {
            b"+" => (Some(args[base + 2]), base + 3),
            b"|" => (None, base + 2),
            _ => return Err(ParseError::BadArgs(NAME)),
        };
        if fixed <= skip {
            return Err(ParseError::BadArgs(NAME));
        }
        (reply, field_span(rest, skip, fixed))
    };
    let tail = if n <= args.len() {
        [args[n - sizes], args[n - 1]]
    } else {
        tail_args(rest, sizes)
    };
    let sizes = if with_headers {
        (Some(tail[0]), tail[1])
    } else {
        (None, tail[0])
    };
    let (headers, payload, end) = match body(buf, after, sizes, limits, NAME)? {
        Ok(b) => b,
        Err(needed) => return Ok(Err(needed)),
    };
    let frame = MsgFrame {
        account,
        subject,
        reply,
        queues,
        headers,
        payload,
    };
    Ok(Ok((frame, end)))
}

fn parse_delivery<'a>(
    buf: &'a [u8],
    rest: &'a [u8],
    after: usize,
    limits: &RouteLimits,
    with_headers: bool,
) -> Result<RouteParsed<'a>, ParseError> {
    const NAME: &str = "RMSGD";
    let mut args = [&[][..]; 6];
    let n = split_args(rest, &mut args);
    let sizes = if with_headers { 2 } else { 1 };
    if !(3 + sizes..=4 + sizes).contains(&n) {
        return Err(ParseError::BadArgs(NAME));
    }
    if args[0] != GLOBAL_ACCOUNT {
        return Err(ParseError::BadArgs("RMSGD account"));
    }
    let (to, subject) = (args[1], args[2]);
    let reply = (n == 4 + sizes).then_some(args[3]);
    let sizes = if with_headers {
        (Some(args[n - 2]), args[n - 1])
    } else {
        (None, args[n - 1])
    };
    let (headers, payload, end) = match body(buf, after, sizes, limits, NAME)? {
        Ok(b) => b,
        Err(needed) => return Ok(RouteParsed::Incomplete(needed)),
    };
    let op = RouteOp::Delivery {
        to,
        subject,
        reply,
        headers,
        payload,
    };
    Ok(RouteParsed::Op(op, end))
}

/// A message's header block and body after its control line (which ends at `after`), from its
/// size fields (`[hdr_size] total`): `Ok(Err(n))` while fewer than `n` bytes are buffered;
/// also returns where the frame ends.
#[allow(clippy::type_complexity)]
fn body<'a>(
    buf: &'a [u8],
    after: usize,
    (hdr, total): (Option<&[u8]>, &[u8]),
    limits: &RouteLimits,
    name: &'static str,
) -> Result<Result<(Option<&'a [u8]>, &'a [u8], usize), usize>, ParseError> {
    let total = len(total)?;
    let hdr_len = hdr.map(len).transpose()?;
    if total > limits.max_payload {
        return Err(ParseError::MaxPayload);
    }
    if hdr_len.unwrap_or(0) > total {
        return Err(ParseError::BadArgs(name));
    }
    let end = after + total;
    if buf.len() < end + 2 {
        return Ok(Err(end + 2));
    }
    if &buf[end..end + 2] != b"\r\n" {
        return Err(ParseError::UnknownOp);
    }
    let data = &buf[after..end];
    Ok(Ok(match hdr_len {
        Some(h) => (Some(&data[..h]), &data[h..], end + 2),
        None => (None, data, end + 2),
    }))
}

fn len(s: &[u8]) -> Result<usize, ParseError> {
    parse_u64(s)
        .and_then(|v| usize::try_from(v).ok())
        .ok_or(ParseError::BadArgs("RMSG size"))
}

/// Byte ranges of the whitespace-separated fields of `s`.
fn fields(s: &[u8]) -> impl Iterator<Item = (usize, usize)> + '_ {
    let mut i = 0;
    std::iter::from_fn(move || {
        while i < s.len() && (s[i] == b' ' || s[i] == b'\t') {
            i += 1;
        }
        if i == s.len() {
            return None;
        }
        let start = i;
        while i < s.len() && s[i] != b' ' && s[i] != b'\t' {
            i += 1;
        }
        Some((start, i))
    })
}

/// The text from field `from` to the end of field `to - 1` (fields counted from 0).
fn field_span(s: &[u8], from: usize, to: usize) -> &[u8] {
    let mut start = 0;
    let mut end = 0;
    for (i, (a, b)) in fields(s).enumerate() {
        if i == from {
            start = a;
        }
        if i + 1 == to {
            end = b;
            break;
        }
    }
    &s[start..end.max(start)]
}

/// The last `n` fields of `s` (n <= 2).
fn tail_args(s: &[u8], n: usize) -> [&[u8]; 2] {
    let all: Vec<(usize, usize)> = fields(s).collect();
    let mut out = [&[][..]; 2];
    for (k, (a, b)) in all[all.len().saturating_sub(n)..].iter().enumerate() {
        out[k] = &s[*a..*b];
    }
    out
}

/// Appends `RS+ <account> <subject> [<queue> 1]`.
pub fn write_sub(out: &mut BytesMut, account: &[u8], subject: &[u8], queue: Option<&[u8]>) {
    out.put_slice(b"RS+ ");
    out.put_slice(account);
    out.put_u8(b' ');
    out.put_slice(subject);
    if let Some(q) = queue {
        out.put_u8(b' ');
        out.put_slice(q);
        out.put_slice(b" 1");
    }
    out.put_slice(b"\r\n");
}

/// Appends `RS- <account> <subject> [<queue>]`.
pub fn write_unsub(out: &mut BytesMut, account: &[u8], subject: &[u8], queue: Option<&[u8]>) {
    out.put_slice(b"RS- ");
    out.put_slice(account);
    out.put_u8(b' ');
    out.put_slice(subject);
    if let Some(q) = queue {
        out.put_u8(b' ');
        out.put_slice(q);
    }
    out.put_slice(b"\r\n");
}

/// Number of bytes [`write_msg`] appends.
pub fn msg_len(
    account: &[u8],
    subject: &[u8],
    reply: Option<&[u8]>,
    queues: &[&[u8]],
    headers: Option<&[u8]>,
    payload: &[u8],
) -> usize {
    "HRMSG  ".len()
        + account.len()
        + subject.len()
        + reply.map_or(0, |r| r.len() + 3)
        + queues.iter().map(|q| q.len() + 1).sum::<usize>()
        + 2
        + headers.map_or(0, |h| h.len() + 21)
        + 21
        + 2
        + payload.len()
        + 2
}

/// Appends an `RMSG` (or `HRMSG` with `headers`) frame for the peer's plain subscribers and
/// the members of `queues`.
pub fn write_msg(
    out: &mut BytesMut,
    account: &[u8],
    subject: &[u8],
    reply: Option<&[u8]>,
    queues: &[&[u8]],
    headers: Option<&[u8]>,
    payload: &[u8],
) {
    let ops: [&[u8]; 2] = [b"RMSG ", b"HRMSG "];
    let msg = Frame {
        subject,
        reply,
        queues,
        headers,
        payload,
    };
    write_frame(out, ops, Some(account), &msg);
}

/// A message frame's parts, as [`write_frame`] writes them.
pub(super) struct Frame<'a> {
    pub subject: &'a [u8],
    pub reply: Option<&'a [u8]>,
    pub queues: &'a [&'a [u8]],
    pub headers: Option<&'a [u8]>,
    pub payload: &'a [u8],
}

/// Appends a message frame: `ops[0]` (or `ops[1]` with headers), the account if any, the
/// subject, the reply and queue groups, the sizes and the body.
pub(super) fn write_frame(out: &mut BytesMut, ops: [&[u8]; 2], account: Option<&[u8]>, m: &Frame) {
    let account_len = account.map_or(0, <[u8]>::len);
    out.reserve(msg_len(&[], m.subject, m.reply, m.queues, m.headers, m.payload) + account_len);
    let mut num = itoa::Buffer::new();
    out.put_slice(if m.headers.is_some() { ops[1] } else { ops[0] });
    if let Some(a) = account {
        out.put_slice(a);
        out.put_u8(b' ');
    }
    out.put_slice(m.subject);
    out.put_u8(b' ');
    match (m.reply, m.queues.is_empty()) {
        (Some(r), true) => {
            out.put_slice(r);
            out.put_u8(b' ');
        }
        (Some(r), false) => {
            out.put_slice(b"+ ");
            out.put_slice(r);
            out.put_u8(b' ');
        }
        (None, false) => out.put_slice(b"| "),
        (None, true) => {}
    }
    for q in m.queues {
        out.put_slice(q);
        out.put_u8(b' ');
    }
    super::encode::put_sizes_and_body(out, &mut num, m.headers, m.payload);
}

/// Number of bytes [`write_delivery`] appends.
pub fn delivery_len(
    to: &[u8],
    subject: &[u8],
    reply: Option<&[u8]>,
    headers: Option<&[u8]>,
    payload: &[u8],
) -> usize {
    msg_len(GLOBAL_ACCOUNT, subject, reply, &[], headers, payload) + 2 + to.len()
}

/// Appends an `RMSGD` (or `HRMSGD` with `headers`) frame: a delivery for the peer's
/// subscribers of `to`, shown to them as `subject`.
pub fn write_delivery(
    out: &mut BytesMut,
    to: &[u8],
    subject: &[u8],
    reply: Option<&[u8]>,
    headers: Option<&[u8]>,
    payload: &[u8],
) {
    out.reserve(delivery_len(to, subject, reply, headers, payload));
    let mut num = itoa::Buffer::new();
    out.put_slice(if headers.is_some() {
        b"HRMSGD $G "
    } else {
        b"RMSGD $G "
    });
    out.put_slice(to);
    out.put_u8(b' ');
    out.put_slice(subject);
    out.put_u8(b' ');
    if let Some(r) = reply {
        out.put_slice(r);
        out.put_u8(b' ');
    }
    super::encode::put_sizes_and_body(out, &mut num, headers, payload);
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: RouteLimits = RouteLimits {
        max_control_line: 4096,
        max_payload: 1024,
    };

    fn op(buf: &[u8]) -> RouteOp<'_> {
        match parse(buf, &LIMITS) {
            Ok(RouteParsed::Op(op, n)) => {
                assert_eq!(n, buf.len(), "{:?}", String::from_utf8_lossy(buf));
                op
            }
            other => panic!("{:?}: {other:?}", String::from_utf8_lossy(buf)),
        }
    }

    fn encoded(
        reply: Option<&[u8]>,
        queues: &[&[u8]],
        headers: Option<&[u8]>,
        payload: &[u8],
    ) -> BytesMut {
        let mut b = BytesMut::new();
        write_msg(&mut b, b"APP", b"foo.bar", reply, queues, headers, payload);
        assert!(msg_len(b"APP", b"foo.bar", reply, queues, headers, payload) >= b.len());
        b
    }

    #[test]
    fn deliveries_round_trip_and_bad_ones_are_refused() {
        let hdr: &[u8] = b"NATS/1.0\r\n\r\n";
        for reply in [None, Some(&b"$JS.ACK.S.c.1.1.1.1.0"[..])] {
            for headers in [None, Some(hdr)] {
                let mut b = BytesMut::new();
                write_delivery(&mut b, b"_INBOX.x", b"orders.1", reply, headers, b"hi");
                assert!(delivery_len(b"_INBOX.x", b"orders.1", reply, headers, b"hi") >= b.len());
                let want = RouteOp::Delivery {
                    to: b"_INBOX.x",
                    subject: b"orders.1",
                    reply,
                    headers,
                    payload: b"hi",
                };
                assert_eq!(op(&b), want);
            }
        }
        for bad in [
            &b"RMSGD $G a 2\r\nhi\r\n"[..],
            b"RMSGD $X a b 2\r\nhi\r\n",
            b"RMSGD $G a b c d e 2\r\nhi\r\n",
            b"HRMSGD $G a b 5 2\r\nhi\r\n",
        ] {
            assert!(
                parse(bad, &LIMITS).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn every_message_form_round_trips() {
        let hdr: &[u8] = b"NATS/1.0\r\n\r\n";
        for reply in [None, Some(&b"_INBOX.1"[..]), Some(b"+"), Some(b"|")] {
            for queues in [&[][..], &[&b"q1"[..]], &[&b"q1"[..], b"q2"]] {
                for headers in [None, Some(hdr)] {
                    let b = encoded(reply, queues, headers, b"hello");
                    let RouteOp::Msg {
                        account,
                        subject,
                        reply: r,
                        queues: q,
                        headers: h,
                        payload,
                    } = op(&b)
                    else {
                        panic!("not a message: {b:?}");
                    };
                    assert_eq!(account, b"APP");
                    assert_eq!(subject, b"foo.bar");
                    assert_eq!(r, reply, "{b:?}");
                    assert_eq!(queue_names(q).collect::<Vec<_>>(), queues, "{b:?}");
                    assert_eq!(h, headers);
                    assert_eq!(payload, b"hello");
                }
            }
        }
    }

    #[test]
    fn interest_and_control() {
        let mut b = BytesMut::new();
        write_sub(&mut b, b"$G", b"foo.*", Some(b"q"));
        assert_eq!(&b[..], b"RS+ $G foo.* q 1\r\n");
        assert_eq!(
            op(&b),
            RouteOp::Sub {
                account: b"$G",
                subject: b"foo.*",
                queue: Some(b"q")
            }
        );
        b.clear();
        write_unsub(&mut b, b"APP", b"foo.>", None);
        assert_eq!(&b[..], b"RS- APP foo.>\r\n");
        assert_eq!(
            op(&b),
            RouteOp::Unsub {
                account: b"APP",
                subject: b"foo.>",
                queue: None
            }
        );
        assert_eq!(op(b"ping\r\n"), RouteOp::Ping);
        assert_eq!(op(b"INFO {\"a\":1}\r\n"), RouteOp::Info(b"{\"a\":1}"));
        assert_eq!(op(b"-ERR 'x'\r\n"), RouteOp::Err(b"'x'"));
    }

    #[test]
    fn partial_frames_and_errors() {
        let b = encoded(Some(b"r"), &[b"q"], None, b"0123456789");
        for cut in 0..b.len() {
            assert!(
                matches!(parse(&b[..cut], &LIMITS), Ok(RouteParsed::Incomplete(_))),
                "cut at {cut}"
            );
        }
        for bad in [
            &b"RMSG $G foo\r\n"[..],
            b"RMSG $G foo x 1 2 3\r\n",
            b"RMSG $G foo + r 1\r\n",
            b"RMSG $G foo 2000\r\n",
            b"HRMSG $G foo 5 2\r\n",
            b"RS+ $G\r\n",
            b"RS+ $G a b c d\r\n",
            b"BOGUS\r\n",
            b"RMSG $G foo 1\r\nxyz",
        ] {
            assert!(
                parse(bad, &LIMITS).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn random_input_never_panics() {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..20_000 {
            let mut buf = Vec::new();
            for _ in 0..(seed % 40) {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                let pick = b"RMSG HRS+-$G |+ 0123\r\n";
                buf.push(pick[(seed % pick.len() as u64) as usize]);
            }
            let _ = parse(&buf, &LIMITS);
        }
    }
}
