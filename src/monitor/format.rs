//! How nats-server writes times and durations in its JSON: RFC 3339 timestamps with
//! nanoseconds in UTC, Go's `Duration.String()` (`1.5ms`, `2m3.5s`) and its own uptime form
//! (`1d2h3m4s`).

use std::time::{Duration, SystemTime};

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// A wall-clock time as Go marshals a `time.Time` in UTC (`2026-12-07T17:00:00.123456789Z`).
pub(crate) fn timestamp(t: SystemTime) -> String {
    OffsetDateTime::from(t).format(&Rfc3339).unwrap_or_default()
}

/// nats-server's uptime form: whole seconds as `[Ny][Nd][Nh][Nm]Ns`, leading zero units left out.
pub(crate) fn uptime(d: Duration) -> String {
    let secs = d.as_secs();
    let (mins, hours, days) = (secs / 60, secs / 3600, secs / 86_400);
    let years = days / 365;
    if years > 0 {
        format!(
            "{years}y{}d{}h{}m{}s",
            days % 365,
            hours % 24,
            mins % 60,
            secs % 60
        )
    } else if days > 0 {
        format!("{days}d{}h{}m{}s", hours % 24, mins % 60, secs % 60)
    } else if hours > 0 {
        format!("{hours}h{}m{}s", mins % 60, secs % 60)
    } else if mins > 0 {
        format!("{mins}m{}s", secs % 60)
    } else {
        format!("{secs}s")
    }
}

/// A duration as nanoseconds (how nats-server's JSON carries `time.Duration` fields).
pub(crate) fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uptimes() {
        assert_eq!(uptime(Duration::from_secs(5)), "5s");
        assert_eq!(uptime(Duration::from_secs(65)), "1m5s");
        assert_eq!(uptime(Duration::from_secs(3_600 + 1)), "1h0m1s");
        assert_eq!(uptime(Duration::from_secs(86_400 * 2 + 7)), "2d0h0m7s");
        assert_eq!(uptime(Duration::from_secs(86_400 * 366)), "1y1d0h0m0s");
    }

    #[test]
    fn timestamps_are_rfc3339_utc() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_nanos(1_500_000_001);
        assert_eq!(timestamp(t), "1970-01-01T00:00:01.500000001Z");
    }
}
