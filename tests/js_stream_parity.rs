//! Stream-side answers of nats-server 2.15 that clients test, compared with nats-server 2.15.1
//! in the same test: `mirror_direct` without a mirror, the
//! `Nats-Expected-Last-Subject-Sequence-Subject` header on its own, stream info's
//! `subjects_filter` (paged) and `deleted_details`.

mod common;

use std::net::SocketAddr;

use async_nats::HeaderMap;
use serde_json::{json, Value};

async fn scenario(addr: SocketAddr) -> Vec<String> {
    let nc = async_nats::connect(addr.to_string())
        .await
        .expect("connect");
    let mut seen = Vec::new();
    let api = |subject: &str, body: Value| {
        let nc = nc.clone();
        let subject = format!("$JS.API.{subject}");
        async move {
            let m = nc
                .request(subject, body.to_string().into())
                .await
                .expect("api");
            let v: Value = serde_json::from_slice(&m.payload).unwrap_or(Value::Null);
            match v.get("error") {
                Some(e) => format!("error {e}"),
                None => "ok".to_string(),
            }
        }
    };
    let md = json!({"name": "M", "subjects": ["m.>"], "mirror_direct": true});
    seen.push(api("STREAM.CREATE.M", md).await);
    seen.push(api("STREAM.CREATE.S", json!({"name": "S", "subjects": ["s.>"]})).await);
    for pairs in [
        vec![("Nats-Expected-Last-Subject-Sequence-Subject", "s.b")],
        vec![
            ("Nats-Expected-Last-Subject-Sequence-Subject", "s.b"),
            ("Nats-Expected-Last-Subject-Sequence", "0"),
        ],
        vec![
            ("Nats-Expected-Last-Subject-Sequence-Subject", "s.b"),
            ("Nats-Expected-Last-Subject-Sequence", "5"),
        ],
    ] {
        let mut h = HeaderMap::new();
        for (k, v) in &pairs {
            h.insert(*k, *v);
        }
        let m = nc
            .request_with_headers("s.a", h, "x".into())
            .await
            .expect("publish");
        let v: Value = serde_json::from_slice(&m.payload).unwrap_or(Value::Null);
        seen.push(format!("{pairs:?}: {v}"));
    }
    // Stream info's subject counts and deleted sequences.
    for (subject, body) in [
        ("s.a", "1"),
        ("s.b", "2"),
        ("s.c", "3"),
        ("s.c", "4"),
        ("s.a", "5"),
    ] {
        nc.request(subject, body.into()).await.expect("publish");
    }
    api("STREAM.MSG.DELETE.S", json!({"seq": 2})).await;
    api("STREAM.MSG.DELETE.S", json!({"seq": 4})).await;
    for body in [
        json!({}),
        json!({"subjects_filter": ">"}),
        json!({"subjects_filter": "s.c"}),
        json!({"subjects_filter": "zz"}),
        json!({"subjects_filter": ">", "offset": 1}),
        json!({"deleted_details": true}),
    ] {
        let m = nc
            .request("$JS.API.STREAM.INFO.S", body.to_string().into())
            .await
            .expect("info");
        let v: Value = serde_json::from_slice(&m.payload).unwrap_or(Value::Null);
        let st = &v["state"];
        let shown = json!({
            "subjects": st["subjects"], "deleted": st["deleted"], "num_deleted": st["num_deleted"],
            "num_subjects": st["num_subjects"], "total": v["total"], "offset": v["offset"],
            "limit": v["limit"],
        });
        seen.push(format!("info {body}: {shown}"));
    }
    seen
}

#[tokio::test]
async fn stream_answers_match_nats_server() {
    let env = common::js::JsEnv::new().await;
    let theirs = common::reference::RefServer::jetstream();
    let ours = scenario(env.server.local_addr()).await;
    let reference = scenario(theirs.addr).await;
    let differ: Vec<String> = ours
        .iter()
        .zip(&reference)
        .filter(|(a, b)| a != b)
        .map(|(a, b)| format!("causeway:    {a}\nnats-server: {b}"))
        .collect();
    assert!(
        differ.is_empty(),
        "causeway vs nats-server 2.15.1:\n{}",
        differ.join("\n")
    );
    assert!(
        ours[0].contains("no mirror but does have mirror direct"),
        "{}",
        ours[0]
    );
    assert!(ours[2].contains("10193"), "{}", ours[2]);
    // The filter's counts really came back (seq 1 is the s.a publish above; 2 and 4 deleted).
    assert!(
        ours[6].contains(r#""subjects":{"s.a":2,"s.b":1,"s.c":1}"#),
        "{}",
        ours[6]
    );
    assert!(ours[10].contains(r#""deleted":[2,4]"#), "{}", ours[10]);
    env.stop().await;
}
