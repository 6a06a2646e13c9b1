//! Raw-socket tests of the client protocol framing: INFO, CONNECT options, split and pipelined
//! frames, HPUB/HMSG bytes, case-insensitive ops, verbose `+OK`, UNSUB with a maximum, echo,
//! and the no-responders status message.
//!
//! Error and limit handling (`-ERR` texts, stale and slow clients) lives in `protocol_limits.rs`.

mod common;

use std::time::Duration;

use common::{parse_msgs, start_default, RawClient, RawMsg};
use serde_json::json;

fn msg(subject: &str, sid: &str, reply: Option<&str>, payload: &[u8]) -> RawMsg {
    RawMsg {
        subject: subject.to_string(),
        sid: sid.to_string(),
        reply: reply.map(str::to_string),
        headers: None,
        payload: payload.to_vec(),
    }
}

#[tokio::test]
async fn info_has_the_expected_fields() {
    let server = start_default().await;
    let c = RawClient::connect(server.local_addr()).await;
    let info = &c.info;
    for key in ["server_id", "server_name", "version"] {
        assert!(
            info[key].as_str().is_some_and(|s| !s.is_empty()),
            "INFO.{key} missing or empty: {info}"
        );
    }
    assert_eq!(info["proto"], json!(1), "{info}");
    assert_eq!(info["headers"], json!(true), "{info}");
    assert_eq!(info["max_payload"], json!(1024 * 1024), "{info}");
    assert!(info["client_id"].as_u64().is_some(), "client_id: {info}");
    assert_eq!(info["client_ip"], json!("127.0.0.1"), "{info}");
    // No authentication configured: auth_required is absent or false.
    assert_ne!(info["auth_required"], json!(true), "{info}");
    // The JetStream API level goes with the version reported (nats-server 2.11's is 1);
    // nats-server 2.15.1 sends the field too.
    assert_eq!(info["version"], json!("2.12.0"), "{info}");
    assert_eq!(info["api_lvl"], json!(2), "{info}");
    let theirs = common::reference::RefServer::start("");
    let reference = RawClient::connect(theirs.addr).await;
    assert!(reference.info["api_lvl"].is_u64(), "{}", reference.info);
}

#[tokio::test]
async fn client_ids_differ_between_connections() {
    let server = start_default().await;
    let a = RawClient::connect(server.local_addr()).await;
    let b = RawClient::connect(server.local_addr()).await;
    assert_ne!(a.info["client_id"], b.info["client_id"]);
    assert_eq!(a.info["server_id"], b.info["server_id"]);
}

#[tokio::test]
async fn frame_split_at_every_byte_boundary_is_delivered_intact() {
    let server = start_default().await;
    let addr = server.local_addr();
    let mut sub = RawClient::connect_ready(addr).await;
    sub.send(b"SUB foo 1\r\n").await;
    sub.ping_pong().await;
    let mut publ = RawClient::connect_ready(addr).await;

    let hdr = b"NATS/1.0\r\nA: b\r\n\r\n";
    let mut hpub = format!("HPUB foo r.2 {} {}\r\n", hdr.len(), hdr.len() + 5).into_bytes();
    hpub.extend_from_slice(hdr);
    hpub.extend_from_slice(b"hello\r\n");
    let frames: Vec<(Vec<u8>, RawMsg)> = vec![
        (
            b"PUB foo 5\r\nhello\r\n".to_vec(),
            msg("foo", "1", None, b"hello"),
        ),
        (
            b"PUB foo r.1 5\r\nhello\r\n".to_vec(),
            msg("foo", "1", Some("r.1"), b"hello"),
        ),
        (
            hpub,
            RawMsg {
                headers: Some(hdr.to_vec()),
                ..msg("foo", "1", Some("r.2"), b"hello")
            },
        ),
    ];
    for (frame, expected) in &frames {
        for split in 1..frame.len() {
            publ.send(&frame[..split]).await;
            tokio::time::sleep(Duration::from_millis(3)).await;
            publ.send(&frame[split..]).await;
            let got = sub.read_msg().await;
            assert_eq!(
                &got,
                expected,
                "frame {:?} split at {split}",
                String::from_utf8_lossy(frame)
            );
        }
        // And the whole frame one byte at a time.
        for b in frame {
            publ.send(std::slice::from_ref(b)).await;
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        assert_eq!(&sub.read_msg().await, expected, "one byte at a time");
    }
    assert!(publ.ping_pong().await.is_empty());
}

#[tokio::test]
async fn pipelined_publishes_in_one_write_arrive_in_order() {
    let server = start_default().await;
    let addr = server.local_addr();
    let mut sub = RawClient::connect_ready(addr).await;
    sub.send(b"SUB seq 7\r\n").await;
    sub.ping_pong().await;
    let mut publ = RawClient::connect_ready(addr).await;
    let mut batch = Vec::new();
    for i in 0..1000 {
        let p = format!("m-{i}");
        batch.extend_from_slice(format!("PUB seq {}\r\n{p}\r\n", p.len()).as_bytes());
    }
    batch.extend_from_slice(b"PING\r\n");
    publ.send(&batch).await;
    publ.read_until(b"PONG\r\n").await;
    for i in 0..1000 {
        let m = sub.read_msg().await;
        assert_eq!(m.sid, "7");
        assert_eq!(String::from_utf8_lossy(&m.payload), format!("m-{i}"));
    }
    assert!(sub.ping_pong().await.is_empty(), "extra messages delivered");
}

#[tokio::test]
async fn hpub_becomes_hmsg_with_exact_bytes() {
    let server = start_default().await;
    let addr = server.local_addr();
    let mut sub = RawClient::connect_with(addr, json!({"headers": true})).await;
    sub.send(b"SUB h.> 3\r\n").await;
    sub.ping_pong().await;
    let mut publ = RawClient::connect_with(addr, json!({"headers": true})).await;

    let hdr = "NATS/1.0\r\nX-One: 1\r\nX-Multi: a\r\nX-Multi: b\r\n\r\n";
    let total = hdr.len() + 7;
    publ.send(format!("HPUB h.x {} {total}\r\n{hdr}payload\r\n", hdr.len()).as_bytes())
        .await;
    let expected = format!("HMSG h.x 3 {} {total}\r\n{hdr}payload\r\n", hdr.len());
    sub.expect_bytes(expected.as_bytes()).await;

    // With a reply subject, and with an empty payload.
    publ.send(format!("HPUB h.y inbox.9 {0} {0}\r\n{hdr}\r\n", hdr.len()).as_bytes())
        .await;
    let expected = format!("HMSG h.y 3 inbox.9 {0} {0}\r\n{hdr}\r\n", hdr.len());
    sub.expect_bytes(expected.as_bytes()).await;

    // A plain PUB to the same subscriber stays a MSG.
    publ.send(b"PUB h.z 2\r\nok\r\n").await;
    sub.expect_bytes(b"MSG h.z 3 2\r\nok\r\n").await;
}

#[tokio::test]
async fn pub_with_reply_is_delivered_with_reply() {
    let server = start_default().await;
    let mut c = RawClient::connect_ready(server.local_addr()).await;
    c.send(b"SUB svc 42\r\nPUB svc my.inbox 3\r\nabc\r\n").await;
    let got = parse_msgs(&c.ping_pong().await);
    assert_eq!(got, vec![msg("svc", "42", Some("my.inbox"), b"abc")]);
}

#[tokio::test]
async fn ops_are_case_insensitive() {
    let server = start_default().await;
    let mut c = RawClient::connect(server.local_addr()).await;
    c.send(b"connect {\"verbose\":false,\"pedantic\":false,\"headers\":true}\r\n")
        .await;
    c.send(b"sub foo 1\r\npub foo 2\r\nhi\r\nSub bar 2\r\npUb bar 3\r\nabc\r\nping\r\n")
        .await;
    let mut got = c.read_until(b"PONG\r\n").await;
    got.truncate(got.len() - 6);
    assert_eq!(
        parse_msgs(&got),
        vec![msg("foo", "1", None, b"hi"), msg("bar", "2", None, b"abc")]
    );
    c.send(b"hpub foo 12 14\r\nNATS/1.0\r\n\r\nhi\r\nPiNg\r\n")
        .await;
    c.expect_bytes(b"HMSG foo 1 12 14\r\nNATS/1.0\r\n\r\nhi\r\n")
        .await;
    c.expect_line("PONG").await;
    c.send(b"unsub 1\r\nUnSub 2\r\npub foo 1\r\nx\r\nPUB bar 1\r\ny\r\n")
        .await;
    assert!(c.ping_pong().await.is_empty(), "unsubscribed yet delivered");
    // A PONG from the client is accepted silently.
    c.send(b"pong\r\n").await;
    assert!(c.ping_pong().await.is_empty());
}

#[tokio::test]
async fn verbose_mode_acknowledges_every_op_except_ping() {
    let server = start_default().await;
    let mut c = RawClient::connect(server.local_addr()).await;
    c.send(b"CONNECT {\"verbose\":true,\"pedantic\":false,\"headers\":true}\r\n")
        .await;
    c.expect_line("+OK").await;
    c.send(b"SUB foo 1\r\n").await;
    c.expect_line("+OK").await;
    c.send(b"PUB nobody 2\r\nhi\r\n").await;
    c.expect_line("+OK").await;
    c.send(b"HPUB nobody 12 12\r\nNATS/1.0\r\n\r\n\r\n").await;
    c.expect_line("+OK").await;
    c.send(b"UNSUB 1\r\n").await;
    c.expect_line("+OK").await;
    c.send(b"PING\r\n").await;
    c.expect_line("PONG").await;
    c.expect_silence(Duration::from_millis(200)).await;
}

#[tokio::test]
async fn omitted_verbose_defaults_to_true() {
    // nats-server starts from verbose/pedantic/echo = true and overlays the CONNECT JSON,
    // so `CONNECT {}` is a verbose connection.
    let server = start_default().await;
    let mut c = RawClient::connect(server.local_addr()).await;
    c.send(b"CONNECT {}\r\n").await;
    c.expect_line("+OK").await;
    c.send(b"SUB foo 1\r\n").await;
    c.expect_line("+OK").await;
}

#[tokio::test]
async fn unsub_with_max_delivers_exactly_max_more() {
    let server = start_default().await;
    let mut c = RawClient::connect_ready(server.local_addr()).await;
    c.send(b"SUB foo 1\r\nPUB foo 1\r\na\r\n").await;
    assert_eq!(parse_msgs(&c.ping_pong().await).len(), 1);
    c.send(b"UNSUB 1 3\r\n").await;
    for i in 0..6 {
        c.send(format!("PUB foo 1\r\n{i}\r\n").as_bytes()).await;
    }
    let got = parse_msgs(&c.ping_pong().await);
    let payloads: Vec<&[u8]> = got.iter().map(|m| m.payload.as_slice()).collect();
    // The maximum counts messages since the SUB: one was already delivered.
    assert_eq!(payloads, vec![b"0".as_slice(), b"1".as_slice()]);

    // A maximum already reached unsubscribes at once.
    c.send(b"SUB bar 2\r\nPUB bar 1\r\nx\r\nPUB bar 1\r\ny\r\n")
        .await;
    assert_eq!(parse_msgs(&c.ping_pong().await).len(), 2);
    c.send(b"UNSUB 2 1\r\nPUB bar 1\r\nz\r\n").await;
    assert!(c.ping_pong().await.is_empty());

    // A fresh subscription with UNSUB max before any message.
    c.send(b"SUB baz 3\r\nUNSUB 3 3\r\n").await;
    for _ in 0..5 {
        c.send(b"PUB baz 1\r\nq\r\n").await;
    }
    assert_eq!(parse_msgs(&c.ping_pong().await).len(), 3);
}

#[tokio::test]
async fn echo_false_suppresses_own_messages_only() {
    let server = start_default().await;
    let addr = server.local_addr();
    let mut quiet = RawClient::connect_with(addr, json!({"echo": false})).await;
    let mut other = RawClient::connect_ready(addr).await;
    quiet.send(b"SUB e 1\r\n").await;
    other.send(b"SUB e 1\r\n").await;
    quiet.ping_pong().await;
    other.ping_pong().await;

    quiet.send(b"PUB e 4\r\nmine\r\n").await;
    assert!(
        quiet.ping_pong().await.is_empty(),
        "echo:false got its own msg"
    );
    assert_eq!(other.read_msg().await, msg("e", "1", None, b"mine"));

    other.send(b"PUB e 6\r\ntheirs\r\n").await;
    assert_eq!(quiet.read_msg().await, msg("e", "1", None, b"theirs"));
    // `other` has echo on (the default) and sees its own message.
    assert_eq!(other.read_msg().await, msg("e", "1", None, b"theirs"));
}

#[tokio::test]
async fn no_responders_status_has_exact_bytes() {
    let server = start_default().await;
    let mut c = RawClient::connect_with(
        server.local_addr(),
        json!({"headers": true, "no_responders": true}),
    )
    .await;
    c.send(b"SUB _INBOX.a.* 1\r\nPUB nobody _INBOX.a.1 0\r\n\r\n")
        .await;
    // As nats-server 2.15: the status names the subject nobody listens on.
    c.expect_bytes(b"HMSG _INBOX.a.1 1 38 38\r\nNATS/1.0 503\r\nNats-Subject: nobody\r\n\r\n\r\n")
        .await;
    c.ping_pong().await;

    // With a responder present there is no status message, only the request.
    c.send(b"SUB svc 2\r\nPUB svc _INBOX.a.2 2\r\nhi\r\n").await;
    let got = parse_msgs(&c.ping_pong().await);
    assert_eq!(got, vec![msg("svc", "2", Some("_INBOX.a.2"), b"hi")]);
}

#[tokio::test]
async fn no_status_without_no_responders_option() {
    let server = start_default().await;
    let mut c = RawClient::connect_with(server.local_addr(), json!({"headers": true})).await;
    c.send(b"SUB _INBOX.b.* 1\r\nPUB nobody _INBOX.b.1 0\r\n\r\n")
        .await;
    assert!(c.ping_pong().await.is_empty());
}

#[tokio::test]
async fn unsubscribed_sid_gets_nothing_and_resubscribe_works() {
    let server = start_default().await;
    let mut c = RawClient::connect_ready(server.local_addr()).await;
    c.send(b"SUB a 1\r\nSUB a 2\r\nUNSUB 1\r\nPUB a 1\r\nx\r\n")
        .await;
    let got = parse_msgs(&c.ping_pong().await);
    assert_eq!(got, vec![msg("a", "2", None, b"x")]);
    // Unsubscribing an unknown sid is harmless.
    c.send(b"UNSUB 99\r\nSUB a 1\r\nPUB a 1\r\ny\r\n").await;
    let mut sids: Vec<String> = parse_msgs(&c.ping_pong().await)
        .into_iter()
        .map(|m| m.sid)
        .collect();
    sids.sort();
    assert_eq!(sids, vec!["1", "2"]);
}

#[tokio::test]
async fn subscriber_without_header_support_gets_plain_msg() {
    let server = start_default().await;
    let addr = server.local_addr();
    let mut plain = RawClient::connect_with(addr, json!({"headers": false})).await;
    plain.send(b"SUB foo 1\r\n").await;
    plain.ping_pong().await;
    let mut publ = RawClient::connect_ready(addr).await;
    publ.send(b"HPUB foo 18 23\r\nNATS/1.0\r\nA: b\r\n\r\nhello\r\n")
        .await;
    // The header block is stripped; only the payload is delivered.
    plain.expect_bytes(b"MSG foo 1 5\r\nhello\r\n").await;
}
