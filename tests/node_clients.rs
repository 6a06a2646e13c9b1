//! Runs `tests/node/kv_suite.mjs` (Key-Value and Object Store with the nats.js packages
//! `@nats-io/kv`, `@nats-io/obj`, `@nats-io/jetstream`, `@nats-io/transport-node`) against an
//! embedded JetStream server. `npm ci` installs the locked packages into
//! `tests/node/node_modules` first when they are missing (see `common::suites`).

mod common;

use std::path::Path;
use std::time::Duration;

use common::js::JsEnv;
use common::suites::{ensure_node_modules, run_suite};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_js_kv_suite_passes() {
    let dir = tokio::task::spawn_blocking(ensure_node_modules)
        .await
        .expect("npm setup panicked");
    let env = JsEnv::new().await;
    let url = env.server.client_url();
    run_suite(
        Path::new("node"),
        &["kv_suite.mjs", &url],
        &dir,
        Duration::from_secs(240),
        "all ",
    )
    .await;
    env.stop().await;
}
