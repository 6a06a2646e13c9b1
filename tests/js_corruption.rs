//! Damaged stream files. A file stream is filled through the `causeway` binary and shut down;
//! then bytes are flipped inside records of its segment files (`*.log`, record format in
//! src/store/record.rs: magic, kind, flags, length, seq, time, lengths, body, CRC), one record's
//! magic is wiped, and the tail of the newest segment is cut in the middle of a record. After a
//! restart the server must come up, stream info must work, every intact message must be served
//! with its exact bytes, the damaged ones must never be served (msg get answers "no message
//! found"; a consumer skips them), the damage must be in the log, and publishing must go on.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use async_nats::jetstream;
use async_nats::jetstream::consumer::pull;
use common::child::ChildServer;
use common::js::{api, assert_ack, assert_err, connect, msg_data, publish};
use common::within;
use futures::StreamExt;
use serde_json::json;

const BIN: &str = env!("CARGO_BIN_EXE_causeway");
/// Enough 6 KB messages to fill more than one 8 MiB segment.
const N: u64 = 1600;

fn payload(seq: u64) -> Vec<u8> {
    let unit = format!("<{seq:06}>");
    unit.repeat(6000 / unit.len()).into_bytes()
}

/// One record found in a segment file.
#[derive(Debug, Clone, Copy)]
struct Rec {
    offset: usize,
    len: usize,
    seq: u64,
    body: usize,
    payload_len: usize,
}

fn u32_at(b: &[u8], at: usize) -> usize {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap()) as usize
}

/// Walks the records of an undamaged segment file.
fn records(bytes: &[u8]) -> Vec<Rec> {
    const MAGIC: [u8; 4] = [0xC7, 0xA5, 0xE1, 0x0B];
    let mut out = Vec::new();
    let mut at = 0;
    while at + 42 <= bytes.len() {
        assert_eq!(bytes[at..at + 4], MAGIC, "no record at offset {at}");
        let len = u32_at(bytes, at + 8);
        let seq = u64::from_le_bytes(bytes[at + 12..at + 20].try_into().unwrap());
        let subj = u16::from_le_bytes(bytes[at + 28..at + 30].try_into().unwrap()) as usize;
        let hdrs = u32_at(bytes, at + 30);
        if bytes[at + 4] == 1 {
            out.push(Rec {
                offset: at,
                len,
                seq,
                body: at + 38 + subj + hdrs,
                payload_len: u32_at(bytes, at + 34),
            });
        }
        at += len;
    }
    out
}

fn segment_files(store: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut dirs = vec![store.to_path_buf()];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                dirs.push(p);
            } else if p.extension().is_some_and(|x| x == "log") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// Damages the segments; returns the sequences whose records were hit.
fn damage(store: &Path) -> BTreeSet<u64> {
    let files = segment_files(store);
    assert!(!files.is_empty(), "no .log files under {}", store.display());
    let mut hit = BTreeSet::new();
    let flip = |bytes: &mut [u8], r: &Rec| {
        let mid = r.body + r.payload_len / 2;
        for b in &mut bytes[mid..mid + 3] {
            *b ^= 0xFF;
        }
    };
    // A sealed segment (if the stream spans several): a flipped payload in the middle.
    if files.len() > 1 {
        let mut bytes = std::fs::read(&files[0]).unwrap();
        let recs = records(&bytes);
        let r = recs[recs.len() / 2];
        flip(&mut bytes, &r);
        hit.insert(r.seq);
        std::fs::write(&files[0], &bytes).unwrap();
    }
    // The newest segment: a flipped payload, a wiped record start, and a torn tail.
    let last = files.last().unwrap();
    let mut bytes = std::fs::read(last).unwrap();
    let recs = records(&bytes);
    assert!(recs.len() >= 6, "too few records in {}", last.display());
    let r = recs[recs.len() / 3];
    flip(&mut bytes, &r);
    hit.insert(r.seq);
    let r = recs[2 * recs.len() / 3];
    bytes[r.offset..r.offset + 4].copy_from_slice(&[0, 0, 0, 0]);
    hit.insert(r.seq);
    let r = *recs.last().unwrap();
    bytes.truncate(r.offset + r.len / 2);
    hit.insert(r.seq);
    std::fs::write(last, &bytes).unwrap();
    hit
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_records_are_never_served() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = ChildServer::spawn(BIN, dir.path(), -1);
    let addr = child.wait_ready().await;
    let nc = connect(&format!("nats://{addr}")).await;
    let v = api(
        &nc,
        "STREAM.CREATE.DMG",
        json!({"name": "DMG", "subjects": ["dmg.>"]}).to_string(),
    )
    .await;
    assert!(v.get("error").is_none(), "{v}");
    let js = jetstream::new(nc.clone());
    within(Duration::from_secs(60), "filling the stream", async {
        let mut acks = Vec::new();
        for seq in 1..=N {
            acks.push(js.publish("dmg.x", payload(seq).into()).await.unwrap());
            if acks.len() >= 256 || seq == N {
                for a in acks.drain(..) {
                    a.await.expect("pub ack");
                }
            }
        }
    })
    .await;
    drop(js);
    drop(nc);
    child.terminate().await;

    let store = dir.path().join("jetstream/streams/DMG/store");
    let hit = damage(&store);
    eprintln!("damaged sequences: {hit:?}");

    let mut child = ChildServer::spawn(BIN, dir.path(), -1);
    let addr = child.wait_ready().await;
    let nc = connect(&format!("nats://{addr}")).await;
    let info = api(&nc, "STREAM.INFO.DMG", "").await;
    assert!(
        info.get("error").is_none(),
        "stream info after damage: {info}"
    );
    assert_eq!(info["state"]["last_seq"], N, "{info}");

    for seq in 1..=N {
        let v = api(&nc, "STREAM.MSG.GET.DMG", json!({ "seq": seq }).to_string()).await;
        if hit.contains(&seq) {
            assert_err(&v, 10037);
        } else {
            assert!(v.get("error").is_none(), "intact seq {seq} not served: {v}");
            assert!(
                msg_data(&v) == payload(seq),
                "seq {seq}: wrong bytes served"
            );
            assert_eq!(v["message"]["subject"], "dmg.x");
        }
    }

    // A consumer delivers every intact message with its bytes, and none of the damaged ones.
    let js = jetstream::new(nc.clone());
    let c = js
        .get_stream("DMG")
        .await
        .unwrap()
        .create_consumer(pull::Config {
            durable_name: Some("AFTER".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    let mut seen = BTreeSet::new();
    within(
        Duration::from_secs(60),
        "reading the damaged stream",
        async {
            let mut msgs = c.messages().await.unwrap();
            while (seen.len() as u64) < N - hit.len() as u64 {
                let m = msgs.next().await.unwrap().expect("message");
                let seq = m.info().unwrap().stream_sequence;
                assert!(!hit.contains(&seq), "damaged seq {seq} delivered");
                assert!(m.payload[..] == payload(seq)[..], "seq {seq}: wrong bytes");
                assert!(seen.insert(seq), "seq {seq} delivered twice");
                m.ack().await.unwrap();
            }
        },
    )
    .await;

    let log = child.log().join("\n").to_lowercase();
    assert!(
        log.contains("corrupt") || log.contains("damage") || log.contains("torn"),
        "the damage was not logged:\n{log}"
    );
    // The stream keeps working.
    let v = publish(&nc, "dmg.x", &[], "after the damage").await;
    assert_ack(&v, "DMG", N + 1);
    drop(js);
    drop(nc);
    child.terminate().await;
}
