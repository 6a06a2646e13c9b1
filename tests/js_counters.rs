//! Counter streams (`allow_msg_counter`, nats-server 2.12): `Nats-Incr` publishes, the running
//! totals in pub acks and stored messages, and nats-server's refusals, run against causeway and
//! nats-server 2.15.1 side by side with async-nats.

mod common;

use std::net::SocketAddr;

use async_nats::HeaderMap;
use serde_json::{json, Value};

async fn scenario(addr: SocketAddr) -> Vec<String> {
    let nc = async_nats::connect(addr.to_string())
        .await
        .expect("connect");
    let mut seen = Vec::new();
    let api = |subject: String, body: Value| {
        let nc = nc.clone();
        async move {
            let m = nc
                .request(format!("$JS.API.{subject}"), body.to_string().into())
                .await
                .expect("api");
            let v: Value = serde_json::from_slice(&m.payload).unwrap_or(Value::Null);
            if v["error"].is_null() {
                let c = &v["config"];
                format!(
                    "ok counter={} level={}",
                    c["allow_msg_counter"], c["metadata"]["_nats.req.level"]
                )
            } else {
                format!("error {}", v["error"])
            }
        }
    };
    let counter = json!({"name": "C", "subjects": ["c.>"], "allow_msg_counter": true});
    for (name, extra) in [
        ("X1", json!({"discard": "new"})),
        ("X2", json!({"allow_msg_ttl": true})),
        ("X3", json!({"retention": "workqueue"})),
        ("C", json!({})),
    ] {
        let mut cfg = counter.clone();
        cfg["name"] = json!(name);
        for (k, v) in extra.as_object().unwrap() {
            cfg[k] = v.clone();
        }
        seen.push(api(format!("STREAM.CREATE.{name}"), cfg).await);
    }
    let plain = json!({"name": "P", "subjects": ["p.>"]});
    seen.push(api("STREAM.CREATE.P".into(), plain).await);
    let off = json!({"name": "C", "subjects": ["c.>"]});
    seen.push(api("STREAM.UPDATE.C".into(), off).await);

    let publish =
        |subject: &'static str, pairs: Vec<(&'static str, &'static str)>, body: &'static str| {
            let nc = nc.clone();
            async move {
                let mut h = HeaderMap::new();
                for (k, v) in pairs {
                    h.insert(k, v);
                }
                let m = nc
                    .request_with_headers(subject, h, body.into())
                    .await
                    .expect("publish");
                // Parsed: the key order and spacing of the JSON are not compared.
                serde_json::from_slice::<Value>(&m.payload).map_or_else(
                    |_| String::from_utf8_lossy(&m.payload).to_string(),
                    |v| v.to_string(),
                )
            }
        };
    let big = "170141183460469231731687303715884105727";
    for (subject, pairs, body) in [
        ("c.a", vec![("Nats-Incr", "5")], ""),
        ("c.a", vec![("Nats-Incr", "-2")], ""),
        ("c.a", vec![("Nats-Incr", "+10")], ""),
        ("c.b", vec![("Nats-Incr", big)], ""),
        ("c.b", vec![("Nats-Incr", big)], ""),
        ("c.b", vec![("Nats-Incr", "0")], ""),
        ("c.a", vec![], "x"),
        ("c.a", vec![("Nats-Incr", "abc")], ""),
        ("c.a", vec![("Nats-Incr", "1")], "payload"),
        (
            "c.a",
            vec![("Nats-Incr", "1"), ("Nats-Expected-Last-Sequence", "3")],
            "",
        ),
        ("c.a", vec![("Nats-Incr", "1"), ("Nats-Rollup", "sub")], ""),
        ("p.a", vec![("Nats-Incr", "1")], ""),
        ("c.a", vec![("Nats-Incr", "1"), ("Nats-Msg-Id", "m1")], ""),
        ("c.a", vec![("Nats-Incr", "1"), ("Nats-Msg-Id", "m1")], ""),
    ] {
        let what = format!("{subject} {pairs:?}");
        seen.push(format!("{what}: {}", publish(subject, pairs, body).await));
    }
    // What is stored: the running total.
    let m = nc
        .request(
            "$JS.API.STREAM.MSG.GET.C",
            json!({"last_by_subj": "c.a"}).to_string().into(),
        )
        .await
        .expect("get");
    let v: Value = serde_json::from_slice(&m.payload).unwrap_or(Value::Null);
    let data = v["message"]["data"].as_str().unwrap_or_default();
    use base64::Engine;
    let stored = base64::engine::general_purpose::STANDARD
        .decode(data)
        .unwrap_or_default();
    seen.push(format!("stored {}", String::from_utf8_lossy(&stored)));
    seen
}

#[tokio::test]
async fn counters_match_nats_server() {
    let ours = common::js::same_observations("counters", scenario).await;
    assert!(
        ours[6].ends_with(r#""seq":1,"stream":"C","val":"5"}"#),
        "{}",
        ours[6]
    );
    assert_eq!(
        ours.last().map(String::as_str),
        Some(r#"stored {"val":"14"}"#)
    );
}
