//! Runs `tests/python/core_suite.py` and `tests/python/js_suite.py` (JetStream) with the nats-py
//! client against an embedded server.
//!
//! The venv lives at `<CARGO_TARGET_TMPDIR>/pyvenv` and is (re)built when missing or when
//! `tests/python/requirements.txt` changes (`python3 -m venv`, then `pip install -r`). An
//! exclusive lock file serialises that setup between concurrent test processes.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::start_default;

const MANIFEST_DIR: &str = env!("CARGO_MANIFEST_DIR");
const TARGET_TMPDIR: &str = env!("CARGO_TARGET_TMPDIR");

/// Runs `cmd` to completion within `limit`, panicking with its output on failure.
fn run(cmd: &mut Command, limit: Duration) {
    let what = format!("{cmd:?}");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    let deadline = Instant::now() + limit;
    while child.try_wait().expect("try_wait").is_none() {
        if Instant::now() >= deadline {
            let _ = child.kill();
            let out = child.wait_with_output().expect("output");
            panic!(
                "{what} did not finish in {limit:?}: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = child.wait_with_output().expect("output");
    assert!(
        out.status.success(),
        "{what} failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// An exclusive `flock` on a file, released on drop.
struct FileLock(std::fs::File);

impl FileLock {
    fn acquire(path: &Path) -> FileLock {
        use std::os::fd::AsRawFd;
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .expect("open lock file");
        let deadline = Instant::now() + Duration::from_secs(600);
        // SAFETY: flock on a file descriptor we own.
        while unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            assert!(Instant::now() < deadline, "venv lock held for too long");
            std::thread::sleep(Duration::from_millis(200));
        }
        FileLock(file)
    }
}

impl Drop for FileLock {
    fn drop(&mut self) {
        use std::os::fd::AsRawFd;
        // SAFETY: unlocking the descriptor we locked.
        unsafe { libc::flock(self.0.as_raw_fd(), libc::LOCK_UN) };
    }
}

/// Makes sure the venv exists with the pinned requirements; returns its python.
fn ensure_venv() -> PathBuf {
    let tmp = Path::new(TARGET_TMPDIR);
    std::fs::create_dir_all(tmp).expect("create target tmpdir");
    let venv = tmp.join("pyvenv");
    let python = venv.join("bin").join("python");
    let requirements = Path::new(MANIFEST_DIR).join("tests/python/requirements.txt");
    let wanted = std::fs::read_to_string(&requirements).expect("read requirements.txt");
    let marker = venv.join(".causeway-requirements");

    let _lock = FileLock::acquire(&tmp.join("pyvenv.lock"));
    if std::fs::read_to_string(&marker).ok().as_deref() == Some(wanted.as_str()) && python.exists()
    {
        return python;
    }
    run(
        Command::new("python3")
            .args(["-m", "venv", "--clear"])
            .arg(&venv),
        Duration::from_secs(120),
    );
    run(
        Command::new(&python)
            .args([
                "-m",
                "pip",
                "install",
                "--disable-pip-version-check",
                "-q",
                "-r",
            ])
            .arg(&requirements),
        Duration::from_secs(300),
    );
    std::fs::write(&marker, &wanted).expect("write venv marker");
    python
}

/// Runs `tests/python/<script>` against `url` (bounded) and asserts it passed.
async fn run_suite(python: &Path, script: &str, url: &str) {
    let script = Path::new(MANIFEST_DIR).join("tests/python").join(script);
    let child = tokio::process::Command::new(python)
        .arg(&script)
        .arg(url)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("cannot run the python suite");
    let out = tokio::time::timeout(Duration::from_secs(180), child.wait_with_output())
        .await
        .expect("python suite did not finish in 180 s")
        .expect("python suite output");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    eprintln!("{stderr}");
    assert!(
        out.status.success(),
        "python suite failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    assert!(stdout.contains("all "), "suite did not finish: {stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_py_core_suite_passes() {
    let python = tokio::task::spawn_blocking(ensure_venv)
        .await
        .expect("venv setup panicked");
    let server = start_default().await;
    run_suite(&python, "core_suite.py", &server.client_url()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_py_jetstream_suite_passes() {
    let python = tokio::task::spawn_blocking(ensure_venv)
        .await
        .expect("venv setup panicked");
    let dir = tempfile::tempdir().expect("tempdir");
    let server = common::start(common::js::js_config(dir.path())).await;
    run_suite(&python, "js_suite.py", &server.client_url()).await;
    server.shutdown().await;
}
