//! Launching the servers under test as child processes, and finding them.

use std::fs::File;
use std::io::Read;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use tempfile::TempDir;

/// How long a freshly started server gets to accept connections.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(15);

/// A server the load generator starts: its label in the report, its
/// binary, extra arguments and (for a nats-server) its reported version.
#[derive(Clone, Debug)]
pub struct ServerSpec {
    pub label: String,
    pub program: PathBuf,
    pub args: Vec<String>,
    pub version: Option<String>,
}

impl ServerSpec {
    pub fn new(label: &str, program: impl Into<PathBuf>, args: Vec<String>) -> ServerSpec {
        ServerSpec {
            label: label.to_string(),
            program: program.into(),
            args,
            version: None,
        }
    }

    /// The label made safe for file names (`2.15.1 durable` → `2.15.1-durable`).
    pub fn slug(&self) -> String {
        self.label
            .chars()
            .map(|c| match c {
                'a'..='z' | 'A'..='Z' | '0'..='9' | '.' | '_' | '-' => c,
                _ => '-',
            })
            .collect()
    }

    /// The command line after the program, as given (no `-a`/`-p`/`-js`).
    pub fn command(&self) -> String {
        let mut words = vec![self.program.display().to_string()];
        words.extend(self.args.iter().cloned());
        words.join(" ")
    }
}

/// A server under test: a name for the report and a loopback address.
pub struct Target {
    pub name: String,
    pub addr: SocketAddr,
    /// How it was started (`None` for an external server).
    pub spec: Option<ServerSpec>,
    /// Kills the child process (if we started one) when dropped. Declared
    /// before `_store` so the server is gone before its store is removed.
    _guard: Option<ChildGuard>,
    /// The JetStream store directory, removed when dropped.
    _store: Option<TempDir>,
}

impl Target {
    /// Process id of the server, if the load generator started it.
    pub fn pid(&self) -> Option<u32> {
        self._guard.as_ref().map(|g| g.child.id())
    }
}

/// How to start a server: JetStream or not, and extra arguments.
pub struct Launch<'a> {
    /// Enable JetStream with a fresh temporary store directory created
    /// inside this directory.
    pub js_store_in: Option<&'a Path>,
    /// Appended to the command line.
    pub extra_args: &'a [String],
}

/// Kills and reaps a child process on drop, so servers never outlive the
/// benchmark, whether it ends normally, with an error or by panicking.
struct ChildGuard {
    child: Child,
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Uses a server somebody else started. Only loopback addresses on
/// 127.0.0.1 are accepted, e.g. `127.0.0.1:4222` or `nats://127.0.0.1:4222`.
pub fn external(url: &str) -> Result<Target> {
    let hostport = url.trim().trim_start_matches("nats://");
    let (host, port) = hostport
        .rsplit_once(':')
        .with_context(|| format!("expected 127.0.0.1:<port>, got {url:?}"))?;
    if host != "127.0.0.1" && host != "localhost" {
        bail!("refusing to connect to {host:?}: only 127.0.0.1 is allowed");
    }
    let port: u16 = port
        .parse()
        .with_context(|| format!("bad port in {url:?}"))?;
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    wait_ready(addr, None).with_context(|| format!("server at {addr}"))?;
    Ok(Target {
        name: format!("external {addr}"),
        addr,
        spec: None,
        _guard: None,
        _store: None,
    })
}

/// Starts `program -a 127.0.0.1 -p <free port> [-js -sd <tmp>] [extra]`,
/// logging to `log`, and waits until it accepts connections and greets
/// with `INFO`.
pub fn launch(name: &str, program: &Path, log: &Path, how: &Launch<'_>) -> Result<Target> {
    let port = free_port()?;
    let log_file = File::create(log).with_context(|| format!("creating {}", log.display()))?;
    let mut cmd = Command::new(program);
    cmd.args(["-a", "127.0.0.1", "-p", &port.to_string()]);
    let store = match how.js_store_in {
        Some(parent) => {
            let dir = tempfile::Builder::new()
                .prefix(&format!("loadgen-js-{name}-"))
                .tempdir_in(parent)
                .with_context(|| format!("creating a store directory in {}", parent.display()))?;
            cmd.arg("-js").arg("-sd").arg(dir.path());
            Some(dir)
        }
        None => None,
    };
    cmd.args(how.extra_args)
        .stdin(Stdio::null())
        .stdout(log_file.try_clone()?)
        .stderr(log_file);
    kill_with_parent(&mut cmd);
    let child = cmd
        .spawn()
        .with_context(|| format!("starting {}", program.display()))?;
    let mut guard = ChildGuard { child };
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    wait_ready(addr, Some(&mut guard.child))
        .with_context(|| format!("{name} did not come up (log: {})", log.display()))?;
    Ok(Target {
        name: name.to_string(),
        addr,
        spec: None,
        _guard: Some(guard),
        _store: store,
    })
}

/// Starts `spec` like [`launch`] (its label as the name, its arguments
/// appended), with JetStream in a fresh store under `js_store_in` if given.
pub fn start(spec: &ServerSpec, log: &Path, js_store_in: Option<&Path>) -> Result<Target> {
    let how = Launch {
        js_store_in,
        extra_args: &spec.args,
    };
    let mut target = launch(&spec.slug(), &spec.program, log, &how)?;
    target.name = spec.label.clone();
    target.spec = Some(spec.clone());
    Ok(target)
}

/// Asks the kernel to SIGKILL the child if the benchmark dies without
/// running destructors (e.g. killed by a signal).
#[cfg(target_os = "linux")]
fn kill_with_parent(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

#[cfg(not(target_os = "linux"))]
fn kill_with_parent(_cmd: &mut Command) {}

fn free_port() -> Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("finding a free port")?;
    Ok(listener.local_addr()?.port())
}

fn wait_ready(addr: SocketAddr, mut child: Option<&mut Child>) -> Result<()> {
    let started = Instant::now();
    loop {
        if let Some(child) = child.as_deref_mut() {
            if let Some(status) = child.try_wait()? {
                bail!("process exited early with {status}");
            }
        }
        if greets(addr) {
            return Ok(());
        }
        if started.elapsed() > STARTUP_TIMEOUT {
            bail!("no INFO from {addr} within {STARTUP_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// True if `addr` accepts a connection and sends something starting `INFO`.
fn greets(addr: SocketAddr) -> bool {
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(500)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let mut head = [0u8; 4];
    stream.read_exact(&mut head).is_ok() && head.eq_ignore_ascii_case(b"INFO")
}
