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

/// The log file (`log_file`): appended to, reopened on SIGUSR1 (after an outside rotation),
/// and rotated by size as nats-server does it (`logfile_size_limit`: the full file is renamed
/// `<file>.YYYY.MM.DD.HH.MM.SS.nnnnnnnnn` and a new one started; `logfile_max_num` keeps that
/// many files in all, the oldest backups removed).
#[derive(Clone)]
pub struct LogFile {
    inner: std::sync::Arc<std::sync::Mutex<LogState>>,
}

struct LogState {
    path: std::path::PathBuf,
    file: std::fs::File,
    written: u64,
    limit: u64,
    max_files: usize,
}

fn open_append(path: &std::path::Path) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
}

impl LogFile {
    /// Opens (appending to) `path`; `limit` bytes before rotating (0: never), `max_files`
    /// files kept in all (0: every backup).
    pub fn open(path: &std::path::Path, limit: u64, max_files: usize) -> std::io::Result<Self> {
        let file = open_append(path)?;
        let written = file.metadata().map_or(0, |m| m.len());
        Ok(Self {
            inner: std::sync::Arc::new(std::sync::Mutex::new(LogState {
                path: path.to_path_buf(),
                file,
                written,
                limit,
                max_files,
            })),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LogState> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Opens the file again at its path (it was moved away by an outside rotation).
    pub fn reopen(&self) -> std::io::Result<()> {
        let mut st = self.lock();
        st.file = open_append(&st.path)?;
        st.written = st.file.metadata().map_or(0, |m| m.len());
        Ok(())
    }

    /// Switches to another file and limits (a config reload).
    pub fn set(&self, path: &std::path::Path, limit: u64, max_files: usize) -> std::io::Result<()> {
        let mut st = self.lock();
        if st.path != path {
            st.file = open_append(path)?;
            st.path = path.to_path_buf();
            st.written = st.file.metadata().map_or(0, |m| m.len());
        }
        st.limit = limit;
        st.max_files = max_files;
        Ok(())
    }
}

impl LogState {
    fn rotate(&mut self) -> std::io::Result<()> {
        let now = time::OffsetDateTime::now_utc();
        let stamp = format!(
            "{:04}.{:02}.{:02}.{:02}.{:02}.{:02}.{:09}",
            now.year(),
            u8::from(now.month()),
            now.day(),
            now.hour(),
            now.minute(),
            now.second(),
            now.nanosecond()
        );
        let name = self
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let backup = self.path.with_file_name(format!("{name}.{stamp}"));
        std::fs::rename(&self.path, &backup)?;
        self.file = open_append(&self.path)?;
        self.written = 0;
        let line = format!(
            "[{}] {} [INF] Rotated log, backup saved as {:?}\n",
            std::process::id(),
            now.format(format_description!(
                "[year]/[month]/[day] [hour]:[minute]:[second].[subsecond digits:6]"
            ))
            .unwrap_or_default(),
            backup.display().to_string()
        );
        use std::io::Write;
        self.file.write_all(line.as_bytes())?;
        self.written = line.len() as u64;
        if self.max_files > 0 {
            self.purge(&name);
        }
        Ok(())
    }

    /// Removes the oldest backups past `max_files - 1` (the live file is the last one).
    fn purge(&self, name: &str) {
        let dir = self
            .path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(std::path::Path::new("."));
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        let prefix = format!("{name}.");
        let mut backups: Vec<String> = entries
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| {
                n.strip_prefix(&prefix).is_some_and(|stamp| {
                    stamp.len() == 29 && stamp.chars().all(|c| c.is_ascii_digit() || c == '.')
                })
            })
            .collect();
        backups.sort();
        let keep = self.max_files.saturating_sub(1);
        let excess = backups.len().saturating_sub(keep);
        for old in &backups[..excess] {
            let _ = std::fs::remove_file(dir.join(old));
        }
    }
}

/// One write through a [`LogFile`] (a formatted event).
pub struct LogWriter(std::sync::Arc<std::sync::Mutex<LogState>>);

impl std::io::Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut st = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let n = st.file.write(buf)?;
        st.written += n as u64;
        if st.limit > 0 && st.written > st.limit {
            // A failed rotation keeps logging to the same file; the next write tries again.
            let _ = st.rotate();
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        let mut st = self.0.lock().unwrap_or_else(|e| e.into_inner());
        st.file.flush()
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogFile {
    type Writer = LogWriter;

    fn make_writer(&'a self) -> LogWriter {
        LogWriter(self.inner.clone())
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use tracing_subscriber::fmt::MakeWriter;

    use super::LogFile;

    #[test]
    fn rotates_by_size_and_keeps_max_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nats.log");
        let log = LogFile::open(&path, 200, 3).unwrap();
        for i in 0..40 {
            let line = format!("line {i:04} {}\n", "x".repeat(40));
            log.make_writer().write_all(line.as_bytes()).unwrap();
        }
        let mut names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names.len(), 3, "the live file and two backups: {names:?}");
        for backup in &names[1..] {
            assert_eq!(backup.len(), "nats.log.".len() + 29, "{names:?}");
        }
        let live = std::fs::read_to_string(&path).unwrap();
        assert!(live.contains("Rotated log, backup saved as"), "{live}");
        let newest = std::fs::read_to_string(dir.path().join(&names[2])).unwrap();
        assert!(
            live.contains("line 0039") || newest.contains("line 0039"),
            "the last line is kept: {live} / {newest}"
        );
        assert!(std::fs::metadata(&path).unwrap().len() < 400);
    }

    #[test]
    fn reopens_after_an_outside_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nats.log");
        let log = LogFile::open(&path, 0, 0).unwrap();
        log.make_writer().write_all(b"before\n").unwrap();
        std::fs::rename(&path, dir.path().join("nats.log.1")).unwrap();
        log.reopen().unwrap();
        log.make_writer().write_all(b"after\n").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "after\n");
    }
}
