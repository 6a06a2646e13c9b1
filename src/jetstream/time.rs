//! Timestamps as JetStream's JSON carries them: RFC 3339 with nanoseconds, UTC.

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// Current time as unix nanoseconds.
pub fn now_nanos() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

/// Formats unix nanoseconds as RFC 3339 (`0001-01-01T00:00:00Z` for zero, as Go prints it).
pub fn rfc3339(nanos: i64) -> String {
    if nanos <= 0 {
        return "0001-01-01T00:00:00Z".to_string();
    }
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(nanos))
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| "0001-01-01T00:00:00Z".to_string())
}

/// Parses RFC 3339 into unix nanoseconds.
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    let t = OffsetDateTime::parse(s, &Rfc3339).ok()?;
    i64::try_from(t.unix_timestamp_nanos()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let n = 1_700_000_000_123_456_789;
        assert_eq!(parse_rfc3339(&rfc3339(n)), Some(n));
        assert_eq!(rfc3339(0), "0001-01-01T00:00:00Z");
    }
}
