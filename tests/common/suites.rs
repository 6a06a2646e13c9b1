//! Setting up and running the client suites written in other languages.
//!
//! - The nats-py venv: `<CARGO_TARGET_TMPDIR>/pyvenv`, (re)built when missing or when
//!   `tests/python/requirements.txt` changes, with an exclusive lock file (`pyvenv.lock`)
//!   serialising the setup between concurrent test processes. Same layout, marker and lock as
//!   the setup in `tests/python_clients.rs`, so either runner may build it.
//! - The nats.js packages: `tests/node/node_modules`, installed with `npm ci` from the committed
//!   `package-lock.json` when missing or when the lock file changed, under `npm.lock`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const MANIFEST_DIR: &str = env!("CARGO_MANIFEST_DIR");
const TARGET_TMPDIR: &str = env!("CARGO_TARGET_TMPDIR");

/// Runs `cmd` to completion within `limit`, panicking with its output on failure.
pub fn run(cmd: &mut Command, limit: Duration) {
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
pub struct FileLock(std::fs::File);

impl FileLock {
    /// Waits (up to ten minutes) for the lock on `path`, creating the file if needed.
    pub fn acquire(path: &Path) -> FileLock {
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
            assert!(Instant::now() < deadline, "{path:?} locked for too long");
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
pub fn ensure_venv() -> PathBuf {
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

/// Makes sure `tests/node/node_modules` matches `tests/node/package-lock.json` (`npm ci`, or
/// `npm install` when there is no lock file); returns the `tests/node` directory.
pub fn ensure_node_modules() -> PathBuf {
    let tmp = Path::new(TARGET_TMPDIR);
    std::fs::create_dir_all(tmp).expect("create target tmpdir");
    let dir = Path::new(MANIFEST_DIR).join("tests/node");
    let lockfile = dir.join("package-lock.json");
    let wanted = std::fs::read_to_string(&lockfile).unwrap_or_default();
    let marker = dir.join("node_modules").join(".causeway-package-lock");

    let _lock = FileLock::acquire(&tmp.join("npm.lock"));
    if !wanted.is_empty() && std::fs::read_to_string(&marker).ok().as_deref() == Some(&wanted) {
        return dir;
    }
    let verb = if wanted.is_empty() { "install" } else { "ci" };
    run(
        Command::new("npm")
            .args([verb, "--no-audit", "--no-fund", "--loglevel=error"])
            .current_dir(&dir),
        Duration::from_secs(300),
    );
    let now = std::fs::read_to_string(&lockfile).expect("package-lock.json after npm");
    std::fs::write(&marker, now).expect("write node_modules marker");
    dir
}

/// Runs `program args...` as a child (killed if the test fails or times out) within `limit`;
/// prints its output and asserts a zero exit and a final line containing `done_marker`.
pub async fn run_suite(
    program: &Path,
    args: &[&str],
    cwd: &Path,
    limit: Duration,
    done_marker: &str,
) {
    let child = tokio::process::Command::new(program)
        .args(args)
        .current_dir(cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {program:?}: {e}"));
    let out = tokio::time::timeout(limit, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("{program:?} {args:?} did not finish in {limit:?}"))
        .expect("suite output");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    eprintln!("{stderr}");
    assert!(
        out.status.success(),
        "{program:?} {args:?} failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    assert!(
        stdout.contains(done_marker),
        "suite did not finish: {stdout}"
    );
}
