//! The byte streams a connection runs over. [`Transport`] splits a connected stream into the
//! read half the connection's reader task drives and the [`TransportWriter`] its writer task
//! owns; TCP implements it here, and TLS, WebSocket or QUIC streams can implement it without
//! any change to the protocol code, which is generic over it (static dispatch).
//!
//! A writer may also hand out a [`TryWrite`] handle: a non-blocking write that the outbound
//! buffer uses to send small flushes from the publishing thread while the writer task is idle
//! (see [`super::outbound`]). A transport without one sends everything through its writer task.

use std::future::Future;
use std::io;
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream as ClientTlsStream;
use tokio_rustls::server::TlsStream;

/// A connected byte stream that a connection can be served over.
pub(crate) trait Transport: Send + 'static {
    /// The read half, driven by the connection's reader task.
    type Reader: AsyncRead + Unpin + Send + 'static;
    /// The write half, owned by the connection's writer task.
    type Writer: TransportWriter;

    /// Applies the transport's connection options and splits it into its halves.
    fn split(self) -> (Self::Reader, Self::Writer);
}

/// The write half of a [`Transport`].
pub(crate) trait TransportWriter: Send + 'static {
    /// Writes all of `data`, waiting for the transport as needed. An error ends the connection.
    fn write_all(&mut self, data: &[u8]) -> impl Future<Output = io::Result<()>> + Send;

    /// A handle for non-blocking writes from other threads, or `None` if the transport has
    /// none. It is only used while this writer is not inside [`TransportWriter::write_all`], so
    /// the two never interleave bytes.
    fn try_writer(&self) -> Option<Arc<dyn TryWrite>> {
        None
    }
}

/// A non-blocking write to a transport, usable from any thread.
///
/// This is the one dynamically dispatched call of the write path: the outbound buffer is shared
/// by connections of every transport, so it holds the handle type-erased. It is made at most
/// once per flush, beside the system call it wraps.
pub(crate) trait TryWrite: Send + Sync {
    /// Writes what the transport takes right now and returns how much that was: an error of
    /// kind `WouldBlock` if it takes nothing now, `Unsupported` if it cannot write without
    /// waiting. The caller leaves whatever was not written to the writer task.
    fn try_write(&self, data: &[u8]) -> io::Result<usize>;
}

impl Transport for TcpStream {
    type Reader = OwnedReadHalf;
    type Writer = TcpWriter;

    fn split(self) -> (OwnedReadHalf, TcpWriter) {
        // The outbound buffer already coalesces frames: Nagle's algorithm would only delay them.
        let _ = self.set_nodelay(true);
        let (rd, wr) = self.into_split();
        (rd, TcpWriter(Arc::new(wr)))
    }
}

/// The write half of a TCP connection, shared with its [`TryWrite`] handle.
pub(crate) struct TcpWriter(Arc<OwnedWriteHalf>);

impl TransportWriter for TcpWriter {
    async fn write_all(&mut self, mut data: &[u8]) -> io::Result<()> {
        while !data.is_empty() {
            self.0.writable().await?;
            match self.0.try_write(data) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => data = &data[n..],
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    fn try_writer(&self) -> Option<Arc<dyn TryWrite>> {
        Some(self.0.clone())
    }
}

impl TryWrite for OwnedWriteHalf {
    fn try_write(&self, data: &[u8]) -> io::Result<usize> {
        // The inherent method: a non-blocking write(2).
        OwnedWriteHalf::try_write(self, data)
    }
}

/// Any `AsyncWrite` as a writer without a [`TryWrite`] handle; each write is flushed, so a
/// buffering stream (TLS) sends its records at once.
pub(crate) struct Flushing<W>(pub W);

impl<W: AsyncWrite + Unpin + Send + 'static> TransportWriter for Flushing<W> {
    async fn write_all(&mut self, data: &[u8]) -> io::Result<()> {
        AsyncWriteExt::write_all(&mut self.0, data).await?;
        AsyncWriteExt::flush(&mut self.0).await
    }
}

/// TLS over any byte stream, both sides: the listeners' (`server::TlsStream`) and the route
/// dialer's (`client::TlsStream`).
macro_rules! tls_transport {
    ($stream:ident) => {
        impl<S> Transport for $stream<S>
        where
            S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
        {
            type Reader = ReadHalf<Self>;
            type Writer = Flushing<WriteHalf<Self>>;

            fn split(self) -> (Self::Reader, Self::Writer) {
                let (rd, wr) = tokio::io::split(self);
                (rd, Flushing(wr))
            }
        }
    };
}

tls_transport!(TlsStream);
tls_transport!(ClientTlsStream);

/// Transports for tests: an in-memory stream, which has no non-blocking writes.
#[cfg(test)]
pub(crate) mod testing {
    use tokio::io::DuplexStream;

    use super::*;

    impl Transport for DuplexStream {
        type Reader = ReadHalf<DuplexStream>;
        type Writer = Flushing<WriteHalf<DuplexStream>>;

        fn split(self) -> (Self::Reader, Self::Writer) {
            let (rd, wr) = tokio::io::split(self);
            (rd, Flushing(wr))
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;
    use crate::server::{bind_server, client, ConnKind};
    use crate::Config;

    /// Reads until `end` has arrived; everything read so far, as text.
    async fn read_until(rd: &mut (impl AsyncRead + Unpin), end: &str) -> String {
        let mut got = Vec::new();
        let read = async {
            while !String::from_utf8_lossy(&got).contains(end) {
                if rd.read_buf(&mut got).await.expect("read") == 0 {
                    break;
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(5), read)
            .await
            .expect("timed out reading");
        String::from_utf8_lossy(&got).into_owned()
    }

    async fn tcp_pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (client, accepted) = tokio::join!(TcpStream::connect(addr), listener.accept());
        (client.expect("connect"), accepted.expect("accept").0)
    }

    #[tokio::test]
    async fn tcp_sets_nodelay_and_writes_inline_and_through_the_writer() {
        let (mut client, server) = tcp_pair().await;
        let (rd, mut wr) = server.split();
        assert!(rd.as_ref().nodelay().expect("nodelay"));
        let inline = wr.try_writer().expect("TCP has non-blocking writes");
        assert_eq!(inline.try_write(b"ab").expect("try_write"), 2);
        wr.write_all(b"cd").await.expect("write_all");
        let mut got = [0u8; 4];
        client.read_exact(&mut got).await.expect("read");
        assert_eq!(&got, b"abcd");
    }

    #[tokio::test]
    async fn a_client_session_runs_over_a_transport_without_try_write() {
        let shared = bind_server(Config::loopback()).await.expect("bind").shared;
        let (mut peer_end, server_end) = tokio::io::duplex(64 * 1024);
        let cid = shared.next_cid();
        let peer = "127.0.0.1:4222".parse().expect("addr");
        let served = tokio::spawn(client::serve(
            shared.clone(),
            server_end,
            peer,
            cid,
            client::Accepted::plain(),
        ));
        peer_end
            .write_all(b"CONNECT {}\r\nSUB foo 1\r\nPUB foo 2\r\nhi\r\nPING\r\n")
            .await
            .expect("write");
        let got = read_until(&mut peer_end, "PONG\r\n").await;
        assert!(got.starts_with("INFO {"), "{got}");
        assert!(got.contains("MSG foo 1 2\r\nhi\r\n"), "{got}");
        assert_eq!(
            shared.conns.get(cid).map(|m| m.out.kind),
            Some(ConnKind::Client)
        );
        drop(peer_end);
        tokio::time::timeout(Duration::from_secs(5), served)
            .await
            .expect("serve ends when the peer goes")
            .expect("serve");
        assert_eq!(shared.num_connections(), 0);
        assert_eq!(shared.num_subscriptions(), 0);
    }

    #[tokio::test]
    async fn accepted_tcp_connections_are_clients() {
        let shared = bind_server(Config::loopback()).await.expect("bind").serve();
        let mut conn = TcpStream::connect(shared.local_addr())
            .await
            .expect("connect");
        // INFO is sent after the connection is registered.
        let info = read_until(&mut conn, "\r\n").await;
        assert!(info.starts_with("INFO {"), "{info}");
        let kinds: Vec<ConnKind> = shared.conns.open().iter().map(|m| m.out.kind).collect();
        assert_eq!(kinds, [ConnKind::Client]);
        shared.shutdown.cancel();
    }
}
