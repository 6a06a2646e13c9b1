//! A raw NATS client over a plain TCP socket, and MSG/HMSG frame parsing.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use super::{contains, find, within, TIMEOUT};

/// One parsed MSG or HMSG frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawMsg {
    pub subject: String,
    pub sid: String,
    pub reply: Option<String>,
    /// The raw header block for HMSG, `None` for MSG.
    pub headers: Option<Vec<u8>>,
    pub payload: Vec<u8>,
}

/// A raw NATS client over a plain TCP socket.
pub struct RawClient {
    pub stream: TcpStream,
    /// Bytes read from the socket and not consumed yet.
    pub buf: Vec<u8>,
    /// The INFO JSON the server greeted us with.
    pub info: serde_json::Value,
}

impl RawClient {
    /// Connects and reads the server's INFO line.
    pub async fn connect(addr: SocketAddr) -> RawClient {
        let stream = within(TIMEOUT, "TCP connect", TcpStream::connect(addr))
            .await
            .expect("TCP connect failed");
        Self::from_stream(stream).await
    }

    /// Connects with a tiny socket receive buffer (for slow-consumer tests).
    pub async fn connect_small_rcvbuf(addr: SocketAddr) -> RawClient {
        let socket = TcpSocket::new_v4().expect("socket");
        socket.set_recv_buffer_size(4096).expect("SO_RCVBUF");
        let stream = within(TIMEOUT, "TCP connect", socket.connect(addr))
            .await
            .expect("TCP connect failed");
        Self::from_stream(stream).await
    }

    async fn from_stream(stream: TcpStream) -> RawClient {
        stream.set_nodelay(true).expect("TCP_NODELAY");
        let mut c = RawClient {
            stream,
            buf: Vec::new(),
            info: serde_json::Value::Null,
        };
        let line = c.read_line().await;
        let json = line
            .strip_prefix("INFO ")
            .unwrap_or_else(|| panic!("expected INFO, got {line:?}"));
        c.info = serde_json::from_str(json).expect("INFO is not valid JSON");
        c
    }

    /// Connects, sends `CONNECT <json>` (verbose and pedantic off unless `json` sets them)
    /// and waits for the PONG of a following PING.
    pub async fn connect_with(addr: SocketAddr, json: serde_json::Value) -> RawClient {
        let mut c = Self::connect(addr).await;
        c.send_connect(json).await;
        c.ping_pong().await;
        c
    }

    /// Connects with a non-verbose CONNECT that declares header support, and a PING/PONG
    /// round trip.
    pub async fn connect_ready(addr: SocketAddr) -> RawClient {
        Self::connect_with(addr, serde_json::json!({})).await
    }

    /// Sends `CONNECT` with `verbose:false, pedantic:false, headers:true` merged under `json`.
    pub async fn send_connect(&mut self, json: serde_json::Value) {
        let mut obj = serde_json::json!({
            "verbose": false,
            "pedantic": false,
            "headers": true,
            "lang": "raw"
        });
        if let (Some(base), Some(extra)) = (obj.as_object_mut(), json.as_object()) {
            for (k, v) in extra {
                base.insert(k.clone(), v.clone());
            }
        }
        self.send(format!("CONNECT {obj}\r\n").as_bytes()).await;
    }

    /// Writes all of `bytes` and flushes.
    pub async fn send(&mut self, bytes: &[u8]) {
        within(TIMEOUT, "socket write", async {
            self.stream.write_all(bytes).await?;
            self.stream.flush().await
        })
        .await
        .expect("socket write failed");
    }

    /// Writes `bytes`, returning the I/O error instead of panicking (for sockets the server
    /// may already have closed).
    pub async fn try_send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        within(TIMEOUT, "socket write", async {
            self.stream.write_all(bytes).await?;
            self.stream.flush().await
        })
        .await
    }

    /// Reads more bytes into the buffer; returns the number read (0 on EOF).
    async fn fill(&mut self) -> std::io::Result<usize> {
        let mut chunk = vec![0u8; 64 * 1024];
        let n = self.stream.read(&mut chunk).await?;
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(n)
    }

    /// Reads until `pattern` appears and returns everything up to and including it.
    pub async fn read_until(&mut self, pattern: &[u8]) -> Vec<u8> {
        self.read_until_for(pattern, TIMEOUT).await
    }

    /// [`RawClient::read_until`] with an explicit bound.
    pub async fn read_until_for(&mut self, pattern: &[u8], dur: Duration) -> Vec<u8> {
        match self.try_read_until(pattern, dur).await {
            Ok(v) => v,
            Err(e) => panic!(
                "{e} while waiting for {:?}; got {:?}",
                String::from_utf8_lossy(pattern),
                String::from_utf8_lossy(&self.buf)
            ),
        }
    }

    /// Like [`RawClient::read_until_for`] but returns an error on EOF, I/O error or timeout.
    pub async fn try_read_until(
        &mut self,
        pattern: &[u8],
        dur: Duration,
    ) -> Result<Vec<u8>, String> {
        let res = tokio::time::timeout(dur, async {
            loop {
                if let Some(pos) = find(&self.buf, pattern) {
                    let rest = self.buf.split_off(pos + pattern.len());
                    return Ok(std::mem::replace(&mut self.buf, rest));
                }
                match self.fill().await {
                    Ok(0) => return Err("EOF".to_string()),
                    Ok(_) => {}
                    Err(e) => return Err(format!("I/O error ({e})")),
                }
            }
        })
        .await;
        res.unwrap_or_else(|_| Err(format!("timeout after {dur:?}")))
    }

    /// Sends `bytes`, then a `PING` as a fence (servers answer in order), and returns what came
    /// back before its `PONG`, and whether the server closed the connection instead.
    pub async fn exchange(&mut self, bytes: &[u8]) -> (String, bool) {
        let mut frame = bytes.to_vec();
        frame.extend_from_slice(b"PING\r\n");
        if self.try_send(&frame).await.is_err() {
            return (
                String::from_utf8_lossy(&std::mem::take(&mut self.buf)).into(),
                true,
            );
        }
        match self.try_read_until(b"PONG\r\n", TIMEOUT).await {
            Ok(got) => {
                let text = String::from_utf8_lossy(&got[..got.len() - 6]).into_owned();
                (text, false)
            }
            Err(e) if e.starts_with("EOF") || e.starts_with("I/O") => (
                String::from_utf8_lossy(&std::mem::take(&mut self.buf)).into(),
                true,
            ),
            Err(e) => panic!(
                "{e} waiting for PONG; got {:?}",
                String::from_utf8_lossy(&self.buf)
            ),
        }
    }

    /// Reads exactly `n` bytes.
    pub async fn read_exact(&mut self, n: usize) -> Vec<u8> {
        within(TIMEOUT, "exact bytes", async {
            while self.buf.len() < n {
                if self.fill().await.expect("read failed") == 0 {
                    panic!(
                        "EOF after {} of {n} bytes: {:?}",
                        self.buf.len(),
                        String::from_utf8_lossy(&self.buf)
                    );
                }
            }
        })
        .await;
        let rest = self.buf.split_off(n);
        std::mem::replace(&mut self.buf, rest)
    }

    /// Reads one CRLF-terminated line and returns it without the CRLF.
    pub async fn read_line(&mut self) -> String {
        let mut line = self.read_until(b"\r\n").await;
        line.truncate(line.len() - 2);
        String::from_utf8(line).expect("protocol line is not UTF-8")
    }

    /// Reads the next line and asserts it equals `expected` exactly.
    pub async fn expect_line(&mut self, expected: &str) {
        let line = self.read_line().await;
        assert_eq!(line, expected, "unexpected protocol line");
    }

    /// Reads exactly `expected.len()` bytes and asserts they equal `expected`.
    pub async fn expect_bytes(&mut self, expected: &[u8]) {
        let got = self.read_exact(expected.len()).await;
        assert_eq!(
            String::from_utf8_lossy(&got),
            String::from_utf8_lossy(expected),
            "unexpected bytes"
        );
    }

    /// Sends PING and reads until PONG; returns what came before the PONG (e.g. messages).
    pub async fn ping_pong(&mut self) -> Vec<u8> {
        self.send(b"PING\r\n").await;
        let mut got = self.read_until(b"PONG\r\n").await;
        got.truncate(got.len() - 6);
        got
    }

    /// Reads until the server closes the connection (EOF or reset) and returns what was read.
    /// Panics if the connection is still open after `TIMEOUT`.
    pub async fn expect_closed(&mut self) -> Vec<u8> {
        self.expect_closed_within(TIMEOUT).await
    }

    /// [`RawClient::expect_closed`] with an explicit bound.
    pub async fn expect_closed_within(&mut self, dur: Duration) -> Vec<u8> {
        let res = tokio::time::timeout(dur, async {
            loop {
                match self.fill().await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
            }
        })
        .await;
        if res.is_err() {
            panic!(
                "connection still open after {dur:?}; got {} bytes, ending {:?}",
                self.buf.len(),
                String::from_utf8_lossy(&self.buf[self.buf.len().saturating_sub(200)..])
            );
        }
        std::mem::take(&mut self.buf)
    }

    /// Reads until `-ERR '<text>'` arrives, then asserts the connection is closed.
    pub async fn expect_err_and_close(&mut self, text: &str) {
        self.read_until(format!("-ERR '{text}'\r\n").as_bytes())
            .await;
        // The server may already have closed; a failed write is fine.
        let _ = self.try_send(b"PING\r\n").await;
        let rest = self.expect_closed().await;
        assert!(
            !contains(&rest, b"PONG"),
            "server answered after the fatal error: {:?}",
            String::from_utf8_lossy(&rest)
        );
    }

    /// Reads until `-ERR '<text>'` arrives, then asserts the connection still answers PING.
    pub async fn expect_err_and_stay(&mut self, text: &str) {
        self.read_until(format!("-ERR '{text}'\r\n").as_bytes())
            .await;
        self.ping_pong().await;
    }

    /// Reads and parses the next MSG or HMSG frame, skipping PING (answered) and +OK lines.
    pub async fn read_msg(&mut self) -> RawMsg {
        loop {
            let line = self.read_line().await;
            if line == "PING" {
                self.send(b"PONG\r\n").await;
                continue;
            }
            if line == "+OK" {
                continue;
            }
            let parts: Vec<&str> = line.split(' ').collect();
            let (op, args) = (parts[0], &parts[1..]);
            match op {
                "MSG" => {
                    let (reply, n) = match args.len() {
                        3 => (None, args[2]),
                        4 => (Some(args[2].to_string()), args[3]),
                        _ => panic!("malformed MSG line {line:?}"),
                    };
                    let n: usize = n.parse().expect("MSG size");
                    let mut payload = self.read_exact(n + 2).await;
                    assert_eq!(&payload[n..], b"\r\n", "payload not followed by CRLF");
                    payload.truncate(n);
                    return RawMsg {
                        subject: args[0].to_string(),
                        sid: args[1].to_string(),
                        reply,
                        headers: None,
                        payload,
                    };
                }
                "HMSG" => {
                    let (reply, h, t) = match args.len() {
                        4 => (None, args[2], args[3]),
                        5 => (Some(args[2].to_string()), args[3], args[4]),
                        _ => panic!("malformed HMSG line {line:?}"),
                    };
                    let h: usize = h.parse().expect("HMSG header size");
                    let t: usize = t.parse().expect("HMSG total size");
                    let mut body = self.read_exact(t + 2).await;
                    assert_eq!(&body[t..], b"\r\n", "payload not followed by CRLF");
                    body.truncate(t);
                    let payload = body.split_off(h);
                    return RawMsg {
                        subject: args[0].to_string(),
                        sid: args[1].to_string(),
                        reply,
                        headers: Some(body),
                        payload,
                    };
                }
                _ => panic!("expected MSG or HMSG, got {line:?}"),
            }
        }
    }

    /// Asserts that nothing at all arrives within `dur`.
    pub async fn expect_silence(&mut self, dur: Duration) {
        if !self.buf.is_empty() {
            panic!("unexpected data: {:?}", String::from_utf8_lossy(&self.buf));
        }
        if let Ok(res) = tokio::time::timeout(dur, self.fill()).await {
            panic!(
                "expected silence, got {res:?}: {:?}",
                String::from_utf8_lossy(&self.buf)
            );
        }
    }
}

/// Splits a buffer of consecutive MSG frames (as returned by [`RawClient::ping_pong`]) into
/// payloads. Only understands MSG without headers.
pub fn parse_msgs(mut data: &[u8]) -> Vec<RawMsg> {
    let mut out = Vec::new();
    while !data.is_empty() {
        let eol = find(data, b"\r\n").expect("unterminated line");
        let line = std::str::from_utf8(&data[..eol]).expect("line not UTF-8");
        data = &data[eol + 2..];
        if line == "+OK" {
            continue;
        }
        let parts: Vec<&str> = line.split(' ').collect();
        assert_eq!(parts[0], "MSG", "expected MSG, got {line:?}");
        let (reply, n) = match parts.len() {
            4 => (None, parts[3]),
            5 => (Some(parts[3].to_string()), parts[4]),
            _ => panic!("malformed MSG line {line:?}"),
        };
        let n: usize = n.parse().expect("MSG size");
        assert_eq!(&data[n..n + 2], b"\r\n", "payload not followed by CRLF");
        out.push(RawMsg {
            subject: parts[1].to_string(),
            sid: parts[2].to_string(),
            reply,
            headers: None,
            payload: data[..n].to_vec(),
        });
        data = &data[n + 2..];
    }
    out
}
