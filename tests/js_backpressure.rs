//! A flood of publishes into one stream, faster than it stores them: its queue fills, the
//! publisher is held back (no message dropped, every one acknowledged with its own sequence),
//! and other clients are still served meanwhile.

mod common;

use common::js::JsEnv;
use common::{within, RawClient};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const N: usize = 150_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_is_held_back_not_dropped() {
    let env = JsEnv::new().await;
    env.stream(json!({"name": "F", "subjects": ["f"]})).await;
    let addr = env.server.local_addr();
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut rd, mut wr) = stream.into_split();
    let writer = tokio::spawn(async move {
        wr.write_all(b"CONNECT {\"verbose\":false,\"headers\":true}\r\nSUB ack 1\r\n")
            .await
            .unwrap();
        let frame = b"PUB f ack 16\r\n0123456789abcdef\r\n";
        let chunk: Vec<u8> = frame.repeat(1000);
        for _ in 0..N / 1000 {
            wr.write_all(&chunk).await.unwrap();
        }
        wr
    });
    // Meanwhile another client is answered.
    let mut other = RawClient::connect_ready(addr).await;
    within(
        common::TIMEOUT,
        "a PONG during the flood",
        other.ping_pong(),
    )
    .await;
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 1 << 16];
    let acks = within(std::time::Duration::from_secs(120), "every ack", async {
        loop {
            let n = rd.read(&mut chunk).await.unwrap();
            assert!(n > 0, "connection closed");
            buf.extend_from_slice(&chunk[..n]);
            let text = String::from_utf8_lossy(&buf);
            assert!(!text.contains("\"error\""), "an ack was an error");
            let count = text.matches("\"seq\":").count();
            if count >= N {
                return count;
            }
        }
    })
    .await;
    assert_eq!(acks, N);
    let _wr = writer.await.unwrap();
    let info = env.info("F").await;
    assert_eq!(info["state"]["messages"], N as u64, "{info}");
    assert_eq!(info["state"]["last_seq"], N as u64, "{info}");
    env.stop().await;
}
