//! `--features otlp`: the binary exports its tracing spans over OTLP/HTTP. A minimal OTLP
//! receiver on 127.0.0.1 records what arrives; the spans of a stream's work must be there, from
//! the `causeway` service, at the latest when the server stops.
#![cfg(feature = "otlp")]

mod common;

use std::sync::{Arc, Mutex};

use common::child::ChildServer;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

const BIN: &str = env!("CARGO_BIN_EXE_causeway");

/// Accepts HTTP/1.1 POSTs and keeps (path, body) of each.
async fn receiver() -> (std::net::SocketAddr, Arc<Mutex<Vec<(String, Vec<u8>)>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let keep = seen.clone();
    tokio::spawn(async move {
        while let Ok((sock, _)) = listener.accept().await {
            let keep = keep.clone();
            tokio::spawn(async move {
                let (rd, mut wr) = sock.into_split();
                let mut rd = BufReader::new(rd);
                loop {
                    let mut line = String::new();
                    if rd.read_line(&mut line).await.unwrap_or(0) == 0 {
                        return;
                    }
                    let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
                    let mut length = 0usize;
                    loop {
                        let mut h = String::new();
                        if rd.read_line(&mut h).await.unwrap_or(0) == 0 {
                            return;
                        }
                        if h == "\r\n" {
                            break;
                        }
                        if let Some((k, v)) = h.split_once(':') {
                            if k.eq_ignore_ascii_case("content-length") {
                                length = v.trim().parse().unwrap_or(0);
                            }
                        }
                    }
                    let mut body = vec![0u8; length];
                    if rd.read_exact(&mut body).await.is_err() {
                        return;
                    }
                    keep.lock().unwrap().push((path, body));
                    let ok = b"HTTP/1.1 200 OK\r\nContent-Type: application/x-protobuf\r\nContent-Length: 0\r\n\r\n";
                    if wr.write_all(ok).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (addr, seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_reach_an_otlp_receiver() {
    let (addr, seen) = receiver().await;
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().to_string_lossy().into_owned();
    std::env::set_var("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://{addr}"));
    std::env::set_var("OTEL_BSP_SCHEDULE_DELAY", "200");
    let mut server =
        ChildServer::spawn_args(BIN, &["-a", "127.0.0.1", "-p", "-1", "-js", "-sd", &store]);
    let client_addr = server.wait_ready().await;
    let client = async_nats::connect(client_addr.to_string()).await.unwrap();
    let js = async_nats::jetstream::new(client);
    js.create_stream(async_nats::jetstream::stream::Config {
        name: "SPANS".into(),
        subjects: vec!["spans.>".into()],
        ..Default::default()
    })
    .await
    .unwrap();
    for _ in 0..3 {
        js.publish("spans.x", "1".into())
            .await
            .unwrap()
            .await
            .unwrap();
    }
    server.terminate().await;
    let got = seen.lock().unwrap().clone();
    assert!(!got.is_empty(), "nothing reached the OTLP receiver");
    assert!(
        got.iter().all(|(path, _)| path == "/v1/traces"),
        "{:?}",
        got.iter().map(|g| &g.0).collect::<Vec<_>>()
    );
    let all: Vec<u8> = got.into_iter().flat_map(|(_, b)| b).collect();
    let has = |needle: &[u8]| all.windows(needle.len()).any(|w| w == needle);
    assert!(has(b"causeway"), "the service name");
    assert!(has(b"stream"), "a stream's span");
    assert!(has(b"SPANS"), "the stream's name on its span");
}
