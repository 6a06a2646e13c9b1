//! Runs `tests/python/core_suite.py` and `tests/python/js_suite.py` (JetStream) with the nats-py
//! client against an embedded server. The venv and the suite runner are `common::suites`'.

mod common;

use std::path::Path;
use std::time::Duration;

use common::start_default;
use common::suites::{ensure_venv, run_suite};

const MANIFEST_DIR: &str = env!("CARGO_MANIFEST_DIR");

/// Runs `tests/python/<script>` against `url` (bounded) and asserts it passed.
async fn run_python(python: &Path, script: &str, url: &str) {
    let dir = Path::new(MANIFEST_DIR).join("tests/python");
    let script = dir.join(script);
    let script = script.to_str().expect("utf-8 path");
    run_suite(
        python,
        &[script, url],
        &dir,
        Duration::from_secs(180),
        "all ",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_py_core_suite_passes() {
    let python = tokio::task::spawn_blocking(ensure_venv)
        .await
        .expect("venv setup panicked");
    let server = start_default().await;
    run_python(&python, "core_suite.py", &server.client_url()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_py_jetstream_suite_passes() {
    let python = tokio::task::spawn_blocking(ensure_venv)
        .await
        .expect("venv setup panicked");
    let dir = tempfile::tempdir().expect("tempdir");
    let server = common::start(common::js::js_config(dir.path())).await;
    run_python(&python, "js_suite.py", &server.client_url()).await;
    server.shutdown().await;
}
