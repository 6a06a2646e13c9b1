//! A 1 GiB object through the Object Store of async-nats, against the `causeway` binary: the put
//! streams from a reader that generates the bytes (the test never holds the object either), the
//! get streams back and is checked byte by byte while async-nats verifies the SHA-256 digest at
//! the end, and the server's peak resident set stays far below the object's size: nothing
//! along the way holds the object in memory.

mod common;

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use async_nats::jetstream::{self, object_store};
use common::child::ChildServer;
use common::js::connect;
use common::within;
use tokio::io::{AsyncRead, AsyncReadExt, ReadBuf};

const BIN: &str = env!("CARGO_BIN_EXE_causeway");
const SIZE: u64 = 1 << 30;
/// Far below the object: a server that buffered it would pass 1024 MiB.
const PEAK_RSS_LIMIT_MIB: u64 = 384;

/// The byte at offset `i` of the object.
fn byte_at(i: u64) -> u8 {
    (i % 251) as u8
}

/// Generates `SIZE` bytes on demand.
struct Generated {
    at: u64,
}

impl AsyncRead for Generated {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let n = (SIZE - self.at).min(buf.remaining() as u64);
        let start = self.at;
        let chunk: Vec<u8> = (start..start + n).map(byte_at).collect();
        buf.put_slice(&chunk);
        self.at += n;
        Poll::Ready(Ok(()))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_gib_object_streams_through_without_being_held() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = ChildServer::spawn(BIN, dir.path(), -1);
    let addr = child.wait_ready().await;
    let js = jetstream::new(connect(&format!("nats://{addr}")).await);
    let store = js
        .create_object_store(object_store::Config {
            bucket: "huge".into(),
            ..Default::default()
        })
        .await
        .expect("create store");

    let info = within(
        Duration::from_secs(900),
        "1 GiB put",
        store.put("one.gib", &mut Generated { at: 0 }),
    )
    .await
    .expect("put 1 GiB");
    assert_eq!(info.size as u64, SIZE);
    assert!(info.digest.as_deref().unwrap_or("").starts_with("SHA-256="));

    let mut obj = within(Duration::from_secs(30), "get", store.get("one.gib"))
        .await
        .expect("get");
    let mut buf = vec![0u8; 256 << 10];
    let mut at = 0u64;
    within(Duration::from_secs(900), "1 GiB read", async {
        loop {
            // async-nats checks the digest when the object ends: a mismatch is an error here.
            let n = obj
                .read(&mut buf)
                .await
                .expect("read (digest verified at the end)");
            if n == 0 {
                break;
            }
            if let Some(k) = (0..n).find(|&k| buf[k] != byte_at(at + k as u64)) {
                panic!("byte {} differs", at + k as u64);
            }
            at += n as u64;
        }
    })
    .await;
    assert_eq!(at, SIZE, "bytes read back");

    let peak = child.peak_rss_mib();
    eprintln!("server peak RSS with a 1 GiB object through: {peak} MiB");
    assert!(
        peak < PEAK_RSS_LIMIT_MIB,
        "server peak RSS {peak} MiB while a 1 GiB object went through"
    );
    child.terminate().await;
}
