//! Consumer management and pull consumers: `CONSUMER.CREATE.<stream>.<name>` (what async-nats
//! sends) and the legacy `CONSUMER.DURABLE.CREATE`, info (defaults echoed), names, list, delete,
//! create actions, pause/resume, ephemeral consumers going away after `inactive_threshold`, and
//! pulling with fetch / batch / expires / no_wait / max_bytes / `messages()`.

mod common;

use std::time::{Duration, Instant};

use async_nats::jetstream::consumer::{pull, PullConsumer};
use async_nats::StatusCode;
use common::js::{
    assert_err, assert_type, batch, fetch, first_reply, payloads, request, wait_until, JsEnv,
};
use futures::{StreamExt, TryStreamExt};
use serde_json::json;

async fn with_messages(n: u64) -> JsEnv {
    let env = JsEnv::new().await;
    env.stream(json!({"name": "S", "subjects": ["s.>"]})).await;
    for i in 1..=n {
        let v = env.publish("s.x", format!("m{i}")).await;
        assert_eq!(v["seq"], i, "{v}");
    }
    env
}

async fn durable(env: &JsEnv, name: &str) -> PullConsumer {
    let s = env.js.get_stream("S").await.unwrap();
    s.create_consumer(pull::Config {
        durable_name: Some(name.into()),
        ..Default::default()
    })
    .await
    .expect("create consumer")
}

#[tokio::test]
async fn create_info_names_list_delete() {
    let env = with_messages(3).await;
    durable(&env, "C1").await;
    let v = env.consumer_info("S", "C1").await;
    assert_type(&v, "consumer_info");
    assert_eq!(v["stream_name"], "S");
    assert_eq!(v["name"], "C1");
    let c = &v["config"];
    assert_eq!(c["durable_name"], "C1");
    assert_eq!(c["deliver_policy"], "all");
    assert_eq!(c["ack_policy"], "explicit");
    assert_eq!(c["ack_wait"], 30_000_000_000u64);
    assert_eq!(c["max_deliver"], -1);
    assert_eq!(c["replay_policy"], "instant");
    assert_eq!(c["max_waiting"], 512);
    assert_eq!(c["max_ack_pending"], 1000);
    assert_eq!(v["num_pending"], 3);
    assert_eq!(v["num_ack_pending"], 0);
    assert_eq!(v["delivered"]["stream_seq"], 0);

    // Legacy durable create, raw.
    let v = env
        .api(
            "CONSUMER.DURABLE.CREATE.S.LEGACY",
            json!({"stream_name": "S", "config": {"durable_name": "LEGACY",
                "ack_policy": "explicit", "filter_subject": "s.x"}})
            .to_string(),
        )
        .await;
    assert_type(&v, "consumer_create");
    assert!(v.get("error").is_none(), "{v}");
    assert_eq!(v["name"], "LEGACY");
    assert_eq!(v["num_pending"], 3);
    // Create with the filter in the subject.
    let v = env
        .api(
            "CONSUMER.CREATE.S.F1.s.x",
            json!({"stream_name": "S", "config": {"name": "F1", "durable_name": "F1",
                "filter_subject": "s.x"}})
            .to_string(),
        )
        .await;
    assert!(v.get("error").is_none(), "{v}");
    assert_eq!(v["config"]["filter_subject"], "s.x");

    let v = env.api("CONSUMER.NAMES.S", "").await;
    assert_type(&v, "consumer_names");
    assert_eq!(v["total"], 3, "{v}");
    let mut names: Vec<String> = serde_json::from_value(v["consumers"].clone()).unwrap();
    names.sort();
    assert_eq!(names, ["C1", "F1", "LEGACY"]);
    let v = env.api("CONSUMER.LIST.S", "").await;
    assert_type(&v, "consumer_list");
    assert_eq!(v["consumers"].as_array().unwrap().len(), 3);
    assert!(v["consumers"][0]["config"].is_object());
    assert_eq!(env.info("S").await["state"]["consumer_count"], 3);

    let s = env.js.get_stream("S").await.unwrap();
    let names: Vec<String> = s.consumer_names().try_collect().await.unwrap();
    assert_eq!(names.len(), 3);

    let v = env.api("CONSUMER.DELETE.S.LEGACY", "").await;
    assert_type(&v, "consumer_delete");
    assert_eq!(v["success"], true, "{v}");
    assert_err(&env.api("CONSUMER.INFO.S.LEGACY", "").await, 10014);
    assert!(s.delete_consumer("F1").await.unwrap().success);
    assert_eq!(env.api("CONSUMER.NAMES.S", "").await["total"], 1);
    env.stop().await;
}

#[tokio::test]
async fn create_actions_and_idempotence() {
    let env = with_messages(0).await;
    let cfg = json!({"durable_name": "A", "ack_policy": "explicit", "max_deliver": 5});
    let create = |action: &str, cfg: &serde_json::Value| {
        json!({"stream_name": "S", "config": cfg, "action": action}).to_string()
    };
    assert!(env
        .api("CONSUMER.CREATE.S.A", create("create", &cfg))
        .await
        .get("error")
        .is_none());
    // Same config again, even with action create: fine.
    let v = env.api("CONSUMER.CREATE.S.A", create("create", &cfg)).await;
    assert!(v.get("error").is_none(), "{v}");
    // A different config with action create: consumer already exists.
    let mut other = cfg.clone();
    other["max_deliver"] = json!(7);
    assert_err(
        &env.api("CONSUMER.CREATE.S.A", create("create", &other))
            .await,
        10148,
    );
    // Update of a consumer that does not exist.
    let cfg_b = json!({"durable_name": "B", "ack_policy": "explicit"});
    assert_err(
        &env.api("CONSUMER.CREATE.S.B", create("update", &cfg_b))
            .await,
        10149,
    );
    // Update of an existing one.
    let v = env
        .api("CONSUMER.CREATE.S.A", create("update", &other))
        .await;
    assert!(v.get("error").is_none(), "{v}");
    assert_eq!(v["config"]["max_deliver"], 7);
    env.stop().await;
}

#[tokio::test]
async fn pause_and_resume() {
    let env = with_messages(2).await;
    let c = durable(&env, "P").await;
    let s = env.js.get_stream("S").await.unwrap();
    let until = time::OffsetDateTime::now_utc() + Duration::from_secs(30);
    let r = s.pause_consumer("P", until).await.expect("pause");
    assert!(r.paused);
    let v = env.consumer_info("S", "P").await;
    assert_eq!(v["paused"], true, "{v}");
    // Paused: a pull waits and gets nothing.
    let got = batch(&c, 2, Duration::from_millis(600)).await;
    assert!(
        got.is_empty(),
        "paused consumer delivered {:?}",
        payloads(&got)
    );

    let v = env.api("CONSUMER.PAUSE.S.P", "").await;
    assert_type(&v, "consumer_pause");
    assert_eq!(v["paused"], false, "{v}");
    let got = fetch(&c, 2).await;
    assert_eq!(payloads(&got), ["m1", "m2"]);
    env.stop().await;
}

#[tokio::test]
async fn ephemeral_consumer_expires_when_inactive() {
    let env = with_messages(1).await;
    let s = env.js.get_stream("S").await.unwrap();
    let c = s
        .create_consumer(pull::Config {
            inactive_threshold: Duration::from_secs(1),
            ..Default::default()
        })
        .await
        .expect("ephemeral");
    let name = c.cached_info().name.clone();
    assert!(c.cached_info().config.durable_name.is_none());
    assert_eq!(env.api("CONSUMER.NAMES.S", "").await["total"], 1);
    // A durable one stays.
    durable(&env, "D").await;
    let started = Instant::now();
    wait_until(
        Duration::from_secs(8),
        "the ephemeral consumer to go",
        || async {
            let v = env.api(&format!("CONSUMER.INFO.S.{name}"), "").await;
            v.get("error").is_some()
        },
    )
    .await;
    assert!(
        started.elapsed() >= Duration::from_millis(700),
        "ephemeral removed before its inactive threshold"
    );
    let v = env.api("CONSUMER.NAMES.S", "").await;
    assert_eq!(v["consumers"], json!(["D"]), "{v}");
    env.stop().await;
}

#[tokio::test]
async fn fetch_and_batch() {
    let env = with_messages(10).await;
    let c = durable(&env, "F").await;
    let got = fetch(&c, 4).await;
    assert_eq!(payloads(&got), ["m1", "m2", "m3", "m4"]);
    for m in &got {
        m.ack().await.unwrap();
    }
    // More than available: what there is, then the fetch ends.
    let started = Instant::now();
    let got = fetch(&c, 50).await;
    assert_eq!(got.len(), 6);
    assert!(started.elapsed() < Duration::from_secs(5));
    for m in &got {
        m.double_ack().await.unwrap();
    }
    // Nothing left: an empty fetch, quickly.
    assert!(fetch(&c, 5).await.is_empty());
    let v = env.consumer_info("S", "F").await;
    assert_eq!(v["num_pending"], 0, "{v}");
    assert_eq!(v["num_ack_pending"], 0, "{v}");
    assert_eq!(v["delivered"]["stream_seq"], 10, "{v}");
    assert_eq!(v["ack_floor"]["stream_seq"], 10, "{v}");

    // A batch with expires on an empty consumer ends after about `expires`.
    let started = Instant::now();
    assert!(batch(&c, 3, Duration::from_millis(500)).await.is_empty());
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(400) && took < Duration::from_secs(4),
        "{took:?}"
    );

    // A waiting batch gets messages published after the request.
    let pending = tokio::spawn({
        let c = c.clone();
        async move { batch(&c, 3, Duration::from_secs(5)).await }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    for i in 11..=13 {
        env.publish("s.x", format!("m{i}")).await;
    }
    let got = pending.await.unwrap();
    assert_eq!(payloads(&got), ["m11", "m12", "m13"]);
    env.stop().await;
}

#[tokio::test]
async fn raw_pull_requests_no_wait_expires_max_bytes() {
    let env = JsEnv::new().await;
    env.stream(json!({"name": "S", "subjects": ["s.>"]})).await;
    durable(&env, "R").await;
    let next = "$JS.API.CONSUMER.MSG.NEXT.S.R";
    // no_wait with nothing pending: 404 at once.
    let m = request(&env.nc, next, &[], r#"{"batch":1,"no_wait":true}"#).await;
    assert_eq!(m.status, Some(StatusCode::NOT_FOUND), "{m:?}");
    // expires with nothing pending: 408 after it.
    let started = Instant::now();
    let m = request(&env.nc, next, &[], r#"{"batch":1,"expires":300000000}"#).await;
    assert_eq!(m.status, Some(StatusCode::TIMEOUT), "{m:?}");
    assert!(started.elapsed() >= Duration::from_millis(250));

    // A message larger than the request's max_bytes: 409.
    env.publish("s.big", vec![b'b'; 2000]).await;
    let m = request(&env.nc, next, &[], r#"{"batch":1,"max_bytes":100}"#).await;
    assert_eq!(m.status.map(|s| s.as_u16()), Some(409), "{m:?}");
    // Plain body "1" is a batch of one; the reply subject is the 9-token ack subject.
    let m = first_reply(&env.nc, next, "1").await;
    assert_eq!(m.payload.len(), 2000);
    assert_eq!(m.subject.as_str(), "s.big");
    let reply = m.reply.expect("ack subject");
    let tokens: Vec<&str> = reply.split('.').collect();
    assert_eq!(tokens.len(), 9, "{reply}");
    assert_eq!(&tokens[..4], ["$JS", "ACK", "S", "R"]);
    assert_eq!(tokens[4], "1"); // delivered count
    assert_eq!(tokens[5], "1"); // stream seq
    assert_eq!(tokens[6], "1"); // consumer seq
    assert_eq!(tokens[8], "0"); // pending

    // Unknown consumer: "no responders", as from nats-server, not silence.
    let got = env
        .nc
        .request("$JS.API.CONSUMER.MSG.NEXT.S.NOPE", "1".into())
        .await;
    let kind = got.map(|m| m.status).map_err(|e| e.kind());
    assert_eq!(
        kind,
        Err(async_nats::RequestErrorKind::NoResponders),
        "{kind:?}"
    );
    env.stop().await;
}

#[tokio::test]
async fn max_bytes_limits_a_fetch() {
    let env = JsEnv::new().await;
    env.stream(json!({"name": "S", "subjects": ["s.>"]})).await;
    for _ in 0..10 {
        env.publish("s.x", vec![b'x'; 100]).await;
    }
    let c = durable(&env, "B").await;
    let mut b = c
        .fetch()
        .max_messages(10)
        .max_bytes(350)
        .messages()
        .await
        .unwrap();
    let mut n = 0;
    common::within(common::TIMEOUT, "max_bytes fetch", async {
        while let Some(m) = b.next().await {
            match m {
                Ok(_) => n += 1,
                // nats-server ends a partly filled batch with 409 "Message Size Exceeds
                // MaxBytes", which async-nats surfaces as a final error.
                Err(e) => {
                    assert!(e.to_string().contains("409"), "{e}");
                    break;
                }
            }
        }
    })
    .await;
    assert!(
        (1..=3).contains(&n),
        "{n} messages of 100 bytes within 350 bytes"
    );
    env.stop().await;
}

#[tokio::test]
async fn messages_stream_consumes_everything() {
    let env = with_messages(50).await;
    let c = durable(&env, "M").await;
    let mut msgs = c.messages().await.expect("messages()");
    let mut seen = Vec::new();
    common::within(common::TIMEOUT, "50 messages from messages()", async {
        while seen.len() < 50 {
            let m = msgs.next().await.expect("stream ended").expect("message");
            seen.push(String::from_utf8_lossy(&m.payload).into_owned());
            m.ack().await.unwrap();
        }
    })
    .await;
    let want: Vec<String> = (1..=50).map(|i| format!("m{i}")).collect();
    assert_eq!(seen, want);
    // New messages keep flowing into the same stream.
    env.publish("s.x", "m51").await;
    let m = common::within(common::TIMEOUT, "m51", msgs.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&m.payload[..], b"m51");
    m.ack().await.unwrap();
    drop(msgs);
    wait_until(common::TIMEOUT, "all acks applied", || async {
        env.consumer_info("S", "M").await["num_ack_pending"] == 0
    })
    .await;
    env.stop().await;
}

/// Positions of a fresh consumer as nats-server 2.9.10 reports them (checked side by side):
/// `delivered.stream_seq` is just before the next message to deliver, also for the initial
/// last-per-subject set, and nothing acked is an ack floor of 0/0.
#[tokio::test]
async fn fresh_consumer_positions_match_nats_server() {
    let env = JsEnv::new().await;
    env.stream(json!({"name": "P", "subjects": ["p.>"], "max_msgs_per_subject": 2}))
        .await;
    for s in ["p.a", "p.b", "p.a", "p.c", "p.b"] {
        env.publish(s, "x").await;
    }
    // Last per subject: p.a=3, p.c=4, p.b=5.
    for (policy, delivered, pending) in [
        ("last_per_subject", 2, 3),
        ("last", 4, 1),
        ("new", 5, 0),
        ("all", 0, 5),
    ] {
        let name = format!("c{}", policy.replace('_', ""));
        // (Last per subject needs a filter.)
        let v = env
            .api_ok(
                "CONSUMER.CREATE.P",
                json!({"stream_name": "P", "config": {
                    "name": name, "deliver_policy": policy, "ack_policy": "explicit",
                    "filter_subject": "p.>"}}),
            )
            .await;
        assert_eq!(
            (
                &v["delivered"]["stream_seq"],
                &v["ack_floor"],
                &v["num_pending"]
            ),
            (
                &json!(delivered),
                &json!({"consumer_seq": 0, "stream_seq": 0}),
                &json!(pending)
            ),
            "{policy}: {v}"
        );
    }
    env.stop().await;
}
