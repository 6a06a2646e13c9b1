//! Log output in nats-server's format, `[pid] YYYY/MM/DD HH:MM:SS.micros [INF] text`, so that
//! tools which wait for lines such as `Server is ready` work unchanged.

use std::fmt;

use time::macros::format_description;
use tracing::{Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// Formats events like nats-server's logger.
pub struct NatsFormat {
    pid: u32,
}

impl Default for NatsFormat {
    fn default() -> Self {
        Self {
            pid: std::process::id(),
        }
    }
}

impl<S, N> FormatEvent<S, N> for NatsFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> fmt::Result {
        let fmt = format_description!(
            "[year]/[month]/[day] [hour]:[minute]:[second].[subsecond digits:6]"
        );
        let now = time::OffsetDateTime::now_utc()
            .format(&fmt)
            .unwrap_or_default();
        let level = match *event.metadata().level() {
            Level::ERROR => "ERR",
            Level::WARN => "WRN",
            Level::INFO => "INF",
            Level::DEBUG => "DBG",
            Level::TRACE => "TRC",
        };
        write!(writer, "[{}] {} [{}] ", self.pid, now, level)?;
        if let Some(scope) = ctx.event_scope() {
            for span in scope.from_root() {
                if let Some(fields) = span
                    .extensions()
                    .get::<tracing_subscriber::fmt::FormattedFields<N>>()
                {
                    if !fields.is_empty() {
                        write!(writer, "{} - ", fields)?;
                    }
                }
            }
        }
        ctx.field_format().format_fields(writer.by_ref(), event)?;
        writeln!(writer)
    }
}
