//! `--signal <command>[=<pid or pid file>]` (`-sl`): signals a running server, as nats-server
//! does, and returns. `stop` kills (SIGKILL), `quit` interrupts (SIGINT: graceful
//! shutdown), `term` terminates (SIGTERM), `reload` hangs up (SIGHUP: reload the config),
//! `reopen` (SIGUSR1: reopen the log file), `ldm` (SIGUSR2: lame duck mode).
//!
//! The pid is the number given, or the content of the file given (a pid file), or, with
//! none, found with `pgrep` by this program's name (an error when none or several run). The
//! errors are nats-server's texts.

use std::path::Path;
use std::process::Command;

/// Why a signal could not be sent.
#[derive(Debug, thiserror::Error)]
pub enum SignalError {
    #[error("invalid signal parameters: {0:?}")]
    Parameters(Vec<String>),
    #[error("invalid pid: {0}")]
    Pid(String),
    #[error("unable to resolve pid, try providing one")]
    Pgrep,
    #[error("no {0} processes running")]
    NoneRunning(String),
    #[error("multiple {0} processes running:\n{1}")]
    Several(String, String),
    #[error("unknown signal {0:?}")]
    Unknown(String),
    #[error("\nsignal {0:?} {1}: {2}")]
    Kill(String, i32, std::io::Error),
}

/// Sends `spec` (`reload`, `stop=1234`, `ldm=/run/nats.pid`) to the running server.
pub fn send(spec: &str) -> Result<(), SignalError> {
    let parts: Vec<&str> = spec.split('=').collect();
    if parts.len() > 2 {
        return Err(SignalError::Parameters(
            parts.iter().map(|p| p.to_string()).collect(),
        ));
    }
    let command = parts[0];
    let pid = match parts.get(1) {
        Some(given) => {
            // A file's content as it is (nats-server does not trim it either).
            let text = match std::fs::read_to_string(Path::new(given)) {
                Ok(content) => content,
                Err(_) => given.to_string(),
            };
            text.parse::<i32>()
                .map_err(|_| SignalError::Pid(text.clone()))?
        }
        None => find_pid()?,
    };
    let signo = match command {
        "stop" => libc::SIGKILL,
        "quit" => libc::SIGINT,
        "term" => libc::SIGTERM,
        "reopen" => libc::SIGUSR1,
        "reload" => libc::SIGHUP,
        "ldm" => libc::SIGUSR2,
        other => return Err(SignalError::Unknown(other.to_string())),
    };
    // SAFETY: kill(2) has no memory effects on this process.
    if unsafe { libc::kill(pid, signo) } != 0 {
        return Err(SignalError::Kill(
            command.to_string(),
            pid,
            std::io::Error::last_os_error(),
        ));
    }
    Ok(())
}

/// The one running server by this program's name, excluding this process.
fn find_pid() -> Result<i32, SignalError> {
    let name = std::env::args()
        .next()
        .and_then(|a| {
            Path::new(&a)
                .file_name()
                .map(|f| f.to_string_lossy().into_owned())
        })
        .unwrap_or_else(|| "causeway".into());
    let out = Command::new("pgrep")
        .arg("-x")
        .arg(&name)
        .output()
        .map_err(|_| SignalError::Pgrep)?;
    let me = std::process::id() as i32;
    let pids: Vec<i32> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .filter(|p| *p != me)
        .collect();
    match pids.as_slice() {
        [] => Err(SignalError::NoneRunning(name)),
        [one] => Ok(*one),
        many => Err(SignalError::Several(
            name,
            many.iter()
                .map(i32::to_string)
                .collect::<Vec<_>>()
                .join("\n"),
        )),
    }
}
