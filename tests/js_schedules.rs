//! Message schedules (`allow_msg_schedules`, nats-server 2.12): the configuration rules, every
//! refusal of a schedule publish, and what fires (one-off `@at`, repeating `@every`, a source
//! subject, a TTL, a cancelled and a replaced schedule), run against causeway and nats-server
//! 2.15.1 side by side with async-nats; and a schedule that outlives a restart.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use async_nats::{Client, HeaderMap};
use base64::Engine;
use serde_json::{json, Value};

use common::js::{wait_until, JsEnv};

async fn api(nc: &Client, subject: &str, body: Value) -> Value {
    common::js::api(nc, subject, body.to_string()).await
}

/// A publish with headers, answered by its pub ack (parsed, so key order is not compared).
async fn publish(nc: &Client, subject: &str, pairs: &[(&str, &str)], body: &str) -> String {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.insert(*k, *v);
    }
    let m = nc
        .request_with_headers(subject.to_string(), h, body.to_string().into())
        .await
        .expect("publish");
    serde_json::from_slice::<Value>(&m.payload)
        .map_or_else(|_| "not JSON".into(), |v| v.to_string())
}

/// RFC 3339 for `secs` seconds from now.
fn from_now(secs: i64) -> String {
    let t = time::OffsetDateTime::now_utc() + time::Duration::seconds(secs);
    let t = t.replace_nanosecond(0).expect("whole second");
    t.format(&time::format_description::well_known::Rfc3339)
        .expect("format")
}

fn decode(v: &Value) -> String {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(v.as_str().unwrap_or_default())
        .unwrap_or_default();
    String::from_utf8_lossy(&bytes).to_string()
}

/// The last message on `subject`: its headers (sorted; times replaced by `<time>`) and
/// payload, or the error.
async fn last_on(nc: &Client, stream: &str, subject: &str) -> String {
    let v = api(
        nc,
        &format!("STREAM.MSG.GET.{stream}"),
        json!({ "last_by_subj": subject }),
    )
    .await;
    if !v["error"].is_null() {
        return format!("{subject}: error {}", v["error"]["err_code"]);
    }
    let m = &v["message"];
    let hdrs = decode(&m["hdrs"]);
    let mut lines: Vec<String> = hdrs
        .split("\r\n")
        .skip(1)
        .filter(|l| !l.is_empty())
        .map(|l| match l.split_once(": ") {
            Some((k, v)) if v.len() > 18 && v.as_bytes()[4] == b'-' => format!("{k}: <time>"),
            Some((k, v)) if v.starts_with("@at ") => format!("{k}: @at <time>"),
            _ => l.to_string(),
        })
        .collect();
    lines.sort();
    format!("{subject}: {lines:?} {:?}", decode(&m["data"]))
}

/// The stream's subjects and their counts, leaving out `skip`.
async fn subjects(nc: &Client, stream: &str, skip: &str) -> String {
    let v = api(
        nc,
        &format!("STREAM.INFO.{stream}"),
        json!({ "subjects_filter": ">" }),
    )
    .await;
    let mut list: Vec<String> = v["state"]["subjects"]
        .as_object()
        .map(|m| {
            m.iter()
                .filter(|(s, _)| s.as_str() != skip)
                .map(|(s, n)| format!("{s}={n}"))
                .collect()
        })
        .unwrap_or_default();
    list.sort();
    list.join(" ")
}

async fn rules(addr: SocketAddr) -> Vec<String> {
    let nc = async_nats::connect(addr.to_string())
        .await
        .expect("connect");
    let mut seen = Vec::new();
    let base = json!({"name": "S", "subjects": ["s.>"], "allow_msg_schedules": true});
    for (name, extra) in [
        ("X1", json!({"discard": "new"})),
        ("X2", json!({"allow_msg_counter": true})),
        ("X3", json!({"pedantic": true})),
        ("S", json!({"deny_purge": true})),
    ] {
        let mut cfg = base.clone();
        cfg["name"] = json!(name);
        for (k, v) in extra.as_object().expect("object") {
            cfg[k] = v.clone();
        }
        let v = api(&nc, &format!("STREAM.CREATE.{name}"), cfg).await;
        let c = &v["config"];
        seen.push(match v["error"].is_null() {
            true => format!(
                "{name}: schedules={} rollup={} deny_purge={} level={}",
                c["allow_msg_schedules"],
                c["allow_rollup_hdrs"],
                c["deny_purge"],
                c["metadata"]["_nats.req.level"]
            ),
            false => format!("{name}: error {}", v["error"]),
        });
    }
    let off = json!({"name": "S", "subjects": ["s.>"]});
    seen.push(format!(
        "{}",
        api(&nc, "STREAM.UPDATE.S", off).await["error"]
    ));
    api(
        &nc,
        "STREAM.CREATE.P",
        json!({"name": "P", "subjects": ["p.>"]}),
    )
    .await;

    let at = format!("@at {}", from_now(3600));
    let at = at.as_str();
    let target = ("Nats-Schedule-Target", "s.t");
    for (subject, pairs) in [
        (
            "p.a",
            vec![("Nats-Schedule", at), ("Nats-Schedule-Target", "p.t")],
        ),
        ("p.a", vec![("Nats-Schedule", "bogus")]),
        (
            "p.a",
            vec![("Nats-Scheduler", "p.b"), ("Nats-Schedule-Next", "purge")],
        ),
        ("s.a", vec![("Nats-Schedule", "bogus"), target]),
        ("s.a", vec![("Nats-Schedule", "@every 100ms"), target]),
        ("s.a", vec![("Nats-Schedule", "* * * * *"), target]),
        ("s.a", vec![("Nats-Schedule", "0 0 0 L * *"), target]),
        ("s.a", vec![("Nats-Schedule", "0 0 0 * * 7"), target]),
        ("s.a", vec![("Nats-Schedule", at)]),
        (
            "s.a",
            vec![("Nats-Schedule", at), ("Nats-Schedule-Target", "s.a")],
        ),
        (
            "s.a",
            vec![("Nats-Schedule", at), ("Nats-Schedule-Target", "x.t")],
        ),
        (
            "s.a",
            vec![("Nats-Schedule", at), ("Nats-Schedule-Target", "s.*")],
        ),
        (
            "s.a",
            vec![("Nats-Schedule", at), target, ("Nats-Schedule-TTL", "soon")],
        ),
        (
            "s.a",
            vec![("Nats-Schedule", at), target, ("Nats-Schedule-TTL", "5s")],
        ),
        (
            "s.a",
            vec![
                ("Nats-Schedule", at),
                target,
                ("Nats-Schedule-Rollup", "all"),
            ],
        ),
        (
            "s.a",
            vec![("Nats-Schedule", at), target, ("Nats-Rollup", "all")],
        ),
        (
            "s.a",
            vec![
                ("Nats-Schedule", at),
                target,
                ("Nats-Schedule-Source", "s.t"),
            ],
        ),
        (
            "s.a",
            vec![
                ("Nats-Schedule", at),
                target,
                ("Nats-Schedule-Source", "x.y"),
            ],
        ),
        (
            "s.a",
            vec![
                ("Nats-Schedule", at),
                target,
                ("Nats-Schedule-Time-Zone", "UTC"),
            ],
        ),
        (
            "s.a",
            vec![
                ("Nats-Schedule", "@daily"),
                target,
                ("Nats-Schedule-Time-Zone", "Mars/Base"),
            ],
        ),
        (
            "s.a",
            vec![
                ("Nats-Schedule", "@daily"),
                target,
                ("Nats-Schedule-Time-Zone", ""),
            ],
        ),
        (
            "s.a",
            vec![
                ("Nats-Schedule", "@daily"),
                target,
                ("Nats-Schedule-Time-Zone", "Europe/Amsterdam"),
            ],
        ),
        ("s.a", vec![("Nats-Schedule", "0 30 9 * * mon-fri"), target]),
        ("s.a", vec![("Nats-Schedule", at), target]),
        ("s.b", vec![("Nats-Scheduler", "s.a")]),
        (
            "s.b",
            vec![("Nats-Schedule-Next", "soon"), ("Nats-Scheduler", "s.a")],
        ),
        ("s.b", vec![("Nats-Schedule-Next", "purge")]),
        (
            "s.b",
            vec![("Nats-Schedule-Next", "purge"), ("Nats-Scheduler", "s.b")],
        ),
        (
            "s.b",
            vec![("Nats-Schedule-Next", "purge"), ("Nats-Scheduler", "s.t")],
        ),
    ] {
        let what = format!("{subject} {pairs:?}").replace(at, "@at <time>");
        seen.push(format!(
            "{what}: {}",
            publish(&nc, subject, &pairs, "x").await
        ));
    }
    // The schedule message carries the roll-up it got; a plain message on s.t is no schedule.
    publish(&nc, "s.t", &[], "plain").await;
    seen.push(last_on(&nc, "S", "s.a").await);
    seen.push(format!(
        "cancel a plain subject: {}",
        publish(
            &nc,
            "s.b",
            &[("Nats-Schedule-Next", "purge"), ("Nats-Scheduler", "s.t")],
            ""
        )
        .await
    ));
    seen.push(format!(
        "cancel s.a: {}",
        publish(
            &nc,
            "s.c",
            &[("Nats-Schedule-Next", "purge"), ("Nats-Scheduler", "s.a")],
            ""
        )
        .await
    ));
    seen.push(subjects(&nc, "S", "").await);
    seen
}

#[tokio::test]
async fn schedule_rules_match_nats_server() {
    let ours = common::js::same_observations("schedule rules", rules).await;
    assert!(
        ours[3].starts_with("S: schedules=true rollup=true deny_purge=false level=\"2\""),
        "{}",
        ours[3]
    );
    // A schedule stored with the roll-up it got, and cancelled with a purge message.
    assert!(
        ours.iter().any(|o| o.contains("\"Nats-Rollup: sub\"")),
        "{ours:?}"
    );
    assert!(!ours.last().expect("subjects").contains("s.a="), "{ours:?}");
}

async fn firing(addr: SocketAddr) -> Vec<String> {
    let nc = async_nats::connect(addr.to_string())
        .await
        .expect("connect");
    let mut seen = Vec::new();
    let cfg = json!({"name": "F", "subjects": ["f.>"], "allow_msg_schedules": true, "allow_msg_ttl": true});
    seen.push(format!(
        "{}",
        api(&nc, "STREAM.CREATE.F", cfg).await["error"]
    ));
    let soon = format!("@at {}", from_now(1));
    let later = format!("@at {}", from_now(3600));
    type Publish<'a> = (&'a str, Vec<(&'a str, &'a str)>, &'a str);
    let publishes: Vec<Publish> = vec![
        ("f.src", vec![("X-Src", "1")], "from source"),
        (
            "f.sched.a",
            vec![
                ("Nats-Schedule", &soon),
                ("Nats-Schedule-Target", "f.target.a"),
                ("X-App", "1"),
                ("Nats-Msg-Id", "id-a"),
                ("Nats-Expected-Last-Subject-Sequence", "0"),
            ],
            "hello",
        ),
        (
            "f.sched.b",
            vec![
                ("Nats-Schedule", "@every 1s"),
                ("Nats-Schedule-Target", "f.target.b"),
                ("Nats-Schedule-TTL", "5s"),
            ],
            "tick",
        ),
        (
            "f.sched.c",
            vec![
                ("Nats-Schedule", &soon),
                ("Nats-Schedule-Target", "f.target.c"),
                ("Nats-Schedule-Source", "f.src"),
                ("Nats-Schedule-Rollup", "sub"),
            ],
            "own",
        ),
        (
            "f.sched.d",
            vec![
                ("Nats-Schedule", &later),
                ("Nats-Schedule-Target", "f.target.d"),
            ],
            "never",
        ),
        (
            "f.cancel",
            vec![
                ("Nats-Schedule-Next", "purge"),
                ("Nats-Scheduler", "f.sched.d"),
            ],
            "",
        ),
        (
            "f.sched.e",
            vec![
                ("Nats-Schedule", &later),
                ("Nats-Schedule-Target", "f.target.e1"),
            ],
            "replaced",
        ),
        (
            "f.sched.e",
            vec![
                ("Nats-Schedule", &soon),
                ("Nats-Schedule-Target", "f.target.e2"),
            ],
            "replacement",
        ),
    ];
    for (subject, pairs, body) in &publishes {
        seen.push(format!(
            "{subject}: {}",
            publish(&nc, subject, pairs, body).await
        ));
    }
    let fired = ["f.target.a", "f.target.b", "f.target.c", "f.target.e2"];
    wait_until(Duration::from_secs(10), "schedules fire", || {
        let nc = nc.clone();
        async move {
            for s in fired {
                if last_on(&nc, "F", s).await.contains("error") {
                    return false;
                }
            }
            true
        }
    })
    .await;
    for s in fired {
        seen.push(last_on(&nc, "F", s).await);
    }
    // The repeating schedule stays; the one-offs are gone once fired or cancelled.
    seen.push(subjects(&nc, "F", "f.target.b").await);
    seen.push(last_on(&nc, "F", "f.sched.b").await);
    seen
}

#[tokio::test]
async fn schedules_fire_as_on_nats_server() {
    let ours = common::js::same_observations("schedules firing", firing).await;
    let a = ours
        .iter()
        .find(|o| o.starts_with("f.target.a:"))
        .expect("a");
    assert!(
        a.contains("Nats-Schedule-Next: purge") && a.contains("Nats-Scheduler: f.sched.a"),
        "{a}"
    );
    assert!(!a.contains("Nats-Msg-Id"), "{a}");
}

#[tokio::test]
async fn a_schedule_fires_after_a_restart() {
    let env = JsEnv::new().await;
    env.stream(json!({"name": "R", "subjects": ["r.>"], "allow_msg_schedules": true}))
        .await;
    let at = format!("@at {}", from_now(2));
    let pairs = [
        ("Nats-Schedule", at.as_str()),
        ("Nats-Schedule-Target", "r.out"),
    ];
    let ack = env.publish_h("r.sched", &pairs, "later").await;
    assert_eq!(ack["seq"], 1, "{ack}");
    let every = [
        ("Nats-Schedule", "@every 1s"),
        ("Nats-Schedule-Target", "r.tick"),
    ];
    env.publish_h("r.every", &every, "tick").await;
    let env = env.restart().await;
    wait_until(
        Duration::from_secs(10),
        "the schedules fire after the restart",
        || {
            let nc = env.nc.clone();
            async move {
                !last_on(&nc, "R", "r.out").await.contains("error")
                    && !last_on(&nc, "R", "r.tick").await.contains("error")
            }
        },
    )
    .await;
    let out = last_on(&env.nc, "R", "r.out").await;
    assert!(out.ends_with("\"later\""), "{out}");
    // The one-off schedule is gone, the repeating one stays.
    assert!(last_on(&env.nc, "R", "r.sched")
        .await
        .contains("error 10037"));
    assert!(!last_on(&env.nc, "R", "r.every").await.contains("error"));
    env.stop().await;
}
