//! A connection's outbound side: the pending-bytes buffer that publishers append frames to, and
//! the writer task that drains it to the socket in large coalesced writes.
//!
//! Publishers never touch the socket. They append to [`Outbound`] under a short lock and remember
//! the connection as "dirty"; once per read batch they wake each dirty writer, so a burst of
//! messages leaves in one `write` call. A buffer above `max_pending`, or a write that takes longer
//! than `write_deadline`, marks the client a slow consumer and closes it: the server's memory
//! stays bounded and one stuck reader never stalls anyone else.
//!
//! A small buffer is written by whoever wakes the writer ([`Outbound::flush`]): a non-blocking
//! `try_write` straight to the socket, under the buffer's lock, when the writer task is not in
//! the middle of a write. A reply then leaves from the thread that produced it without a task
//! wake-up; whatever the socket does not take right away is left to the writer task. The socket
//! is any [`TransportWriter`]; one without a [`TryWrite`] handle always goes through the task.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Buf, BytesMut};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::kind::ConnKind;
use super::transport::{TransportWriter, TryWrite};
use crate::protocol::encode;

/// Why a connection was closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// The client closed the socket.
    ClientClosed,
    /// A protocol violation.
    ProtocolViolation,
    /// Authentication failed or timed out.
    AuthFailure,
    /// Outbound pending bytes exceeded max_pending.
    SlowConsumerPendingBytes,
    /// A write exceeded write_deadline.
    SlowConsumerWriteDeadline,
    /// Too many outstanding pings.
    StaleConnection,
    /// Server shutdown or lame duck.
    ServerShutdown,
    /// Too many connections.
    MaxConnections,
    /// A socket error.
    WriteError,
    /// A second route to the same server: one of the two is kept.
    DuplicateRoute,
    /// No CONNECT within the auth timeout.
    AuthTimeout,
    /// The client's credentials expired while it was connected.
    AuthExpired,
    /// Bytes that are not the protocol.
    ParseError,
    /// A payload above `max_payload`.
    MaxPayload,
    /// A control line above `max_control_line`.
    MaxControlLine,
    /// CONNECT asked for an unknown protocol version.
    BadProtocolVersion,
    /// CONNECT asked for no-responders without headers.
    NoRespondersRequiresHeaders,
    /// Closed by a `$SYS.REQ.SERVER.<id>.KICK` request.
    Kicked,
    /// The account's `max_connections` were open already.
    MaxAccountConnections,
}

impl CloseReason {
    /// nats-server's name for it (`/connz?state=closed`, disconnect events).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ClientClosed => "Client Closed",
            Self::ProtocolViolation => "Protocol Violation",
            Self::AuthFailure => "Authentication Failure",
            Self::SlowConsumerPendingBytes => "Slow Consumer (Pending Bytes)",
            Self::SlowConsumerWriteDeadline => "Slow Consumer (Write Deadline)",
            Self::StaleConnection => "Stale Connection",
            Self::ServerShutdown => "Server Shutdown",
            Self::MaxConnections => "Maximum Connections Exceeded",
            Self::WriteError => "Write Error",
            Self::DuplicateRoute => "Duplicate Route",
            Self::AuthTimeout => "Authentication Timeout",
            Self::AuthExpired => "Authentication Expired",
            Self::ParseError => "Parse Error",
            Self::MaxPayload => "Maximum Message Payload Exceeded",
            Self::MaxControlLine => "Maximum Control Line Exceeded",
            Self::BadProtocolVersion => "Bad Client Protocol Version",
            Self::NoRespondersRequiresHeaders => "No Responders Requires Headers",
            Self::Kicked => "Kicked",
            Self::MaxAccountConnections => "Maximum Account Connections Exceeded",
        }
    }
}

/// Result of appending to an outbound buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Push {
    /// Appended; `true` if the buffer was empty before, i.e. the writer needs a wake-up.
    Queued(bool),
    /// Dropped: the client is (now) closed.
    Closed,
}

/// Buffers at most this large are written inline by [`Outbound::flush`]; larger ones are left
/// to the writer task, so big bursts are written beside the publisher, not by it. (Small
/// messages fanned out to many connections are still written by the publisher, one write per
/// connection per read batch.)
const INLINE_WRITE_MAX: usize = 32 * 1024;

struct State {
    buf: BytesMut,
    closed: Option<CloseReason>,
    flush_on_close: bool,
    /// The socket's non-blocking writes, while the writer task runs (it takes them away when
    /// it ends); `None` for a transport without them.
    sock: Option<Arc<dyn TryWrite>>,
    /// The writer task holds bytes taken from `buf` that are not yet fully written: nobody
    /// else may write to the socket until it is done, or bytes would be reordered.
    writing: bool,
}

/// The outbound half of one client connection.
pub(crate) struct Outbound {
    /// Connection id.
    pub cid: u64,
    /// What the peer is to this server.
    pub kind: ConnKind,
    state: Mutex<State>,
    wake: Notify,
    /// Cancelled when the connection closes; the reader task watches it.
    pub cancel: CancellationToken,
    max_pending: usize,
    /// The client said `headers: true` in CONNECT; otherwise headers are stripped.
    pub headers: AtomicBool,
    /// Messages delivered to this client.
    pub out_msgs: AtomicU64,
    /// Bytes delivered to this client.
    pub out_bytes: AtomicU64,
}

impl Outbound {
    pub fn new(cid: u64, kind: ConnKind, max_pending: usize) -> Arc<Self> {
        Arc::new(Self {
            cid,
            kind,
            state: Mutex::new(State {
                buf: BytesMut::with_capacity(4096),
                closed: None,
                flush_on_close: true,
                sock: None,
                writing: false,
            }),
            wake: Notify::new(),
            cancel: CancellationToken::new(),
            max_pending,
            headers: AtomicBool::new(false),
            out_msgs: AtomicU64::new(0),
            out_bytes: AtomicU64::new(0),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Appends one MSG/HMSG frame. Cuts the client off if its pending bytes would exceed
    /// max_pending.
    #[inline]
    pub fn push_msg(
        &self,
        subject: &[u8],
        sid: &[u8],
        reply: Option<&[u8]>,
        headers: Option<&[u8]>,
        payload: &[u8],
    ) -> Push {
        let headers = headers.filter(|_| self.headers.load(Ordering::Relaxed));
        let len = encode::msg_len(subject, sid, reply, headers, payload);
        self.push_frame(len, |buf| {
            encode::write_msg(buf, subject, sid, reply, headers, payload)
        })
    }

    /// Appends one frame of `len` bytes at most, written by `f` (a client's `MSG`, a route's
    /// `RMSG`), under the `max_pending` limit; the caller wakes the writer.
    #[inline]
    pub fn push_frame(&self, len: usize, f: impl FnOnce(&mut BytesMut)) -> Push {
        let mut st = self.lock();
        if st.closed.is_some() {
            return Push::Closed;
        }
        if st.buf.len() + len > self.max_pending {
            drop(st);
            tracing::warn!(
                cid = self.cid,
                kind = %self.kind,
                "Slow Consumer Detected: MaxPending of {} Exceeded",
                self.max_pending
            );
            self.close_now(CloseReason::SlowConsumerPendingBytes);
            return Push::Closed;
        }
        let was_empty = st.buf.is_empty();
        let before = st.buf.len();
        f(&mut st.buf);
        let written = st.buf.len() - before;
        drop(st);
        self.out_msgs.fetch_add(1, Ordering::Relaxed);
        self.out_bytes.fetch_add(written as u64, Ordering::Relaxed);
        Push::Queued(was_empty)
    }

    /// Appends protocol bytes (INFO, PONG, +OK, -ERR) and wakes the writer.
    pub fn send(&self, f: impl FnOnce(&mut BytesMut)) {
        let mut st = self.lock();
        if st.closed.is_some() {
            return;
        }
        f(&mut st.buf);
        drop(st);
        self.flush();
    }

    /// Sends what is buffered: inline if it is small and the socket takes all of it right
    /// away, otherwise by waking the writer task.
    pub fn flush(&self) {
        if self.try_write_inline() {
            return;
        }
        self.wake.notify_one();
    }

    /// True if the whole buffer went out to the socket here and now.
    fn try_write_inline(&self) -> bool {
        let mut guard = self.lock();
        let st = &mut *guard;
        if st.writing || st.closed.is_some() || st.buf.len() > INLINE_WRITE_MAX {
            return false;
        }
        let Some(sock) = &st.sock else {
            return false;
        };
        if st.buf.is_empty() {
            return true;
        }
        match sock.try_write(&st.buf) {
            Ok(n) if n == st.buf.len() => {
                st.buf.clear();
                true
            }
            Ok(n) => {
                st.buf.advance(n);
                false
            }
            // Would block, or an error the writer task will meet and report.
            Err(_) => false,
        }
    }

    /// Closes after writing what is already queued (used after -ERR, on shutdown).
    pub fn close(&self, reason: CloseReason) {
        self.close_inner(reason, true);
    }

    /// Closes at once, discarding what is queued (slow consumers, dead sockets).
    pub fn close_now(&self, reason: CloseReason) {
        self.close_inner(reason, false);
    }

    fn close_inner(&self, reason: CloseReason, flush: bool) {
        let mut st = self.lock();
        if st.closed.is_none() {
            st.closed = Some(reason);
            st.flush_on_close = flush;
            if !flush {
                st.buf = BytesMut::new();
            }
        }
        drop(st);
        self.cancel.cancel();
        self.wake.notify_one();
    }

    /// Bytes queued and not yet written.
    pub fn pending(&self) -> usize {
        self.lock().buf.len()
    }

    /// The reason the connection closed, if it did.
    pub fn closed(&self) -> Option<CloseReason> {
        self.lock().closed
    }
}

/// Drains `out` to the socket until the connection closes.
pub(crate) async fn writer<W: TransportWriter>(
    out: Arc<Outbound>,
    mut sock: W,
    write_deadline: Duration,
) {
    out.lock().sock = sock.try_writer();
    // However this task ends (returns, panics, is dropped at shutdown), the Outbound lets go
    // of the socket, so the last handle closes it.
    let _release = Release(&out);
    let mut spare = BytesMut::with_capacity(64 * 1024);
    loop {
        let closing = {
            let mut st = out.lock();
            std::mem::swap(&mut st.buf, &mut spare);
            st.writing = !spare.is_empty();
            st.closed.map(|_| st.flush_on_close)
        };
        if closing == Some(false) {
            break;
        }
        if !spare.is_empty() {
            let result = {
                let write = tokio::time::timeout(write_deadline, sock.write_all(&spare));
                tokio::pin!(write);
                let mut cancel_seen = false;
                loop {
                    tokio::select! {
                        r = &mut write => break Some(r),
                        _ = out.cancel.cancelled(), if !cancel_seen => {
                            // A close that discards pending data must not wait for a stuck socket.
                            if !out.lock().flush_on_close {
                                break None;
                            }
                            cancel_seen = true;
                        }
                    }
                }
            };
            let Some(result) = result else { break };
            match result {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    tracing::debug!(cid = out.cid, "write error: {e}");
                    out.close_now(CloseReason::WriteError);
                    break;
                }
                Err(_) => {
                    tracing::warn!(
                        cid = out.cid,
                        "Slow Consumer Detected: WriteDeadline of {write_deadline:?} exceeded"
                    );
                    out.close_now(CloseReason::SlowConsumerWriteDeadline);
                    break;
                }
            }
            spare.clear();
            if spare.capacity() > 4 * 1024 * 1024 {
                spare = BytesMut::with_capacity(64 * 1024);
            }
            continue;
        }
        if closing.is_some() {
            break;
        }
        out.wake.notified().await;
    }
}

/// Takes the socket away from an [`Outbound`] when the writer task ends.
struct Release<'a>(&'a Outbound);

impl Drop for Release<'_> {
    fn drop(&mut self) {
        let mut st = self.0.lock();
        st.sock = None;
        st.writing = false;
    }
}

#[cfg(test)]
mod tests {
    use std::io;
    use std::sync::atomic::AtomicUsize;

    use super::*;

    /// What a mock transport received, and by which path.
    #[derive(Default)]
    struct Wire {
        bytes: Mutex<Vec<u8>>,
        inline_calls: AtomicUsize,
        task_writes: AtomicUsize,
    }

    impl Wire {
        fn bytes(&self) -> Vec<u8> {
            self.bytes.lock().expect("wire").clone()
        }
    }

    /// How the mock's non-blocking write behaves.
    #[derive(Clone, Copy)]
    enum Inline {
        /// No handle at all.
        Absent,
        /// Takes at most this many bytes per call.
        Takes(usize),
        WouldBlock,
        Unsupported,
    }

    struct MockTry {
        wire: Arc<Wire>,
        inline: Inline,
    }

    impl TryWrite for MockTry {
        fn try_write(&self, data: &[u8]) -> io::Result<usize> {
            self.wire.inline_calls.fetch_add(1, Ordering::Relaxed);
            match self.inline {
                Inline::Takes(n) => {
                    let n = n.min(data.len());
                    self.wire.bytes.lock().expect("wire").extend(&data[..n]);
                    Ok(n)
                }
                Inline::WouldBlock => Err(io::ErrorKind::WouldBlock.into()),
                Inline::Absent | Inline::Unsupported => Err(io::ErrorKind::Unsupported.into()),
            }
        }
    }

    struct MockWriter(Arc<MockTry>);

    impl TransportWriter for MockWriter {
        async fn write_all(&mut self, data: &[u8]) -> io::Result<()> {
            let wire = &self.0.wire;
            wire.task_writes.fetch_add(1, Ordering::Relaxed);
            wire.bytes.lock().expect("wire").extend(data);
            Ok(())
        }

        fn try_writer(&self) -> Option<Arc<dyn TryWrite>> {
            match self.0.inline {
                Inline::Absent => None,
                _ => Some(self.0.clone()),
            }
        }
    }

    /// Sends `frames` through an [`Outbound`] whose writer task runs on the mock; returns the
    /// wire once everything arrived and the writer ended.
    async fn send_through(inline: Inline, frames: &[&[u8]]) -> Arc<Wire> {
        let wire = Arc::new(Wire::default());
        let sock = MockWriter(Arc::new(MockTry {
            wire: wire.clone(),
            inline,
        }));
        let out = Outbound::new(7, ConnKind::Client, 1 << 20);
        let task = tokio::spawn(writer(out.clone(), sock, Duration::from_secs(5)));
        while !matches!(inline, Inline::Absent) && out.lock().sock.is_none() {
            tokio::task::yield_now().await;
        }
        for frame in frames {
            out.send(|b| b.extend_from_slice(frame));
        }
        let total: usize = frames.iter().map(|f| f.len()).sum();
        let arrived = async {
            while wire.bytes().len() < total {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(5), arrived)
            .await
            .expect("everything arrives");
        out.close(CloseReason::ServerShutdown);
        task.await.expect("writer");
        assert!(
            out.lock().sock.is_none(),
            "the writer lets go of the socket"
        );
        wire
    }

    fn calls(n: &AtomicUsize) -> usize {
        n.load(Ordering::Relaxed)
    }

    #[tokio::test]
    async fn small_flushes_are_written_inline() {
        let wire = send_through(Inline::Takes(usize::MAX), &[b"PONG\r\n", b"+OK\r\n"]).await;
        assert_eq!(wire.bytes(), b"PONG\r\n+OK\r\n");
        assert_eq!(calls(&wire.inline_calls), 2);
        assert_eq!(calls(&wire.task_writes), 0);
    }

    #[tokio::test]
    async fn what_the_inline_write_leaves_goes_through_the_writer_in_order() {
        let wire = send_through(Inline::Takes(3), &[b"hello world"]).await;
        assert_eq!(wire.bytes(), b"hello world");
        assert_eq!(calls(&wire.inline_calls), 1);
        assert_eq!(calls(&wire.task_writes), 1);
    }

    #[tokio::test]
    async fn would_block_and_unsupported_leave_everything_to_the_writer() {
        for inline in [Inline::WouldBlock, Inline::Unsupported] {
            let wire = send_through(inline, &[b"PING\r\n"]).await;
            assert_eq!(wire.bytes(), b"PING\r\n");
            assert_eq!(calls(&wire.inline_calls), 1);
            assert_eq!(calls(&wire.task_writes), 1);
        }
    }

    #[tokio::test]
    async fn a_transport_without_try_write_is_never_written_inline() {
        let wire = send_through(Inline::Absent, &[b"PING\r\n", b"PONG\r\n"]).await;
        assert_eq!(wire.bytes(), b"PING\r\nPONG\r\n");
        assert_eq!(calls(&wire.inline_calls), 0);
        assert!(calls(&wire.task_writes) >= 1);
    }
}
