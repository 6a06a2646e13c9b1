//! Runs `tests/python/kv_suite.py` (Key-Value and Object Store with nats-py) against an
//! embedded JetStream server. The venv is shared with `tests/python_clients.rs`
//! (`<CARGO_TARGET_TMPDIR>/pyvenv`), set up by `common::suites` under the same lock.

mod common;

use std::path::Path;
use std::time::Duration;

use common::js::JsEnv;
use common::suites::{ensure_venv, run_suite};

const MANIFEST_DIR: &str = env!("CARGO_MANIFEST_DIR");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_py_kv_suite_passes() {
    let python = tokio::task::spawn_blocking(ensure_venv)
        .await
        .expect("venv setup panicked");
    let env = JsEnv::new().await;
    let dir = Path::new(MANIFEST_DIR).join("tests/python");
    let script = dir.join("kv_suite.py");
    let url = env.server.client_url();
    run_suite(
        &python,
        &[script.to_str().unwrap(), &url],
        &dir,
        Duration::from_secs(240),
        "all ",
    )
    .await;
    env.stop().await;
}
