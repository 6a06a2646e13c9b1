//! The markdown report: a table of medians per scenario, payload and
//! server, the ratio causeway / nats-server, and every run's figures.

use std::fmt::Write as _;

use crate::server::Target;
use crate::{Config, Row};

fn median(samples: &[f64]) -> Option<f64> {
    let mut v = samples.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(v[n / 2]),
        _ => Some((v[n / 2 - 1] + v[n / 2]) / 2.0),
    }
}

/// Formats with thousands separators above 1000, two decimals below.
pub fn fmt_num(v: f64) -> String {
    if v.abs() < 1000.0 {
        return format!("{v:.2}");
    }
    let digits = format!("{:.0}", v.abs());
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if v < 0.0 {
        out.insert(0, '-');
    }
    out
}

/// A count: like [`fmt_num`], but without decimals.
fn fmt_count(n: u64) -> String {
    if n < 1000 {
        n.to_string()
    } else {
        fmt_num(n as f64)
    }
}

pub fn render(config: &Config, targets: &[Target], rows: &[Row]) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "## causeway load generator\n");
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let core = if config.scenarios.iter().any(|s| !s.is_js()) {
        format!(
            "; {} msgs per pub/sub run ({} published for fan-out), {} sequential requests \
             per request/reply run; publisher flow-control window {}",
            fmt_num(config.msgs as f64),
            fmt_num((config.msgs / 2) as f64),
            fmt_num(config.reqs as f64),
            match config.window_bytes {
                0 => "off".to_string(),
                b => format!("{} KiB", b / 1024),
            },
        )
    } else {
        String::new()
    };
    let _ = writeln!(
        s,
        "Medians of {} rounds{core}; {cores} CPU cores shared by server and load generator.\n",
        config.rounds,
    );
    if config.scenarios.iter().any(|s| s.is_js()) {
        let _ = writeln!(
            s,
            "JetStream: both servers run with `-js -sd <fresh temporary dir>`, file storage. \
             {} msgs per async-publish run (at most {} acks outstanding) and per pull run \
             (pre-filled, then pulled in batches of {}, {} requests outstanding, every \
             message acked); {} acked publishes, one at a time, per sync-publish run. \
             Note: causeway syncs (fdatasync, group commit) before acking a publish by \
             default, while nats-server syncs its files only every 2 minutes by default.\n",
            fmt_num(config.js_msgs as f64),
            config.js_window,
            config.js_batch,
            config.js_pulls,
            fmt_num(config.js_sync_msgs as f64),
        );
    }
    if config.scenarios.iter().any(|s| s.is_kv()) {
        let _ = writeln!(
            s,
            "KV: bucket `BENCH` (stream `KV_BENCH`, history 1, file storage), {} B values, \
             loaded with up to {} puts outstanding. Put: {} sequential puts of distinct keys. \
             Get: {} keys loaded, each then read once by a direct get. Watch: {} keys \
             loaded, then an ordered push consumer (last per subject, flow control) \
             delivers all of them, timed from its creation. RSS: `VmRSS` of a freshly \
             started server, before and 1 s after loading {} keys ({} round(s)).\n",
            config.kv_value,
            config.kv_window,
            fmt_count(config.kv_puts),
            fmt_count(config.kv_keys),
            fmt_count(config.kv_watch_keys),
            fmt_count(config.kv_rss_keys),
            config.kv_rss_rounds,
        );
    }
    if !config.causeway_args.is_empty() {
        let _ = writeln!(
            s,
            "causeway started with extra arguments `{}`.\n",
            config.causeway_args.join(" ")
        );
    }
    if !config.nats_args.is_empty() {
        let _ = writeln!(
            s,
            "nats-server started with extra arguments `{}`.\n",
            config.nats_args.join(" ")
        );
    }
    let compare = targets.len() == 2;
    let mut header = String::from("| Scenario | Payload |");
    let mut rule = String::from("|---|---:|");
    for t in targets {
        let _ = write!(header, " {} |", t.name);
        rule.push_str("---:|");
    }
    if compare {
        let _ = write!(header, " {} / {} |", targets[0].name, targets[1].name);
        rule.push_str("---:|");
    }
    let _ = writeln!(s, "{header}\n{rule}");
    for row in rows {
        let _ = write!(s, "| {} | {} B |", row.label, row.payload);
        let medians: Vec<Option<f64>> = row.samples.iter().map(|v| median(v)).collect();
        for (t, m) in medians.iter().enumerate() {
            let ok = row.samples[t].len();
            let cell = match m {
                None => "failed".to_string(),
                Some(m) if row.failures[t] > 0 => {
                    format!("{} ({ok}/{} ok)", fmt_num(*m), ok + row.failures[t])
                }
                Some(m) => fmt_num(*m),
            };
            let _ = write!(s, " {cell} |");
        }
        if compare {
            let cell = match (medians[0], medians[1]) {
                (Some(a), Some(b)) if b > 0.0 => {
                    let note = if row.lower_is_better {
                        " (lower is better)"
                    } else {
                        ""
                    };
                    format!("{:.2}×{note}", a / b)
                }
                _ => "–".to_string(),
            };
            let _ = write!(s, " {cell} |");
        }
        s.push('\n');
    }
    let _ = writeln!(s, "\n<details><summary>All runs</summary>\n");
    for row in rows {
        for (t, target) in targets.iter().enumerate() {
            let runs: Vec<String> = row.samples[t].iter().map(|v| fmt_num(*v)).collect();
            let _ = writeln!(
                s,
                "- {}, {} B, {}: {}{}",
                row.label,
                row.payload,
                target.name,
                runs.join(", "),
                match row.failures[t] {
                    0 => String::new(),
                    n => format!(" ({n} failed)"),
                }
            );
        }
    }
    let _ = writeln!(s, "\n</details>");
    s
}
