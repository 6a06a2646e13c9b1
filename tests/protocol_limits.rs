//! Raw-socket tests of protocol errors and limits: the exact `-ERR` texts, which errors close
//! the connection and which leave it open, stale-connection detection, slow-consumer cut-off,
//! and the connection and subscription limits.

mod common;

use std::time::Duration;

use causeway::Config;
use common::{contains, parse_msgs, start, start_default, within, RawClient, TIMEOUT};
use serde_json::json;

#[tokio::test]
async fn payload_over_max_payload_is_fatal() {
    let server = start_default().await;
    let mut c = RawClient::connect_ready(server.local_addr()).await;
    // The size on the control line alone is enough for the server to refuse.
    c.send(b"PUB foo 1048577\r\n").await;
    c.expect_err_and_close("Maximum Payload Violation").await;
}

#[tokio::test]
async fn configured_max_payload_is_advertised_and_enforced() {
    let server = start(Config {
        max_payload: 1024,
        ..Config::loopback()
    })
    .await;
    let addr = server.local_addr();
    let mut c = RawClient::connect_ready(addr).await;
    assert_eq!(c.info["max_payload"], json!(1024));
    let mut frame = b"SUB big 1\r\nPUB big 1024\r\n".to_vec();
    frame.extend_from_slice(&[b'x'; 1024]);
    frame.extend_from_slice(b"\r\n");
    c.send(&frame).await;
    let got = parse_msgs(&c.ping_pong().await);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].payload.len(), 1024);

    // For HPUB the limit applies to headers plus payload.
    let mut h = RawClient::connect_ready(addr).await;
    h.send(b"HPUB big 12 1025\r\n").await;
    h.expect_err_and_close("Maximum Payload Violation").await;
}

#[tokio::test]
async fn overlong_control_line_is_fatal() {
    let server = start_default().await;
    let addr = server.local_addr();
    for op in ["PUB ", "SUB ", "CONNECT "] {
        let mut c = RawClient::connect_ready(addr).await;
        let mut line = op.as_bytes().to_vec();
        line.extend(std::iter::repeat_n(b'a', 5000));
        // No CRLF: the server must not wait for the end of the line to refuse it.
        c.send(&line).await;
        let got = c.expect_closed().await;
        let text = String::from_utf8_lossy(&got).to_lowercase();
        assert!(
            text.contains("-err 'maximum control line exceeded'\r\n"),
            "{op}: got {text:?}"
        );
    }
}

#[tokio::test]
async fn unknown_operation_is_fatal() {
    let server = start_default().await;
    let addr = server.local_addr();
    for junk in [&b"FOO bar\r\n"[..], b"SUBX foo 1\r\n", b"\x01\x02\r\n"] {
        let mut c = RawClient::connect_ready(addr).await;
        c.send(junk).await;
        c.expect_err_and_close("Unknown Protocol Operation").await;
    }
}

#[tokio::test]
async fn invalid_subscription_subject_keeps_the_connection() {
    let server = start_default().await;
    let mut c = RawClient::connect_ready(server.local_addr()).await;
    for subject in ["foo..bar", "foo.>.bar", ".foo", "foo.", ">.foo"] {
        c.send(format!("SUB {subject} 1\r\n").as_bytes()).await;
        c.expect_err_and_stay("Invalid Subject").await;
    }
    // The connection is still fully usable.
    c.send(b"SUB ok 2\r\nPUB ok 2\r\nhi\r\n").await;
    let got = parse_msgs(&c.ping_pong().await);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].sid, "2");
}

#[tokio::test]
async fn no_responders_without_headers_is_refused() {
    // nats-server answers a CONNECT asking for no_responders without headers with this
    // error. Whether the connection is then closed is not asserted here.
    let server = start_default().await;
    let mut c = RawClient::connect(server.local_addr()).await;
    c.send_connect(json!({"no_responders": true, "headers": false}))
        .await;
    c.send(b"PING\r\n").await;
    c.read_until(b"-ERR 'no responders requires headers support'\r\n")
        .await;
}

#[tokio::test]
async fn client_that_never_answers_ping_is_stale() {
    let server = start(Config {
        ping_interval: Duration::from_millis(100),
        ping_max: 2,
        ..Config::loopback()
    })
    .await;
    let mut c = RawClient::connect_ready(server.local_addr()).await;
    let got = c.read_until(b"-ERR 'Stale Connection'\r\n").await;
    let pings = got.windows(6).filter(|w| w == b"PING\r\n").count();
    assert!(pings >= 1, "no PING before the stale error: {got:?}");
    c.expect_closed().await;
}

#[tokio::test]
async fn client_that_answers_ping_stays_connected() {
    let server = start(Config {
        ping_interval: Duration::from_millis(100),
        ping_max: 2,
        ..Config::loopback()
    })
    .await;
    let mut c = RawClient::connect_ready(server.local_addr()).await;
    let mut pings = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_millis(1500);
    while tokio::time::Instant::now() < deadline {
        // A window without any PING is fine; the loop is bounded by the deadline.
        if let Ok(line) = c.try_read_until(b"\r\n", Duration::from_millis(300)).await {
            assert_eq!(line, b"PING\r\n", "unexpected line from server");
            pings += 1;
            c.send(b"PONG\r\n").await;
        }
    }
    assert!(pings >= 3, "server sent only {pings} PINGs in 1.5 s");
    c.send(b"SUB x 1\r\nPUB x 1\r\ny\r\n").await;
    let got = c.read_msg().await;
    assert_eq!(got.payload, b"y");
}

#[tokio::test]
async fn slow_consumer_is_cut_off_without_error_and_others_are_served() {
    const MSG_SIZE: usize = 64 * 1024;
    const BATCH: usize = 8; // 512 KiB in flight at most for the good subscriber
    const BATCHES: usize = 96; // 48 MiB in all
    let server = start(Config {
        max_pending: 1024 * 1024,
        ..Config::loopback()
    })
    .await;
    let addr = server.local_addr();

    let mut slow = RawClient::connect_small_rcvbuf(addr).await;
    slow.send_connect(json!({})).await;
    slow.send(b"SUB flood 1\r\n").await;
    slow.ping_pong().await;

    let mut good = RawClient::connect_ready(addr).await;
    good.send(b"SUB flood 1\r\n").await;
    good.ping_pong().await;
    let (count_tx, mut count_rx) = tokio::sync::watch::channel(0usize);
    let reader = tokio::spawn(async move {
        for i in 0..BATCH * BATCHES + 1 {
            let m = good.read_msg().await;
            if i == BATCH * BATCHES {
                assert_eq!(m.payload, b"after", "last message");
            } else {
                assert_eq!(m.payload.len(), MSG_SIZE, "message {i}");
                assert_eq!(&m.payload[..8], &(i as u64).to_be_bytes(), "order");
            }
            count_tx.send_replace(i + 1);
        }
        good
    });

    let mut publ = RawClient::connect_ready(addr).await;
    let mut payload = vec![b'x'; MSG_SIZE];
    for b in 0..BATCHES {
        let mut frame = Vec::with_capacity(BATCH * (MSG_SIZE + 32));
        for j in 0..BATCH {
            let i = b * BATCH + j;
            payload[..8].copy_from_slice(&(i as u64).to_be_bytes());
            frame.extend_from_slice(format!("PUB flood {MSG_SIZE}\r\n").as_bytes());
            frame.extend_from_slice(&payload);
            frame.extend_from_slice(b"\r\n");
        }
        publ.send(&frame).await;
        let want = (b + 1) * BATCH;
        within(
            TIMEOUT,
            "the good subscriber to keep up",
            count_rx.wait_for(|n| *n >= want),
        )
        .await
        .expect("good subscriber's reader failed");
    }

    // The slow subscriber never read: it must have been disconnected, silently. (nats-server
    // marks it closed at once but only closes the socket when its blocked write gives up at
    // the write deadline, 10 s by default; hence the longer bound.)
    let got = slow.expect_closed_within(Duration::from_secs(25)).await;
    assert!(
        !contains(&got, b"-ERR"),
        "slow consumer got an -ERR: {:?}",
        String::from_utf8_lossy(&got[got.len().saturating_sub(100)..])
    );
    assert!(
        got.len() < BATCH * BATCHES * MSG_SIZE,
        "slow consumer received everything ({} bytes)",
        got.len()
    );

    // The good subscriber still gets messages on the same connection, and the server
    // still accepts new connections.
    publ.send(b"PUB flood 5\r\nafter\r\n").await;
    let good = within(TIMEOUT, "the good subscriber's reader", reader)
        .await
        .expect("good subscriber's reader panicked");
    drop(good);
    let mut fresh = RawClient::connect_ready(addr).await;
    fresh.send(b"SUB z 1\r\nPUB z 2\r\nok\r\n").await;
    assert_eq!(parse_msgs(&fresh.ping_pong().await).len(), 1);
}

#[tokio::test]
async fn connections_over_the_limit_are_refused() {
    let server = start(Config {
        max_connections: 2,
        ..Config::loopback()
    })
    .await;
    let addr = server.local_addr();
    let mut a = RawClient::connect_ready(addr).await;
    let b = RawClient::connect_ready(addr).await;

    // The third connection may or may not get an INFO first; it must get the error and EOF.
    let mut stream = within(TIMEOUT, "TCP connect", tokio::net::TcpStream::connect(addr))
        .await
        .expect("TCP connect");
    let got = within(TIMEOUT, "refusal and EOF", async {
        use tokio::io::AsyncReadExt;
        let mut all = Vec::new();
        let _ = stream.read_to_end(&mut all).await;
        all
    })
    .await;
    let text = String::from_utf8_lossy(&got);
    assert!(
        text.ends_with("-ERR 'maximum connections exceeded'\r\n"),
        "got {text:?}"
    );

    // The existing connections are unaffected; freeing a slot lets a new client in.
    a.ping_pong().await;
    drop(b);
    let mut admitted = false;
    for _ in 0..50 {
        let mut stream = within(TIMEOUT, "TCP connect", tokio::net::TcpStream::connect(addr))
            .await
            .expect("TCP connect");
        let mut c = RawClient {
            stream: {
                use tokio::io::AsyncWriteExt;
                stream
                    .write_all(b"CONNECT {\"verbose\":false}\r\nPING\r\n")
                    .await
                    .expect("write");
                stream
            },
            buf: Vec::new(),
            info: json!(null),
        };
        if c.try_read_until(b"PONG\r\n", Duration::from_secs(2))
            .await
            .is_ok()
        {
            admitted = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(admitted, "no connection admitted after one was closed");
}

#[tokio::test]
async fn subscriptions_over_the_limit_are_refused_but_connection_stays() {
    let server = start(Config {
        max_subs: 2,
        ..Config::loopback()
    })
    .await;
    let mut c = RawClient::connect_ready(server.local_addr()).await;
    c.send(b"SUB a 1\r\nSUB b 2\r\n").await;
    c.ping_pong().await;
    c.send(b"SUB c 3\r\n").await;
    c.expect_err_and_stay("maximum subscriptions exceeded")
        .await;
    c.send(b"PUB a 1\r\n1\r\nPUB b 1\r\n2\r\nPUB c 1\r\n3\r\n")
        .await;
    let sids: Vec<String> = parse_msgs(&c.ping_pong().await)
        .into_iter()
        .map(|m| m.sid)
        .collect();
    assert_eq!(sids, vec!["1", "2"], "refused subscription got a message");
}
