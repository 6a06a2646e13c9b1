//! The `causeway` binary: parses nats-server-compatible flags and config, sets up logging, runs
//! the server until SIGINT/SIGTERM (graceful shutdown) or SIGUSR2 (lame duck).

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;
use causeway::config::cli::Args;
use causeway::config::Config;
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let args = match Args::parse_from_env() {
        Ok(args) => args,
        Err(e) => {
            use clap::error::ErrorKind;
            if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
                let _ = e.print();
                return ExitCode::SUCCESS;
            }
            let text = e.render().to_string();
            let first = text.lines().next().unwrap_or("invalid arguments");
            eprintln!("causeway: {}", first.trim_start_matches("error: "));
            return ExitCode::from(1);
        }
    };
    if let Some(command) = &args.signal {
        return match causeway::signal::send(command) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("causeway: {e}");
                ExitCode::from(1)
            }
        };
    }
    if args.version {
        println!(
            "causeway: v{} (nats-server protocol {})",
            env!("CARGO_PKG_VERSION"),
            causeway::protocol::info::PROTOCOL_VERSION
        );
        return ExitCode::SUCCESS;
    }
    let config = match args.clone().into_config() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("causeway: {e}");
            return ExitCode::from(1);
        }
    };
    let logging = match init_logging(&config) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("causeway: {e:#}");
            return ExitCode::from(1);
        }
    };
    raise_fd_limit();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("causeway: can't start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(run(config, args, logging)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("causeway: {e:#}");
            ExitCode::from(1)
        }
    }
}

/// Raises the soft open-file limit to the hard one, as Go programs (nats-server among them)
/// do at start: every file stream holds a few descriptors, and a soft limit of 1,024 would
/// cap a server at a few hundred streams.
fn raise_fd_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit read and write the struct we own.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            let soft = lim.rlim_cur;
            lim.rlim_cur = lim.rlim_max;
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                tracing::warn!("can't raise the open-file limit above {soft}");
            }
        }
    }
}

/// What a reload may change of the logging: the level filter and the log file.
struct Logging {
    filter: tracing_subscriber::reload::Handle<EnvFilter, tracing_subscriber::Registry>,
    file: Option<causeway::logging::LogFile>,
    /// The OTLP span exporter, flushed at exit.
    #[cfg(feature = "otlp")]
    otlp: Option<opentelemetry_sdk::trace::SdkTracerProvider>,
}

/// With `--features otlp` and `OTEL_EXPORTER_OTLP_ENDPOINT` (or `..._TRACES_ENDPOINT`) set:
/// a layer exporting the spans (connections, streams, Raft groups) over OTLP/HTTP in batches
/// from a thread of its own, as the `causeway` service.
#[cfg(feature = "otlp")]
fn otlp() -> anyhow::Result<Option<opentelemetry_sdk::trace::SdkTracerProvider>> {
    let wanted = [
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    ]
    .iter()
    .any(|v| std::env::var_os(v).is_some());
    if !wanted {
        return Ok(None);
    }
    use opentelemetry_otlp::WithExportConfig;
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
        .build()
        .context("OTLP exporter")?;
    let resource = opentelemetry_sdk::Resource::builder()
        .with_service_name("causeway")
        .build();
    Ok(Some(
        opentelemetry_sdk::trace::SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(resource)
            .build(),
    ))
}

/// The level filter the config asks for (`CAUSEWAY_LOG` overrides it).
fn level_filter(config: &Config) -> EnvFilter {
    let level = if config.trace {
        "trace"
    } else if config.debug {
        "debug"
    } else {
        "info"
    };
    EnvFilter::try_from_env("CAUSEWAY_LOG")
        .unwrap_or_else(|_| EnvFilter::new(format!("causeway={level},warn")))
}

fn init_logging(config: &Config) -> anyhow::Result<Logging> {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let (filter, handle) = tracing_subscriber::reload::Layer::new(level_filter(config));
    let ansi = config.log_file.is_none() && {
        use std::io::IsTerminal;
        std::io::stderr().is_terminal()
    };
    let format = tracing_subscriber::fmt::layer()
        .with_ansi(ansi)
        .event_format(causeway::logging::NatsFormat::default());
    #[cfg(feature = "otlp")]
    let otlp = otlp()?;
    #[cfg(feature = "otlp")]
    let registry = {
        use opentelemetry::trace::TracerProvider;
        let layer = otlp
            .as_ref()
            .map(|p| tracing_opentelemetry::layer().with_tracer(p.tracer("causeway")));
        tracing_subscriber::registry().with(filter).with(layer)
    };
    #[cfg(not(feature = "otlp"))]
    let registry = tracing_subscriber::registry().with(filter);
    let file = match &config.log_file {
        Some(path) => {
            let file =
                causeway::logging::LogFile::open(path, config.log_size_limit, config.log_max_files)
                    .with_context(|| format!("can't open log file {}", path.display()))?;
            registry.with(format.with_writer(file.clone())).init();
            Some(file)
        }
        None => {
            registry.with(format.with_writer(std::io::stderr)).init();
            None
        }
    };
    Ok(Logging {
        filter: handle,
        file,
        #[cfg(feature = "otlp")]
        otlp,
    })
}

/// SIGHUP: reads the configuration again (the file, then the same flags on top) and applies
/// it; a failure is logged and changes nothing, as with nats-server.
fn reload(server: &causeway::ServerHandle, args: &Args, logging: &Logging) {
    tracing::info!("Trapped \"hangup\" signal");
    let result = args
        .clone()
        .into_config()
        .map_err(causeway::Error::from)
        .and_then(|new| {
            server.reload(new.clone())?;
            Ok(new)
        });
    let new = match result {
        Ok(new) => new,
        Err(e) => {
            tracing::error!("Failed to reload server configuration: {e}");
            return;
        }
    };
    if logging.filter.reload(level_filter(&new)).is_err() {
        tracing::warn!("could not change the log level");
    }
    if let (Some(file), Some(path)) = (&logging.file, &new.log_file) {
        if let Err(e) = file.set(path, new.log_size_limit, new.log_max_files) {
            tracing::error!("can't open log file {}: {e}", path.display());
        }
    }
    tracing::info!("Reloaded server configuration");
}

async fn run(config: Config, args: Args, logging: Logging) -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    tracing::info!(
        "Starting causeway v{} (nats protocol {})",
        env!("CARGO_PKG_VERSION"),
        causeway::protocol::info::PROTOCOL_VERSION
    );
    let pid_file = config.pid_file.clone();
    let ports_dir = config.ports_file_dir.clone();
    let server = causeway::Server::start(config).await?;
    if let Some(path) = &pid_file {
        std::fs::write(path, std::process::id().to_string())
            .with_context(|| format!("can't write pid file {}", path.display()))?;
    }
    let ports_file = match &ports_dir {
        Some(dir) => Some(write_ports_file(dir, &server)?),
        None => None,
    };
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut usr2 = signal(SignalKind::user_defined2())?;
    let mut hup = signal(SignalKind::hangup())?;
    let mut usr1 = signal(SignalKind::user_defined1())?;
    loop {
        tokio::select! {
            _ = term.recv() => {
                tracing::info!("Trapped \"terminated\" signal");
                server.shutdown().await;
                break;
            }
            _ = int.recv() => {
                tracing::info!("Trapped \"interrupt\" signal");
                server.shutdown().await;
                break;
            }
            _ = usr2.recv() => {
                tracing::info!("Trapped \"user defined signal 2\" signal");
                server.lame_duck().await;
                break;
            }
            _ = hup.recv() => reload(&server, &args, &logging),
            _ = usr1.recv() => {
                if let Some(file) = &logging.file {
                    match file.reopen() {
                        Ok(()) => tracing::info!("File log re-opened"),
                        Err(e) => tracing::error!("can't reopen the log file: {e}"),
                    }
                }
            }
        }
    }
    if let Some(path) = ports_file {
        let _ = std::fs::remove_file(path);
    }
    if let Some(path) = pid_file {
        let _ = std::fs::remove_file(path);
    }
    #[cfg(feature = "otlp")]
    if let Some(provider) = &logging.otlp {
        // Exports what is still batched (on its own thread: the exporter blocks).
        let provider = provider.clone();
        let _ = tokio::task::spawn_blocking(move || provider.shutdown()).await;
    }
    Ok(())
}

fn write_ports_file(
    dir: &std::path::Path,
    server: &causeway::ServerHandle,
) -> anyhow::Result<std::path::PathBuf> {
    let exe = std::env::args()
        .next()
        .and_then(|a| {
            std::path::Path::new(&a)
                .file_name()
                .map(|f| f.to_string_lossy().into_owned())
        })
        .unwrap_or_else(|| "causeway".into());
    let path = dir.join(format!("{exe}_{}.ports", std::process::id()));
    let mut ports = serde_json::json!({ "nats": [server.client_url()] });
    if let Some(ws) = server.websocket_url() {
        ports["websocket"] = serde_json::json!([ws]);
    }
    if let Some(m) = server.monitor_addr() {
        ports["monitoring"] = serde_json::json!([format!("http://{m}")]);
    }
    let mut f = std::fs::File::create(&path)
        .with_context(|| format!("can't write ports file {}", path.display()))?;
    writeln!(f, "{ports}")?;
    Ok(path)
}
