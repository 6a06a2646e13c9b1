//! JetStream stream and consumer configuration as clients send it: nats-server's JSON field
//! names, its defaults, and the validation it applies. Durations are integer nanoseconds.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::errors::ApiError;
use crate::protocol::subject;

fn neg1() -> i64 {
    -1
}
fn is_false(b: &bool) -> bool {
    !*b
}
fn is_zero(n: &i64) -> bool {
    *n == 0
}
fn is_zero_u64(n: &u64) -> bool {
    *n == 0
}

/// Default duplicate window: 2 minutes.
pub const DEFAULT_DUPLICATE_WINDOW: i64 = 120_000_000_000;

/// `"none"` (and an empty string) read as unset, so a configuration shown reads back equal.
fn compression_from<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let c: Option<String> = Option::deserialize(d)?;
    Ok(c.filter(|c| !c.is_empty() && c != "none"))
}

fn compression_or_none<S: serde::Serializer>(c: &Option<String>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(c.as_deref().unwrap_or("none"))
}

/// The fsync policy of a `persist_mode: async` stream: the server's interval if it has one,
/// else nats-server's default sync interval (2 minutes); acks never wait for it.
pub(crate) fn async_persist(server: crate::config::SyncPolicy) -> crate::config::SyncPolicy {
    use crate::config::SyncPolicy;
    match server {
        SyncPolicy::Always => SyncPolicy::Interval(std::time::Duration::from_secs(120)),
        other => other,
    }
}

/// A field Go reads as its zero value when the JSON says `null` (clients send
/// `"consumer_limits": null`, `"min_pending": null`).
pub(crate) fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// A stream's `consumer_limits`: what its consumers get when they set none, and the most
/// they may set.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsumerLimits {
    #[serde(default, skip_serializing_if = "is_zero")]
    pub inactive_threshold: i64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub max_ack_pending: i64,
}

/// Retention policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Retention {
    /// Keep messages up to the limits.
    #[default]
    Limits,
    /// Keep messages while some consumer has not acked them.
    Interest,
    /// Each message is consumed once.
    #[serde(rename = "workqueue")]
    WorkQueue,
}

/// What to do when a limit is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Discard {
    /// Drop the oldest messages.
    #[default]
    Old,
    /// Refuse new messages.
    New,
}

/// Storage backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Storage {
    /// Segment files on disk.
    #[default]
    File,
    /// RAM only.
    Memory,
}

/// A stream's configuration. Unknown fields are refused (`10025`), as nats-server does; the
/// fields of nats-server 2.15 that causeway does not implement are known, and refused by
/// [`StreamConfig::normalize`] when set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamConfig {
    #[serde(default)]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Left out when empty (a mirror's, a stream fed only by sources), as nats-server does.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subjects: Vec<String>,
    #[serde(default)]
    pub retention: Retention,
    #[serde(default = "neg1")]
    pub max_consumers: i64,
    #[serde(default = "neg1")]
    pub max_msgs: i64,
    #[serde(default = "neg1")]
    pub max_bytes: i64,
    #[serde(default)]
    pub max_age: i64,
    #[serde(default = "neg1")]
    pub max_msgs_per_subject: i64,
    #[serde(default = "neg1")]
    pub max_msg_size: i64,
    #[serde(default)]
    pub discard: Discard,
    #[serde(default)]
    pub storage: Storage,
    #[serde(default)]
    pub num_replicas: i64,
    #[serde(default, skip_serializing_if = "is_false")]
    pub no_ack: bool,
    #[serde(default)]
    pub duplicate_window: i64,
    #[serde(default)]
    pub sealed: bool,
    #[serde(default)]
    pub deny_delete: bool,
    #[serde(default)]
    pub deny_purge: bool,
    #[serde(default)]
    pub allow_rollup_hdrs: bool,
    #[serde(default)]
    pub allow_direct: bool,
    #[serde(default)]
    pub mirror_direct: bool,
    #[serde(default, skip_serializing_if = "is_false")]
    pub discard_new_per_subject: bool,
    #[serde(default, skip_serializing_if = "is_zero_u64")]
    pub first_seq: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<serde_json::Map<String, Value>>,
    /// Shown as `"none"` when unset, as nats-server does.
    #[serde(
        default,
        serialize_with = "compression_or_none",
        deserialize_with = "compression_from"
    )]
    pub compression: Option<String>,
    /// Always shown, as nats-server does.
    #[serde(default)]
    pub allow_msg_ttl: bool,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub subject_delete_marker_ttl: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub republish: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placement: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mirror: Option<super::sourcing::StreamSource>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sources: Option<Vec<super::sourcing::StreamSource>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject_transform: Option<Value>,
    /// Defaults and ceilings for the stream's consumers (always shown, as nats-server does).
    #[serde(default, deserialize_with = "null_as_default")]
    pub consumer_limits: ConsumerLimits,
    #[serde(default, skip_serializing_if = "is_false")]
    pub allow_msg_counter: bool,
    #[serde(default, skip_serializing_if = "is_false")]
    pub allow_atomic: bool,
    #[serde(default, skip_serializing_if = "is_false")]
    pub allow_msg_schedules: bool,
    #[serde(default, skip_serializing_if = "is_false")]
    pub allow_batched: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub persist_mode: Option<String>,
    /// A request field (refuse rather than default); not part of the stored config.
    #[serde(default, skip_serializing)]
    pub pedantic: bool,
}

/// What is wrong with a stream or consumer name, if anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameProblem {
    /// Empty, or has `.`, `*`, `>` or whitespace.
    Invalid,
    /// Has `/` or `\\`.
    PathSeparator,
    /// Longer than 255 bytes.
    TooLong,
    /// Has a NUL byte (no directory can be named so).
    Nul,
}

/// Checks a stream or consumer name as nats-server does.
pub fn name_problem(name: &str) -> Option<NameProblem> {
    if name.contains(['/', '\\']) {
        Some(NameProblem::PathSeparator)
    } else if name.is_empty()
        || name
            .chars()
            .any(|c| matches!(c, '.' | '*' | '>' | ' ' | '\t' | '\r' | '\n'))
    {
        Some(NameProblem::Invalid)
    } else if name.len() > 255 {
        Some(NameProblem::TooLong)
    } else if name.contains('\0') {
        Some(NameProblem::Nul)
    } else {
        None
    }
}

/// The error for a bad stream name.
pub fn stream_name_error(problem: NameProblem) -> ApiError {
    match problem {
        NameProblem::PathSeparator => ApiError::stream_name_invalid(),
        NameProblem::Invalid => ApiError::invalid_config(
            "stream name is required and can not contain '.', '*', '>', '\\', '/'",
        ),
        NameProblem::TooLong => {
            ApiError::invalid_config("stream name is too long, maximum allowed is 255")
        }
        NameProblem::Nul => ApiError::stream_store_failed(),
    }
}

/// The error for a bad consumer name.
pub fn consumer_name_error(problem: NameProblem) -> ApiError {
    match problem {
        NameProblem::PathSeparator => ApiError::consumer_name_path_separators(),
        NameProblem::Invalid => ApiError::consumer_name_invalid(),
        NameProblem::TooLong => ApiError::consumer_name_too_long(),
        NameProblem::Nul => ApiError::consumer_store_failed(),
    }
}

/// Subjects a stream may only capture with `no_ack` (its acks would answer them): `>`, the
/// JetStream API and internal subjects (bar its advisories), the system API.
fn api_overlap(subj: &str) -> Option<&'static str> {
    if subj == ">" {
        return Some("capturing all subjects requires no-ack to be true");
    }
    let js = ["$JS.>", "$JSC.>", "$NRG.>"]
        .iter()
        .any(|api| subject::overlaps(subj, api))
        && !subject::covers("$JS.EVENT.>", subj);
    if js {
        return Some("subjects that overlap with jetstream api require no-ack to be true");
    }
    subject::overlaps(subj, "$SYS.>")
        .then_some("subjects that overlap with system api require no-ack to be true")
}

/// A limit where nats-server takes 0 and every negative number for "unlimited" (-1).
pub(crate) fn unlimited_if_not_positive(n: &mut i64) {
    if *n <= 0 {
        *n = -1;
    }
}

impl StreamConfig {
    /// Fields of nats-server 2.15 that causeway does not implement yet: set, they are refused
    /// with an error naming them, never silently ignored.
    fn refuse_unimplemented(&mut self) -> Result<(), ApiError> {
        let flags = [(self.allow_batched, "allow_batched")];
        if let Some((_, name)) = flags.iter().find(|(set, _)| *set) {
            return Err(ApiError::not_implemented(&format!("stream {name}")));
        }
        match self.persist_mode.as_deref() {
            None | Some("" | "default") => self.persist_mode = None,
            Some("async") => {}
            Some(other) => {
                // As Go's decoder words it: the JSON text, quoted.
                let text = format!("can not unmarshal {:?}", format!("\"{other}\""));
                return Err(ApiError::invalid_json(&text));
            }
        }
        Ok(())
    }

    /// The stream's `subject_transform` (`{src, dest}`, both always shown): checked as
    /// nats-server checks it (10155 for the source, 10156 with the mapping error for the
    /// destination).
    fn check_subject_transform(&mut self) -> Result<(), ApiError> {
        if matches!(self.subject_transform, None | Some(Value::Null)) {
            self.subject_transform = None;
            return Ok(());
        }
        let (src, dest) = self.transform_ends();
        self.subject_transform = Some(serde_json::json!({ "src": src, "dest": dest }));
        if !src.is_empty() && !subject::is_valid_subject(src.as_bytes()) {
            return Err(ApiError {
                code: 400,
                err_code: 10155,
                description: format!("stream transform source: invalid subject {src}"),
            });
        }
        crate::protocol::transform::validate(&src, &dest).map_err(|e| ApiError {
            code: 400,
            err_code: 10156,
            description: format!("stream transform: {e}"),
        })
    }

    /// `subject_transform`'s `src` and `dest` (empty when absent).
    fn transform_ends(&self) -> (String, String) {
        let t = self.subject_transform.as_ref();
        let end = |k: &str| {
            t.and_then(|t| t.get(k))
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        (end("src"), end("dest"))
    }

    /// The transform applied to every subject the stream takes in, if any.
    pub(crate) fn subject_transform(&self) -> Option<crate::protocol::transform::Transform> {
        let (src, dest) = self.transform_ends();
        if dest.is_empty() {
            return None;
        }
        crate::protocol::transform::Transform::new(&src, &dest).ok()
    }

    /// Subject delete markers need per-message TTLs and roll-ups: turned on for them, as
    /// nats-server does, unless the request is pedantic.
    fn check_marker_ttl(&mut self, pedantic: bool) -> Result<(), ApiError> {
        if self.subject_delete_marker_ttl < 0 {
            return Err(ApiError::invalid_config(
                "subject delete marker TTL must not be negative",
            ));
        }
        if self.subject_delete_marker_ttl == 0 {
            return Ok(());
        }
        if self.subject_delete_marker_ttl < 1_000_000_000 {
            return Err(ApiError::invalid_config(
                "subject delete marker TTL must be at least 1 second",
            ));
        }
        if !self.allow_msg_ttl {
            if pedantic {
                return Err(ApiError::invalid_config(
                    "subject delete marker cannot be set if message TTLs are disabled",
                ));
            }
            self.allow_msg_ttl = true;
        }
        if !self.allow_rollup_hdrs {
            if pedantic {
                return Err(ApiError::invalid_config(
                    "subject delete marker cannot be set if roll-ups are disabled",
                ));
            }
            self.allow_rollup_hdrs = true;
            self.deny_purge = false;
        }
        Ok(())
    }

    /// Message schedules replace a subject's schedule with a roll-up, so they need roll-ups
    /// (turned on unless the request is pedantic) and cannot discard new messages.
    fn check_schedules(&mut self, pedantic: bool) -> Result<(), ApiError> {
        if !self.allow_msg_schedules {
            return Ok(());
        }
        if self.discard == Discard::New {
            return Err(ApiError::invalid_config(
                "message scheduling cannot use discard new",
            ));
        }
        if !self.allow_rollup_hdrs {
            if pedantic {
                return Err(ApiError::invalid_config(
                    "message scheduling cannot be set if roll-ups are disabled",
                ));
            }
            self.allow_rollup_hdrs = true;
            self.deny_purge = false;
        }
        Ok(())
    }

    /// `persist_mode: async` (acks before the data is fsynced) needs a single-server file
    /// stream without atomic batches.
    fn check_persist_mode(&self) -> Result<(), ApiError> {
        if self.persist_mode.as_deref() != Some("async") {
            return Ok(());
        }
        let clash = if self.storage != Storage::File {
            Some("async persist mode is only supported on file storage")
        } else if self.num_replicas > 1 {
            Some("async persist mode is not supported on replicated streams")
        } else if self.allow_atomic {
            Some("async persist mode is not supported with atomic batch publish")
        } else {
            None
        };
        clash.map_or(Ok(()), |text| Err(ApiError::invalid_config(text)))
    }

    /// What a counter stream (`allow_msg_counter`) cannot be combined with.
    fn check_counter(&self) -> Result<(), ApiError> {
        if !self.allow_msg_counter {
            return Ok(());
        }
        let clash = if self.discard == Discard::New {
            Some("counter stream cannot use discard new")
        } else if self.allow_msg_ttl {
            Some("counter stream cannot use message TTLs")
        } else if self.allow_msg_schedules {
            Some("counter stream cannot use message schedules")
        } else if self.retention != Retention::Limits {
            Some("counter stream can only use limits retention")
        } else {
            None
        };
        clash.map_or(Ok(()), |text| Err(ApiError::invalid_config(text)))
    }

    /// Applies nats-server's defaults and validates; `Err` carries the API error to return.
    pub fn normalize(mut self) -> Result<Self, ApiError> {
        super::versioning::strip(&mut self.metadata);
        if let Some(problem) = name_problem(&self.name) {
            return Err(stream_name_error(problem));
        }
        if self.sources.as_ref().is_some_and(Vec::is_empty) {
            self.sources = None;
        }
        if self.subjects.is_empty() && self.mirror.is_none() && self.sources.is_none() {
            self.subjects = vec![self.name.clone()];
        }
        if self.mirror_direct && self.mirror.is_none() {
            return Err(ApiError::invalid_config(
                "stream has no mirror but does have mirror direct",
            ));
        }
        self.refuse_unimplemented()?;
        self.check_subject_transform()?;
        for (i, s) in self.subjects.iter().enumerate() {
            if !subject::is_valid_subject(s.as_bytes()) {
                return Err(ApiError::invalid_config("invalid subject"));
            }
            if let Some(earlier) = self.subjects[..i].iter().find(|o| subject::overlaps(o, s)) {
                return Err(ApiError::invalid_config(&format!(
                    "subject {earlier:?} overlaps with {s:?}"
                )));
            }
            if let Some(text) = api_overlap(s).filter(|_| !self.no_ack) {
                return Err(ApiError::invalid_config(text));
            }
        }
        if self.num_replicas < 0 {
            return Err(ApiError::replicas_negative());
        }
        if self.num_replicas == 0 {
            self.num_replicas = 1;
        }
        if self.num_replicas > 5 {
            return Err(ApiError::invalid_config("maximum replicas is 5"));
        }
        if self.num_replicas > 1 {
            return Err(ApiError::replicas_not_supported());
        }
        let pedantic = std::mem::take(&mut self.pedantic);
        for (limit, name) in [
            (&mut self.max_msgs, "max_msgs"),
            (&mut self.max_msgs_per_subject, "max_msgs_per_subject"),
            (&mut self.max_bytes, "max_bytes"),
            (&mut self.max_msg_size, "max_msg_size"),
            (&mut self.max_consumers, "max_consumers"),
        ] {
            if pedantic && *limit < -1 {
                return Err(ApiError::pedantic(&format!("{name} must be set to -1")));
            }
            unlimited_if_not_positive(limit);
        }
        if self.max_age < 0 {
            return Err(ApiError::invalid_config("max age can not be negative"));
        }
        if self.max_age != 0 && self.max_age < 100_000_000 {
            return Err(ApiError::invalid_config("max age needs to be >= 100ms"));
        }
        if self.duplicate_window < 0 {
            return Err(ApiError::invalid_config(
                "duplicates window can not be negative",
            ));
        }
        if self.duplicate_window == 0 {
            self.duplicate_window = DEFAULT_DUPLICATE_WINDOW;
            if self.max_age > 0 && self.max_age < self.duplicate_window {
                if pedantic {
                    return Err(ApiError::pedantic(
                        "duplicate window cannot be bigger than max age",
                    ));
                }
                self.duplicate_window = self.max_age;
            }
        } else if self.max_age > 0 && self.duplicate_window > self.max_age {
            return Err(ApiError::dup_window_too_long());
        }
        self.check_counter()?;
        self.check_persist_mode()?;
        if self.discard_new_per_subject
            && (self.discard != Discard::New || self.max_msgs_per_subject <= 0)
        {
            return Err(ApiError::bad_request(
                "discard new per subject requires discard new policy to be set",
            ));
        }
        self.check_marker_ttl(pedantic)?;
        self.check_schedules(pedantic)?;
        match self.compression.as_deref() {
            None | Some("" | "none") => self.compression = None,
            // Not compressed by this store: refused rather than silently stored as is.
            Some("s2") => return Err(ApiError::not_implemented("stream compression s2")),
            Some(_) => {
                return Err(ApiError::invalid_json("unknown compression algorithm"));
            }
        }
        super::sourcing::rules::check(&mut self)?;
        Ok(self)
    }
}

/// Where a consumer starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum DeliverPolicy {
    /// From the first message.
    #[default]
    All,
    /// From the last message.
    Last,
    /// Only new messages.
    New,
    /// From `opt_start_seq`.
    #[serde(rename = "by_start_sequence")]
    ByStartSequence,
    /// From `opt_start_time`.
    #[serde(rename = "by_start_time")]
    ByStartTime,
    /// The last message of every subject.
    #[serde(rename = "last_per_subject")]
    LastPerSubject,
}

/// How messages are acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum AckPolicy {
    /// No acks (what a configuration that names none gets, as on nats-server).
    #[default]
    None,
    /// Acking one acks all before it.
    All,
    /// Each message is acked on its own.
    Explicit,
}

/// Replay speed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum ReplayPolicy {
    /// As fast as possible.
    #[default]
    Instant,
    /// At the pace they were stored.
    Original,
}

/// A consumer's configuration; unknown fields are refused (`10025`) as on nats-server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ConsumerConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub durable_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default)]
    pub deliver_policy: DeliverPolicy,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub opt_start_seq: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub opt_start_time: Option<String>,
    #[serde(default)]
    pub ack_policy: AckPolicy,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub ack_wait: i64,
    #[serde(default)]
    pub max_deliver: i64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub backoff: Vec<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter_subject: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub filter_subjects: Vec<String>,
    #[serde(default)]
    pub replay_policy: ReplayPolicy,
    #[serde(default, skip_serializing_if = "is_zero_u64")]
    pub rate_limit_bps: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sample_freq: Option<String>,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub max_waiting: i64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub max_ack_pending: i64,
    #[serde(default, skip_serializing_if = "is_false")]
    pub flow_control: bool,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub idle_heartbeat: i64,
    #[serde(default, skip_serializing_if = "is_false")]
    pub headers_only: bool,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub max_batch: i64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub max_expires: i64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub max_bytes: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deliver_subject: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deliver_group: Option<String>,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub inactive_threshold: i64,
    #[serde(default)]
    pub num_replicas: i64,
    #[serde(default, skip_serializing_if = "is_false")]
    pub mem_storage: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<serde_json::Map<String, Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pause_until: Option<String>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub direct: bool,
    #[serde(default, skip_serializing_if = "is_false")]
    pub sourcing: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub priority_groups: Vec<String>,
    #[serde(default, skip_serializing_if = "PriorityPolicy::is_none")]
    pub priority_policy: PriorityPolicy,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub priority_timeout: i64,
}

/// How a pull consumer with priority groups picks the pull request a message goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum PriorityPolicy {
    /// In arrival order.
    #[default]
    None,
    /// Requests with `min_pending` / `min_ack_pending` wait until the consumer is that far
    /// behind.
    Overflow,
    /// One client (its `Nats-Pin-Id`) gets every message until it stops pulling.
    PinnedClient,
    /// Requests with a lower `priority` first.
    Prioritized,
}

impl PriorityPolicy {
    fn is_none(&self) -> bool {
        *self == PriorityPolicy::None
    }
}

/// How long a pinned client keeps its pin without pulling, by default: 2 minutes.
pub const DEFAULT_PINNED_TTL: i64 = 120_000_000_000;

/// Default ack wait: 30 s.
pub const DEFAULT_ACK_WAIT: i64 = 30_000_000_000;
/// Default max_ack_pending.
pub const DEFAULT_MAX_ACK_PENDING: i64 = 1000;
/// Default max_waiting for pull consumers.
pub const DEFAULT_MAX_WAITING: i64 = 512;
/// Default inactive threshold of ephemeral consumers: 5 s.
pub const DEFAULT_INACTIVE_THRESHOLD: i64 = 5_000_000_000;

impl ConsumerConfig {
    /// The consumer's name: `durable_name`, else `name`.
    pub fn effective_name(&self) -> Option<&str> {
        self.durable_name.as_deref().or(self.name.as_deref())
    }

    /// True for durable consumers.
    pub fn is_durable(&self) -> bool {
        self.durable_name.is_some()
    }

    /// True for pull consumers.
    pub fn is_pull(&self) -> bool {
        self.deliver_subject.is_none()
    }

    /// All filters (`filter_subject` and `filter_subjects` combined).
    pub fn filters(&self) -> Vec<String> {
        let mut f: Vec<String> = self.filter_subject.iter().cloned().collect();
        f.extend(self.filter_subjects.iter().cloned());
        f.retain(|s| !s.is_empty());
        f
    }

    /// nats-server's rules for `priority_groups`, `priority_policy` and `priority_timeout`.
    pub(crate) fn check_priority(&mut self) -> Result<(), ApiError> {
        if self.priority_timeout < 0 {
            self.priority_timeout = 0;
        }
        if self.priority_policy == PriorityPolicy::None {
            if !self.priority_groups.is_empty() {
                return Err(ApiError::consumer_priority_group_with_policy_none());
            }
            if self.priority_timeout > 0 {
                return Err(ApiError::consumer_pinned_ttl_without_priority_policy());
            }
            return Ok(());
        }
        if !self.is_pull() {
            return Err(ApiError::consumer_push_with_priority_group());
        }
        if self.priority_groups.is_empty() {
            return Err(ApiError::consumer_priority_policy_without_group());
        }
        for g in &self.priority_groups {
            if g.is_empty() {
                return Err(ApiError::consumer_empty_group_name());
            }
            if !valid_group_name(g) {
                return Err(ApiError::consumer_invalid_group_name());
            }
        }
        Ok(())
    }
}

/// A priority group name: 1 to 16 of `A-Z a-z 0-9 / _ = -`.
pub(crate) fn valid_group_name(name: &str) -> bool {
    (1..=16).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'_' | b'=' | b'-'))
}
