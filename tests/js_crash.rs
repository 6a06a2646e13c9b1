//! Crash safety of the `causeway` binary under `kill -9`.
//!
//! Several cycles, one server process each, on the same store directory and port. In every
//! cycle a publisher sends uniquely numbered messages (payload = `Nats-Msg-Id`) with many acks
//! in flight and a reader pulls from a durable consumer and confirms each ack with AckSync;
//! after a random 100–800 ms the server is SIGKILLed. After each restart:
//! - every message whose pub ack was received is in the stream, under the acked sequence, and
//!   no payload is stored twice;
//! - republishing the unacknowledged messages with their `Nats-Msg-Id` is de-duplicated
//!   against what did get stored;
//! - the durable consumer never delivers a message again whose AckSync was confirmed.
//!
//! At the end the consumer is drained: together with the confirmed acks it has seen every
//! stored message.

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::jetstream::consumer::{pull, PullConsumer};
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::{self, Context};
use common::child::ChildServer;
use common::js::{connect, stream_seq};
use common::within;
use futures::StreamExt;
use rand::Rng;

const BIN: &str = env!("CARGO_BIN_EXE_causeway");
const CYCLES: usize = 5;

/// What the test knows for sure, across cycles.
#[derive(Default)]
struct Truth {
    /// Message id -> sequence, for every publish the server acknowledged.
    acked: BTreeMap<String, u64>,
    /// Message ids sent but never acknowledged (maybe stored, maybe not).
    unacked: BTreeSet<String>,
    /// Stream sequences whose consumer ack was confirmed (AckSync).
    consumer_done: BTreeSet<u64>,
    /// Stream sequences acked without a confirmation (the server died first): the ack may or
    /// may not have been applied.
    consumer_unsure: BTreeSet<u64>,
    /// Deliveries of an already confirmed sequence (must stay empty).
    violations: Vec<String>,
}

fn context(nc: async_nats::Client) -> Context {
    jetstream::ContextBuilder::new()
        .timeout(Duration::from_secs(2))
        .max_ack_inflight(2048)
        .backpressure_on_inflight(true)
        .build(nc)
}

/// Publishes as fast as acks allow until stopped; records acked and unacked ids.
async fn publisher(js: Context, cycle: usize, truth: Arc<Mutex<Truth>>) {
    let mut acks = futures::stream::FuturesUnordered::new();
    let mut i = 0u64;
    loop {
        let id = format!("c{cycle}-{i}");
        i += 1;
        truth.lock().unwrap().unacked.insert(id.clone());
        let publish = PublishMessage::build()
            .message_id(&id)
            .payload(id.clone().into());
        let fut = match js.send_publish("crash.data", publish).await {
            Ok(f) => f,
            Err(_) => break,
        };
        acks.push(async move { (id, fut.await) });
        // Collect whatever acks are already in.
        while let Some(Some((id, r))) = futures::FutureExt::now_or_never(acks.next()) {
            record(&truth, id, r);
        }
    }
    while let Some((id, r)) = acks.next().await {
        record(&truth, id, r);
    }
}

fn record(
    truth: &Mutex<Truth>,
    id: String,
    r: Result<jetstream::publish::PublishAck, jetstream::context::PublishError>,
) {
    if let Ok(ack) = r {
        let mut t = truth.lock().unwrap();
        assert!(!ack.duplicate, "fresh id {id} acked as duplicate");
        t.unacked.remove(&id);
        if let Some(prev) = t.acked.insert(id.clone(), ack.sequence) {
            panic!("{id} acked twice ({prev}, {})", ack.sequence);
        }
    }
}

/// One pull of up to 200 messages waiting up to `expires`; `None` once the connection is gone.
async fn pull_some(consumer: &PullConsumer, expires: Duration) -> Option<Vec<jetstream::Message>> {
    let req = consumer
        .batch()
        .max_messages(200)
        .expires(expires)
        .messages();
    let mut b = tokio::time::timeout(Duration::from_secs(3), req)
        .await
        .ok()?
        .ok()?;
    let mut out = Vec::new();
    loop {
        match tokio::time::timeout(expires + Duration::from_secs(2), b.next()).await {
            Ok(Some(Ok(m))) => out.push(m),
            Ok(None) => return Some(out),
            Ok(Some(Err(_))) | Err(_) => return (!out.is_empty()).then_some(out),
        }
    }
}

/// Checks a delivery against the confirmed acks, then AckSyncs it; false if that failed.
async fn take(m: jetstream::Message, truth: &Mutex<Truth>) -> bool {
    let seq = stream_seq(&m);
    if truth.lock().unwrap().consumer_done.contains(&seq) {
        let v = format!("seq {seq} delivered again after a confirmed ack");
        truth.lock().unwrap().violations.push(v);
    }
    let confirmed = tokio::time::timeout(Duration::from_secs(4), m.double_ack()).await;
    let mut t = truth.lock().unwrap();
    if !matches!(confirmed, Ok(Ok(()))) {
        t.consumer_unsure.insert(seq);
        return false;
    }
    t.consumer_unsure.remove(&seq);
    t.consumer_done.insert(seq);
    true
}

/// Pulls and AckSyncs until the connection dies.
async fn reader(consumer: PullConsumer, truth: Arc<Mutex<Truth>>) {
    while let Some(msgs) = pull_some(&consumer, Duration::from_millis(800)).await {
        // AckSync each delivery, concurrently (the server commits acks in groups).
        let done = futures::future::join_all(msgs.into_iter().map(|m| take(m, &truth))).await;
        if done.contains(&false) {
            return;
        }
    }
}

/// Reads the consumer until nothing is pending or awaiting an ack.
async fn drain(consumer: &mut PullConsumer, truth: &Mutex<Truth>) {
    within(Duration::from_secs(30), "draining the consumer", async {
        loop {
            let info = consumer.info().await.expect("consumer info");
            if info.num_pending == 0 && info.num_ack_pending == 0 {
                return;
            }
            let msgs = pull_some(consumer, Duration::from_millis(1500))
                .await
                .expect("pull while draining");
            let done = futures::future::join_all(msgs.into_iter().map(|m| take(m, truth))).await;
            assert!(!done.contains(&false), "AckSync failed while draining");
        }
    })
    .await;
}

/// Reads the whole stream: sequence -> payload.
async fn scan(js: &Context) -> BTreeMap<u64, String> {
    let mut s = js.get_stream("CRASH").await.expect("stream after restart");
    let state = s.info().await.expect("stream info").state.clone();
    if state.messages == 0 {
        return BTreeMap::new();
    }
    let last = state.last_sequence;
    let c = s
        .create_consumer(pull::OrderedConfig::default())
        .await
        .expect("ordered consumer");
    let mut msgs = c.messages().await.expect("ordered messages");
    let mut out = BTreeMap::new();
    let mut seen_last = 0;
    within(Duration::from_secs(30), "scanning the stream", async {
        while seen_last < last {
            let m = msgs.next().await.expect("ordered ended").expect("scan");
            let info = m.info().expect("info");
            seen_last = info.stream_sequence;
            let payload = String::from_utf8(m.payload.to_vec()).expect("utf-8 payload");
            out.insert(info.stream_sequence, payload);
            if info.pending == 0 {
                break;
            }
        }
    })
    .await;
    out
}

/// Checks the stream against what was acknowledged, then republishes the unacked ids.
async fn verify_and_republish(js: &Context, truth: &Mutex<Truth>) {
    let stored = scan(js).await;
    let mut by_id: HashMap<&str, u64> = HashMap::new();
    for (seq, id) in &stored {
        if let Some(other) = by_id.insert(id.as_str(), *seq) {
            panic!("payload {id} stored twice: seq {other} and {seq}");
        }
    }
    let unacked: Vec<String> = {
        let mut t = truth.lock().unwrap();
        for (id, seq) in &t.acked {
            match stored.get(seq) {
                Some(p) if p == id => {}
                other => panic!("acked {id} at seq {seq} lost: stream has {other:?}"),
            }
        }
        std::mem::take(&mut t.unacked).into_iter().collect()
    };
    for id in unacked {
        let ack = js
            .send_publish(
                "crash.data",
                PublishMessage::build()
                    .message_id(&id)
                    .payload(id.clone().into()),
            )
            .await
            .expect("republish")
            .await
            .expect("republish ack");
        match by_id.get(id.as_str()) {
            Some(&seq) => {
                assert!(ack.duplicate, "{id} was stored at {seq} but stored again");
                assert_eq!(ack.sequence, seq, "{id} dedup points elsewhere");
            }
            None => assert!(!ack.duplicate, "{id} reported duplicate but not stored"),
        }
        truth.lock().unwrap().acked.insert(id, ack.sequence);
    }
}

async fn start(dir: &std::path::Path, port: i32) -> (ChildServer, u16, Context) {
    let mut child = ChildServer::spawn(BIN, dir, port);
    let addr = child.wait_ready().await;
    let nc = connect(&format!("nats://{addr}")).await;
    (child, addr.port(), context(nc))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_data_survives_kill_9() {
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let truth = Arc::new(Mutex::new(Truth::default()));
    within(Duration::from_secs(90), "the crash cycles", async {
        let (mut child, port, js) = start(dir.path(), -1).await;
        js.create_stream(jetstream::stream::Config {
            name: "CRASH".into(),
            subjects: vec!["crash.>".into()],
            ..Default::default()
        })
        .await
        .expect("create stream");
        let mut js = js;
        for cycle in 0..CYCLES {
            let consumer = js
                .get_stream("CRASH")
                .await
                .unwrap()
                .get_or_create_consumer(
                    "READER",
                    pull::Config {
                        durable_name: Some("READER".into()),
                        ack_wait: Duration::from_secs(1),
                        ..Default::default()
                    },
                )
                .await
                .expect("durable consumer");
            let publishing = tokio::spawn(publisher(js.clone(), cycle, truth.clone()));
            let reading = tokio::spawn(reader(consumer, truth.clone()));
            let delay = rand::rng().random_range(100..=800);
            tokio::time::sleep(Duration::from_millis(delay)).await;
            child.kill9();
            // Let in-flight acks fail (bounded by the context timeout), then stop.
            let _ = tokio::time::timeout(Duration::from_secs(6), publishing).await;
            let _ = tokio::time::timeout(Duration::from_secs(6), reading).await;
            drop(js);

            let (c, _, new_js) = start(dir.path(), i32::from(port)).await;
            child = c;
            js = new_js;
            verify_and_republish(&js, &truth).await;
            let t = truth.lock().unwrap();
            assert!(t.violations.is_empty(), "{:?}", t.violations);
            eprintln!(
                "cycle {cycle}: killed after {delay} ms; {} acked messages, {} confirmed consumer acks",
                t.acked.len(),
                t.consumer_done.len()
            );
        }
        // Drain the consumer: what is left is delivered (again, for acks that were never
        // confirmed), never a message whose ack was confirmed.
        let mut consumer: PullConsumer = js
            .get_stream("CRASH")
            .await
            .unwrap()
            .get_consumer("READER")
            .await
            .unwrap();
        drain(&mut consumer, &truth).await;
        let stored = scan(&js).await;
        check_final(&stored, &truth.lock().unwrap());
        child.terminate().await;
    })
    .await;
    eprintln!("crash test took {:?}", started.elapsed());
}

/// After the drain: no violations, and every stored message went through the consumer.
fn check_final(stored: &BTreeMap<u64, String>, t: &Truth) {
    assert!(t.violations.is_empty(), "{:?}", t.violations);
    let skipped: Vec<u64> = stored
        .keys()
        .filter(|s| !t.consumer_done.contains(s) && !t.consumer_unsure.contains(s))
        .copied()
        .collect();
    assert!(
        skipped.is_empty(),
        "the consumer never delivered {} stored messages: {:?}",
        skipped.len(),
        &skipped[..skipped.len().min(20)]
    );
    assert!(
        t.acked.len() > 100,
        "too little was published to mean anything"
    );
}
