//! Helpers shared by the async-nats benches (`cluster`, `tls`): environment numbers, free
//! ports, medians, and a timed pub/sub run.

#![allow(dead_code)] // each bench uses its own subset

use std::net::TcpListener;
use std::time::{Duration, Instant};

use anyhow::Result;
use futures::StreamExt;

/// `name` from the environment as a number, else `default`.
pub fn env_num(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A free TCP port on 127.0.0.1 (0 if none could be had).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(0)
}

/// The median (upper middle) of the samples; NaN for none.
pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

/// Publishes `n` messages of `payload` on `subject` from `publisher` while `sub` (already
/// subscribed and known to the publisher's server) receives them; messages/s received.
/// The publisher flushes every 10,000 so that neither side becomes a slow consumer.
pub async fn timed_pubsub(
    publisher: async_nats::Client,
    mut sub: async_nats::Subscriber,
    subject: &'static str,
    payload: bytes::Bytes,
    n: usize,
) -> Result<f64> {
    let start = Instant::now();
    let sender = tokio::spawn(async move {
        for i in 0..n {
            publisher.publish(subject, payload.clone()).await?;
            if i % 10_000 == 0 {
                publisher.flush().await?;
            }
        }
        publisher.flush().await?;
        Ok::<_, anyhow::Error>(publisher)
    });
    let mut got = 0;
    while got < n {
        match tokio::time::timeout(Duration::from_secs(5), sub.next()).await {
            Ok(Some(_)) => got += 1,
            _ => break,
        }
    }
    let rate = got as f64 / start.elapsed().as_secs_f64();
    sender.await??;
    Ok(rate)
}
