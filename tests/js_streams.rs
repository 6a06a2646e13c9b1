//! JetStream stream management: `$JS.API.INFO`, stream create (defaults echoed back, idempotent
//! create, conflicting config, overlapping subjects), info, names, list, update and delete,
//! unknown streams and consumers, memory storage and `first_seq` — through raw `$JS.API`
//! requests (exact response types and err_codes) and through async-nats's jetstream module.

mod common;

use async_nats::jetstream::stream;
use common::js::{assert_ack, assert_err, assert_type, JsEnv};
use futures::TryStreamExt;
use serde_json::json;

#[tokio::test]
async fn account_info_reports_api_level_and_counts() {
    let env = JsEnv::new().await;
    let v = env.api("INFO", "").await;
    assert_type(&v, "account_info");
    assert!(v.get("error").is_none(), "{v}");
    assert!(v["api"]["level"].as_u64().unwrap_or(0) >= 1, "{v}");
    assert_eq!(v["streams"], 0, "{v}");
    assert!(v["limits"].is_object(), "{v}");

    env.stream(json!({"name": "A", "subjects": ["a.>"]})).await;
    env.stream(json!({"name": "B", "storage": "memory"})).await;
    let v = env.api("INFO", "").await;
    assert_eq!(v["streams"], 2, "{v}");

    // async-nats decodes the same response.
    let acct = env.js.query_account().await.expect("query_account");
    assert_eq!(acct.streams, 2);
    env.stop().await;
}

#[tokio::test]
async fn create_echoes_nats_server_defaults() {
    let env = JsEnv::new().await;
    let v = env
        .stream(json!({"name": "ORDERS", "subjects": ["orders.>"]}))
        .await;
    let c = &v["config"];
    assert_eq!(c["name"], "ORDERS");
    assert_eq!(c["subjects"], json!(["orders.>"]));
    assert_eq!(c["retention"], "limits");
    assert_eq!(c["max_consumers"], -1);
    assert_eq!(c["max_msgs"], -1);
    assert_eq!(c["max_bytes"], -1);
    assert_eq!(c["max_age"], 0);
    assert_eq!(c["max_msgs_per_subject"], -1);
    assert_eq!(c["max_msg_size"], -1);
    assert_eq!(c["discard"], "old");
    assert_eq!(c["storage"], "file");
    assert_eq!(c["num_replicas"], 1);
    assert_eq!(c["duplicate_window"], 120_000_000_000u64);
    assert_eq!(c["sealed"], false);
    assert_eq!(c["deny_delete"], false);
    assert_eq!(c["deny_purge"], false);
    assert_eq!(c["allow_rollup_hdrs"], false);
    assert!(v["created"].is_string(), "{v}");
    assert_eq!(v["state"]["messages"], 0);
    assert_eq!(v["state"]["bytes"], 0);
    assert_eq!(v["state"]["last_seq"], 0);
    assert_eq!(v["state"]["consumer_count"], 0);

    // Without subjects the stream listens on its own name.
    let v = env.stream(json!({"name": "PLAIN"})).await;
    assert_eq!(v["config"]["subjects"], json!(["PLAIN"]));
    assert_ack(&env.publish("PLAIN", "x").await, "PLAIN", 1);

    // A max_age shorter than 2m caps the default duplicate window.
    let v = env
        .stream(json!({"name": "SHORT", "max_age": 30_000_000_000u64}))
        .await;
    assert_eq!(v["config"]["duplicate_window"], 30_000_000_000u64);
    env.stop().await;
}

#[tokio::test]
async fn create_is_idempotent_and_conflicts_are_refused() {
    let env = JsEnv::new().await;
    let cfg = json!({"name": "S", "subjects": ["s.>"], "max_msgs": 10});
    env.stream(cfg.clone()).await;
    // Same config again: success, same stream.
    let again = env.api_ok("STREAM.CREATE.S", cfg).await;
    assert_type(&again, "stream_create");
    assert_eq!(again["config"]["max_msgs"], 10);
    // A different config under the same name.
    let v = env
        .api(
            "STREAM.CREATE.S",
            json!({"name": "S", "subjects": ["s.>"], "max_msgs": 11}).to_string(),
        )
        .await;
    assert_type(&v, "stream_create");
    assert_err(&v, 10058);
    // Subjects overlapping another stream's.
    // (`>` and `*.x` are refused before that: they overlap the JetStream API, 10052.)
    for subjects in [json!(["s.a"]), json!(["s.*"]), json!(["s.>"])] {
        let v = env
            .api(
                "STREAM.CREATE.T",
                json!({"name": "T", "subjects": subjects}).to_string(),
            )
            .await;
        assert_err(&v, 10065);
    }
    // The same through async-nats: get_or_create on an existing stream works, create with
    // a different config fails.
    let mut s = env
        .js
        .get_or_create_stream(stream::Config {
            name: "S".into(),
            subjects: vec!["s.>".into()],
            max_messages: 10,
            ..Default::default()
        })
        .await
        .expect("get_or_create_stream");
    assert_eq!(s.info().await.unwrap().config.max_messages, 10);
    let err = env
        .js
        .create_stream(stream::Config {
            name: "S".into(),
            subjects: vec!["s.>".into()],
            max_messages: 99,
            ..Default::default()
        })
        .await;
    assert!(err.is_err(), "conflicting create succeeded");
    env.stop().await;
}

#[tokio::test]
async fn unknown_stream_and_consumer_errors() {
    let env = JsEnv::new().await;
    let v = env.api("STREAM.INFO.NOPE", "").await;
    assert_type(&v, "stream_info");
    assert_err(&v, 10059);
    assert_err(&env.api("STREAM.DELETE.NOPE", "").await, 10059);
    assert_err(&env.api("STREAM.PURGE.NOPE", "").await, 10059);
    assert_err(&env.api("STREAM.MSG.GET.NOPE", r#"{"seq":1}"#).await, 10059);
    assert_err(
        &env.api("STREAM.UPDATE.NOPE", r#"{"name":"NOPE"}"#).await,
        10059,
    );
    assert_err(&env.api("CONSUMER.NAMES.NOPE", "").await, 10059);
    assert_err(
        &env.api(
            "CONSUMER.CREATE.NOPE.c",
            r#"{"stream_name":"NOPE","config":{"name":"c"}}"#,
        )
        .await,
        10059,
    );

    env.stream(json!({"name": "S"})).await;
    let v = env.api("CONSUMER.INFO.S.NOPE", "").await;
    assert_type(&v, "consumer_info");
    assert_err(&v, 10014);
    let v = env.api("CONSUMER.DELETE.S.NOPE", "").await;
    assert_type(&v, "consumer_delete");
    assert_err(&v, 10014);

    // async-nats surfaces them as errors too.
    assert!(env.js.get_stream("NOPE").await.is_err());
    let s = env.js.get_stream("S").await.unwrap();
    assert!(s.consumer_info("NOPE").await.is_err());
    env.stop().await;
}

#[tokio::test]
async fn names_list_update_delete() {
    let env = JsEnv::new().await;
    env.stream(json!({"name": "A", "subjects": ["a.>"]})).await;
    env.stream(json!({"name": "B", "subjects": ["b.>"]})).await;

    let v = env.api("STREAM.NAMES", "").await;
    assert_type(&v, "stream_names");
    assert_eq!(v["total"], 2);
    let mut names: Vec<String> = serde_json::from_value(v["streams"].clone()).unwrap();
    names.sort();
    assert_eq!(names, ["A", "B"]);
    // Filtered by subject: the stream that owns it.
    let v = env.api("STREAM.NAMES", r#"{"subject":"b.x"}"#).await;
    assert_eq!(v["streams"], json!(["B"]), "{v}");

    let v = env.api("STREAM.LIST", "").await;
    assert_type(&v, "stream_list");
    assert_eq!(v["total"], 2);
    let list = v["streams"].as_array().unwrap();
    assert_eq!(list.len(), 2);
    assert!(list
        .iter()
        .all(|s| s["config"].is_object() && s["state"].is_object()));

    // Update: more subjects and a limit; the limit applies to what is stored.
    for i in 0..5 {
        assert_ack(&env.publish("b.x", format!("{i}")).await, "B", i + 1);
    }
    let v = env
        .api_ok(
            "STREAM.UPDATE.B",
            json!({"name": "B", "subjects": ["b.>", "c.>"], "max_msgs": 3}),
        )
        .await;
    assert_type(&v, "stream_update");
    assert_eq!(v["config"]["subjects"], json!(["b.>", "c.>"]));
    assert_eq!(v["config"]["max_msgs"], 3);
    assert_eq!(env.info("B").await["state"]["messages"], 3);
    assert_ack(&env.publish("c.y", "new subject").await, "B", 6);
    // An update may not overlap another stream.
    let v = env
        .api(
            "STREAM.UPDATE.B",
            json!({"name": "B", "subjects": ["b.>", "a.x"]}).to_string(),
        )
        .await;
    assert_err(&v, 10065);

    // async-nats lists the same.
    let mut names: Vec<String> = env.js.stream_names().try_collect().await.unwrap();
    names.sort();
    assert_eq!(names, ["A", "B"]);
    let infos: Vec<stream::Info> = env.js.streams().try_collect().await.unwrap();
    assert_eq!(infos.len(), 2);

    // Delete.
    let v = env.api("STREAM.DELETE.A", "").await;
    assert_type(&v, "stream_delete");
    assert_eq!(v["success"], true, "{v}");
    assert_err(&env.api("STREAM.INFO.A", "").await, 10059);
    assert_eq!(env.api("STREAM.NAMES", "").await["total"], 1);
    // Its subjects are free again: nothing captures them.
    let r = common::js::try_request(&env.nc, "a.x", &[], "gone").await;
    assert!(
        r.is_err(),
        "publish to a deleted stream was answered: {r:?}"
    );
    assert!(env.js.delete_stream("B").await.unwrap().success);
    assert_eq!(env.api("STREAM.NAMES", "").await["total"], 0);
    env.stop().await;
}

#[tokio::test]
async fn update_cannot_change_storage_or_retention() {
    let env = JsEnv::new().await;
    env.stream(json!({"name": "U", "subjects": ["u.>"]})).await;
    // nats-server: 10052 "stream configuration update can not change storage type".
    let v = env
        .api(
            "STREAM.UPDATE.U",
            json!({"name": "U", "subjects": ["u.>"], "storage": "memory"}).to_string(),
        )
        .await;
    assert_type(&v, "stream_update");
    assert_err(&v, 10052);
    let v = env
        .api(
            "STREAM.UPDATE.U",
            json!({"name": "U", "subjects": ["u.>"], "retention": "workqueue"}).to_string(),
        )
        .await;
    assert_err(&v, 10052);
    assert_eq!(env.info("U").await["config"]["storage"], "file");
    env.stop().await;
}

#[tokio::test]
async fn memory_storage_and_first_seq() {
    let env = JsEnv::new().await;
    let v = env
        .stream(json!({"name": "M", "subjects": ["m.>"], "storage": "memory"}))
        .await;
    assert_eq!(v["config"]["storage"], "memory");
    for i in 1..=3 {
        assert_ack(&env.publish("m.x", format!("m{i}")).await, "M", i);
    }
    let got = env.msg_get("M", 2).await;
    assert_eq!(common::js::msg_data(&got), b"m2");
    assert_eq!(env.info("M").await["state"]["messages"], 3);

    let v = env
        .stream(json!({"name": "F", "subjects": ["f.>"], "first_seq": 100}))
        .await;
    assert_eq!(v["config"]["first_seq"], 100);
    assert_ack(&env.publish("f.x", "first").await, "F", 100);
    assert_ack(&env.publish("f.x", "second").await, "F", 101);
    let st = &env.info("F").await["state"];
    assert_eq!(st["first_seq"], 100, "{st}");
    assert_eq!(st["last_seq"], 101, "{st}");

    // The jetstream module's publish path and info agree.
    let ack = env
        .js
        .publish("f.y", "third".into())
        .await
        .unwrap()
        .await
        .unwrap();
    assert_eq!(ack.sequence, 102);
    assert_eq!(ack.stream, "F");
    let mut s = env.js.get_stream("F").await.unwrap();
    assert_eq!(s.info().await.unwrap().state.messages, 3);
    env.stop().await;
}

#[tokio::test]
async fn leadership_requests_need_a_cluster() {
    let env = JsEnv::new().await;
    env.stream(json!({"name": "A", "subjects": ["a.>"]})).await;
    for (subject, kind) in [
        ("META.LEADER.STEPDOWN", "meta_leader_stepdown"),
        ("STREAM.LEADER.STEPDOWN.A", "stream_leader_stepdown"),
        ("CONSUMER.LEADER.STEPDOWN.A.C", "consumer_leader_stepdown"),
        ("STREAM.PEER.REMOVE.A", "stream_remove_peer"),
    ] {
        let v = env.api(subject, "").await;
        assert_type(&v, kind);
        assert_err(&v, 10010);
        assert_eq!(v["error"]["code"], 503, "{v}");
    }
    env.stop().await;
}

/// `jetstream { domain }`: clients of the domain (`$JS.<domain>.API`, async-nats's
/// `with_domain`) create streams and buckets and publish with acks naming the domain; account
/// info names it; the same requests against nats-server 2.15.1 get the same answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jetstream_domain_is_served_like_nats_server() {
    let store = tempfile::tempdir().unwrap();
    let mut cfg = common::loopback_conf("jetstream { domain: hub }\n");
    cfg.jetstream.store_dir = store.path().to_path_buf();
    let ours = common::start(cfg).await;
    let theirs =
        common::reference::RefServer::start("jetstream { store_dir: \"{store}\", domain: hub }\n");
    // async-nats sends a domain's KV puts to `$JS.<domain>.API.$KV...`; nats-server maps
    // them onto `$KV...`.
    let mut kv_puts = Vec::new();
    for url in [ours.client_url(), format!("nats://{}", theirs.addr)] {
        let client = async_nats::connect(url).await.expect("connect");
        let js = async_nats::jetstream::with_domain(client, "hub");
        js.create_stream(async_nats::jetstream::stream::Config {
            name: "D".into(),
            subjects: vec!["d.>".into()],
            ..Default::default()
        })
        .await
        .expect("create through the domain");
        let ack = js.publish("d.1", "x".into()).await.unwrap().await.unwrap();
        assert_eq!((ack.sequence, ack.domain.as_str()), (1, "hub"));
        let kv = js
            .create_key_value(async_nats::jetstream::kv::Config {
                bucket: "cfg".into(),
                ..Default::default()
            })
            .await
            .expect("kv through the domain");
        let put = kv.put("k", "v".into()).await.map_err(|e| e.to_string());
        let got = kv.get("k").await.map_err(|e| e.to_string());
        kv_puts.push((put, got));
    }
    assert_eq!(
        kv_puts[0], kv_puts[1],
        "a domain's KV: causeway vs nats-server"
    );
    assert_eq!(kv_puts[0].0, Ok(1));
    let mut answers = Vec::new();
    for addr in [ours.local_addr(), theirs.addr] {
        let mut api = common::reference::ApiClient::connect(addr).await;
        let info = api.api_on("$JS.hub.API.INFO", b"").await;
        let plain = api.api_on("$JS.API.STREAM.INFO.D", b"").await;
        let ack = api.request("d.2", b"y").await;
        let ack: serde_json::Value = serde_json::from_slice(&ack.payload).unwrap();
        answers.push((
            info["domain"].clone(),
            plain["state"]["messages"].clone(),
            ack["domain"].clone(),
        ));
    }
    assert_eq!(answers[0], answers[1], "causeway vs nats-server 2.15.1");
    assert_eq!(answers[0].0, "hub");
    ours.shutdown().await;
}
