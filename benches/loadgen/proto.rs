//! Minimal client side of the NATS text protocol: an incremental frame parser
//! and a connection wrapper that batches reads and writes.

use std::net::SocketAddr;

use anyhow::{anyhow, bail, Context, Result};
use bytes::{Buf, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

/// How much spare room is guaranteed in the read buffer before each read.
const READ_CHUNK: usize = 64 * 1024;

/// Longest control line we accept before declaring the stream garbage.
const MAX_CONTROL_LINE: usize = 64 * 1024;

const CONNECT: &[u8] = b"CONNECT {\"verbose\":false,\"pedantic\":false,\"headers\":true,\
\"no_responders\":true,\"protocol\":1}\r\nPING\r\n";

/// The server closed the connection (for a subscriber, typically because
/// the server cut it off as a slow consumer).
#[derive(Debug)]
pub struct Closed;

impl std::fmt::Display for Closed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection closed by server")
    }
}

impl std::error::Error for Closed {}

/// One complete server-to-client frame, borrowing from the read buffer.
#[derive(Debug)]
pub enum Frame<'a> {
    /// `MSG` or `HMSG`. For `HMSG`, `payload` includes the header block.
    Msg {
        subject: &'a [u8],
        sid: &'a [u8],
        reply: Option<&'a [u8]>,
        payload: &'a [u8],
    },
    Ping,
    Pong,
    Info,
    Ok,
    Err(&'a [u8]),
}

/// Parses one frame from the start of `buf`.
///
/// Returns `Ok(None)` when `buf` does not yet hold a complete frame, else the
/// frame and the number of bytes it occupies.
pub fn parse(buf: &[u8]) -> Result<Option<(Frame<'_>, usize)>> {
    let Some(nl) = memchr::memchr(b'\n', buf) else {
        if buf.len() > MAX_CONTROL_LINE {
            bail!("control line longer than {MAX_CONTROL_LINE} bytes");
        }
        return Ok(None);
    };
    let line = buf[..nl].strip_suffix(b"\r").unwrap_or(&buf[..nl]);
    let after_line = nl + 1;
    let mut words = line
        .split(|b| *b == b' ' || *b == b'\t')
        .filter(|w| !w.is_empty());
    let op = words.next().unwrap_or_default();
    let frame = if op.eq_ignore_ascii_case(b"MSG") || op.eq_ignore_ascii_case(b"HMSG") {
        // MSG <subject> <sid> [reply] <len>
        // HMSG <subject> <sid> [reply] <hdr_len> <total_len>
        let mut args = [&b""[..]; 5];
        let mut n = 0;
        for w in words {
            if n == args.len() {
                bail!("too many arguments: {}", String::from_utf8_lossy(line));
            }
            args[n] = w;
            n += 1;
        }
        let fixed = if op.len() == 4 { 4 } else { 3 };
        if n != fixed && n != fixed + 1 {
            bail!("malformed message line: {}", String::from_utf8_lossy(line));
        }
        let len = parse_len(args[n - 1])
            .ok_or_else(|| anyhow!("bad length in: {}", String::from_utf8_lossy(line)))?;
        let end = after_line + len + 2;
        if buf.len() < end {
            return Ok(None);
        }
        if &buf[end - 2..end] != b"\r\n" {
            bail!("payload not terminated by CRLF");
        }
        let frame = Frame::Msg {
            subject: args[0],
            sid: args[1],
            reply: (n == fixed + 1).then_some(args[2]),
            payload: &buf[after_line..after_line + len],
        };
        return Ok(Some((frame, end)));
    } else if op.eq_ignore_ascii_case(b"PING") {
        Frame::Ping
    } else if op.eq_ignore_ascii_case(b"PONG") {
        Frame::Pong
    } else if op.eq_ignore_ascii_case(b"INFO") {
        Frame::Info
    } else if op.eq_ignore_ascii_case(b"+OK") {
        Frame::Ok
    } else if op.eq_ignore_ascii_case(b"-ERR") {
        Frame::Err(line.trim_ascii_start()[4..].trim_ascii())
    } else {
        bail!("unknown operation: {}", String::from_utf8_lossy(line));
    };
    Ok(Some((frame, after_line)))
}

fn parse_len(digits: &[u8]) -> Option<usize> {
    if digits.is_empty() || digits.len() > 12 {
        return None;
    }
    digits.iter().try_fold(0usize, |acc, d| {
        d.is_ascii_digit().then(|| acc * 10 + usize::from(d - b'0'))
    })
}

/// A client connection with a reusable read buffer and outgoing buffer.
pub struct Conn {
    rd: OwnedReadHalf,
    wr: OwnedWriteHalf,
    buf: BytesMut,
    out: Vec<u8>,
}

impl Conn {
    /// Connects, reads `INFO`, sends `CONNECT` and waits for the `PONG`.
    pub async fn connect(addr: SocketAddr) -> Result<Conn> {
        let stream = TcpStream::connect(addr)
            .await
            .with_context(|| format!("connecting to {addr}"))?;
        stream.set_nodelay(true)?;
        let (rd, wr) = stream.into_split();
        let mut conn = Conn {
            rd,
            wr,
            buf: BytesMut::with_capacity(4 * READ_CHUNK),
            out: Vec::with_capacity(READ_CHUNK),
        };
        let mut saw_info = false;
        while !saw_info {
            conn.read_frames(|f, _| saw_info |= matches!(f, Frame::Info))
                .await?;
        }
        conn.write_all(CONNECT).await?;
        conn.wait_pong().await?;
        Ok(conn)
    }

    pub async fn write_all(&mut self, data: &[u8]) -> Result<()> {
        self.wr.write_all(data).await.context("write failed")
    }

    /// Sends `PING` and waits for the matching `PONG`, which proves the
    /// server has processed everything sent before it.
    pub async fn flush(&mut self) -> Result<()> {
        self.write_all(b"PING\r\n").await?;
        self.wait_pong().await
    }

    async fn wait_pong(&mut self) -> Result<()> {
        let mut pong = false;
        while !pong {
            self.read_frames(|f, _| pong |= matches!(f, Frame::Pong))
                .await?;
        }
        Ok(())
    }

    /// Performs one socket read and hands every complete frame to `on_frame`,
    /// which may append bytes to send back. Server `PING`s are answered and
    /// `-ERR`s become errors. Anything queued is written before returning.
    ///
    /// Cancel safe with respect to the read; a cancelled write is only ever
    /// followed by dropping the connection.
    pub async fn read_frames<F>(&mut self, mut on_frame: F) -> Result<()>
    where
        F: FnMut(&Frame<'_>, &mut Vec<u8>),
    {
        self.buf.reserve(READ_CHUNK);
        let n = self
            .rd
            .read_buf(&mut self.buf)
            .await
            .context("read failed")?;
        if n == 0 {
            return Err(Closed.into());
        }
        let mut pos = 0;
        let mut result = Ok(());
        while let Some((frame, len)) = parse(&self.buf[pos..])? {
            pos += len;
            match frame {
                Frame::Ping => self.out.extend_from_slice(b"PONG\r\n"),
                Frame::Err(e) => {
                    result = Err(anyhow!("server error: {}", String::from_utf8_lossy(e)));
                    break;
                }
                _ => {}
            }
            on_frame(&frame, &mut self.out);
        }
        self.buf.advance(pos);
        if !self.out.is_empty() {
            let out = std::mem::take(&mut self.out);
            let written = self.write_all(&out).await;
            self.out = out;
            self.out.clear();
            written?;
        }
        result
    }
}
