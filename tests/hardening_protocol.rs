//! Bad input gets nats-server's answer: CONNECT variants, parser edge cases, subjects with
//! empty tokens. Every case is sent to causeway and to nats-server 2.15.1 (the reference,
//! started by the test) and the answers are compared byte for byte, plus the expected text.

mod common;

use common::reference::{same_answers, RefServer};
use common::{start_default, RawClient};

/// A CONNECT that turns verbose off (protocol 0, so nats-server sends no second INFO).
const QUIET: &[u8] = b"CONNECT {\"verbose\":false,\"pedantic\":false}\r\n";

#[tokio::test]
async fn connect_variants_match_nats_server() {
    let ours = start_default().await;
    let theirs = RefServer::start("");
    let cases: [(&str, &[u8], &str, bool); 7] = [
        (
            "verbose null keeps verbose",
            b"CONNECT {\"verbose\":null}\r\n",
            "+OK\r\n",
            false,
        ),
        (
            "invalid UTF-8 in a string",
            b"CONNECT {\"verbose\":true,\"name\":\"\xff\xfe\"}\r\n",
            "+OK\r\n",
            false,
        ),
        (
            "null is all defaults",
            b"CONNECT null\r\n",
            "+OK\r\n",
            false,
        ),
        ("an array closes", b"CONNECT []\r\n", "", true),
        (
            "protocol -1",
            b"CONNECT {\"protocol\":-1}\r\n",
            "-ERR 'invalid client protocol'\r\n",
            true,
        ),
        (
            "protocol 2",
            b"CONNECT {\"protocol\":2,\"verbose\":true}\r\n",
            "-ERR 'invalid client protocol'\r\n",
            true,
        ),
        ("broken JSON closes", b"CONNECT {bad\r\n", "", true),
    ];
    for (what, bytes, want, closed) in cases {
        let got = same_answers(what, ours.local_addr(), theirs.addr, &[(0, bytes)]).await;
        assert_eq!(got[0], (want.to_string(), closed), "{what}");
    }
    ours.shutdown().await;
}

#[tokio::test]
async fn parser_edges_match_nats_server() {
    let ours = start_default().await;
    let theirs = RefServer::start("");
    let unknown = "-ERR 'Unknown Protocol Operation'\r\n";
    let cases: [(&str, &[u8], &str); 5] = [
        (
            "a bare LF after a payload",
            b"PUB foo 2\r\nhi\r\n\n",
            unknown,
        ),
        ("a payload ended by LF only", b"PUB foo 2\r\nhi\n", unknown),
        ("a bare CRLF", b"\r\n", unknown),
        ("leading space", b" PING\r\n", unknown),
        ("leading tab", b"\tPING\r\n", unknown),
    ];
    for (what, bytes, want) in cases {
        let steps: [(usize, &[u8]); 2] = [(0, QUIET), (0, bytes)];
        let got = same_answers(what, ours.local_addr(), theirs.addr, &steps).await;
        assert_eq!(got[1], (want.to_string(), true), "{what}");
    }
    // A control line that ends in LF alone is fine on both.
    let steps: [(usize, &[u8]); 2] = [(0, QUIET), (0, b"SUB foo 1\nPUB foo 2\nhi\r\n")];
    let got = same_answers(
        "LF-only control line",
        ours.local_addr(),
        theirs.addr,
        &steps,
    )
    .await;
    assert_eq!(got[1], ("MSG foo 1 2\r\nhi\r\n".to_string(), false));
    ours.shutdown().await;
}

/// Sends up to 100 MB of spaces without a newline; returns what the server said before it
/// closed the connection.
async fn spaces(addr: std::net::SocketAddr) -> String {
    let mut c = RawClient::connect(addr).await;
    c.send(QUIET).await;
    let chunk = vec![b' '; 64 * 1024];
    for _ in 0..(100 << 20) / chunk.len() {
        if c.try_send(&chunk).await.is_err() {
            break;
        }
    }
    String::from_utf8_lossy(&c.expect_closed().await).into_owned()
}

#[tokio::test]
async fn a_100_mb_line_of_spaces_is_an_unknown_operation() {
    let ours = start_default().await;
    let theirs = RefServer::start("");
    let want = "-ERR 'Unknown Protocol Operation'\r\n";
    assert_eq!(spaces(theirs.addr).await, want, "nats-server");
    assert_eq!(spaces(ours.local_addr()).await, want, "causeway");
    // The server is still there for everyone else.
    let mut c = RawClient::connect_ready(ours.local_addr()).await;
    c.ping_pong().await;
    ours.shutdown().await;
}

#[tokio::test]
async fn empty_tokens_are_delivered_to_no_one() {
    let ours = start_default().await;
    let theirs = RefServer::start("");
    let pedantic: &[u8] = b"CONNECT {\"verbose\":true,\"pedantic\":true}\r\n";
    let steps: Vec<(usize, &[u8])> = vec![
        (0, QUIET),
        (0, b"SUB > 1\r\n"),
        (1, QUIET),
        (
            1,
            b"PUB foo..bar 1\r\nx\r\nPUB foo. 1\r\nx\r\nPUB .foo 1\r\nx\r\nPUB . 1\r\nx\r\n",
        ),
        (1, b"PUB foo.bar 2\r\nok\r\n"),
        (0, b""),
        (2, pedantic),
        (2, b"PUB foo..bar 1\r\nx\r\n"),
        (2, b"SUB foo..bar 9\r\n"),
        (0, b""),
        (
            3,
            b"CONNECT {\"verbose\":false,\"pedantic\":false,\"headers\":true,\"no_responders\":true}\r\n",
        ),
        (3, b"SUB _INBOX.x 1\r\nPUB foo..bar _INBOX.x 1\r\nx\r\n"),
    ];
    let got = same_answers("empty tokens", ours.local_addr(), theirs.addr, &steps).await;
    assert_eq!(got[3], (String::new(), false), "accepted without a word");
    assert_eq!(
        got[5].0, "MSG foo.bar 1 2\r\nok\r\n",
        "only the valid subject was delivered"
    );
    assert_eq!(got[7].0, "-ERR 'Invalid Publish Subject'\r\n+OK\r\n");
    assert_eq!(got[8].0, "-ERR 'Invalid Subject'\r\n");
    assert_eq!(got[9].0, "", "nothing reached the subscriber");
    assert_eq!(
        got[11].0, "HMSG _INBOX.x 1 40 40\r\nNATS/1.0 503\r\nNats-Subject: foo..bar\r\n\r\n\r\n",
        "a request to it still gets no-responders"
    );
    ours.shutdown().await;
}
