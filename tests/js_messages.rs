//! Reading and removing stored messages: `STREAM.PURGE` (all, `filter`, `seq`, `keep`),
//! `STREAM.MSG.GET` (by sequence, `last_by_subj`), `STREAM.MSG.DELETE`, and direct get
//! (`DIRECT.GET.<stream>` with a JSON body and `DIRECT.GET.<stream>.<subject>`), raw and through
//! async-nats.

mod common;

use base64::Engine;
use common::js::{assert_ack, assert_err, assert_type, msg_data, request, JsEnv};
use serde_json::json;

/// Publishes `subjects` in order (payload = "<subject>#<seq>").
async fn fill(env: &JsEnv, stream: &str, subjects: &[&str]) {
    let first = env.info(stream).await["state"]["last_seq"]
        .as_u64()
        .unwrap()
        + 1;
    for (i, s) in subjects.iter().enumerate() {
        let seq = first + i as u64;
        assert_ack(&env.publish(s, format!("{s}#{seq}")).await, stream, seq);
    }
}

fn state(v: &serde_json::Value) -> (u64, u64, u64) {
    let st = &v["state"];
    (
        st["messages"].as_u64().unwrap(),
        st["first_seq"].as_u64().unwrap(),
        st["last_seq"].as_u64().unwrap(),
    )
}

#[tokio::test]
async fn purge_all_filter_seq_keep() {
    let env = JsEnv::new().await;
    env.stream(json!({"name": "P", "subjects": ["p.>"]})).await;
    // seq 1..6: a b a b a b
    fill(&env, "P", &["p.a", "p.b", "p.a", "p.b", "p.a", "p.b"]).await;

    let v = env.api("STREAM.PURGE.P", r#"{"filter":"p.a"}"#).await;
    assert_type(&v, "stream_purge");
    assert_eq!(
        (v["success"].clone(), v["purged"].clone()),
        (json!(true), json!(3))
    );
    assert_eq!(state(&env.info("P").await), (3, 2, 6));
    assert_err(&env.msg_get("P", 3).await, 10037);
    assert_eq!(msg_data(&env.msg_get("P", 4).await), b"p.b#4");

    // keep: the newest N survive.
    let v = env.api("STREAM.PURGE.P", r#"{"keep":1}"#).await;
    assert_eq!(v["purged"], 2, "{v}");
    assert_eq!(state(&env.info("P").await), (1, 6, 6));

    // seq: everything below it goes.
    fill(&env, "P", &["p.c", "p.c", "p.d"]).await; // 7 8 9
    let v = env.api("STREAM.PURGE.P", r#"{"seq":8}"#).await;
    assert_eq!(v["purged"], 2, "{v}"); // 6 and 7
    assert_eq!(state(&env.info("P").await), (2, 8, 9));

    // filter + keep: per subject.
    fill(&env, "P", &["p.c", "p.c", "p.d"]).await; // 10 11 12
    let v = env
        .api("STREAM.PURGE.P", r#"{"filter":"p.c","keep":1}"#)
        .await;
    assert_eq!(v["purged"], 2, "{v}"); // 8 and 10; 11 stays
    assert_eq!(msg_data(&env.msg_get("P", 11).await), b"p.c#11");
    assert_err(&env.msg_get("P", 10).await, 10037);
    assert_eq!(env.info("P").await["state"]["messages"], 3); // 9 11 12

    // All.
    let v = env.api("STREAM.PURGE.P", "").await;
    assert_eq!(v["purged"], 3, "{v}");
    let (msgs, first, last) = state(&env.info("P").await);
    assert_eq!((msgs, last), (0, 12));
    assert_eq!(first, 13, "first_seq after a full purge is last_seq + 1");
    // Sequences go on after a purge.
    assert_ack(&env.publish("p.z", "after").await, "P", 13);

    // async-nats purge builder.
    fill(&env, "P", &["p.a", "p.b", "p.a"]).await; // 14 15 16
    let s = env.js.get_stream("P").await.unwrap();
    let r = s.purge().filter("p.a").await.expect("purge filter");
    assert_eq!(r.purged, 2);
    let r = s.purge().await.expect("purge all");
    assert_eq!(r.purged, 2);
    env.stop().await;
}

#[tokio::test]
async fn msg_get_by_seq_and_last_by_subject_and_delete() {
    let env = JsEnv::new().await;
    env.stream(json!({"name": "G", "subjects": ["g.>"]})).await;
    fill(&env, "G", &["g.a", "g.b", "g.a"]).await;
    assert_ack(
        &env.publish_h("g.h", &[("X-Test", "yes")], "with headers")
            .await,
        "G",
        4,
    );

    let v = env.msg_get("G", 2).await;
    assert_type(&v, "stream_msg_get");
    assert_eq!(v["message"]["subject"], "g.b", "{v}");
    assert_eq!(v["message"]["seq"], 2);
    assert_eq!(msg_data(&v), b"g.b#2");
    assert!(v["message"]["time"].is_string(), "{v}");

    let v = env.msg_get("G", 4).await;
    let hdrs = base64::engine::general_purpose::STANDARD
        .decode(v["message"]["hdrs"].as_str().expect("hdrs"))
        .unwrap();
    let hdrs = String::from_utf8(hdrs).unwrap();
    assert!(hdrs.starts_with("NATS/1.0"), "{hdrs:?}");
    assert!(hdrs.contains("X-Test: yes"), "{hdrs:?}");

    let v = env
        .api("STREAM.MSG.GET.G", r#"{"last_by_subj":"g.a"}"#)
        .await;
    assert_eq!(v["message"]["seq"], 3, "{v}");
    assert_eq!(msg_data(&v), b"g.a#3");
    let v = env
        .api("STREAM.MSG.GET.G", r#"{"last_by_subj":"g.none"}"#)
        .await;
    assert_err(&v, 10037);
    assert_err(&env.msg_get("G", 99).await, 10037);

    // Delete.
    let v = env.api("STREAM.MSG.DELETE.G", r#"{"seq":2}"#).await;
    assert_type(&v, "stream_msg_delete");
    assert_eq!(v["success"], true, "{v}");
    assert_err(&env.msg_get("G", 2).await, 10037);
    let st = env.info("G").await;
    assert_eq!(st["state"]["messages"], 3, "{st}");
    assert_eq!(st["state"]["num_deleted"], 1, "{st}");
    // Deleting it again is an error, not a success.
    let v = env.api("STREAM.MSG.DELETE.G", r#"{"seq":2}"#).await;
    assert!(v.get("error").is_some(), "second delete succeeded: {v}");
    assert_eq!(
        v["type"],
        "io.nats.jetstream.api.v1.stream_msg_delete_response"
    );

    // async-nats: raw message get and delete.
    let s = env.js.get_stream("G").await.unwrap();
    let m = s.get_raw_message(3).await.expect("get_raw_message");
    assert_eq!(m.subject.as_str(), "g.a");
    assert_eq!(&m.payload[..], b"g.a#3");
    let m = s.get_last_raw_message_by_subject("g.a").await.unwrap();
    assert_eq!(m.sequence, 3);
    assert!(s.delete_message(3).await.expect("delete_message"));
    assert!(s.get_raw_message(3).await.is_err());
    env.stop().await;
}

fn header<'a>(m: &'a async_nats::Message, key: &str) -> Option<&'a str> {
    m.headers.as_ref()?.get(key).map(|v| v.as_str())
}

#[tokio::test]
async fn direct_get_by_seq_and_by_subject() {
    let env = JsEnv::new().await;
    let v = env
        .stream(json!({"name": "D", "subjects": ["d.>"], "allow_direct": true}))
        .await;
    assert_eq!(v["config"]["allow_direct"], true);
    fill(&env, "D", &["d.a", "d.b", "d.a"]).await;

    let m = request(&env.nc, "$JS.API.DIRECT.GET.D", &[], r#"{"seq":2}"#).await;
    assert_eq!(&m.payload[..], b"d.b#2");
    assert_eq!(header(&m, "Nats-Stream"), Some("D"));
    assert_eq!(header(&m, "Nats-Subject"), Some("d.b"));
    assert_eq!(header(&m, "Nats-Sequence"), Some("2"));
    let ts = header(&m, "Nats-Time-Stamp").expect("Nats-Time-Stamp");
    assert!(ts.ends_with('Z') && ts.contains('T'), "{ts}");

    // Last message of a subject, subject in the request subject and empty body.
    let m = request(&env.nc, "$JS.API.DIRECT.GET.D.d.a", &[], "").await;
    assert_eq!(&m.payload[..], b"d.a#3");
    assert_eq!(header(&m, "Nats-Sequence"), Some("3"));
    // ... and in a JSON body.
    let m = request(
        &env.nc,
        "$JS.API.DIRECT.GET.D",
        &[],
        r#"{"last_by_subj":"d.b"}"#,
    )
    .await;
    assert_eq!(header(&m, "Nats-Sequence"), Some("2"));

    // Missing: a 404 status message, no payload.
    for (subject, body) in [
        ("$JS.API.DIRECT.GET.D", r#"{"seq":99}"#),
        ("$JS.API.DIRECT.GET.D.d.none", ""),
    ] {
        let m = request(&env.nc, subject, &[], body).await;
        assert_eq!(
            m.status,
            Some(async_nats::StatusCode::NOT_FOUND),
            "{subject}: {m:?}"
        );
        assert!(m.payload.is_empty());
    }

    // async-nats direct get.
    let s = env.js.get_stream("D").await.unwrap();
    let m = s.direct_get(1).await.expect("direct_get");
    assert_eq!(&m.payload[..], b"d.a#1");
    assert_eq!(m.sequence, 1);
    let m = s.direct_get_last_for_subject("d.a").await.unwrap();
    assert_eq!(m.sequence, 3);
    assert!(s.direct_get(42).await.is_err());
    env.stop().await;
}

#[tokio::test]
async fn direct_get_without_allow_direct_has_no_responders() {
    let env = JsEnv::new().await;
    env.stream(json!({"name": "ND", "subjects": ["nd.>"]}))
        .await;
    fill(&env, "ND", &["nd.a"]).await;
    let r = common::js::try_request(&env.nc, "$JS.API.DIRECT.GET.ND.nd.a", &[], "").await;
    let kind = r.map(|m| format!("{:?}", m.status)).map_err(|e| e.kind());
    assert_eq!(
        kind,
        Err(async_nats::RequestErrorKind::NoResponders),
        "as nats-server: nobody answers direct gets of a stream without allow_direct"
    );
    env.stop().await;
}

/// Direct gets are answered on the requesting connection's task, beside the stream's thread
/// that appends: every get that follows an acknowledged publish sees that publish (or a later
/// one), while several writers and readers run at once.
#[tokio::test]
async fn direct_get_sees_every_acknowledged_write_under_concurrency() {
    let env = JsEnv::new().await;
    env.stream(json!({"name": "RW", "subjects": ["rw.>"], "allow_direct": true}))
        .await;
    let mut tasks = Vec::new();
    for w in 0..4 {
        let nc = common::js::connect(&env.server.client_url()).await;
        tasks.push(tokio::spawn(async move {
            let subject = format!("rw.k{w}");
            for i in 0..200u64 {
                let ack = common::js::publish(&nc, &subject, &[], i.to_string()).await;
                let seq = ack["seq"].as_u64().expect("ack seq");
                let m = request(&nc, &format!("$JS.API.DIRECT.GET.RW.{subject}"), &[], "").await;
                let got: u64 = header(&m, "Nats-Sequence").unwrap().parse().unwrap();
                assert_eq!(got, seq, "{subject}: the get after the ack of {seq}");
                assert_eq!(m.payload, i.to_string());
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(state(&env.info("RW").await).0, 800);
    env.stop().await;
}
