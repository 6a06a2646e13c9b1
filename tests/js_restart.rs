//! Graceful shutdown and restart on the same store directory: streams (config, created time,
//! state), messages (payloads and headers), deletions and purges, and durable consumers with
//! their positions — acked messages are not delivered again, unacked ones are.

mod common;

use std::time::Duration;

use async_nats::jetstream::consumer::{pull, push, AckPolicy, PullConsumer};
use common::js::{
    assert_ack, assert_err, batch, delivered, fetch, msg_data, payloads, stream_seq, JsEnv,
};
use serde_json::json;

async fn pull_consumer(env: &JsEnv, name: &str) -> PullConsumer {
    env.js
        .get_stream("F")
        .await
        .unwrap()
        .get_consumer(name)
        .await
        .unwrap_or_else(|e| panic!("consumer {name} after restart: {e}"))
}

#[tokio::test]
async fn streams_messages_and_consumer_positions_survive_restart() {
    let env = JsEnv::new().await;
    let cfg = json!({"name": "F", "subjects": ["f.>"], "description": "kept",
        "max_msgs_per_subject": 100, "allow_direct": true, "deny_delete": false,
        "duplicate_window": 60_000_000_000u64});
    env.stream(cfg).await;
    for i in 1..=50u64 {
        let subject = format!("f.{}", i % 3);
        let v = if i % 5 == 0 {
            env.publish_h(&subject, &[("X-Nr", &i.to_string())], format!("p{i}"))
                .await
        } else {
            env.publish(&subject, format!("p{i}")).await
        };
        assert_ack(&v, "F", i);
    }
    let s = env.js.get_stream("F").await.unwrap();
    let c = s
        .create_consumer(pull::Config {
            durable_name: Some("D".into()),
            ack_wait: Duration::from_secs(1),
            ..Default::default()
        })
        .await
        .unwrap();
    let got = fetch(&c, 20).await;
    assert_eq!(got.len(), 20);
    for m in &got[..10] {
        m.double_ack().await.unwrap();
    }
    s.create_consumer(push::Config {
        durable_name: Some("P".into()),
        deliver_subject: "deliver.p".into(),
        ack_policy: AckPolicy::Explicit,
        filter_subject: "f.1".into(),
        ..Default::default()
    })
    .await
    .unwrap();
    let before = env.info("F").await;
    let d_before = env.consumer_info("F", "D").await;
    assert_eq!(d_before["ack_floor"]["stream_seq"], 10, "{d_before}");

    let env = env.restart().await;

    let after = env.info("F").await;
    assert_eq!(after["config"], before["config"]);
    assert_eq!(after["created"], before["created"]);
    for key in [
        "messages",
        "bytes",
        "first_seq",
        "last_seq",
        "first_ts",
        "last_ts",
    ] {
        assert_eq!(after["state"][key], before["state"][key], "state.{key}");
    }
    assert_eq!(after["state"]["consumer_count"], 2, "{after}");
    for seq in [1u64, 5, 25, 50] {
        let v = env.msg_get("F", seq).await;
        assert_eq!(msg_data(&v), format!("p{seq}").as_bytes(), "seq {seq}: {v}");
        assert_eq!(v["message"]["subject"], format!("f.{}", seq % 3));
        assert_eq!(v["message"]["hdrs"].is_string(), seq % 5 == 0, "{v}");
    }

    let d = env.consumer_info("F", "D").await;
    assert_eq!(d["config"], d_before["config"]);
    assert_eq!(d["delivered"]["stream_seq"], 20, "{d}");
    assert_eq!(d["ack_floor"]["stream_seq"], 10, "{d}");
    assert_eq!(d["num_ack_pending"], 10, "{d}");
    assert_eq!(d["num_pending"], 30, "{d}");
    let p = env.consumer_info("F", "P").await;
    assert_eq!(p["config"]["deliver_subject"], "deliver.p");
    assert_eq!(p["config"]["filter_subject"], "f.1");

    // The consumer resumes: the 10 unacked come back (redelivered), then 21..=50; nothing of
    // 1..=10 is seen again.
    let c = pull_consumer(&env, "D").await;
    let mut seen = Vec::new();
    common::within(Duration::from_secs(15), "all remaining messages", async {
        while seen.len() < 40 {
            for m in batch(&c, 40, Duration::from_millis(1500)).await {
                let seq = stream_seq(&m);
                assert!(seq > 10, "acked message {seq} delivered again");
                if seq <= 20 {
                    assert!(delivered(&m) >= 2, "unacked {seq} not marked redelivered");
                }
                m.double_ack().await.unwrap();
                seen.push(seq);
            }
        }
    })
    .await;
    seen.sort_unstable();
    assert_eq!(seen, (11..=50).collect::<Vec<u64>>());
    // Publishing continues after the old last sequence.
    assert_ack(&env.publish("f.0", "p51").await, "F", 51);
    env.stop().await;
}

#[tokio::test]
async fn deletes_purges_and_removed_assets_stay_removed() {
    let env = JsEnv::new().await;
    env.stream(json!({"name": "F", "subjects": ["f.>"]})).await;
    env.stream(json!({"name": "GONE", "subjects": ["gone"]}))
        .await;
    for i in 1..=10 {
        env.publish(if i % 2 == 0 { "f.even" } else { "f.odd" }, format!("p{i}"))
            .await;
    }
    let s = env.js.get_stream("F").await.unwrap();
    for name in ["KEEP", "DROP"] {
        s.create_consumer(pull::Config {
            durable_name: Some(name.into()),
            ..Default::default()
        })
        .await
        .unwrap();
    }
    assert!(s.delete_consumer("DROP").await.unwrap().success);
    assert!(env.js.delete_stream("GONE").await.unwrap().success);
    env.api_ok("STREAM.MSG.DELETE.F", json!({"seq": 3})).await;
    let v = env
        .api_ok("STREAM.PURGE.F", json!({"filter": "f.even"}))
        .await;
    assert_eq!(v["purged"], 5);
    env.api_ok("STREAM.PURGE.F", json!({"seq": 2})).await; // drops seq 1
    let before = env.info("F").await;
    assert_eq!(before["state"]["messages"], 3, "{before}"); // 5 7 9

    let env = env.restart().await;
    let after = env.info("F").await;
    assert_eq!(after["state"]["messages"], 3, "{after}");
    assert_eq!(after["state"]["first_seq"], before["state"]["first_seq"]);
    assert_eq!(after["state"]["last_seq"], 10);
    for seq in [1u64, 2, 3, 4, 6, 8, 10] {
        assert_err(&env.msg_get("F", seq).await, 10037);
    }
    for seq in [5u64, 7, 9] {
        assert_eq!(
            msg_data(&env.msg_get("F", seq).await),
            format!("p{seq}").as_bytes()
        );
    }
    assert_err(&env.api("STREAM.INFO.GONE", "").await, 10059);
    assert_err(&env.api("CONSUMER.INFO.F.DROP", "").await, 10014);
    let v = env.api("CONSUMER.NAMES.F", "").await;
    assert_eq!(v["consumers"], json!(["KEEP"]), "{v}");
    let keep = pull_consumer(&env, "KEEP").await;
    assert_eq!(payloads(&fetch(&keep, 10).await), ["p5", "p7", "p9"]);
    assert_ack(&env.publish("f.odd", "p11").await, "F", 11);
    env.stop().await;
}

#[tokio::test]
async fn the_node_id_is_kept_in_the_store_directory() {
    let env = JsEnv::new().await;
    let id = env.server.node_id().expect("node id").to_string();
    assert!(id.len() >= 16, "{id}");
    let env = env.restart().await;
    assert_eq!(
        env.server.node_id(),
        Some(id.as_str()),
        "same store, same node"
    );
    let other = JsEnv::new().await;
    assert_ne!(
        other.server.node_id(),
        Some(id.as_str()),
        "another store, another node"
    );
    other.stop().await;
    env.stop().await;
    let plain = common::start_default().await;
    assert_eq!(plain.node_id(), None, "no JetStream, no store, no node id");
    plain.shutdown().await;
}

/// The stream catalogue (`jetstream/meta.log`) is what says which streams exist: a store of
/// the earlier layout (a `meta.json` in each stream's directory) is taken over with its data;
/// memory streams do not outlive the process (as on nats-server) and can be created anew with
/// another configuration; a directory no stream owns is set aside, not served or destroyed,
/// when a stream of that name is created.
#[tokio::test]
async fn the_catalogue_decides_which_streams_exist() {
    let env = JsEnv::new().await;
    let cfg = json!({"name": "OLD", "subjects": ["old.>"], "max_msgs": 1000});
    let created = env.stream(cfg).await["created"].clone();
    for i in 1..=3u64 {
        assert_ack(&env.publish("old.x", format!("m{i}")).await, "OLD", i);
    }
    env.stream(json!({"name": "MEM", "subjects": ["mem"], "storage": "memory"}))
        .await;
    let info = env.info("OLD").await;
    let dir = env.stop().await;
    let js = dir.path().join("jetstream");
    assert!(js.join("meta.log").exists(), "the catalogue's log");
    // Back to the layout before the catalogue: no catalogue, a meta.json per stream.
    std::fs::remove_file(js.join("meta.log")).unwrap();
    let old = json!({"config": info["config"], "created": 1_700_000_000_000_000_000i64});
    std::fs::write(js.join("streams/OLD/meta.json"), old.to_string()).unwrap();
    // A directory a crash left behind, as if a deleted stream's data was not yet removed.
    std::fs::create_dir_all(js.join("streams/GONE/store")).unwrap();
    std::fs::write(js.join("streams/GONE/store/leftover"), b"x").unwrap();

    let env = JsEnv::on(dir).await;
    let after = env.info("OLD").await;
    assert_eq!(after["config"], info["config"]);
    assert_eq!(after["created"], "2023-11-14T22:13:20Z", "{after}");
    assert_ne!(after["created"], created);
    assert_eq!(after["state"]["messages"], 3);
    assert!(!js.join("streams/OLD/meta.json").exists(), "taken over");
    assert!(js.join("meta.log").exists());
    assert_err(&env.api("STREAM.INFO.MEM", "").await, 10059);
    assert_err(&env.api("STREAM.INFO.GONE", "").await, 10059);
    let mem = env
        .stream(json!({"name": "MEM", "subjects": ["mem2"], "storage": "memory"}))
        .await;
    assert_eq!(mem["config"]["subjects"], json!(["mem2"]));
    let gone = env
        .stream(json!({"name": "GONE", "subjects": ["gone"]}))
        .await;
    assert_eq!(gone["state"]["messages"], 0);
    let aside: Vec<String> = std::fs::read_dir(js.join("streams"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("GONE.orphan."))
        .collect();
    assert_eq!(aside.len(), 1, "the old directory is set aside");
    assert!(js
        .join("streams")
        .join(&aside[0])
        .join("store/leftover")
        .exists());
    // Deleted streams stay deleted; the others come back again from the catalogue alone.
    assert_eq!(env.api("STREAM.DELETE.GONE", "").await["success"], true);
    let env = env.restart().await;
    assert_eq!(env.info("OLD").await["state"]["messages"], 3);
    assert_err(&env.api("STREAM.INFO.GONE", "").await, 10059);
    let names = env.api("STREAM.NAMES", "").await;
    assert_eq!(names["streams"], json!(["OLD"]), "{names}");
}
