//! Message schedules (`allow_msg_schedules`, nats-server 2.12): a message with a
//! `Nats-Schedule` header (`@at <RFC 3339>`, `@every <duration>`, a six-field cron pattern
//! or `@hourly`-style alias, with `Nats-Schedule-Time-Zone` for cron) and a
//! `Nats-Schedule-Target` subject is kept as the schedule on its own subject; when it comes
//! due, the leader publishes its payload (or `Nats-Schedule-Source`'s last message) to the
//! target inside the stream, with `Nats-Scheduler` naming the schedule and
//! `Nats-Schedule-Next` saying `purge` (a one-off, whose schedule message the append removes)
//! or when it fires again.
//!
//! The index of schedules is derived inside apply from the messages' own times, so every
//! replica holds the same; firing is a leader decision that becomes an ordinary append.

use std::collections::{BTreeMap, HashMap, HashSet};

use jiff::tz::TimeZone;
use jiff::{Timestamp, Zoned};

use super::Stream;
use crate::jetstream::errors::ApiError;
use crate::jetstream::headers;
use crate::protocol::subject;
use crate::server::Message;

/// The schedule pattern header.
pub(super) const SCHEDULE: &str = "Nats-Schedule";
const TIME_ZONE: &str = "Nats-Schedule-Time-Zone";
const TTL: &str = "Nats-Schedule-TTL";
const ROLLUP: &str = "Nats-Schedule-Rollup";
const TARGET: &str = "Nats-Schedule-Target";
const SOURCE: &str = "Nats-Schedule-Source";
/// The schedule a fired message came from.
const SCHEDULER: &str = "Nats-Scheduler";
/// `purge`, or when a repeating schedule fires next.
const NEXT: &str = "Nats-Schedule-Next";
const PURGE: &str = "purge";

/// The schedules of a stream, by subject and by due time, and (leader-local) the subjects
/// whose fired message is not applied yet.
#[derive(Default)]
pub(super) struct Schedules {
    due: BTreeMap<(i64, u64), String>,
    by_subject: HashMap<String, (i64, u64)>,
    inflight: HashSet<String>,
}

impl Schedules {
    fn add(&mut self, subject: &str, seq: u64, at: i64) {
        self.remove_subject(subject);
        self.due.insert((at, seq), subject.to_string());
        self.by_subject.insert(subject.to_string(), (at, seq));
    }

    fn update(&mut self, subject: &str, at: i64) {
        if let Some((old, seq)) = self.by_subject.get(subject).copied() {
            self.due.remove(&(old, seq));
            self.due.insert((at, seq), subject.to_string());
            self.by_subject.insert(subject.to_string(), (at, seq));
            self.inflight.remove(subject);
        }
    }

    fn remove_subject(&mut self, subject: &str) {
        if let Some(key) = self.by_subject.remove(subject) {
            self.due.remove(&key);
        }
        self.inflight.remove(subject);
    }

    /// Forgets what was fired and not applied (a new leader fires again what is still due).
    pub(super) fn clear_inflight(&mut self) {
        self.inflight.clear();
    }

    /// The schedules as (subject, due, seq), for saving.
    pub(super) fn export(&self) -> Vec<(String, i64, u64)> {
        self.due
            .iter()
            .map(|(&(at, seq), s)| (s.clone(), at, seq))
            .collect()
    }

    pub(super) fn import(list: Vec<(String, i64, u64)>) -> Self {
        let mut s = Self::default();
        for (subject, at, seq) in list {
            s.add(&subject, seq, at);
        }
        s
    }
}

fn err(err_code: u32, description: &str) -> ApiError {
    ApiError {
        code: 400,
        err_code,
        description: description.into(),
    }
}

fn disabled() -> ApiError {
    err(10188, "message schedules is disabled")
}
fn pattern_invalid() -> ApiError {
    err(10189, "message schedules pattern is invalid")
}
fn target_invalid() -> ApiError {
    err(10190, "message schedules target is invalid")
}
fn ttl_invalid() -> ApiError {
    err(10191, "message schedules invalid per-message TTL")
}
fn rollup_invalid() -> ApiError {
    err(10192, "message schedules invalid rollup")
}
fn source_invalid() -> ApiError {
    err(10203, "message schedules source is invalid")
}
fn scheduler_invalid() -> ApiError {
    err(10212, "message schedules invalid scheduler")
}

/// A header's value when present and not empty.
fn value<'a>(hdrs: &'a [u8], key: &str) -> Option<&'a str> {
    headers::get(hdrs, key).filter(|v| !v.is_empty())
}

/// The schedule's time zone: none without the header; an empty or unknown one is 10223.
fn zone(hdrs: &[u8]) -> Result<Option<TimeZone>, ApiError> {
    match headers::get(hdrs, TIME_ZONE) {
        None => Ok(None),
        Some(name) => TimeZone::get(name)
            .ok()
            .filter(|_| !name.is_empty())
            .map(Some)
            .ok_or_else(|| err(10223, "message schedules time zone is invalid")),
    }
}

/// When the schedule in `hdrs` fires after `ts` (unix nanoseconds), and whether it repeats;
/// `None` without a pattern. A repeating schedule whose next time is already past `now`
/// skips ahead to fire once (after a restart, say).
fn next_of(hdrs: &[u8], ts: i64, now: i64) -> Result<Option<(i64, bool)>, ApiError> {
    let tz = zone(hdrs)?;
    match headers::get(hdrs, SCHEDULE).filter(|p| !p.is_empty()) {
        None => Ok(None),
        Some(p) => next_fire(p, tz.as_ref(), ts, now)
            .map(Some)
            .ok_or_else(pattern_invalid),
    }
}

fn next_fire(pattern: &str, tz: Option<&TimeZone>, ts: i64, now: i64) -> Option<(i64, bool)> {
    if let Some(at) = pattern.strip_prefix("@at ") {
        return match tz {
            Some(_) => None,
            None => crate::jetstream::time::parse_rfc3339(at).map(|t| (t, false)),
        };
    }
    if let Some(every) = pattern.strip_prefix("@every ") {
        let every =
            crate::config::parse_duration(every).filter(|d| d.as_secs() >= 1 && tz.is_none())?;
        let every = i64::try_from(every.as_nanos()).ok()?;
        let next = round_to_second(ts).saturating_add(every);
        let next = if next < now {
            round_to_second(now).saturating_add(every)
        } else {
            next
        };
        return Some((next, true));
    }
    let pattern = match pattern {
        "@yearly" | "@annually" => "0 0 0 1 1 *",
        "@monthly" => "0 0 0 1 * *",
        "@weekly" => "0 0 0 * * 0",
        "@daily" | "@midnight" => "0 0 0 * * *",
        "@hourly" => "0 0 * * * *",
        other => other,
    };
    let cron = parse_cron(pattern)?;
    let tz = tz.cloned().unwrap_or(TimeZone::UTC);
    let next = cron_after(&cron, &tz, ts)?;
    if next < now {
        return cron_after(&cron, &tz, round_to_second(now)).map(|t| (t, true));
    }
    Some((next, true))
}

/// The first time after `ts` (to the second) the cron pattern matches, within five years.
fn cron_after(cron: &croner::Cron, tz: &TimeZone, ts: i64) -> Option<i64> {
    let second = Timestamp::from_second(ts.div_euclid(1_000_000_000)).ok()?;
    let start = Zoned::new(second, tz.clone());
    let next = cron.find_next_occurrence(&start, false).ok()?;
    let limit = i64::from(start.year()) + 5;
    (i64::from(next.year()) <= limit).then(|| next.timestamp().as_nanosecond() as i64)
}

/// A six-field cron pattern (seconds first) as nats-server reads them: numbers, ranges,
/// steps, lists, `*`, `?` and month and weekday names (Sunday is 0); nothing else.
fn parse_cron(pattern: &str) -> Option<croner::Cron> {
    let fields: Vec<&str> = pattern.split_whitespace().collect();
    let bounds = [(0, 59), (0, 59), (0, 23), (1, 31), (1, 12), (0, 6)];
    if fields.len() != 6 || !fields.iter().zip(bounds).all(|(f, b)| field_ok(f, b)) {
        return None;
    }
    let text = fields.join(" ").replace('?', "*");
    croner::parser::CronParser::builder()
        .seconds(croner::parser::Seconds::Required)
        .year(croner::parser::Year::Disallowed)
        .sloppy_ranges(true)
        .build()
        .parse(&text)
        .ok()
}

/// One cron field: comma-separated ranges whose numbers lie within `(min, max)`.
fn field_ok(field: &str, (min, max): (u32, u32)) -> bool {
    const NAMES: [&str; 19] = [
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec", "sun",
        "mon", "tue", "wed", "thu", "fri", "sat",
    ];
    field.split(',').all(|part| {
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => (r, Some(s)),
            None => (part, None),
        };
        let step_ok = step.is_none_or(|s| s.parse::<u32>().is_ok_and(|n| n > 0));
        let ends_ok = range == "*"
            || range == "?"
            || range.split('-').count() <= 2
                && range.split('-').all(|end| {
                    end.parse::<u32>().is_ok_and(|n| (min..=max).contains(&n))
                        || NAMES.contains(&end.to_ascii_lowercase().as_str())
                });
        step_ok && ends_ok && !range.is_empty()
    })
}

fn round_to_second(ns: i64) -> i64 {
    (ns + 500_000_000).div_euclid(1_000_000_000) * 1_000_000_000
}

/// RFC 3339 as Go's `RFC3339Nano` prints it, in the schedule's zone.
fn format_time(ns: i64, tz: Option<&TimeZone>) -> String {
    let Ok(t) = Timestamp::from_nanosecond(i128::from(ns)) else {
        return String::new();
    };
    match tz {
        Some(tz) => t.display_with_offset(tz.to_offset(t)).to_string(),
        None => t.to_string(),
    }
}

/// True if some subject of the stream can carry `s`.
fn in_stream(subjects: &[String], s: &str) -> bool {
    subjects.iter().any(|own| subject::overlaps(own, s))
}

fn valid_publish_subject(s: &str) -> bool {
    subject::is_valid_literal_subject(s.as_bytes())
}

impl Stream {
    /// nats-server's checks of a client's publish with schedule headers; returns the headers
    /// to store when they change (a schedule gets `Nats-Rollup: sub`, so a new schedule on a
    /// subject replaces the old one).
    pub(super) fn check_schedule(
        &self,
        subj: &str,
        hdrs: &[u8],
        now: i64,
    ) -> Result<Option<Vec<u8>>, ApiError> {
        // Every schedule header starts so (the cheap test on every publish with headers).
        if memchr::memmem::find(hdrs, b"Nats-Schedule").is_none() {
            return Ok(None);
        }
        let allowed = self.config.allow_msg_schedules;
        if !allowed && (value(hdrs, SCHEDULE).is_some() || zone(hdrs).is_err()) {
            // Refused before any pattern is worked out.
            return Err(disabled());
        }
        let mut rewritten = None;
        match next_of(hdrs, now, now) {
            Err(e) => return Err(e),
            Ok(None) => {}
            Ok(Some(_)) => rewritten = self.check_new_schedule(subj, hdrs)?,
        }
        if let Some(next) = value(hdrs, NEXT) {
            // Clients may only cancel a schedule: `purge`, naming it in Nats-Scheduler.
            let scheduler = value(hdrs, SCHEDULER)
                .filter(|s| *s != subj && valid_publish_subject(s))
                .filter(|_| next == PURGE)
                .ok_or_else(scheduler_invalid)?;
            if !allowed {
                return Err(disabled());
            }
            let last = self.store.last_seq_for_subject(scheduler);
            if let Some(Ok(Some(m))) = last.map(|seq| self.store.get(seq)) {
                let h = m.headers.as_deref().unwrap_or_default();
                if value(h, SCHEDULE).is_none() {
                    return Err(scheduler_invalid());
                }
            }
        } else if value(hdrs, SCHEDULER).is_some() {
            return Err(scheduler_invalid());
        }
        Ok(rewritten)
    }

    fn check_new_schedule(&self, subj: &str, hdrs: &[u8]) -> Result<Option<Vec<u8>>, ApiError> {
        let cfg = &self.config;
        if !cfg.allow_msg_schedules {
            return Err(disabled());
        }
        let ttl = value(hdrs, TTL);
        if ttl.is_some_and(|t| super::parse_ttl(t).is_none()) {
            return Err(ttl_invalid());
        }
        if value(hdrs, ROLLUP).is_some_and(|r| r != "sub") {
            return Err(rollup_invalid());
        }
        if ttl.is_some() && !cfg.allow_msg_ttl {
            return Err(ApiError::ttl_disabled());
        }
        let target = value(hdrs, TARGET)
            .filter(|t| *t != subj && valid_publish_subject(t))
            .ok_or_else(target_invalid)?;
        let source = value(hdrs, SOURCE);
        if source.is_some_and(|s| s == target || s == subj || !valid_publish_subject(s)) {
            return Err(source_invalid());
        }
        if !in_stream(&cfg.subjects, target) {
            return Err(target_invalid());
        }
        if source.is_some_and(|s| !in_stream(&cfg.subjects, s)) {
            return Err(source_invalid());
        }
        match headers::get(hdrs, headers::ROLLUP) {
            None | Some("") => Ok(Some(headers::append(
                Some(hdrs),
                &[(headers::ROLLUP, "sub")],
            ))),
            Some("sub") => Ok(None),
            Some(_) => Err(rollup_invalid()),
        }
    }

    /// Keeps the schedule index in step with an applied append (inside apply: it reads only
    /// the message and its own time). A schedule message (re)starts its subject's schedule;
    /// any other message on the subject ends it; a fired message moves its schedule on, or
    /// with `purge` removes the schedule message.
    pub(super) fn track_schedule(
        &mut self,
        subject: &str,
        hdrs: Option<&[u8]>,
        seq: u64,
        time: i64,
    ) -> Result<(), crate::store::StoreError> {
        if !self.config.allow_msg_schedules {
            return Ok(());
        }
        if let Some(scheduler) = self.index_schedule(subject, hdrs, seq, time) {
            self.store.purge(Some(&scheduler), None, None)?;
        }
        Ok(())
    }

    /// The index part of [`Stream::track_schedule`]; returns the schedule subject a fired
    /// one-off purges.
    fn index_schedule(
        &mut self,
        subject: &str,
        hdrs: Option<&[u8]>,
        seq: u64,
        time: i64,
    ) -> Option<String> {
        let h = hdrs.unwrap_or_default();
        let scheduler = value(h, SCHEDULER);
        match next_of(h, time, time) {
            Ok(Some((at, _))) => self.schedules.add(subject, seq, at),
            _ if scheduler.is_none() => self.schedules.remove_subject(subject),
            _ => {}
        }
        let (next, scheduler) = (value(h, NEXT)?, scheduler?);
        if next == PURGE {
            self.schedules.remove_subject(scheduler);
            return Some(scheduler.to_string());
        }
        if let Some(at) = crate::jetstream::time::parse_rfc3339(next) {
            self.schedules.update(scheduler, at);
        }
        None
    }

    /// Re-reads the schedules of stored messages after `after` (streams with schedules); the
    /// purges their fired messages made are in the store already.
    pub(super) fn rebuild_schedules(&mut self, after: u64) {
        if !self.config.allow_msg_schedules {
            return;
        }
        let mut seq = after;
        while let Some(next) = self.store.next_seq_matching(seq, None) {
            if let Ok(Some(m)) = self.store.get(next) {
                self.index_schedule(&m.subject, m.headers.as_deref(), m.seq, m.time);
            }
            seq = next + 1;
        }
    }

    /// When the next schedule is due.
    pub fn next_schedule(&self) -> Option<i64> {
        self.schedules.due.keys().next().map(|(at, _)| *at)
    }

    /// The messages the schedules due at `now` publish (in schedule order), each marked in
    /// flight until its append applies; schedules whose message is gone or broken are
    /// dropped. The leader publishes them through [`Stream::check_scheduled`].
    pub fn due_schedules(&mut self, now: i64) -> Vec<Message> {
        let due: Vec<((i64, u64), String)> = self
            .schedules
            .due
            .range(..=(now, u64::MAX))
            .map(|(k, s)| (*k, s.clone()))
            .collect();
        let mut fired = Vec::new();
        for ((at, seq), subject) in due {
            if self.schedules.inflight.contains(&subject) {
                continue;
            }
            match self.fire(seq, at, now) {
                Some(m) => {
                    fired.push((seq, m));
                    self.schedules.inflight.insert(subject);
                }
                None => self.schedules.remove_subject(&subject),
            }
        }
        fired.sort_by_key(|(seq, _)| *seq);
        fired.into_iter().map(|(_, m)| m).collect()
    }

    /// The message schedule `seq`, due at `at`, publishes now.
    fn fire(&self, seq: u64, at: i64, now: i64) -> Option<Message> {
        let m = self.store.get(seq).ok()??;
        let h = m.headers.as_deref().unwrap_or_default();
        let tz = zone(h).ok()?;
        let (next, repeat) = next_of(h, at, now).ok()??;
        let ttl = match value(h, TTL) {
            Some(t) => Some(super::parse_ttl(t).map(|_| t)?),
            None => None,
        };
        let target = value(h, TARGET)?;
        let rollup = value(h, ROLLUP);
        let source = value(h, SOURCE)
            .and_then(|s| self.store.last_seq_for_subject(s))
            .and_then(|seq| self.store.get(seq).ok().flatten());
        let body = source.as_ref().unwrap_or(&m);
        let kept = headers::without(body.headers.as_deref(), |k| {
            k.starts_with("Nats-Schedule")
                || k.starts_with("Nats-Expected-")
                || [headers::MSG_ID, headers::TTL, headers::ROLLUP].contains(&k)
        });
        let next = if repeat {
            format_time(next, tz.as_ref())
        } else {
            PURGE.to_string()
        };
        let mut add = vec![(SCHEDULER, m.subject.as_str()), (NEXT, next.as_str())];
        if let Some(ttl) = ttl {
            add.push((headers::TTL, ttl));
        }
        if let Some(rollup) = rollup {
            add.push((headers::ROLLUP, rollup));
        }
        Some(Message {
            subject: target.to_string(),
            reply: None,
            headers: Some(headers::append(kept.as_deref(), &add).into()),
            payload: body.payload.clone(),
            trace: Default::default(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: i64 = 1_000_000_000;

    #[test]
    fn patterns_fire_when_nats_server_fires_them() {
        let t0 = 1_767_225_600 * SEC; // 2026-01-01T00:00:00Z, a Thursday
        let at = next_fire("@at 2026-01-01T00:00:10Z", None, t0, t0);
        assert_eq!(at, Some((t0 + 10 * SEC, false)));
        assert_eq!(
            next_fire("@every 5s", None, t0, t0),
            Some((t0 + 5 * SEC, true))
        );
        assert_eq!(next_fire("@every 500ms", None, t0, t0), None);
        // Past due: skips ahead to fire once.
        let late = t0 + 100 * SEC;
        assert_eq!(
            next_fire("@every 5s", None, t0, late),
            Some((late + 5 * SEC, true))
        );
        assert_eq!(
            next_fire("*/15 * * * * *", None, t0, t0),
            Some((t0 + 15 * SEC, true))
        );
        assert_eq!(
            next_fire("@hourly", None, t0, t0),
            Some((t0 + 3600 * SEC, true))
        );
        // Weekday 1 is Monday (2026-01-05).
        let monday = t0 + 4 * 86_400 * SEC;
        assert_eq!(next_fire("0 0 0 * * 1", None, t0, t0), Some((monday, true)));
        assert_eq!(
            next_fire("0 0 0 * * mon", None, t0, t0),
            Some((monday, true))
        );
        let ny = TimeZone::get("America/New_York").unwrap();
        let five_am_utc = t0 + 5 * 3600 * SEC;
        assert_eq!(
            next_fire("0 0 0 * * *", Some(&ny), t0, t0),
            Some((five_am_utc, true))
        );
        for bad in [
            "* * * * *",
            "0 0 0 L * *",
            "0 0 0 * * 7",
            "60 * * * * *",
            "0 0 0 30 2 *",
            "@at tomorrow",
            "@every",
        ] {
            assert_eq!(next_fire(bad, None, t0, t0), None, "{bad}");
        }
        assert_eq!(
            next_fire("@at 2026-01-01T00:00:10Z", Some(&ny), t0, t0),
            None
        );
    }

    #[test]
    fn times_print_as_go_prints_them() {
        let t = 1_767_225_600 * SEC;
        assert_eq!(format_time(t, None), "2026-01-01T00:00:00Z");
        let ny = TimeZone::get("America/New_York").unwrap();
        assert_eq!(format_time(t, Some(&ny)), "2025-12-31T19:00:00-05:00");
    }
}
