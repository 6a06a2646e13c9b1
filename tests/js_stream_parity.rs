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
    let ours = common::js::same_observations("stream answers", scenario).await;
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
}

/// Everything a direct get on `subject` got back: statuses, and messages with their headers
/// (not the time stamp) and payload.
async fn direct(nc: &async_nats::Client, subject: &str, body: &str) -> String {
    let inbox = nc.new_inbox();
    let mut sub = nc.subscribe(inbox.clone()).await.expect("subscribe");
    nc.publish_with_reply(subject.to_string(), inbox, body.to_string().into())
        .await
        .expect("get");
    let mut got = Vec::new();
    let idle = std::time::Duration::from_millis(150);
    while let Ok(Some(m)) = tokio::time::timeout(idle, futures::StreamExt::next(&mut sub)).await {
        let mut headers: Vec<String> = m
            .headers
            .iter()
            .flat_map(|h| h.iter())
            .map(|(k, v)| {
                let values: Vec<&str> = v.iter().map(|x| x.as_str()).collect();
                (k.to_string(), values.join(","))
            })
            .filter(|(k, _)| k != "Nats-Time-Stamp")
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        headers.sort();
        match m.status {
            Some(s) => {
                got.push(format!(
                    "{} {} {headers:?}",
                    s.as_u16(),
                    m.description.unwrap_or_default()
                ));
                break;
            }
            None => got.push(format!("{headers:?} {:?}", m.payload)),
        }
    }
    got.join(" | ")
}

async fn direct_scenario(addr: SocketAddr) -> Vec<String> {
    let nc = async_nats::connect(addr.to_string())
        .await
        .expect("connect");
    let cfg = json!({"name": "D", "subjects": ["d.>"], "allow_direct": true});
    nc.request("$JS.API.STREAM.CREATE.D", cfg.to_string().into())
        .await
        .expect("create");
    for (subject, body) in [("d.a", "1"), ("d.b", "2"), ("d.a", "3"), ("d.c", "4")] {
        let mut h = HeaderMap::new();
        h.insert("X-H", body);
        nc.request_with_headers(subject, h, body.into())
            .await
            .expect("publish");
    }
    let old = "2000-01-01T00:00:00Z";
    let cases: Vec<(&str, String)> = vec![
        ("", String::new()),
        ("", "{".into()),
        ("", "{}".into()),
        ("", json!({"seq": 1, "last_by_subj": "d.a"}).to_string()),
        ("", json!({"seq": 1, "start_time": old}).to_string()),
        (
            "",
            json!({"last_by_subj": "d.a", "next_by_subj": "d.a"}).to_string(),
        ),
        ("", json!({"last_by_subj": "d.a", "batch": 2}).to_string()),
        (
            "",
            json!({"next_by_subj": "d.a", "multi_last": ["d.a"]}).to_string(),
        ),
        (
            "",
            json!({"multi_last": ["d.a"], "up_to_seq": 2, "up_to_time": old}).to_string(),
        ),
        ("", json!({"seq": 2}).to_string()),
        ("", json!({"seq": 2, "no_hdr": true}).to_string()),
        ("", json!({"start_time": old}).to_string()),
        ("", json!({"start_time": old, "batch": 2}).to_string()),
        (
            "",
            json!({"seq": 1, "batch": 10, "max_bytes": 10}).to_string(),
        ),
        (
            "",
            json!({"next_by_subj": "d.a", "seq": 2, "batch": 5}).to_string(),
        ),
        ("", json!({"multi_last": ["d.*"]}).to_string()),
        ("", json!({"multi_last": ["zz"]}).to_string()),
        (
            "",
            json!({"multi_last": ["d.*"], "up_to_seq": 2}).to_string(),
        ),
        ("", json!({"multi_last": ["d.*"], "batch": 1}).to_string()),
        ("", json!({"seq": 99}).to_string()),
        (".d.a", String::new()),
        (".d.a", json!({"seq": 1}).to_string()),
        (".d.a", "{".into()),
        (".d.a", json!({"no_hdr": true}).to_string()),
    ];
    let mut seen = Vec::new();
    for (suffix, body) in cases {
        let subject = format!("$JS.API.DIRECT.GET.D{suffix}");
        seen.push(format!(
            "{subject} {body}: {}",
            direct(&nc, &subject, &body).await
        ));
    }
    seen
}

#[tokio::test]
async fn direct_gets_match_nats_server() {
    let ours = common::js::same_observations("direct gets", direct_scenario).await;
    assert!(ours[0].ends_with("408 Empty Request []"), "{}", ours[0]);
}

async fn level_scenario(addr: SocketAddr) -> Vec<String> {
    let nc = async_nats::connect(addr.to_string())
        .await
        .expect("connect");
    let cfg = json!({"name": "L", "subjects": ["l.>"], "allow_direct": true});
    nc.request("$JS.API.STREAM.CREATE.L", cfg.to_string().into())
        .await
        .expect("create");
    nc.request("l.a", "x".into()).await.expect("publish");
    // (Filtered to nothing: its pulls end at once with 404 No Messages.)
    let consumer = json!({"stream_name": "L", "config": {"durable_name": "C",
        "filter_subject": "l.none"}});
    nc.request("$JS.API.CONSUMER.CREATE.L.C", consumer.to_string().into())
        .await
        .expect("consumer");
    let mut seen = Vec::new();
    // This server's level (2) and below are served; above it, or not a number, refused.
    for level in ["0", "2", "100", "abc"] {
        for (subject, body) in [
            ("$JS.API.STREAM.INFO.L", String::new()),
            ("$JS.API.INFO", String::new()),
            ("$JS.API.CONSUMER.INFO.L.C", String::new()),
            (
                "$JS.API.CONSUMER.MSG.NEXT.L.C",
                json!({"batch": 1, "no_wait": true}).to_string(),
            ),
            ("$JS.API.DIRECT.GET.L", json!({"seq": 1}).to_string()),
        ] {
            let mut h = HeaderMap::new();
            h.insert("Nats-Required-Api-Level", level);
            let got = nc.request_with_headers(subject, h, body.into()).await;
            let m = match got {
                Ok(m) => m,
                Err(e) => {
                    seen.push(format!("{level} {subject}: {:?}", e.kind()));
                    continue;
                }
            };
            let v: Value = serde_json::from_slice(&m.payload).unwrap_or(Value::Null);
            let what = match (m.status, v.get("error")) {
                (Some(s), _) if s.as_u16() != 200 => {
                    format!("status {} {:?}", s.as_u16(), m.description)
                }
                (_, Some(e)) => format!("error {e} {}", v["type"]),
                _ => "served".to_string(),
            };
            seen.push(format!("{level} {subject}: {what}"));
        }
    }
    seen
}

#[tokio::test]
async fn required_api_levels_match_nats_server() {
    let ours = common::js::same_observations("api levels", level_scenario).await;
    assert!(ours[10].contains("10185"), "{}", ours[10]);
    assert_eq!(
        ours[8],
        "2 $JS.API.CONSUMER.MSG.NEXT.L.C: status 404 Some(\"No Messages\")"
    );
}

/// What causeway does not implement of nats-server 2.12+'s streams is refused with an error
/// naming it, never accepted and ignored.
#[tokio::test]
async fn unimplemented_stream_features_are_refused_by_name() {
    let env = common::js::JsEnv::new().await;
    let cases = [
        (json!({"allow_batched": true}), "allow_batched"),
        (json!({"compression": "s2"}), "compression s2"),
    ];
    for (i, (extra, name)) in cases.iter().enumerate() {
        let mut cfg = json!({"name": format!("X{i}"), "subjects": [format!("x{i}.>")]});
        for (k, v) in extra.as_object().unwrap() {
            cfg[k] = v.clone();
        }
        let v = env
            .api(&format!("STREAM.CREATE.X{i}"), cfg.to_string())
            .await;
        let text = v["error"]["description"].as_str().unwrap_or_default();
        assert!(text.contains(name), "{extra}: {v}");
    }
    // "none" is what nats-server shows for no compression: accepted.
    let cfg = json!({"name": "N", "subjects": ["n.>"], "compression": "none"});
    let v = env.api("STREAM.CREATE.N", cfg.to_string()).await;
    assert!(v.get("error").is_none(), "{v}");
    env.stop().await;
}

async fn pedantic_scenario(addr: SocketAddr) -> Vec<String> {
    let nc = async_nats::connect(addr.to_string())
        .await
        .expect("connect");
    let mut seen = Vec::new();
    let answer = |m: async_nats::Message| {
        let v: Value = serde_json::from_slice(&m.payload).unwrap_or(Value::Null);
        match v.get("error") {
            Some(e) => format!("error {e}"),
            None => {
                let c = &v["config"];
                json!({"allow_msg_ttl": c["allow_msg_ttl"], "allow_rollup_hdrs": c["allow_rollup_hdrs"],
                    "deny_purge": c["deny_purge"], "duplicate_window": c["duplicate_window"],
                    "max_msgs": c["max_msgs"], "ack_wait": c["ack_wait"],
                    "max_deliver": c["max_deliver"]})
                .to_string()
            }
        }
    };
    let streams = [
        json!({"max_msgs": -5}),
        json!({"max_msgs": -5, "pedantic": true}),
        json!({"max_bytes": -2, "pedantic": true}),
        json!({"max_age": 50_000_000}),
        json!({"max_age": 60_000_000_000u64, "pedantic": true}),
        json!({"max_age": 60_000_000_000u64}),
        json!({"subject_delete_marker_ttl": 500_000_000}),
        json!({"subject_delete_marker_ttl": 2_000_000_000u64, "deny_purge": true}),
        json!({"subject_delete_marker_ttl": 2_000_000_000u64, "pedantic": true}),
        json!({"subject_delete_marker_ttl": 2_000_000_000u64, "allow_msg_ttl": true,
            "pedantic": true}),
    ];
    for (i, extra) in streams.iter().enumerate() {
        let name = format!("PD{i}");
        let mut cfg = json!({"name": name, "subjects": [format!("pd{i}.>")]});
        for (k, v) in extra.as_object().unwrap() {
            cfg[k] = v.clone();
        }
        let m = nc
            .request(
                format!("$JS.API.STREAM.CREATE.{name}"),
                cfg.to_string().into(),
            )
            .await
            .expect("create");
        seen.push(format!("stream {extra}: {}", answer(m)));
    }
    nc.request(
        "$JS.API.STREAM.CREATE.PC",
        json!({"name": "PC", "subjects": ["pc.>"],
            "consumer_limits": {"max_ack_pending": 50}})
        .to_string()
        .into(),
    )
    .await
    .expect("create");
    let consumers = [
        json!({"max_deliver": -3}),
        json!({"max_waiting": -1}),
        json!({"max_ack_pending": -4}),
        json!({"max_expires": -1}),
        json!({"backoff": [1_000_000_000u64], "max_deliver": 3}),
        json!({"backoff": [1_000_000_000u64], "ack_wait": 1_000_000_000u64, "max_deliver": 3}),
        json!({}),
        json!({"max_ack_pending": 20}),
    ];
    for (i, extra) in consumers.iter().enumerate() {
        for pedantic in [false, true] {
            let name = format!("C{i}{pedantic}");
            let mut cfg = json!({"durable_name": name, "ack_policy": "explicit"});
            for (k, v) in extra.as_object().unwrap() {
                cfg[k] = v.clone();
            }
            let body = json!({"stream_name": "PC", "config": cfg, "pedantic": pedantic});
            let m = nc
                .request(
                    format!("$JS.API.CONSUMER.CREATE.PC.{name}"),
                    body.to_string().into(),
                )
                .await
                .expect("create");
            seen.push(format!(
                "consumer {extra} pedantic={pedantic}: {}",
                answer(m)
            ));
        }
    }
    seen
}

#[tokio::test]
async fn pedantic_requests_and_defaults_match_nats_server() {
    let ours = common::js::same_observations("pedantic", pedantic_scenario).await;
    assert!(ours[1].contains("10157"), "{}", ours[1]);
}

async fn persist_mode_scenario(addr: SocketAddr) -> Vec<String> {
    let nc = async_nats::connect(addr.to_string())
        .await
        .expect("connect");
    let mut seen = Vec::new();
    let ask = |subject: String, body: Value| {
        let nc = nc.clone();
        async move {
            let m = nc
                .request(subject, body.to_string().into())
                .await
                .expect("api");
            let v: Value = serde_json::from_slice(&m.payload).unwrap_or(Value::Null);
            match v.get("error") {
                Some(e) => format!("error {e}"),
                None => format!("ok persist_mode={}", v["config"]["persist_mode"]),
            }
        }
    };
    for (name, extra) in [
        ("AP", json!({"persist_mode": "async"})),
        ("AM", json!({"persist_mode": "async", "storage": "memory"})),
        ("AA", json!({"persist_mode": "async", "allow_atomic": true})),
        ("AD", json!({"persist_mode": "default"})),
        ("AX", json!({"persist_mode": "sometimes"})),
    ] {
        let mut cfg = json!({"name": name, "subjects": [format!("{}.>", name.to_lowercase())]});
        for (k, v) in extra.as_object().unwrap() {
            cfg[k] = v.clone();
        }
        seen.push(format!(
            "{name}: {}",
            ask(format!("$JS.API.STREAM.CREATE.{name}"), cfg).await
        ));
    }
    let back = json!({"name": "AP", "subjects": ["ap.>"]});
    seen.push(format!(
        "update: {}",
        ask("$JS.API.STREAM.UPDATE.AP".into(), back).await
    ));
    let ack = nc.request("ap.1", "x".into()).await.expect("publish");
    seen.push(String::from_utf8_lossy(&ack.payload).to_string());
    seen
}

#[tokio::test]
async fn async_persist_mode_matches_nats_server() {
    let ours = common::js::same_observations("persist mode", persist_mode_scenario).await;
    assert_eq!(ours[0], r#"AP: ok persist_mode="async""#);
}

async fn transform_scenario(addr: SocketAddr) -> Vec<String> {
    let nc = async_nats::connect(addr.to_string())
        .await
        .expect("connect");
    let mut seen = Vec::new();
    let api = |subject: String, body: Value| {
        let nc = nc.clone();
        async move { common::js::api(&nc, &subject, body.to_string()).await }
    };
    for (i, t) in [
        json!({"src": "a.*.*", "dest": "b.$2.$1"}),
        json!({"src": "a..b", "dest": "x"}),
        json!({"src": "a.*", "dest": "b.$2"}),
        json!({"src": "a.*", "dest": "b.{{nope(1)}}"}),
        json!({"src": "a.*", "dest": "b.{{left(1,2)}}"}),
        json!({"src": "a.*", "dest": "b.*"}),
        json!({"src": "a.>", "dest": "b.c"}),
        json!({"src": "a.*", "dest": "b.{{wildcard()}}"}),
        json!({"src": "a.*", "dest": "b.{{splitfromleft(1)}}"}),
        json!({"src": "a.*", "dest": ""}),
        json!({}),
    ]
    .into_iter()
    .enumerate()
    {
        let name = format!("T{i}");
        let cfg = json!({"name": name, "subjects": [format!("t{i}.>")], "subject_transform": t});
        let v = api(format!("STREAM.CREATE.{name}"), cfg).await;
        seen.push(match v["error"].is_null() {
            true => format!("{t}: ok {}", v["config"]["subject_transform"]),
            false => format!("{t}: {}", v["error"]),
        });
    }
    // What a transform does to stored subjects: matching ones change, others do not.
    let t = json!({"src": "in.*.*", "dest": "out.{{wildcard(2)}}.{{partition(4,1)}}.$1"});
    let cfg = json!({"name": "X", "subjects": ["in.>"], "subject_transform": t});
    seen.push(format!(
        "{}",
        api("STREAM.CREATE.X".into(), cfg).await["error"]
    ));
    for subject in ["in.a.b", "in.order7.eu", "in.a.b.c"] {
        let ack = nc.request(subject, "x".into()).await.expect("publish");
        seen.push(String::from_utf8_lossy(&ack.payload).to_string());
    }
    let info = api("STREAM.INFO.X".into(), json!({"subjects_filter": ">"})).await;
    seen.push(format!("{}", info["state"]["subjects"]));
    seen
}

#[tokio::test]
async fn subject_transforms_match_nats_server() {
    let ours = common::js::same_observations("subject transforms", transform_scenario).await;
    assert!(ours[0].contains("ok"), "{}", ours[0]);
    assert!(
        ours.last().expect("subjects").contains("out.b."),
        "{ours:?}"
    );
}
