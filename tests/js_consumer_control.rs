//! Steering consumers with the requests of nats-server 2.11-2.14, run against causeway and
//! nats-server 2.15.1 side by side with async-nats: `CONSUMER.RESET` (to the ack floor or to a
//! sequence, with nats-server's refusals), priority groups (`overflow`, `pinned_client` with
//! `Nats-Pin-Id` and `CONSUMER.UNPIN`, `prioritized`) and their validation.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use async_nats::jetstream::{self, consumer::pull, consumer::PullConsumer, stream};
use futures::StreamExt;
use serde_json::{json, Value};

/// Runs `scenario` on causeway and on nats-server 2.15.1; see
/// [`common::js::same_observations`].
async fn on_both<F, Fut>(what: &str, scenario: F) -> Vec<String>
where
    F: Fn(SocketAddr) -> Fut,
    Fut: std::future::Future<Output = Vec<String>>,
{
    common::js::same_observations(what, scenario).await
}

async fn context(addr: SocketAddr) -> (async_nats::Client, jetstream::Context) {
    let nc = async_nats::ConnectOptions::new()
        .request_timeout(Some(Duration::from_secs(1)))
        .connect(addr.to_string())
        .await
        .expect("connect");
    (nc.clone(), jetstream::new(nc))
}

/// A raw `$JS.API` request: the reply's JSON, or the status of a reply without a body
/// ("no responders").
async fn api(nc: &async_nats::Client, subject: &str, body: &str) -> String {
    let subject = format!("$JS.API.{subject}");
    match nc.request(subject, body.to_string().into()).await {
        Ok(m) if m.payload.is_empty() => format!("status {:?}", m.status),
        Ok(m) => {
            let v: Value = serde_json::from_slice(&m.payload).unwrap_or(Value::Null);
            summary(&v)
        }
        Err(e) => format!("request error {:?}", e.kind()),
    }
}

/// What of a consumer reply the comparison looks at (not times or server names).
fn summary(v: &Value) -> String {
    if !v["error"].is_null() {
        return format!("error {}", v["error"]);
    }
    json!({
        "type": v["type"],
        "reset_seq": v["reset_seq"],
        "delivered": v["delivered"],
        "ack_floor": v["ack_floor"],
        "num_ack_pending": v["num_ack_pending"],
        "num_pending": v["num_pending"],
        "num_redelivered": v["num_redelivered"],
    })
    .to_string()
}

/// Fetches up to `n` messages and returns their stream sequences, acking those in `ack`.
async fn fetch(c: &PullConsumer, n: usize, ack: &[u64]) -> Vec<u64> {
    let mut got = Vec::new();
    let mut msgs = c
        .fetch()
        .max_messages(n)
        .expires(Duration::from_millis(500))
        .messages()
        .await
        .expect("fetch");
    while let Some(m) = msgs.next().await {
        let m = m.expect("message");
        let seq = m.info().expect("info").stream_sequence;
        if ack.contains(&seq) {
            m.double_ack().await.expect("ack");
        }
        got.push(seq);
    }
    got
}

async fn consumer(js: &jetstream::Context, stream: &str, cfg: Value) -> PullConsumer {
    let name = cfg["durable_name"].as_str().unwrap_or_default().to_string();
    let body = json!({"stream_name": stream, "config": cfg}).to_string();
    let subject = format!("$JS.API.CONSUMER.CREATE.{stream}.{name}");
    let reply = js
        .client()
        .request(subject, body.into())
        .await
        .expect("create consumer");
    let v: Value = serde_json::from_slice(&reply.payload).unwrap_or(Value::Null);
    assert!(v["error"].is_null(), "{v}");
    js.get_stream(stream)
        .await
        .expect("stream")
        .get_consumer(&name)
        .await
        .expect("consumer")
}

async fn reset_scenario(addr: SocketAddr) -> Vec<String> {
    let (nc, js) = context(addr).await;
    let mut seen = Vec::new();
    filled(&js, stream::Config::default(), "S", 10).await;
    let all = consumer(
        &js,
        "S",
        json!({"durable_name": "A", "ack_policy": "explicit"}),
    )
    .await;
    seen.push(format!("{:?}", fetch(&all, 5, &[1, 2]).await));
    // To the ack floor: 3, 4 and 5 come again.
    seen.push(api(&nc, "CONSUMER.RESET.S.A", "").await);
    seen.push(format!("{:?}", fetch(&all, 3, &[3, 4, 5]).await));
    // Forward and back to a sequence.
    seen.push(api(&nc, "CONSUMER.RESET.S.A", r#"{"seq":8}"#).await);
    seen.push(format!("{:?}", fetch(&all, 5, &[]).await));
    seen.push(api(&nc, "CONSUMER.RESET.S.A", r#"{"seq":2}"#).await);
    seen.push(format!("{:?}", fetch(&all, 2, &[2]).await));
    // Past the end, a bad body, a consumer or stream that does not exist (nats-server leaves
    // those unanswered: the request times out).
    seen.push(api(&nc, "CONSUMER.RESET.S.A", r#"{"seq":100}"#).await);
    // (Only the code: Go's decoder words type errors its own way.)
    let bad = api(&nc, "CONSUMER.RESET.S.A", r#"{"seq":"x"}"#).await;
    seen.push(format!("{}", bad.contains("\"err_code\":10025")));
    seen.push(api(&nc, "CONSUMER.RESET.S.nope", "").await);
    seen.push(api(&nc, "CONSUMER.RESET.nope.A", "").await);
    // Start sequence and deliver-new consumers: never below where they were told to start.
    let by_seq = json!({"durable_name": "B", "ack_policy": "explicit",
        "deliver_policy": "by_start_sequence", "opt_start_seq": 5});
    consumer(&js, "S", by_seq).await;
    seen.push(api(&nc, "CONSUMER.RESET.S.B", r#"{"seq":3}"#).await);
    seen.push(api(&nc, "CONSUMER.RESET.S.B", r#"{"seq":6}"#).await);
    let new = json!({"durable_name": "N", "ack_policy": "explicit", "deliver_policy": "new"});
    consumer(&js, "S", new).await;
    seen.push(api(&nc, "CONSUMER.RESET.S.N", r#"{"seq":2}"#).await);
    seen.push(api(&nc, "CONSUMER.RESET.S.N", "").await);
    // async-nats' own call.
    let mut c = js
        .get_stream("S")
        .await
        .expect("stream")
        .get_consumer::<pull::Config>("A")
        .await
        .expect("consumer");
    let r = c.reset(Some(9)).await.expect("reset");
    seen.push(format!("{} {}", r.reset_seq, r.info.num_pending));
    seen
}

#[tokio::test]
async fn consumer_reset_matches_nats_server() {
    let seen = on_both("consumer reset", reset_scenario).await;
    // The scenario really moved the consumer: the second fetch started at the ack floor.
    assert_eq!(seen[0], "[1, 2, 3, 4, 5]");
    assert_eq!(seen[2], "[3, 4, 5]");
    assert_eq!(seen[4], "[8, 9, 10]");
    assert_eq!(seen[9], "request error TimedOut");
    assert!(seen[11].contains("10204"), "{}", seen[11]);
}

async fn reset_workqueue_scenario(addr: SocketAddr) -> Vec<String> {
    let (nc, js) = context(addr).await;
    let work_queue = stream::Config {
        retention: stream::RetentionPolicy::WorkQueue,
        ..Default::default()
    };
    filled(&js, work_queue, "W", 6).await;
    let c = consumer(
        &js,
        "W",
        json!({"durable_name": "C", "ack_policy": "explicit"}),
    )
    .await;
    let mut seen = vec![format!("{:?}", fetch(&c, 2, &[1]).await)];
    // Forward past messages nobody acked: they stay in the stream.
    seen.push(api(&nc, "CONSUMER.RESET.W.C", r#"{"seq":5}"#).await);
    let state = js
        .get_stream("W")
        .await
        .expect("stream")
        .info()
        .await
        .expect("info")
        .state
        .clone();
    seen.push(format!("{} {}", state.messages, state.first_sequence));
    seen.push(format!("{:?}", fetch(&c, 5, &[5, 6]).await));
    seen
}

#[tokio::test]
async fn consumer_reset_on_a_work_queue_matches_nats_server() {
    on_both("work-queue reset", reset_workqueue_scenario).await;
}

#[tokio::test]
async fn a_reset_survives_a_restart() {
    let env = common::js::JsEnv::new().await;
    env.stream(json!({"name": "S", "subjects": ["s.>"]})).await;
    for _ in 0..6 {
        env.publish("s.x", "x").await;
    }
    let cfg = json!({"durable_name": "A", "ack_policy": "explicit"});
    let c = consumer(&env.js, "S", cfg).await;
    assert_eq!(fetch(&c, 3, &[1, 2, 3]).await, vec![1, 2, 3]);
    let v = env.api("CONSUMER.RESET.S.A", r#"{"seq":5}"#).await;
    assert_eq!(v["reset_seq"], 5, "{v}");
    let env = env.restart().await;
    let v = env.api("CONSUMER.INFO.S.A", "").await;
    assert_eq!(
        (
            &v["delivered"]["stream_seq"],
            &v["ack_floor"]["stream_seq"],
            &v["num_pending"]
        ),
        (&json!(4), &json!(4), &json!(2)),
        "{v}"
    );
    let c = env
        .js
        .get_stream("S")
        .await
        .unwrap()
        .get_consumer("A")
        .await
        .unwrap();
    assert_eq!(fetch(&c, 5, &[]).await, vec![5, 6]);
    env.stop().await;
}

/// The stream `Q` with `n` messages on `q.<i>`.
async fn stream_q(js: &jetstream::Context, n: usize) {
    filled(js, stream::Config::default(), "Q", n).await;
}

/// Creates stream `name` (subjects `<name lowercased>.>`, the rest from `cfg`) and publishes
/// `n` messages, `<prefix>.1` to `<prefix>.<n>`, each acknowledged.
async fn filled(js: &jetstream::Context, cfg: stream::Config, name: &str, n: usize) {
    let prefix = name.to_lowercase();
    js.create_stream(stream::Config {
        name: name.into(),
        subjects: vec![format!("{prefix}.>")],
        ..cfg
    })
    .await
    .expect("stream");
    for i in 1..=n {
        js.publish(format!("{prefix}.{i}"), "x".into())
            .await
            .expect("publish")
            .await
            .expect("ack");
    }
}

/// Creates consumer `name` on `Q` from raw config JSON; the error or the config fields that
/// matter here.
async fn create_raw(nc: &async_nats::Client, name: &str, cfg: Value) -> String {
    let body = json!({"stream_name": "Q", "config": cfg}).to_string();
    let m = nc
        .request(format!("$JS.API.CONSUMER.CREATE.Q.{name}"), body.into())
        .await
        .expect("create");
    let v: Value = serde_json::from_slice(&m.payload).unwrap_or(Value::Null);
    if !v["error"].is_null() {
        return format!("error {}", v["error"]);
    }
    let c = &v["config"];
    json!({"priority_policy": c["priority_policy"], "priority_groups": c["priority_groups"],
        "priority_timeout": c["priority_timeout"], "priority_state": v["priority_groups"]})
    .to_string()
}

/// What a pull request on consumer `c` of `Q` got first within `wait`: a message (its stream
/// sequence and whether it carried a pin), a status with its description, or nothing.
async fn pull(
    nc: &async_nats::Client,
    c: &str,
    body: Value,
    wait: Duration,
) -> (String, Option<String>) {
    let inbox = nc.new_inbox();
    let mut sub = nc.subscribe(inbox.clone()).await.expect("subscribe");
    let subject = format!("$JS.API.CONSUMER.MSG.NEXT.Q.{c}");
    nc.publish_with_reply(subject, inbox, body.to_string().into())
        .await
        .expect("pull");
    match tokio::time::timeout(wait, sub.next()).await {
        Ok(Some(m)) => match m.status {
            Some(code) => (
                format!("{} {}", code.as_u16(), m.description.unwrap_or_default()),
                None,
            ),
            None => {
                let pin = m
                    .headers
                    .as_ref()
                    .and_then(|h| h.get("Nats-Pin-Id"))
                    .map(|v| v.to_string());
                (
                    format!("message {} pinned={}", m.subject, pin.is_some()),
                    pin,
                )
            }
        },
        _ => ("nothing".into(), None),
    }
}

async fn priority_validation_scenario(addr: SocketAddr) -> Vec<String> {
    let (nc, js) = context(addr).await;
    stream_q(&js, 0).await;
    let pull_cfg = |extra: Value| {
        let mut c = json!({"durable_name": "C", "ack_policy": "explicit"});
        for (k, v) in extra.as_object().unwrap() {
            c[k] = v.clone();
        }
        c
    };
    let cases = [
        json!({"priority_policy": "overflow"}),
        json!({"priority_groups": ["A"]}),
        json!({"priority_policy": "none", "priority_groups": ["A"]}),
        json!({"priority_timeout": 1_000_000_000}),
        json!({"priority_policy": "pinned_client", "priority_groups": ["A"], "deliver_subject": "d"}),
        json!({"priority_policy": "pinned_client", "priority_groups": [""]}),
        json!({"priority_policy": "pinned_client", "priority_groups": ["not ok"]}),
        json!({"priority_policy": "pinned_client", "priority_groups": ["seventeen-chars-x"]}),
        json!({"priority_policy": "fastest", "priority_groups": ["A"]}),
        json!({"priority_policy": "pinned_client", "priority_groups": ["A/b_c=d-1"]}),
        json!({"priority_policy": "overflow", "priority_groups": ["A"], "priority_timeout": 5}),
        json!({"priority_policy": "prioritized", "priority_groups": ["A"]}),
    ];
    let mut seen = Vec::new();
    for (i, extra) in cases.iter().enumerate() {
        let name = format!("C{i}");
        let mut cfg = pull_cfg(extra.clone());
        cfg["durable_name"] = json!(name);
        let got = create_raw(&nc, &name, cfg).await;
        // Go's decoder words an unknown enum its own way: only the code is compared.
        seen.push(if got.contains("10025") {
            "error 10025".into()
        } else {
            got
        });
    }
    // Pull requests a consumer's policy refuses.
    let short = Duration::from_millis(300);
    let pinned = "C9";
    for body in [
        json!({"batch": 1, "expires": 100_000_000}),
        json!({"batch": 1, "expires": 100_000_000, "group": "B"}),
        json!({"batch": 1, "expires": 100_000_000, "group": "A/b_c=d-1", "min_pending": 1}),
        json!({"batch": 1, "expires": 100_000_000, "group": "A/b_c=d-1", "priority": 10}),
    ] {
        seen.push(pull(&nc, pinned, body, short).await.0);
    }
    seen.push(
        pull(
            &nc,
            "C10",
            json!({"batch": 1, "group": "A", "id": "x", "expires": 100_000_000}),
            short,
        )
        .await
        .0,
    );
    seen.push(
        pull(
            &nc,
            "C11",
            json!({"batch": 1, "group": "A", "priority": -1, "expires": 100_000_000}),
            short,
        )
        .await
        .0,
    );
    seen
}

#[tokio::test]
async fn priority_group_validation_matches_nats_server() {
    let seen = on_both("priority group validation", priority_validation_scenario).await;
    assert!(seen[0].contains("10159"), "{seen:?}");
    assert!(seen[9].contains("120000000000"), "{seen:?}");
}

/// Replaces pin ids by their order of appearance (`pin1`, `pin2`, ...).
struct Pins(Vec<String>);

impl Pins {
    fn name(&mut self, pin: &Option<String>) -> String {
        let Some(p) = pin else { return "-".into() };
        let i = match self.0.iter().position(|x| x == p) {
            Some(i) => i,
            None => {
                self.0.push(p.clone());
                self.0.len() - 1
            }
        };
        format!("pin{}", i + 1)
    }
}

async fn pinned_scenario(addr: SocketAddr) -> Vec<String> {
    let (nc, js) = context(addr).await;
    stream_q(&js, 6).await;
    let mut advisories = nc
        .subscribe("$JS.EVENT.ADVISORY.CONSUMER.*.Q.P")
        .await
        .expect("subscribe");
    nc.flush().await.expect("flush");
    let cfg = json!({"durable_name": "P", "ack_policy": "none",
        "priority_policy": "pinned_client", "priority_groups": ["A"],
        "priority_timeout": 1_000_000_000});
    let mut seen = vec![create_raw(&nc, "P", cfg).await];
    let mut pins = Pins(Vec::new());
    let wait = Duration::from_millis(700);
    let step = |(what, pin): (String, Option<String>), pins: &mut Pins| {
        format!("{what} {}", pins.name(&pin))
    };
    let req = |id: &str| json!({"batch": 1, "expires": 400_000_000, "group": "A", "id": id});
    // The first request is pinned; another client without the pin waits it out.
    let first = pull(&nc, "P", req(""), wait).await;
    let pin = first.1.clone().unwrap_or_default();
    seen.push(step(first, &mut pins));
    seen.push(step(pull(&nc, "P", req(""), wait).await, &mut pins));
    seen.push(step(pull(&nc, "P", req(&pin), wait).await, &mut pins));
    seen.push(step(
        pull(&nc, "P", req("someone-else"), wait).await,
        &mut pins,
    ));
    let info: Value = serde_json::from_slice(
        &nc.request("$JS.API.CONSUMER.INFO.Q.P", "".into())
            .await
            .expect("info")
            .payload,
    )
    .unwrap_or(Value::Null);
    let state = &info["priority_groups"][0];
    seen.push(format!(
        "{} {}",
        state["group"],
        pins.name(&state["pinned_client_id"].as_str().map(str::to_string))
    ));
    // Unpinned by the API: the old pin is refused, a new client is pinned.
    for body in [r#"{"group":"Z"}"#, r#"{}"#, r#"{"group":"A"}"#] {
        seen.push(api(&nc, "CONSUMER.UNPIN.Q.P", body).await);
    }
    seen.push(step(pull(&nc, "P", req(&pin), wait).await, &mut pins));
    let second = pull(&nc, "P", req(""), wait).await;
    seen.push(step(second, &mut pins));
    // The pin times out after priority_timeout without pulls.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    seen.push(step(pull(&nc, "P", req(""), wait).await, &mut pins));
    // The advisories, in order.
    while let Ok(Some(m)) =
        tokio::time::timeout(Duration::from_millis(300), advisories.next()).await
    {
        let v: Value = serde_json::from_slice(&m.payload).unwrap_or(Value::Null);
        seen.push(format!(
            "{} {} {} {} {}",
            m.subject,
            v["type"],
            v["group"],
            v["reason"],
            pins.name(&v["pinned_id"].as_str().map(str::to_string))
        ));
    }
    seen
}

#[tokio::test]
async fn pinned_client_groups_match_nats_server() {
    let seen = on_both("pinned client", pinned_scenario).await;
    assert_eq!(seen[1], "message q.1 pinned=true pin1");
    assert!(seen[2].starts_with("408"), "{seen:?}");
}

async fn overflow_and_priority_scenario(addr: SocketAddr) -> Vec<String> {
    let (nc, js) = context(addr).await;
    stream_q(&js, 5).await;
    let mut seen = Vec::new();
    let cfg = json!({"durable_name": "O", "ack_policy": "explicit",
        "priority_policy": "overflow", "priority_groups": ["A"]});
    seen.push(create_raw(&nc, "O", cfg).await);
    let wait = Duration::from_millis(700);
    let req = |extra: Value| {
        let mut r = json!({"batch": 1, "expires": 400_000_000, "group": "A"});
        for (k, v) in extra.as_object().unwrap() {
            r[k] = v.clone();
        }
        r
    };
    for extra in [
        json!({"min_pending": 10}),
        json!({"min_pending": 5}),
        json!({"min_ack_pending": 2}),
        json!({"min_ack_pending": 1}),
        json!({}),
    ] {
        seen.push(pull(&nc, "O", req(extra), wait).await.0);
    }
    // Prioritized: the lower number is served first, whatever the order of arrival.
    let cfg = json!({"durable_name": "R", "ack_policy": "explicit", "deliver_policy": "new",
        "priority_policy": "prioritized", "priority_groups": ["A"]});
    seen.push(create_raw(&nc, "R", cfg).await);
    let (low, high) = (nc.new_inbox(), nc.new_inbox());
    let mut low_sub = nc.subscribe(low.clone()).await.expect("subscribe");
    let mut high_sub = nc.subscribe(high.clone()).await.expect("subscribe");
    let body = |p: i64| {
        json!({"batch": 1, "expires": 1_000_000_000, "group": "A", "priority": p}).to_string()
    };
    nc.publish_with_reply("$JS.API.CONSUMER.MSG.NEXT.Q.R", low, body(5).into())
        .await
        .unwrap();
    nc.publish_with_reply("$JS.API.CONSUMER.MSG.NEXT.Q.R", high, body(1).into())
        .await
        .unwrap();
    nc.flush().await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    js.publish("q.new", "x".into())
        .await
        .unwrap()
        .await
        .unwrap();
    for sub in [&mut high_sub, &mut low_sub] {
        let got = tokio::time::timeout(Duration::from_millis(1500), sub.next()).await;
        seen.push(match got {
            Ok(Some(m)) => match m.status {
                Some(s) => format!("status {}", s.as_u16()),
                None => format!("message {}", m.subject),
            },
            _ => "nothing".into(),
        });
    }
    seen
}

#[tokio::test]
async fn overflow_and_prioritized_groups_match_nats_server() {
    let seen = on_both("overflow and prioritized", overflow_and_priority_scenario).await;
    // min_pending 10 of 5 waits; 5 of 5 is served; the priority-1 request got the message.
    assert_eq!(
        &seen[1..3],
        ["408 Request Timeout", "message q.1 pinned=false"]
    );
    assert_eq!(seen[7], "message q.new");
}

async fn async_nats_pinned_scenario(addr: SocketAddr) -> Vec<String> {
    let (_nc, js) = context(addr).await;
    stream_q(&js, 0).await;
    let c: PullConsumer = js
        .get_stream("Q")
        .await
        .expect("stream")
        .create_consumer(pull::Config {
            durable_name: Some("P".into()),
            priority_policy: jetstream::consumer::PriorityPolicy::PinnedClient,
            priority_groups: vec!["A".into()],
            ..Default::default()
        })
        .await
        .expect("consumer");
    let mut counts = Vec::new();
    let mut streams = Vec::new();
    for _ in 0..2 {
        let s = c
            .stream()
            .group("A")
            .expires(Duration::from_millis(500))
            .messages()
            .await
            .expect("messages");
        streams.push(s);
    }
    for i in 0..10 {
        js.publish(format!("q.{i}"), "x".into())
            .await
            .unwrap()
            .await
            .unwrap();
    }
    for mut s in streams {
        let mut n = 0;
        while let Ok(Some(Ok(m))) =
            tokio::time::timeout(Duration::from_millis(1500), s.next()).await
        {
            m.ack().await.expect("ack");
            n += 1;
        }
        counts.push(n);
    }
    counts.sort_unstable();
    vec![format!("{counts:?}")]
}

#[tokio::test]
async fn async_nats_pinned_streams_behave_as_on_nats_server() {
    let seen = on_both("async-nats pinned streams", async_nats_pinned_scenario).await;
    // One stream holds the pin and gets everything.
    assert_eq!(seen, vec!["[0, 10]".to_string()]);
}

/// Everything one pull request on consumer `c` of `Q` got within `wait`: messages by subject,
/// statuses with their description and pending headers.
async fn pull_all(nc: &async_nats::Client, c: &str, body: Value, wait: Duration) -> Vec<String> {
    let inbox = nc.new_inbox();
    let mut sub = nc.subscribe(inbox.clone()).await.expect("subscribe");
    let subject = format!("$JS.API.CONSUMER.MSG.NEXT.Q.{c}");
    nc.publish_with_reply(subject, inbox, body.to_string().into())
        .await
        .expect("pull");
    let mut got = Vec::new();
    while let Ok(Some(m)) = tokio::time::timeout(wait, sub.next()).await {
        let header = |k: &str| {
            m.headers
                .as_ref()
                .and_then(|h| h.get(k))
                .map_or(String::new(), |v| v.to_string())
        };
        match m.status {
            Some(code) => got.push(format!(
                "{} {} msgs={} bytes={}",
                code.as_u16(),
                m.description.clone().unwrap_or_default(),
                header("Nats-Pending-Messages"),
                header("Nats-Pending-Bytes")
            )),
            None => got.push(m.subject.to_string()),
        }
    }
    got
}

async fn pull_limits_scenario(addr: SocketAddr) -> Vec<String> {
    let (nc, js) = context(addr).await;
    stream_q(&js, 0).await;
    for i in 1..=6 {
        js.publish(format!("q.{i}"), vec![b'x'; 100].into())
            .await
            .unwrap()
            .await
            .unwrap();
    }
    let mut seen = Vec::new();
    let cfg = json!({"durable_name": "L", "ack_policy": "none",
        "max_expires": 1_000_000_000, "max_bytes": 10_000});
    seen.push(create_raw(&nc, "L", cfg).await);
    let wait = Duration::from_millis(600);
    for body in [
        json!({"batch": 1, "expires": 2_000_000_000}),
        json!({"batch": 1, "expires": 500_000_000, "max_bytes": 20_000}),
        // Two messages fit the budget; the batch ends first, with bytes left.
        json!({"batch": 2, "expires": 500_000_000, "max_bytes": 1_000}),
        // The next one is bigger than the whole budget.
        json!({"batch": 2, "expires": 500_000_000, "max_bytes": 50}),
    ] {
        seen.push(pull_all(&nc, "L", body, wait).await.join(" | "));
    }
    seen
}

#[tokio::test]
async fn pull_request_limits_match_nats_server() {
    let seen = on_both("pull request limits", pull_limits_scenario).await;
    assert_eq!(seen[1], "409 Exceeded MaxRequestExpires of 1s msgs= bytes=");
}

async fn missing_targets_scenario(addr: SocketAddr) -> Vec<String> {
    let (nc, js) = context(addr).await;
    stream_q(&js, 2).await;
    create_raw(&nc, "N", json!({"durable_name": "N", "ack_policy": "none"})).await;
    let mut seen = Vec::new();
    let pull = json!({"batch": 1, "expires": 300_000_000}).to_string();
    for (subject, body) in [
        ("$JS.API.CONSUMER.MSG.NEXT.Q.nope", pull.as_str()),
        ("$JS.API.CONSUMER.MSG.NEXT.nope.C", pull.as_str()),
        ("$JS.API.CONSUMER.MSG.NEXT.Q.nope", ""),
        // Acks sent as requests: to a consumer that does not exist, and to one without acks.
        ("$JS.ACK.Q.nope.1.1.1.1.0", "+ACK"),
        ("$JS.ACK.Q.N.1.1.1.1.0", "+ACK"),
    ] {
        let got = nc
            .request(subject.to_string(), body.to_string().into())
            .await;
        seen.push(match got {
            Ok(m) => format!("{subject}: {:?} {:?}", m.status, m.payload),
            Err(e) => format!("{subject}: {:?}", e.kind()),
        });
    }
    // async-nats' own calls end instead of hanging.
    let stream = js.get_stream("Q").await.expect("stream");
    let gone = stream
        .get_consumer::<pull::Config>("N")
        .await
        .expect("consumer");
    stream.delete_consumer("N").await.expect("delete");
    let fetched = gone.fetch().max_messages(1).messages().await;
    let outcome = match fetched {
        Ok(mut msgs) => match tokio::time::timeout(Duration::from_secs(3), msgs.next()).await {
            Ok(Some(Err(e))) => format!("error {e}"),
            Ok(Some(Ok(m))) => format!("message {}", m.subject),
            Ok(None) => "end".into(),
            Err(_) => "hangs".into(),
        },
        Err(e) => format!("error {e}"),
    };
    seen.push(outcome);
    seen
}

#[tokio::test]
async fn missing_consumers_answer_like_nats_server() {
    let seen = on_both("missing consumers", missing_targets_scenario).await;
    assert!(seen[0].ends_with("NoResponders"), "{seen:?}");
    assert!(seen[4].ends_with("NoResponders"), "{seen:?}");
}

/// The answer to a consumer create on `Q`: the error, or the configuration the server keeps.
async fn create_answer(nc: &async_nats::Client, name: &str, cfg: Value) -> String {
    create_answer_on(nc, "Q", name, cfg, "").await
}

/// [`create_answer`] on `stream`, with an `action` ("create", "update" or none).
async fn create_answer_on(
    nc: &async_nats::Client,
    stream: &str,
    name: &str,
    cfg: Value,
    action: &str,
) -> String {
    let mut req = json!({"stream_name": stream, "config": cfg});
    if !action.is_empty() {
        req["action"] = json!(action);
    }
    let body = req.to_string();
    let m = nc
        .request(
            format!("$JS.API.CONSUMER.CREATE.{stream}.{name}"),
            body.into(),
        )
        .await
        .expect("create");
    let v: Value = serde_json::from_slice(&m.payload).unwrap_or(Value::Null);
    if v["error"]["err_code"] == 10025 {
        // Go's decoder words type errors its own way: only the code is compared.
        return "error 10025".into();
    }
    if !v["error"].is_null() {
        return format!("error {}", v["error"]);
    }
    // This server's version and level are its own; the keys must be there.
    let mut config = v["config"].clone();
    for key in ["_nats.ver", "_nats.level"] {
        if config["metadata"].get(key).is_some() {
            config["metadata"][key] = json!("*");
        }
    }
    format!("config {config}")
}

async fn consumer_validation_scenario(addr: SocketAddr) -> Vec<String> {
    let (nc, js) = context(addr).await;
    stream_q(&js, 0).await;
    let long = "x".repeat(4097);
    let cases = [
        json!({"filter_subject": "q.a", "filter_subjects": ["q.b"]}),
        json!({"filter_subjects": [""]}),
        json!({"filter_subjects": ["q.a", "q.*"]}),
        json!({"filter_subjects": ["q.a", "q.a"]}),
        json!({"filter_subject": "q..x"}),
        json!({"filter_subjects": ["other.x"]}),
        json!({"deliver_policy": "all", "opt_start_seq": 5}),
        json!({"deliver_policy": "last", "opt_start_time": "2024-01-01T00:00:00Z"}),
        json!({"deliver_policy": "last_per_subject"}),
        json!({"deliver_policy": "new", "opt_start_seq": 1}),
        json!({"deliver_policy": "by_start_sequence", "opt_start_seq": 1,
            "opt_start_time": "2024-01-01T00:00:00Z"}),
        json!({"deliver_policy": "by_start_time", "opt_start_time": "2024-01-01T00:00:00Z",
            "opt_start_seq": 2}),
        json!({"num_replicas": 3}),
        json!({"num_replicas": -1}),
        json!({"backoff": [-1], "max_deliver": 5}),
        json!({"sample_freq": "abc"}),
        json!({"max_waiting": -5}),
        json!({"max_expires": 100}),
        json!({"rate_limit_bps": 100}),
        json!({"deliver_subject": "d", "max_ack_pending": 5, "ack_policy": "none"}),
        json!({"deliver_subject": "d", "idle_heartbeat": 50_000_000}),
        json!({"deliver_subject": "d.*"}),
        json!({"description": long}),
        json!({"ack_policy": "explicit", "filter_subjects": ["q.a", "q.b"]}),
        json!({"deliver_subject": "d2", "ack_policy": "explicit"}),
        json!({"max_deliver": -5, "max_ack_pending": -7, "max_batch": -1}),
        json!({"ack_policy": "none", "max_ack_pending": 10}),
        json!({"ack_policy": "all", "backoff": [1_000_000_000, 2_000_000_000], "max_deliver": 3}),
        json!({"ack_policy": "explicit", "deliver_policy": "by_start_time",
            "opt_start_time": "2024-01-01T00:00:00Z"}),
        json!({"deliver_subject": "d3", "flow_control": true}),
        json!({"deliver_subject": "d4", "flow_control": true, "idle_heartbeat": 1_000_000_000,
            "headers_only": true, "ack_policy": "none"}),
    ];
    let mut seen = Vec::new();
    for (i, extra) in cases.iter().enumerate() {
        let name = format!("V{i}");
        let mut cfg = json!({"durable_name": name});
        for (k, v) in extra.as_object().unwrap() {
            cfg[k] = v.clone();
        }
        seen.push(format!("{i}: {}", create_answer(&nc, &name, cfg).await));
    }
    seen
}

#[tokio::test]
async fn consumer_config_validation_matches_nats_server() {
    on_both("consumer config validation", consumer_validation_scenario).await;
}

/// Which activity fields a consumer's info shows (their values are times).
async fn activity(nc: &async_nats::Client, c: &str) -> String {
    let m = nc
        .request(format!("$JS.API.CONSUMER.INFO.Q.{c}"), "".into())
        .await
        .expect("info");
    let v: Value = serde_json::from_slice(&m.payload).unwrap_or(Value::Null);
    format!(
        "push_bound={} delivered.last_active={} ack_floor.last_active={}",
        v["push_bound"],
        v["delivered"]["last_active"].is_string(),
        v["ack_floor"]["last_active"].is_string()
    )
}

async fn activity_scenario(addr: SocketAddr) -> Vec<String> {
    let (nc, js) = context(addr).await;
    stream_q(&js, 3).await;
    let mut seen = Vec::new();
    let push = json!({"durable_name": "D", "deliver_subject": "dlv", "ack_policy": "explicit"});
    create_raw(&nc, "D", push).await;
    seen.push(activity(&nc, "D").await);
    let mut sub = nc.subscribe("dlv").await.expect("subscribe");
    nc.flush().await.expect("flush");
    let first = tokio::time::timeout(Duration::from_secs(2), sub.next()).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    seen.push(activity(&nc, "D").await);
    if let Ok(Some(m)) = first {
        let reply = m.reply.clone().expect("ack subject");
        nc.request(reply, "+ACK".into()).await.expect("ack");
    }
    seen.push(activity(&nc, "D").await);
    drop(sub);
    nc.flush().await.expect("flush");
    tokio::time::sleep(Duration::from_millis(200)).await;
    seen.push(activity(&nc, "D").await);
    seen
}

#[tokio::test]
async fn consumer_activity_in_info_matches_nats_server() {
    let seen = on_both("consumer activity", activity_scenario).await;
    assert_eq!(
        seen[2],
        "push_bound=true delivered.last_active=true ack_floor.last_active=true"
    );
}

async fn updates_and_limits_scenario(addr: SocketAddr) -> Vec<String> {
    let (nc, js) = context(addr).await;
    stream_q(&js, 0).await;
    let mut seen = Vec::new();
    let limits = json!({"name": "QL", "subjects": ["ql.>"],
        "consumer_limits": {"max_ack_pending": 100, "inactive_threshold": 10_000_000_000u64}});
    let m = nc
        .request("$JS.API.STREAM.CREATE.QL", limits.to_string().into())
        .await
        .expect("stream");
    let v: Value = serde_json::from_slice(&m.payload).unwrap_or(Value::Null);
    seen.push(format!(
        "limits {} {}",
        v["config"]["consumer_limits"], v["error"]
    ));
    let on_ql = |name: &'static str, cfg: Value| {
        let nc = nc.clone();
        async move { create_answer_on(&nc, "QL", name, cfg, "").await }
    };
    seen.push(
        on_ql(
            "L1",
            json!({"durable_name": "L1", "ack_policy": "explicit"}),
        )
        .await,
    );
    seen.push(
        on_ql(
            "L2",
            json!({"durable_name": "L2", "ack_policy": "explicit", "max_ack_pending": 500}),
        )
        .await,
    );
    seen.push(on_ql("L3", json!({"durable_name": "L3", "ack_policy": "explicit", "inactive_threshold": 20_000_000_000u64})).await);
    seen.push(
        on_ql(
            "L4",
            json!({"durable_name": "L4", "ack_policy": "explicit", "max_ack_pending": 80}),
        )
        .await,
    );
    let lower = json!({"name": "QL", "subjects": ["ql.>"],
        "consumer_limits": {"max_ack_pending": 90, "inactive_threshold": 10_000_000_000u64}});
    let m = nc
        .request("$JS.API.STREAM.UPDATE.QL", lower.to_string().into())
        .await
        .expect("update");
    let v: Value = serde_json::from_slice(&m.payload).unwrap_or(Value::Null);
    seen.push(format!("lowered {}", v["error"]));
    // Updates of an existing consumer: what may change and what may not.
    let base = json!({"durable_name": "U", "ack_policy": "explicit", "max_deliver": 5});
    seen.push(create_answer(&nc, "U", base.clone()).await);
    let changes = [
        json!({"description": "now described"}),
        json!({"max_deliver": 9}),
        json!({"deliver_policy": "new"}),
        json!({"ack_policy": "all"}),
        json!({"replay_policy": "original"}),
        json!({"max_waiting": 10}),
        json!({"deliver_subject": "push.here"}),
        json!({"mem_storage": true}),
        json!({"filter_subject": "q.x"}),
        json!({"deliver_policy": "by_start_sequence", "opt_start_seq": 3}),
    ];
    for change in changes {
        let mut cfg = base.clone();
        for (k, v) in change.as_object().unwrap() {
            cfg[k] = v.clone();
        }
        seen.push(format!(
            "{change}: {}",
            create_answer_on(&nc, "Q", "U", cfg.clone(), "update").await
        ));
        seen.push(format!(
            "{change} as create: {}",
            create_answer_on(&nc, "Q", "U", cfg, "create").await
        ));
    }
    seen
}

#[tokio::test]
async fn consumer_updates_and_limits_match_nats_server() {
    let seen = on_both("consumer updates and limits", updates_and_limits_scenario).await;
    assert!(seen[2].contains("10121"), "{}", seen[2]);
    assert!(seen[3].contains("10153"), "{}", seen[3]);
}

async fn heartbeat_scenario(addr: SocketAddr) -> Vec<String> {
    let (nc, js) = context(addr).await;
    stream_q(&js, 2).await;
    create_raw(&nc, "H", json!({"durable_name": "H", "ack_policy": "none"})).await;
    let wait = Duration::from_millis(600);
    let mut seen = vec![
        pull_all(&nc, "H", json!({"batch": 2, "expires": 300_000_000}), wait)
            .await
            .join(" | "),
    ];
    // An idle request: its heartbeats say where the consumer is.
    let inbox = nc.new_inbox();
    let mut sub = nc.subscribe(inbox.clone()).await.expect("subscribe");
    let body = json!({"batch": 1, "expires": 1_000_000_000, "idle_heartbeat": 200_000_000});
    nc.publish_with_reply(
        "$JS.API.CONSUMER.MSG.NEXT.Q.H",
        inbox,
        body.to_string().into(),
    )
    .await
    .expect("pull");
    if let Ok(Some(m)) = tokio::time::timeout(Duration::from_secs(2), sub.next()).await {
        let h = |k: &str| {
            m.headers
                .as_ref()
                .and_then(|h| h.get(k))
                .map_or(String::new(), |v| v.to_string())
        };
        seen.push(format!(
            "{:?} {:?} last consumer {} last stream {}",
            m.status.map(|s| s.as_u16()),
            m.description,
            h("Nats-Last-Consumer"),
            h("Nats-Last-Stream")
        ));
    }
    seen
}

#[tokio::test]
async fn pull_heartbeats_match_nats_server() {
    let seen = on_both("pull heartbeats", heartbeat_scenario).await;
    assert_eq!(
        seen[1],
        r#"Some(100) Some("Idle Heartbeat") last consumer 2 last stream 2"#
    );
}
