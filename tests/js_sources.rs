//! Stream mirrors and sources: the configuration rules and what is copied (a mirror keeps its
//! origin's sequences, gaps and times; sources stamp `Nats-Stream-Source`, filter and
//! transform), run against causeway and nats-server 2.15.1 side by side with async-nats; and
//! copies that resume after a restart and after a full stream made room, with nothing lost or
//! copied twice.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use async_nats::Client;
use base64::Engine;
use serde_json::{json, Value};

use common::js::{wait_until, JsEnv};

async fn api(nc: &Client, subject: &str, body: Value) -> Value {
    common::js::api(nc, subject, body.to_string()).await
}

async fn publish(nc: &Client, subject: &str, body: &str) -> Value {
    common::js::publish(nc, subject, &[], body.to_string()).await
}

fn decode(v: &Value) -> String {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(v.as_str().unwrap_or_default())
        .unwrap_or_default();
    String::from_utf8_lossy(&bytes).to_string()
}

/// An error as `err_code description`, or `ok`.
fn outcome(v: &Value) -> String {
    match v.get("error") {
        Some(e) => format!("{} {}", e["err_code"], e["description"]),
        None => "ok".into(),
    }
}

async fn state(nc: &Client, stream: &str) -> Value {
    api(nc, &format!("STREAM.INFO.{stream}"), json!({})).await["state"].clone()
}

/// Waits until `stream` holds `last_seq` (as last sequence) and `msgs` messages.
async fn wait_copied(nc: &Client, stream: &str, last_seq: u64, msgs: u64) {
    wait_until(
        Duration::from_secs(20),
        &format!("{stream} copied"),
        || async {
            let s = state(nc, stream).await;
            s["last_seq"] == last_seq && s["messages"] == msgs
        },
    )
    .await;
}

/// `STREAM.MSG.GET` of `seq` in `stream`.
async fn msg_get(nc: &Client, stream: &str, seq: u64) -> Value {
    let subject = format!("STREAM.MSG.GET.{stream}");
    api(nc, &subject, json!({ "seq": seq })).await
}

/// Every message of `stream` from `first` to `last`: sequence, subject, data and the
/// `Nats-Stream-Source` header, or that it is missing.
async fn messages(nc: &Client, stream: &str, first: u64, last: u64) -> Vec<String> {
    let mut out = Vec::new();
    for seq in first..=last {
        let v = msg_get(nc, stream, seq).await;
        if v.get("error").is_some() {
            out.push(format!("{seq}: {}", outcome(&v)));
            continue;
        }
        let m = &v["message"];
        let hdrs = decode(&m["hdrs"]);
        // The origin's identity (a sixth word, a hash of its creation time) differs.
        let source = hdrs
            .split("\r\n")
            .find(|l| l.starts_with("Nats-Stream-Source:"))
            .map(|l| {
                let mut w: Vec<&str> = l.split(' ').collect();
                if w.len() > 6 {
                    w[6] = "<ident>";
                }
                w.join(" ")
            })
            .unwrap_or_default();
        out.push(format!(
            "{seq}: {} {:?} {source}",
            m["subject"].as_str().unwrap_or_default(),
            decode(&m["data"])
        ));
    }
    out
}

async fn rules(addr: SocketAddr) -> Vec<String> {
    let nc = async_nats::connect(addr.to_string())
        .await
        .expect("connect");
    let mut seen = Vec::new();
    let o = json!({"name": "O", "subjects": ["o.>"], "allow_direct": true, "max_msg_size": 1024});
    seen.push(outcome(&api(&nc, "STREAM.CREATE.O", o).await));
    let bad: Vec<Value> = vec![
        json!({"name": "M", "mirror": {"name": "O"}, "subjects": ["m.>"]}),
        json!({"name": "M", "mirror": {"name": "O"}, "first_seq": 5}),
        json!({"name": "M", "mirror": {"name": "O"}, "sources": [{"name": "O"}]}),
        json!({"name": "M", "mirror": {"name": "O"}, "allow_msg_counter": true}),
        json!({"name": "M", "mirror": {"name": "O"}, "allow_msg_schedules": true}),
        json!({"name": "M", "mirror": {"name": "O", "filter_subject": "o.a", "subject_transforms": [{"src": "o.b", "dest": "x"}]}}),
        json!({"name": "M", "mirror": {"name": "O", "subject_transforms": [{"src": "o.*", "dest": "x.>"}]}}),
        json!({"name": "M", "mirror": {"name": "O", "subject_transforms": [{"src": "o.>", "dest": "a.>"}, {"src": "o.a", "dest": "b"}]}}),
        json!({"name": "M", "mirror": {"name": "O.x"}}),
        json!({"name": "M", "mirror": {"name": "O"}, "max_msg_size": 100}),
        json!({"name": "M", "mirror": {"name": "O", "external": {"api": "$JS.API", "deliver": ""}}}),
        json!({"name": "M", "mirror": {"name": "O", "external": {"api": "$JS.hub.API", "deliver": "d.*"}}}),
        json!({"name": "S", "sources": [{"name": "O"}, {"name": "O"}]}),
        json!({"name": "S", "sources": [{"name": "O x"}]}),
        json!({"name": "S", "sources": [{"name": "O", "filter_subject": "o.a", "subject_transforms": [{"src": "o.b", "dest": "x"}]}]}),
        json!({"name": "S", "sources": [{"name": "O", "subject_transforms": [{"src": "o.>", "dest": "a.>"}, {"src": "o.a", "dest": "b"}]}]}),
        json!({"name": "S", "sources": [{"name": "O", "subject_transforms": [{"src": "o..a", "dest": "b"}]}]}),
        json!({"name": "S", "sources": [{"name": "O"}], "allow_msg_schedules": true}),
        json!({"name": "S", "sources": [{"name": "O"}], "max_msg_size": 10}),
    ];
    for cfg in bad {
        let name = cfg["name"].as_str().unwrap_or_default().to_string();
        let v = api(&nc, &format!("STREAM.CREATE.{name}"), cfg.clone()).await;
        seen.push(format!("{cfg}: {}", outcome(&v)));
    }
    // A mirror takes direct gets from its origin; its configuration shows what it was given.
    let v = api(
        &nc,
        "STREAM.CREATE.M",
        json!({"name": "M", "mirror": {"name": "O"}}),
    )
    .await;
    let c = &v["config"];
    seen.push(format!(
        "M: {} mirror={} direct={} subjects={}",
        outcome(&v),
        c["mirror"],
        c["mirror_direct"],
        c["subjects"]
    ));
    let v = api(
        &nc,
        "STREAM.UPDATE.M",
        json!({"name": "M", "mirror": {"name": "O", "filter_subject": "o.a"}}),
    )
    .await;
    seen.push(format!("mirror update: {}", outcome(&v)));
    // A cycle of sources through local streams.
    let a = json!({"name": "A", "subjects": ["a.>"], "sources": [{"name": "B"}]});
    seen.push(format!(
        "A: {}",
        outcome(&api(&nc, "STREAM.CREATE.A", a).await)
    ));
    let b = json!({"name": "B", "subjects": ["b.>"], "sources": [{"name": "A"}]});
    seen.push(format!(
        "B: {}",
        outcome(&api(&nc, "STREAM.CREATE.B", b).await)
    ));
    // A client may not stamp a message as sourced.
    let mut h = async_nats::HeaderMap::new();
    h.insert("Nats-Stream-Source", "X 1 > > o.a");
    let m = nc
        .request_with_headers("o.a", h, "x".into())
        .await
        .expect("publish");
    let ack: Value = serde_json::from_slice(&m.payload).unwrap_or_default();
    seen.push(format!("stamped publish: {}", outcome(&ack)));
    let v = api(
        &nc,
        "STREAM.CREATE.S",
        json!({"name": "S", "sources": [{"name": "O"}]}),
    )
    .await;
    seen.push(format!(
        "S: {} subjects={} sources={}",
        outcome(&v),
        v["config"]["subjects"],
        v["config"]["sources"]
    ));
    seen
}

#[tokio::test]
async fn mirror_and_source_rules_match_nats_server() {
    let ours = common::js::same_observations("mirror and source rules", rules).await;
    assert!(ours[0] == "ok", "{ours:?}");
    assert!(ours.iter().any(|o| o.contains("10034")), "{ours:?}");
    assert!(ours.iter().any(|o| o.starts_with("M: ok")), "{ours:?}");
}

async fn copying(addr: SocketAddr) -> Vec<String> {
    let nc = async_nats::connect(addr.to_string())
        .await
        .expect("connect");
    let mut seen = Vec::new();
    let o = json!({"name": "O", "subjects": ["o.>"]});
    seen.push(outcome(&api(&nc, "STREAM.CREATE.O", o).await));
    let p = json!({"name": "P", "subjects": ["p.>"]});
    seen.push(outcome(&api(&nc, "STREAM.CREATE.P", p).await));
    for i in 1..=10 {
        let subj = if i % 2 == 0 { "o.b" } else { "o.a" };
        publish(&nc, subj, &format!("o{i}")).await;
    }
    for i in 1..=3 {
        publish(&nc, "p.x", &format!("p{i}")).await;
    }
    for seq in [3, 4] {
        let v = api(&nc, "STREAM.MSG.DELETE.O", json!({ "seq": seq })).await;
        seen.push(format!("delete {seq}: {}", outcome(&v)));
    }
    let m = json!({"name": "M", "mirror": {"name": "O"}});
    seen.push(outcome(&api(&nc, "STREAM.CREATE.M", m).await));
    let s = json!({"name": "S", "subjects": ["s.own"], "sources": [
        {"name": "O", "filter_subject": "o.a"},
        {"name": "P", "subject_transforms": [{"src": "p.>", "dest": "moved.>"}]},
    ]});
    seen.push(outcome(&api(&nc, "STREAM.CREATE.S", s).await));
    wait_copied(&nc, "M", 10, 8).await;
    wait_copied(&nc, "S", 7, 7).await;
    // Live: what comes after is copied as it arrives.
    for i in 11..=14 {
        publish(&nc, "o.a", &format!("o{i}")).await;
    }
    publish(&nc, "s.own", "own").await;
    wait_copied(&nc, "M", 14, 12).await;
    wait_copied(&nc, "S", 12, 12).await;
    let st = state(&nc, "M").await;
    seen.push(format!(
        "M state: first={} last={} msgs={} deleted={}",
        st["first_seq"], st["last_seq"], st["messages"], st["num_deleted"]
    ));
    seen.extend(messages(&nc, "M", 1, 14).await);
    // A mirror keeps the origin's times.
    let (o, m) = (
        api(&nc, "STREAM.MSG.GET.O", json!({"seq": 5})).await,
        api(&nc, "STREAM.MSG.GET.M", json!({"seq": 5})).await,
    );
    seen.push(format!(
        "same time: {}",
        o["message"]["time"] == m["message"]["time"]
    ));
    let info = api(&nc, "STREAM.INFO.M", json!({})).await;
    let mirror = &info["mirror"];
    seen.push(format!(
        "mirror info: name={} lag={} heard={}",
        mirror["name"],
        mirror["lag"],
        mirror["active"].as_i64().is_some_and(|a| a >= 0)
    ));
    // The two sources' consumers interleave as they please: sorted.
    let mut sourced = messages(&nc, "S", 1, 12).await;
    sourced.iter_mut().for_each(|l| {
        *l = l
            .split_once(": ")
            .map_or(l.clone(), |(_, rest)| rest.to_string());
    });
    sourced.sort();
    seen.extend(sourced);
    let info = api(&nc, "STREAM.INFO.S", json!({})).await;
    let mut sources: Vec<String> = info["sources"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|s| {
                    format!(
                        "source {} filter={} transforms={} lag={}",
                        s["name"], s["filter_subject"], s["subject_transforms"], s["lag"]
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    sources.sort();
    seen.extend(sources);
    // The origin's consumer count leaves out the links' consumers.
    let info = api(&nc, "STREAM.INFO.O", json!({})).await;
    seen.push(format!("O consumers: {}", info["state"]["consumer_count"]));
    seen
}

#[tokio::test]
async fn mirrors_and_sources_copy_as_on_nats_server() {
    let ours = common::js::same_observations("mirrors and sources", copying).await;
    assert!(
        ours.iter()
            .any(|o| o == "M state: first=1 last=14 msgs=12 deleted=2"),
        "{ours:?}"
    );
    assert!(
        ours.iter()
            .any(|o| o.starts_with("moved.x \"p1\" Nats-Stream-Source: P 1 p.> moved.> p.x")),
        "{ours:?}"
    );
}

/// Publishes `n` messages `from..from+n` on `subject` (acked one by one).
async fn fill(env: &JsEnv, subject: &str, from: u64, n: u64) {
    for i in from..from + n {
        let ack = env.publish(subject, format!("m{i}")).await;
        assert!(ack.get("error").is_none(), "{ack}");
    }
}

#[tokio::test]
async fn a_mirror_and_a_source_resume_after_a_restart() {
    let env = JsEnv::new().await;
    env.stream(json!({"name": "O", "subjects": ["o.>"]})).await;
    env.stream(json!({"name": "M", "mirror": {"name": "O"}}))
        .await;
    env.stream(json!({"name": "S", "sources": [{"name": "O"}]}))
        .await;
    fill(&env, "o.x", 1, 300).await;
    // Restart while the copies may still be under way.
    let env = env.restart().await;
    fill(&env, "o.x", 301, 300).await;
    wait_copied(&env.nc, "M", 600, 600).await;
    wait_copied(&env.nc, "S", 600, 600).await;
    let env = env.restart().await;
    fill(&env, "o.x", 601, 10).await;
    wait_copied(&env.nc, "M", 610, 610).await;
    wait_copied(&env.nc, "S", 610, 610).await;
    let seqs: Vec<u64> = scan(&env.nc, "S")
        .await
        .into_iter()
        .map(|(_, _, origin)| origin.expect("source header"))
        .collect();
    assert_eq!(seqs, (1..=610).collect::<Vec<u64>>());
    let m = env.msg_get("M", 610).await;
    assert_eq!(decode(&m["message"]["data"]), "m610");
    env.stop().await;
}

#[tokio::test]
async fn a_full_work_queue_fed_by_a_source_gets_everything_once() {
    let env = JsEnv::new().await;
    env.stream(json!({"name": "O", "subjects": ["o.>"]})).await;
    fill(&env, "o.job", 1, 60).await;
    env.stream(json!({
        "name": "W", "sources": [{"name": "O"}], "retention": "workqueue",
        "max_msgs": 10, "discard": "new",
    }))
    .await;
    let stream = env.js.get_stream("W").await.expect("W");
    let consumer = stream
        .create_consumer(async_nats::jetstream::consumer::pull::Config {
            durable_name: Some("w".into()),
            ack_policy: async_nats::jetstream::consumer::AckPolicy::Explicit,
            ..Default::default()
        })
        .await
        .expect("consumer");
    let mut got = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while got.len() < 60 && std::time::Instant::now() < deadline {
        for m in common::js::batch(&consumer, 10, Duration::from_millis(500)).await {
            got.push(String::from_utf8_lossy(&m.payload).to_string());
            m.double_ack().await.expect("ack");
        }
    }
    let want: Vec<String> = (1..=60).map(|i| format!("m{i}")).collect();
    assert_eq!(got, want, "every job once, in order");
    env.stop().await;
}

/// Every message of `stream` as (sequence, payload), and each one's origin sequence if it
/// was sourced.
async fn scan(nc: &Client, stream: &str) -> Vec<(u64, String, Option<u64>)> {
    let st = state(nc, stream).await;
    let (first, last) = (
        st["first_seq"].as_u64().unwrap_or(1),
        st["last_seq"].as_u64().unwrap_or(0),
    );
    let mut out = Vec::new();
    for seq in first..=last {
        let v = msg_get(nc, stream, seq).await;
        if v.get("error").is_some() {
            continue;
        }
        let hdrs = decode(&v["message"]["hdrs"]);
        let origin = hdrs
            .split("\r\n")
            .find_map(|l| l.strip_prefix("Nats-Stream-Source: "))
            .and_then(|v| v.split(' ').nth(1))
            .and_then(|s| s.parse().ok());
        out.push((seq, decode(&v["message"]["data"]), origin));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copies_survive_kill_9_without_loss_or_duplicates() {
    use common::child::ChildServer;
    use rand::Rng;
    const BIN: &str = env!("CARGO_BIN_EXE_causeway");
    let dir = tempfile::tempdir().expect("tempdir");
    let mut port = -1;
    let mut published = 0u64;
    for cycle in 0..4 {
        let mut child = ChildServer::spawn(BIN, dir.path(), port);
        let addr = child.wait_ready().await;
        port = i32::from(addr.port());
        let nc = common::js::connect(&format!("nats://{addr}")).await;
        if cycle == 0 {
            for cfg in [
                json!({"name": "O", "subjects": ["o.>"]}),
                json!({"name": "M", "mirror": {"name": "O"}}),
                json!({"name": "S", "sources": [{"name": "O"}]}),
            ] {
                let name = cfg["name"].as_str().unwrap_or_default().to_string();
                let v = api(&nc, &format!("STREAM.CREATE.{name}"), cfg).await;
                assert!(v.get("error").is_none(), "{v}");
            }
        }
        if cycle == 3 {
            // The last cycle ends without a kill: everything is copied.
            let o = state(&nc, "O").await;
            let (last, msgs) = (
                o["last_seq"].as_u64().unwrap(),
                o["messages"].as_u64().unwrap(),
            );
            wait_copied(&nc, "M", last, msgs).await;
            wait_copied(&nc, "S", msgs, msgs).await;
            let origin = scan(&nc, "O").await;
            let mirror = scan(&nc, "M").await;
            let strip = |v: &[(u64, String, Option<u64>)]| -> Vec<(u64, String)> {
                v.iter().map(|(s, p, _)| (*s, p.clone())).collect()
            };
            assert_eq!(strip(&mirror), strip(&origin), "the mirror is the origin");
            let sourced = scan(&nc, "S").await;
            let mut from: Vec<(u64, String)> = sourced
                .iter()
                .map(|(_, p, o)| (o.expect("source header"), p.clone()))
                .collect();
            from.sort();
            assert_eq!(from, strip(&origin), "each origin message sourced once");
            assert!(published > 0);
            child.terminate().await;
            return;
        }
        // Publish while the copies run, then kill -9 at a random moment.
        let js = async_nats::jetstream::new(nc.clone());
        let stop =
            tokio::time::Instant::now() + Duration::from_millis(rand::rng().random_range(300..900));
        while tokio::time::Instant::now() < stop {
            let mut acks = Vec::new();
            for _ in 0..50 {
                published += 1;
                let p = js.publish("o.x", format!("m{published}").into()).await;
                acks.push(p.expect("publish"));
            }
            for a in acks {
                let _ = a.await;
            }
        }
        child.kill9();
    }
}

#[tokio::test]
async fn a_source_whose_origin_is_created_again_copies_it_from_the_start() {
    let env = JsEnv::new().await;
    env.stream(json!({"name": "O", "subjects": ["o.>"]})).await;
    env.stream(json!({"name": "S", "sources": [{"name": "O"}]}))
        .await;
    fill(&env, "o.x", 1, 3).await;
    wait_copied(&env.nc, "S", 3, 3).await;
    let v = env.api("STREAM.DELETE.O", "").await;
    assert_eq!(v["success"], true, "{v}");
    env.stream(json!({"name": "O", "subjects": ["o.>"]})).await;
    fill(&env, "o.x", 4, 2).await;
    // The link hears nothing from the deleted origin's consumer and starts over.
    wait_copied(&env.nc, "S", 5, 5).await;
    let got: Vec<String> = scan(&env.nc, "S")
        .await
        .into_iter()
        .map(|(_, p, o)| format!("{p}@{}", o.unwrap_or(0)))
        .collect();
    assert_eq!(got, ["m1@1", "m2@2", "m3@3", "m4@1", "m5@2"]);
    env.stop().await;
}
