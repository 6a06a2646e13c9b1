//! Load generator comparing causeway with one or more reference
//! `nats-server`s (`LOADGEN_REFS`, see `loadgen/refs.rs`).
//!
//! Run with `cargo bench --bench loadgen` (see `benches/README.md` for the
//! environment variables). All servers are started as child processes on
//! free ports of 127.0.0.1 and driven by hand-written clients speaking the
//! core NATS text protocol over plain TCP (no client library), so all see
//! exactly the same traffic. Scenarios, each at 16 B and 128 B payloads:
//!
//! * `pubsub`: 1 publisher → 1 subscriber, delivered msgs/s;
//! * `fanout`: 1 publisher → 4 subscribers of the same subject, delivered
//!   msgs/s summed over the subscribers;
//! * `queue`: 1 publisher → 4 members of one queue group, delivered msgs/s;
//! * `reqreply`: one requester and one responder, one request in flight at
//!   a time; p50 / p99 latency in µs and requests/s.
//!
//! JetStream scenarios (128 B by default; the servers then run with
//! `-js -sd <fresh temporary dir>`), see `loadgen/js.rs`:
//!
//! * `js-async-pub`: publishes to a file-storage stream with a window of
//!   outstanding acks; acked msgs/s;
//! * `js-sync-pub`: one publish at a time, each awaiting its ack; p50 / p99
//!   latency in µs and msgs/s;
//! * `js-pull-consume`: drains a pre-filled stream through a durable pull
//!   consumer, acking every message; consumed+acked msgs/s;
//! * `js-ack-sync`: takes messages one at a time from a durable pull
//!   consumer and confirms each with an AckSync (ack as a request); p50 /
//!   p99 latency of the AckSync alone, in µs, and acks/s;
//! * `js-mirror`: pre-fills a stream, then creates a mirror of it and times
//!   until the mirror holds every message; mirrored msgs/s.
//!
//! Key-Value scenarios on a bucket `BENCH` (128 B values), see
//! `loadgen/kv.rs`: `kv-put` (sequential puts), `kv-get` (sequential direct
//! gets), `kv-watch` (watching every key of a loaded bucket) and `kv-rss`
//! (resident memory of a fresh server after loading many keys).
//!
//! Throughput is messages received divided by the time from the first
//! publish to the last delivery. The publisher writes ~64 KiB batches of
//! `PUB`s but stays at most a window of messages ahead of its subscribers
//! (the same for every server), so no server has to buffer unbounded data
//! and none cuts the subscriber off as a slow consumer. Every scenario runs
//! several rounds, each server once per round, in the opposite order every
//! other round, and the report gives the median of each figure per server
//! plus the ratio causeway ÷ each reference; a failed run leaves the others
//! standing and is noted under the table. The markdown table goes to stdout
//! and to `target/bench-results.md`.

#[path = "loadgen/js.rs"]
mod js;
#[path = "loadgen/kv.rs"]
mod kv;
#[path = "loadgen/proto.rs"]
mod proto;
#[path = "loadgen/refs.rs"]
mod refs;
#[path = "loadgen/report.rs"]
mod report;
#[path = "loadgen/scenarios.rs"]
mod scenarios;
#[path = "loadgen/server.rs"]
mod server;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use js::JsSpec;
use kv::KvSpec;
use report::fmt_num;
use scenarios::PubSubSpec;
use server::{ServerSpec, Target};

/// The label of the server under test; no reference may take it.
const CAUSEWAY: &str = "causeway";

/// Benchmark settings, read from `LOADGEN_*` environment variables.
struct Config {
    rounds: usize,
    msgs: u64,
    reqs: u64,
    warmup: u64,
    timeout: Duration,
    window_bytes: u64,
    threads: usize,
    sizes: Vec<usize>,
    scenarios: Vec<Scenario>,
    js_msgs: u64,
    js_sync_msgs: u64,
    js_warmup: u64,
    js_window: u64,
    js_batch: u64,
    js_pulls: usize,
    js_sizes: Vec<usize>,
    kv_value: usize,
    kv_puts: u64,
    kv_warmup: u64,
    kv_keys: u64,
    kv_watch_keys: u64,
    kv_rss_keys: u64,
    kv_rss_rounds: usize,
    kv_window: u64,
    kv_load_timeout: Duration,
    /// Extra command-line arguments for causeway (`LOADGEN_CAUSEWAY_ARGS`);
    /// those of the references are part of `LOADGEN_REFS` (or
    /// `LOADGEN_NATS_ARGS`), see `loadgen/refs.rs`.
    causeway_args: Vec<String>,
}

#[derive(Clone, Copy, PartialEq)]
enum Scenario {
    PubSub,
    FanOut,
    Queue,
    ReqReply,
    JsAsyncPub,
    JsSyncPub,
    JsPullConsume,
    JsAckSync,
    JsMirror,
    KvPut,
    KvPutConcurrent,
    KvGet,
    KvWatch,
    KvRss,
}

const ALL_SCENARIOS: [Scenario; 14] = [
    Scenario::PubSub,
    Scenario::FanOut,
    Scenario::Queue,
    Scenario::ReqReply,
    Scenario::JsAsyncPub,
    Scenario::JsSyncPub,
    Scenario::JsPullConsume,
    Scenario::JsAckSync,
    Scenario::JsMirror,
    Scenario::KvPut,
    Scenario::KvPutConcurrent,
    Scenario::KvGet,
    Scenario::KvWatch,
    Scenario::KvRss,
];

/// Subscriber count of the fan-out and queue-group scenarios.
const GROUP: usize = 4;

impl Scenario {
    fn name(self) -> &'static str {
        match self {
            Scenario::PubSub => "pubsub",
            Scenario::FanOut => "fanout",
            Scenario::Queue => "queue",
            Scenario::ReqReply => "reqreply",
            Scenario::JsAsyncPub => "js-async-pub",
            Scenario::JsSyncPub => "js-sync-pub",
            Scenario::JsPullConsume => "js-pull-consume",
            Scenario::JsAckSync => "js-ack-sync",
            Scenario::JsMirror => "js-mirror",
            Scenario::KvPut => "kv-put",
            Scenario::KvPutConcurrent => "kv-put-8",
            Scenario::KvGet => "kv-get",
            Scenario::KvWatch => "kv-watch",
            Scenario::KvRss => "kv-rss",
        }
    }

    /// Needs JetStream (all JetStream and KV scenarios).
    fn is_js(self) -> bool {
        !matches!(
            self,
            Scenario::PubSub | Scenario::FanOut | Scenario::Queue | Scenario::ReqReply
        )
    }

    fn is_kv(self) -> bool {
        matches!(
            self,
            Scenario::KvPut
                | Scenario::KvPutConcurrent
                | Scenario::KvGet
                | Scenario::KvWatch
                | Scenario::KvRss
        )
    }

    /// Report rows: (label, lower is better).
    fn metrics(self) -> &'static [(&'static str, bool)] {
        match self {
            Scenario::PubSub => &[("pub → 1 sub, msgs/s", false)],
            Scenario::FanOut => &[("pub → 4 subs fan-out, msgs/s", false)],
            Scenario::Queue => &[("pub → 4 queue members, msgs/s", false)],
            Scenario::ReqReply => &[
                ("request/reply p50, µs", true),
                ("request/reply p99, µs", true),
                ("request/reply, req/s", false),
            ],
            Scenario::JsAsyncPub => &[("JS async publish, acked msgs/s", false)],
            Scenario::JsSyncPub => &[
                ("JS sync publish p50, µs", true),
                ("JS sync publish p99, µs", true),
                ("JS sync publish, msgs/s", false),
            ],
            Scenario::JsPullConsume => &[("JS pull consume + ack, msgs/s", false)],
            Scenario::JsMirror => &[("JS mirror catch-up, msgs/s", false)],
            Scenario::JsAckSync => &[
                ("JS AckSync p50, µs", true),
                ("JS AckSync p99, µs", true),
                ("JS AckSync, acks/s", false),
            ],
            Scenario::KvPut => &[
                ("KV put p50, µs", true),
                ("KV put p99, µs", true),
                ("KV put, ops/s", false),
            ],
            Scenario::KvPutConcurrent => &[
                ("KV put, 8 writers p50, µs", true),
                ("KV put, 8 writers p99, µs", true),
                ("KV put, 8 writers, ops/s", false),
            ],
            Scenario::KvGet => &[
                ("KV get (direct) p50, µs", true),
                ("KV get (direct) p99, µs", true),
                ("KV get (direct), ops/s", false),
            ],
            Scenario::KvWatch => &[
                ("KV watch all keys, keys/s", false),
                ("KV watch all keys, total ms", true),
            ],
            Scenario::KvRss => &[
                ("RSS of a fresh server, MiB", true),
                ("RSS after loading the KV keys, MiB", true),
            ],
        }
    }
}

fn env_num<T: std::str::FromStr>(name: &str, default: T) -> Result<T> {
    match std::env::var(name) {
        Ok(v) => v
            .trim()
            .replace('_', "")
            .parse()
            .ok()
            .with_context(|| format!("{name}={v:?} is not a valid number")),
        Err(_) => Ok(default),
    }
}

fn env_sizes(name: &str, default: &[usize]) -> Result<Vec<usize>> {
    match std::env::var(name) {
        Ok(v) => v
            .split(',')
            .map(|s| s.trim().parse().ok())
            .collect::<Option<Vec<usize>>>()
            .with_context(|| format!("{name}={v:?}: expected e.g. 16,128")),
        Err(_) => Ok(default.to_vec()),
    }
}

/// A comma list of scenario names, if the variable is set.
fn env_scenarios(name: &str) -> Result<Option<Vec<Scenario>>> {
    let Ok(v) = std::env::var(name) else {
        return Ok(None);
    };
    v.split(',')
        .map(|s| ALL_SCENARIOS.into_iter().find(|sc| sc.name() == s.trim()))
        .collect::<Option<Vec<_>>>()
        .map(Some)
        .with_context(|| {
            let names: Vec<_> = ALL_SCENARIOS.iter().map(|s| s.name()).collect();
            format!("{name}={v:?}: expected a list of {}", names.join(","))
        })
}

impl Config {
    fn from_env() -> Result<Config> {
        let sizes = env_sizes("LOADGEN_SIZES", &[16, 128])?;
        let mut scenarios = env_scenarios("LOADGEN_SCENARIOS")?.unwrap_or(ALL_SCENARIOS.to_vec());
        if let Some(skip) = env_scenarios("LOADGEN_SKIP")? {
            scenarios.retain(|s| !skip.contains(s));
        }
        if std::env::var_os("LOADGEN_NATS_URL").is_some()
            && std::env::var_os("LOADGEN_SCENARIOS").is_none()
        {
            // kv-rss starts servers of its own.
            scenarios.retain(|s| *s != Scenario::KvRss);
        }
        let config = Config {
            rounds: env_num("LOADGEN_ROUNDS", 5)?,
            msgs: env_num("LOADGEN_MSGS", 2_000_000)?,
            reqs: env_num("LOADGEN_REQS", 20_000)?,
            warmup: env_num("LOADGEN_WARMUP", 1_000)?,
            timeout: Duration::from_secs(env_num("LOADGEN_TIMEOUT_SECS", 30)?),
            window_bytes: env_num("LOADGEN_WINDOW_BYTES", 16 << 20)?,
            threads: env_num("LOADGEN_THREADS", 2)?,
            sizes,
            scenarios,
            js_msgs: env_num("LOADGEN_JS_MSGS", 200_000)?,
            js_sync_msgs: env_num("LOADGEN_JS_SYNC_MSGS", 5_000)?,
            js_warmup: env_num("LOADGEN_JS_WARMUP", 100)?,
            js_window: env_num("LOADGEN_JS_WINDOW", 512)?,
            js_batch: env_num("LOADGEN_JS_BATCH", 1_000)?,
            js_pulls: env_num("LOADGEN_JS_PULLS", 2)?,
            js_sizes: env_sizes("LOADGEN_JS_SIZES", &[128])?,
            kv_value: env_num("LOADGEN_KV_VALUE", 128)?,
            kv_puts: env_num("LOADGEN_KV_PUTS", 5_000)?,
            kv_warmup: env_num("LOADGEN_KV_WARMUP", 100)?,
            kv_keys: env_num("LOADGEN_KV_KEYS", 20_000)?,
            kv_watch_keys: env_num("LOADGEN_KV_WATCH_KEYS", 100_000)?,
            kv_rss_keys: env_num("LOADGEN_KV_RSS_KEYS", 1_000_000)?,
            kv_rss_rounds: env_num("LOADGEN_KV_RSS_ROUNDS", 1)?,
            kv_window: env_num("LOADGEN_KV_WINDOW", 1_000)?,
            kv_load_timeout: Duration::from_secs(env_num("LOADGEN_KV_LOAD_TIMEOUT_SECS", 180)?),
            causeway_args: env_args("LOADGEN_CAUSEWAY_ARGS"),
        };
        if config.rounds == 0 || config.msgs < 8 || config.reqs == 0 || config.threads == 0 {
            bail!(
                "LOADGEN_ROUNDS, LOADGEN_REQS and LOADGEN_THREADS must be positive, \
                 LOADGEN_MSGS at least 8"
            );
        }
        if config.js_msgs == 0
            || config.js_sync_msgs == 0
            || config.js_window == 0
            || config.js_batch == 0
            || config.js_pulls == 0
        {
            bail!(
                "LOADGEN_JS_MSGS, LOADGEN_JS_SYNC_MSGS, LOADGEN_JS_WINDOW, LOADGEN_JS_BATCH \
                 and LOADGEN_JS_PULLS must be positive"
            );
        }
        if config.kv_puts == 0
            || config.kv_keys == 0
            || config.kv_watch_keys == 0
            || config.kv_rss_rounds == 0
            || config.kv_window == 0
        {
            bail!(
                "LOADGEN_KV_PUTS, LOADGEN_KV_KEYS, LOADGEN_KV_WATCH_KEYS, LOADGEN_KV_RSS_ROUNDS \
                 and LOADGEN_KV_WINDOW must be positive"
            );
        }
        Ok(config)
    }

    /// Flow-control window in messages for a payload size (0 = unlimited).
    fn window(&self, payload: usize) -> u64 {
        // Roughly the size of one delivered `MSG` frame.
        self.window_bytes / (payload as u64 + 40)
    }

    /// The payload (or value) sizes a scenario runs at.
    fn sizes_of(&self, scenario: Scenario) -> Vec<usize> {
        if scenario.is_kv() {
            vec![self.kv_value]
        } else if scenario.is_js() {
            self.js_sizes.clone()
        } else {
            self.sizes.clone()
        }
    }

    /// Rounds per server of a scenario.
    fn rounds_of(&self, scenario: Scenario) -> usize {
        match scenario {
            Scenario::KvRss => self.kv_rss_rounds,
            _ => self.rounds,
        }
    }
}

/// Collected samples of one report row.
struct Row {
    label: &'static str,
    lower_is_better: bool,
    payload: usize,
    /// Samples per target, in `targets` order.
    samples: Vec<Vec<f64>>,
    failures: Vec<usize>,
}

/// A failed run, for the notes under the table.
struct Failure {
    scenario: Scenario,
    payload: usize,
    /// Index into `targets`.
    target: usize,
    error: String,
}

/// Everything [`measure`] collected.
#[derive(Default)]
struct Results {
    rows: Vec<Row>,
    failures: Vec<Failure>,
}

fn main() -> ExitCode {
    match run() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("loadgen: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// Returns whether every run succeeded.
fn run() -> Result<bool> {
    let config = Config::from_env()?;
    let out_dir = target_dir();
    std::fs::create_dir_all(&out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    let targets = start_targets(&config, &out_dir)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(config.threads)
        .enable_all()
        .build()?;
    let results = runtime.block_on(measure(&config, &targets));
    let report = report::render(&config, &targets, &results);
    print!("{report}");
    let path = out_dir.join("bench-results.md");
    std::fs::write(&path, &report).with_context(|| format!("writing {}", path.display()))?;
    eprintln!("loadgen: report written to {}", path.display());
    Ok(results.failures.is_empty())
}

fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("target"),
    }
}

/// Starts (or, with `LOADGEN_NATS_URL`, locates) the servers to compare:
/// causeway first, then the references; with JetStream if any JetStream
/// scenario is selected.
fn start_targets(config: &Config, out_dir: &Path) -> Result<Vec<Target>> {
    if let Ok(url) = std::env::var("LOADGEN_NATS_URL") {
        return Ok(vec![server::external(&url)?]);
    }
    let js = config.scenarios.iter().any(|s| s.is_js());
    selected_servers(config, out_dir)?
        .iter()
        .map(|spec| launch_server(spec, out_dir, js, ""))
        .collect()
}

/// causeway and the references, narrowed by `LOADGEN_ONLY`: `causeway`,
/// `nats-server` (every reference) or one reference's label.
fn selected_servers(config: &Config, out_dir: &Path) -> Result<Vec<ServerSpec>> {
    let causeway = ServerSpec::new(CAUSEWAY, causeway_bin(), config.causeway_args.clone());
    let only = std::env::var("LOADGEN_ONLY").ok();
    if only.as_deref() == Some(CAUSEWAY) {
        return Ok(vec![causeway]);
    }
    let refs = refs::from_env(out_dir)?;
    let Some(only) = only else {
        return Ok(std::iter::once(causeway).chain(refs).collect());
    };
    if only == refs::DEFAULT_LABEL {
        return Ok(refs);
    }
    let labels: Vec<&str> = refs.iter().map(|r| r.label.as_str()).collect();
    let choices = format!(
        "causeway, nats-server (all references) or {}",
        labels.join(", ")
    );
    let one: Vec<ServerSpec> = refs.iter().filter(|r| r.label == only).cloned().collect();
    if one.is_empty() {
        bail!("LOADGEN_ONLY={only:?}: expected {choices}");
    }
    Ok(one)
}

/// Starts `spec`, with JetStream if `js`, logging to
/// `<out_dir>/loadgen-<label><log_suffix>.log`.
fn launch_server(spec: &ServerSpec, out_dir: &Path, js: bool, log_suffix: &str) -> Result<Target> {
    let store_parent = match std::env::var_os("LOADGEN_STORE_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => out_dir.to_path_buf(),
    };
    let log = out_dir.join(format!("loadgen-{}{log_suffix}.log", spec.slug()));
    let is_causeway = spec.label == CAUSEWAY;
    if is_causeway && !spec.program.is_file() {
        bail!(
            "causeway binary not found at {} — run `cargo build --release` first \
             (or set CAUSEWAY_BIN, or LOADGEN_ONLY=nats-server)",
            spec.program.display()
        );
    }
    let target = server::start(spec, &log, js.then_some(store_parent.as_path()));
    if is_causeway {
        return target;
    }
    target.with_context(|| {
        format!(
            "reference {}: is nats-server installed at {}? (set NATS_SERVER_BIN, \
             or the path in LOADGEN_REFS)",
            spec.label,
            spec.program.display()
        )
    })
}

/// An environment variable's value split at whitespace (empty when unset).
fn env_args(name: &str) -> Vec<String> {
    std::env::var(name)
        .unwrap_or_default()
        .split_whitespace()
        .map(String::from)
        .collect()
}

fn causeway_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("CAUSEWAY_BIN") {
        return PathBuf::from(bin);
    }
    // Cargo builds the package's binaries for benchmarks and says where.
    match option_env!("CARGO_BIN_EXE_causeway") {
        Some(bin) => PathBuf::from(bin),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("target/release/causeway"),
    }
}

/// Runs every scenario for every payload size, `rounds` times per target
/// (see [`round_order`]).
async fn measure(config: &Config, targets: &[Target]) -> Results {
    let mut results = Results::default();
    let mut run_id = 0u64;
    for &scenario in &config.scenarios {
        for payload in config.sizes_of(scenario) {
            let first_row = results.add_rows(scenario, payload, targets.len());
            let rounds = config.rounds_of(scenario);
            for round in 0..rounds {
                for target in round_order(targets.len(), round) {
                    run_id += 1;
                    let id = format!("{}_{run_id}", std::process::id());
                    let result = run_once(config, scenario, payload, &targets[target], &id).await;
                    let what = format!(
                        "[{}/{rounds}] {} {payload} B on {}",
                        round + 1,
                        scenario.name(),
                        targets[target].name
                    );
                    let run = Run {
                        scenario,
                        payload,
                        target,
                        first_row,
                    };
                    results.record(&run, &what, result);
                    // Let the server settle (close connections, free buffers).
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    }
    results
}

/// Every target once per round, in the opposite order every other round
/// (causeway, ref1, ref2, then ref2, ref1, causeway, ...).
fn round_order(targets: usize, round: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..targets).collect();
    if round % 2 == 1 {
        order.reverse();
    }
    order
}

/// Which run a result belongs to.
struct Run {
    scenario: Scenario,
    payload: usize,
    target: usize,
    /// The scenario's first row in [`Results::rows`] for this payload.
    first_row: usize,
}

impl Results {
    /// Adds the empty rows of one scenario and payload; returns the first.
    fn add_rows(&mut self, scenario: Scenario, payload: usize, targets: usize) -> usize {
        let first = self.rows.len();
        for &(label, lower_is_better) in scenario.metrics() {
            self.rows.push(Row {
                label,
                lower_is_better,
                payload,
                samples: vec![Vec::new(); targets],
                failures: vec![0; targets],
            });
        }
        first
    }

    /// Files one run's values (or its failure) under its rows, and logs it.
    fn record(&mut self, run: &Run, what: &str, result: Result<Vec<f64>>) {
        let rows = &mut self.rows[run.first_row..];
        match result {
            Ok(values) => {
                let shown: Vec<String> = values.iter().map(|v| fmt_num(*v)).collect();
                eprintln!("{what}: {}", shown.join(" / "));
                for (row, v) in rows.iter_mut().zip(values) {
                    row.samples[run.target].push(v);
                }
            }
            Err(e) => {
                eprintln!("{what}: FAILED: {e:#}");
                for row in rows {
                    row.failures[run.target] += 1;
                }
                self.failures.push(Failure {
                    scenario: run.scenario,
                    payload: run.payload,
                    target: run.target,
                    error: format!("{e:#}"),
                });
            }
        }
    }
}

/// One run of one scenario against one target; returns one value per
/// metric of the scenario.
async fn run_once(
    config: &Config,
    scenario: Scenario,
    payload: usize,
    target: &Target,
    id: &str,
) -> Result<Vec<f64>> {
    let spec = |subs, queue, msgs| PubSubSpec {
        subject: format!("bench.{id}"),
        subs,
        queue,
        msgs,
        payload,
        window: config.window(payload),
        timeout: config.timeout,
    };
    let addr = target.addr;
    let js = JsSpec {
        id: id.to_string(),
        msgs: config.js_msgs,
        sync_msgs: config.js_sync_msgs,
        warmup: config.js_warmup,
        payload,
        window: config.js_window,
        batch: config.js_batch,
        pulls: config.js_pulls,
        timeout: config.timeout,
    };
    match scenario {
        Scenario::PubSub => Ok(vec![
            scenarios::pubsub(addr, &spec(1, false, config.msgs)).await?,
        ]),
        // Each published message is delivered four times: publish fewer.
        Scenario::FanOut => Ok(vec![
            scenarios::pubsub(addr, &spec(GROUP, false, config.msgs / 2)).await?,
        ]),
        Scenario::Queue => Ok(vec![
            scenarios::pubsub(addr, &spec(GROUP, true, config.msgs)).await?,
        ]),
        Scenario::ReqReply => {
            let l = scenarios::reqreply(
                addr,
                id,
                payload,
                config.warmup,
                config.reqs,
                config.timeout,
            )
            .await?;
            Ok(vec![l.p50_us, l.p99_us, l.per_sec])
        }
        Scenario::JsAsyncPub => Ok(vec![js::async_pub(addr, &js).await?]),
        Scenario::JsSyncPub => {
            let l = js::sync_pub(addr, &js).await?;
            Ok(vec![l.p50_us, l.p99_us, l.per_sec])
        }
        Scenario::JsPullConsume => Ok(vec![js::pull_consume(addr, &js).await?]),
        Scenario::JsMirror => Ok(vec![js::mirror_catchup(addr, &js).await?]),
        Scenario::JsAckSync => {
            let l = js::ack_sync(addr, &js).await?;
            Ok(vec![l.p50_us, l.p99_us, l.per_sec])
        }
        Scenario::KvPut
        | Scenario::KvPutConcurrent
        | Scenario::KvGet
        | Scenario::KvWatch
        | Scenario::KvRss => run_kv(config, scenario, payload, target, id).await,
    }
}

async fn run_kv(
    config: &Config,
    scenario: Scenario,
    value: usize,
    target: &Target,
    id: &str,
) -> Result<Vec<f64>> {
    let spec = |keys| KvSpec {
        id: id.to_string(),
        puts: config.kv_puts,
        warmup: config.kv_warmup,
        keys,
        value,
        window: config.kv_window,
        timeout: config.timeout,
        load_timeout: config.kv_load_timeout,
    };
    let addr = target.addr;
    match scenario {
        Scenario::KvPut => {
            let l = kv::put(addr, &spec(0)).await?;
            Ok(vec![l.p50_us, l.p99_us, l.per_sec])
        }
        Scenario::KvPutConcurrent => {
            let l = kv::put_concurrent(addr, &spec(0)).await?;
            Ok(vec![l.p50_us, l.p99_us, l.per_sec])
        }
        Scenario::KvGet => {
            let l = kv::get(addr, &spec(config.kv_keys)).await?;
            Ok(vec![l.p50_us, l.p99_us, l.per_sec])
        }
        Scenario::KvWatch => {
            let w = kv::watch(addr, &spec(config.kv_watch_keys)).await?;
            Ok(vec![w.keys_per_sec, w.total_ms])
        }
        _ => {
            // Measured on a server of its own, so earlier runs leave no trace.
            let Some(server) = target.spec.as_ref() else {
                bail!("kv-rss needs a server started by the load generator");
            };
            let out_dir = target_dir();
            let fresh =
                tokio::task::block_in_place(|| launch_server(server, &out_dir, true, "-rss"))?;
            let pid = fresh.pid().context("no pid")?;
            let r = kv::rss(fresh.addr, pid, &spec(config.kv_rss_keys)).await;
            tokio::task::block_in_place(|| drop(fresh));
            let r = r?;
            Ok(vec![r.idle_mib, r.loaded_mib])
        }
    }
}
