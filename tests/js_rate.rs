//! Push consumer `rate_limit_bps`: deliveries are paced to the configured bit rate.

mod common;

use std::time::{Duration, Instant};

use common::js::JsEnv;
use futures::StreamExt;
use serde_json::json;

#[tokio::test]
async fn push_consumer_is_paced_by_rate_limit() {
    let env = JsEnv::new().await;
    env.stream(json!({"name": "R", "subjects": ["r.>"]})).await;
    for _ in 0..20 {
        env.publish("r.x", vec![b'x'; 1000]).await;
    }
    let inbox = env.nc.new_inbox();
    let mut sub = env.nc.subscribe(inbox.clone()).await.expect("subscribe");
    // 80,000 bits/s = 10,000 bytes/s: a one-second burst of ~9 messages, then ~9 per second.
    let created = env
        .api(
            "CONSUMER.CREATE.R.SLOW",
            json!({"stream_name": "R", "config": {
                "durable_name": "SLOW", "deliver_subject": inbox,
                "ack_policy": "none", "rate_limit_bps": 80_000
            }})
            .to_string(),
        )
        .await;
    assert_eq!(created["config"]["rate_limit_bps"], 80_000, "{created}");
    let started = Instant::now();
    let mut got = 0;
    while got < 20 {
        let m = tokio::time::timeout(Duration::from_secs(10), sub.next())
            .await
            .expect("delivery within 10 s")
            .expect("subscription open");
        if m.payload.len() == 1000 {
            got += 1;
        }
    }
    let took = started.elapsed();
    // 20 KB at 10 KB/s after a ~10 KB burst: about a second; unpaced it would be milliseconds.
    assert!(took >= Duration::from_millis(700), "not paced: {took:?}");
    env.stop().await;
}
