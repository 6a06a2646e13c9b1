//! The markdown report: a table of medians per scenario, payload and
//! server (causeway, then each reference), the ratio causeway ÷ each
//! reference, notes on the failed runs, and every run's figures.

use std::fmt::Write as _;

use crate::server::Target;
use crate::{Config, Failure, Results, Row, CAUSEWAY};

/// Shown instead of a median (or ratio) no run produced.
const MISSING: &str = "–";

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

pub fn render(config: &Config, targets: &[Target], results: &Results) -> String {
    let mut s = String::from("## causeway load generator\n\n");
    s.push_str(&intro(config));
    s.push_str(&references(targets));
    s.push_str(&table(targets, &results.rows));
    s.push_str(&failure_notes(config, targets, &results.failures));
    s.push_str(&all_runs(targets, &results.rows));
    s
}

/// What was measured and how: rounds, message counts, JetStream and KV set-up.
fn intro(config: &Config) -> String {
    let mut s = String::new();
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
        "Medians of {} rounds{core}; {cores} CPU cores shared by the servers and the load \
         generator.\n",
        config.rounds,
    );
    if config.scenarios.iter().any(|s| s.is_js()) {
        let _ = writeln!(
            s,
            "JetStream: every server runs with `-js -sd <fresh temporary dir>`, file storage. \
             {} msgs per async-publish run (at most {} acks outstanding) and per pull run \
             (pre-filled, then pulled in batches of {}, {} requests outstanding, every \
             message acked); {} acked publishes, one at a time, per sync-publish run. \
             Note: causeway syncs (fdatasync, group commit) before acking a publish by \
             default, while nats-server syncs its files only every 2 minutes by default \
             (unless configured with `jetstream {{ sync_interval: always }}`).\n",
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
    s
}

/// One line per reference server: its label, command line and version.
fn references(targets: &[Target]) -> String {
    let refs: Vec<String> = targets
        .iter()
        .filter_map(|t| t.spec.as_ref())
        .filter(|spec| spec.label != CAUSEWAY)
        .map(|spec| {
            let version = match &spec.version {
                Some(v) => format!(", reports {v}"),
                None => String::new(),
            };
            format!("- `{}`: `{}`{version}\n", spec.label, spec.command())
        })
        .collect();
    if refs.is_empty() {
        return String::new();
    }
    format!(
        "Reference servers (each also given `-a 127.0.0.1 -p <port>`, and the JetStream \
         flags above):\n\n{}\n",
        refs.concat()
    )
}

/// The references causeway is compared with: every target after the
/// first, if the first is causeway.
fn compared(targets: &[Target]) -> &[Target] {
    match targets.split_first() {
        Some((first, rest)) if first.name == CAUSEWAY => rest,
        _ => &[],
    }
}

/// The table of medians, one value column per server and one ratio
/// column per reference.
fn table(targets: &[Target], rows: &[Row]) -> String {
    let refs = compared(targets);
    let mut header = String::from("| Scenario | Payload |");
    let mut rule = String::from("|---|---:|");
    for t in targets {
        let _ = write!(header, " {} |", t.name);
        rule.push_str("---:|");
    }
    for r in refs {
        let _ = write!(header, " ÷ {} |", r.name);
        rule.push_str("---:|");
    }
    let mut s = format!("{header}\n{rule}\n");
    for row in rows {
        let _ = write!(s, "| {} | {} B |", row.label, row.payload);
        let medians: Vec<Option<f64>> = row.samples.iter().map(|v| median(v)).collect();
        for (t, m) in medians.iter().enumerate() {
            let _ = write!(s, " {} |", value_cell(row, t, *m));
        }
        for r in 1..=refs.len() {
            let _ = write!(s, " {} |", ratio_cell(row, medians[0], medians[r]));
        }
        s.push('\n');
    }
    s
}

/// A median, with how many runs succeeded if some failed.
fn value_cell(row: &Row, target: usize, median: Option<f64>) -> String {
    let ok = row.samples[target].len();
    match median {
        None => MISSING.to_string(),
        Some(m) if row.failures[target] > 0 => {
            format!("{} ({ok}/{} ok)", fmt_num(m), ok + row.failures[target])
        }
        Some(m) => fmt_num(m),
    }
}

/// causeway's median ÷ a reference's.
fn ratio_cell(row: &Row, causeway: Option<f64>, reference: Option<f64>) -> String {
    match (causeway, reference) {
        (Some(a), Some(b)) if b > 0.0 => {
            let note = if row.lower_is_better {
                " (lower is better)"
            } else {
                ""
            };
            format!("{:.2}×{note}", a / b)
        }
        _ => MISSING.to_string(),
    }
}

/// Under the table: per scenario, payload and server, how many runs failed
/// and the first error.
fn failure_notes(config: &Config, targets: &[Target], failures: &[Failure]) -> String {
    // (scenario, payload, target) → (failed runs, first error), in order of occurrence.
    let mut groups: Vec<(&Failure, usize)> = Vec::new();
    for f in failures {
        let same = |g: &&mut (&Failure, usize)| {
            g.0.scenario == f.scenario && g.0.payload == f.payload && g.0.target == f.target
        };
        match groups.iter_mut().find(same) {
            Some(group) => group.1 += 1,
            None => groups.push((f, 1)),
        }
    }
    if groups.is_empty() {
        return String::new();
    }
    let mut s = format!(
        "\nFailed runs ({MISSING} in the table: no run succeeded; `k/n ok`: only k did):\n\n"
    );
    for (f, failed) in groups {
        let _ = writeln!(
            s,
            "- `{}` {} B on {}: {failed} of {} runs failed; first error: {}",
            f.scenario.name(),
            f.payload,
            targets[f.target].name,
            config.rounds_of(f.scenario),
            one_line(&f.error),
        );
    }
    s
}

/// An error message on one line, at most 300 characters.
fn one_line(error: &str) -> String {
    let flat = error.split_whitespace().collect::<Vec<_>>().join(" ");
    match flat.char_indices().nth(300) {
        Some((cut, _)) => format!("{}…", &flat[..cut]),
        None => flat,
    }
}

/// Every run's figures, per row and server.
fn all_runs(targets: &[Target], rows: &[Row]) -> String {
    let mut s = String::from("\n<details><summary>All runs</summary>\n\n");
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
    s.push_str("\n</details>\n");
    s
}
