//! A consumer configuration's defaults and validation, in nats-server's order and with its
//! errors: [`ConsumerConfig::normalize`] fills in the defaults and checks what the configuration
//! alone decides; [`ConsumerConfig::check_for_stream`] checks it against its stream.

use super::config::{
    consumer_name_error, name_problem, AckPolicy, ConsumerConfig, ConsumerLimits, DeliverPolicy,
    PriorityPolicy, Retention, StreamConfig, DEFAULT_ACK_WAIT, DEFAULT_INACTIVE_THRESHOLD,
    DEFAULT_MAX_ACK_PENDING, DEFAULT_MAX_WAITING, DEFAULT_PINNED_TTL,
};
use super::errors::ApiError;
use crate::protocol::subject;

/// Longest consumer description.
const MAX_DESCRIPTION: usize = 4096;
/// Shortest push heartbeat.
const MIN_HEARTBEAT: i64 = 100_000_000;
/// Shortest `max_expires`.
const MIN_MAX_EXPIRES: i64 = 1_000_000;

impl ConsumerConfig {
    /// Applies nats-server's defaults (negative limits read as none) and validates what the
    /// configuration alone decides.
    pub fn normalize(self) -> Result<Self, ApiError> {
        self.normalize_within(&ConsumerLimits::default(), false)
    }

    /// [`ConsumerConfig::normalize`] for a stream whose `consumer_limits` are `limits`: they
    /// fill in what the configuration leaves at zero, and it may not exceed them. A
    /// `pedantic` request is refused (10157) where a default would change what it asked for.
    pub(crate) fn normalize_within(
        mut self,
        limits: &ConsumerLimits,
        pedantic: bool,
    ) -> Result<Self, ApiError> {
        if pedantic {
            self.check_pedantic(limits)?;
        }
        self.apply_defaults(limits);
        self.check()?;
        if limits.max_ack_pending > 0 && self.max_ack_pending > limits.max_ack_pending {
            let text = format!(
                "consumer max ack pending exceeds system limit of {}",
                limits.max_ack_pending
            );
            return Err(err(400, 10121, &text));
        }
        if limits.inactive_threshold > 0 && self.inactive_threshold > limits.inactive_threshold {
            let limit = std::time::Duration::from_nanos(limits.inactive_threshold as u64);
            let text = format!(
                "consumer inactive threshold exceeds system limit of {}",
                crate::config::go_duration(limit)
            );
            return Err(err(400, 10153, &text));
        }
        Ok(self)
    }

    /// What nats-server's pedantic mode refuses rather than defaulting.
    fn check_pedantic(&self, limits: &ConsumerLimits) -> Result<(), ApiError> {
        let refuse = |what: &str| Err(ApiError::pedantic(what));
        if self.max_deliver < -1 {
            return refuse("max_deliver must be set to -1");
        }
        if self.max_waiting < 0 {
            return refuse("max_waiting must not be negative");
        }
        if self.max_ack_pending < -1 {
            return refuse("max_ack_pending must be set to -1");
        }
        for (value, name) in [
            (self.max_batch, "max_batch"),
            (self.max_expires, "max_expires"),
            (self.max_bytes, "max_bytes"),
            (self.idle_heartbeat, "idle_heartbeat"),
            (self.inactive_threshold, "inactive_threshold"),
            (self.priority_timeout, "priority_timeout"),
        ] {
            if value < 0 {
                return refuse(&format!("{name} must not be negative"));
            }
        }
        let acked = self.ack_policy != AckPolicy::None;
        let ack_wait = if self.ack_wait == 0 && acked {
            DEFAULT_ACK_WAIT
        } else {
            self.ack_wait
        };
        if self.backoff.first().is_some_and(|&first| first != ack_wait) {
            return refuse("first backoff value has to equal batch AckWait");
        }
        if self.max_ack_pending == 0 && limits.max_ack_pending > 0 {
            return refuse("max_ack_pending must be set if it's configured in stream limits");
        }
        if self.inactive_threshold == 0 && limits.inactive_threshold > 0 {
            return refuse("inactive_threshold must be set if it's configured in stream limits");
        }
        Ok(())
    }

    fn apply_defaults(&mut self, limits: &ConsumerLimits) {
        super::versioning::strip(&mut self.metadata);
        if self.max_deliver == 0 || self.max_deliver < -1 {
            self.max_deliver = -1;
        }
        for limit in [
            &mut self.max_waiting,
            &mut self.max_batch,
            &mut self.max_expires,
            &mut self.max_bytes,
            &mut self.idle_heartbeat,
            &mut self.inactive_threshold,
            &mut self.priority_timeout,
        ] {
            *limit = (*limit).max(0);
        }
        if self.max_ack_pending < -1 {
            self.max_ack_pending = -1;
        }
        if self.is_pull() && self.max_waiting == 0 {
            self.max_waiting = DEFAULT_MAX_WAITING;
        }
        let acked = self.ack_policy != AckPolicy::None;
        if self.ack_wait == 0 && acked {
            self.ack_wait = DEFAULT_ACK_WAIT;
        }
        if let Some(&first) = self.backoff.first() {
            self.ack_wait = first;
        }
        if self.max_ack_pending == 0 {
            self.max_ack_pending = limits.max_ack_pending;
        }
        if self.inactive_threshold == 0 {
            self.inactive_threshold = limits.inactive_threshold;
        }
        if self.max_ack_pending == 0 && acked {
            self.max_ack_pending = DEFAULT_MAX_ACK_PENDING;
        }
        if self.priority_policy == PriorityPolicy::PinnedClient && self.priority_timeout == 0 {
            self.priority_timeout = DEFAULT_PINNED_TTL;
        }
        if self.durable_name.is_none() && self.inactive_threshold == 0 {
            self.inactive_threshold = DEFAULT_INACTIVE_THRESHOLD;
        }
        if self.filter_subject.as_deref() == Some("") {
            self.filter_subject = None;
        }
    }

    fn check(&mut self) -> Result<(), ApiError> {
        for n in [&self.name, &self.durable_name].into_iter().flatten() {
            if let Some(problem) = name_problem(n) {
                return Err(consumer_name_error(problem));
            }
        }
        if self.num_replicas < 0 {
            return Err(ApiError::replicas_negative());
        }
        if self.backoff.iter().any(|b| *b < 0) {
            return Err(err(400, 10184, "consumer backoff needs to be positive"));
        }
        if self.ack_wait < 0 {
            return Err(ApiError::ack_wait_negative());
        }
        if self.max_deliver != -1 && self.backoff.len() as i64 > self.max_deliver {
            return Err(err(
                400,
                10116,
                "max deliver is required to be > length of backoff values",
            ));
        }
        if self
            .description
            .as_ref()
            .is_some_and(|d| d.len() > MAX_DESCRIPTION)
        {
            let text =
                format!("consumer description is too long, maximum allowed is {MAX_DESCRIPTION}");
            return Err(err(400, 10107, &text));
        }
        if self.is_pull() {
            self.check_pull()?;
        } else {
            self.check_push()?;
        }
        self.check_filters()?;
        self.check_start()?;
        if let Some(freq) = &self.sample_freq {
            let n = freq.trim_end_matches('%');
            if !n.parse::<i64>().is_ok_and(|n| n >= 0) {
                let text = format!(
                    "failed to parse consumer sampling configuration: strconv.Atoi: parsing {n:?}: invalid syntax"
                );
                return Err(err(400, 10095, &text));
            }
        }
        if self.flow_control && self.idle_heartbeat == 0 {
            return Err(err(
                400,
                10108,
                "consumer with flow control also needs heartbeats",
            ));
        }
        if let (Some(n), Some(d)) = (&self.name, &self.durable_name) {
            if n != d {
                return Err(ApiError::bad_request(
                    "consumer name in subject does not match durable name in request",
                ));
            }
        }
        self.check_priority()
    }

    fn check_push(&self) -> Result<(), ApiError> {
        let d = self.deliver_subject.as_deref().unwrap_or_default();
        if subject::has_wildcard(d.as_bytes()) {
            return Err(ApiError::consumer_deliver_wildcards());
        }
        if self.max_waiting != 0 {
            return Err(err(
                400,
                10080,
                "consumer in push mode can not set max waiting",
            ));
        }
        if self.max_ack_pending > 0 && self.ack_policy == AckPolicy::None {
            return Err(err(
                400,
                10082,
                "consumer requires ack policy for max ack pending",
            ));
        }
        if self.idle_heartbeat > 0 && self.idle_heartbeat < MIN_HEARTBEAT {
            return Err(err(
                400,
                10083,
                "consumer idle heartbeat needs to be >= 100ms",
            ));
        }
        Ok(())
    }

    fn check_pull(&self) -> Result<(), ApiError> {
        if self.rate_limit_bps > 0 {
            return Err(err(
                400,
                10086,
                "consumer in pull mode can not have rate limit set",
            ));
        }
        if self.idle_heartbeat > 0 {
            return Err(err(
                400,
                10088,
                "consumer idle heartbeat requires a push based consumer",
            ));
        }
        if self.flow_control {
            return Err(err(
                400,
                10089,
                "consumer flow control requires a push based consumer",
            ));
        }
        if self.max_expires != 0 && self.max_expires < MIN_MAX_EXPIRES {
            return Err(err(
                400,
                10115,
                "consumer max request expires needs to be >= 1ms",
            ));
        }
        Ok(())
    }

    fn check_filters(&self) -> Result<(), ApiError> {
        if self.filter_subject.is_some() && !self.filter_subjects.is_empty() {
            return Err(err(
                400,
                10136,
                "consumer cannot have both FilterSubject and FilterSubjects specified",
            ));
        }
        if self.filter_subjects.iter().any(String::is_empty) {
            return Err(err(
                400,
                10139,
                "consumer filter in FilterSubjects cannot be empty",
            ));
        }
        let filters = self.filters();
        for (i, f) in filters.iter().enumerate() {
            if !subject::is_valid_subject(f.as_bytes()) {
                return Err(ApiError::invalid_config("invalid subject"));
            }
            let overlaps = filters
                .iter()
                .enumerate()
                .any(|(j, g)| i != j && subject::overlaps(f, g));
            if overlaps {
                return Err(err(400, 10138, "consumer subject filters cannot overlap"));
            }
        }
        Ok(())
    }

    /// The deliver policy against `opt_start_seq` / `opt_start_time` (10094).
    fn check_start(&self) -> Result<(), ApiError> {
        let (policy, seq, time) = (
            self.deliver_policy,
            self.opt_start_seq.unwrap_or(0) > 0,
            self.opt_start_time.is_some(),
        );
        let name = match policy {
            DeliverPolicy::All => "all",
            DeliverPolicy::Last => "last",
            DeliverPolicy::LastPerSubject => "last per subject",
            DeliverPolicy::New => "new",
            DeliverPolicy::ByStartSequence => "by start sequence",
            DeliverPolicy::ByStartTime => "by start time",
        };
        let also = |what: &str| {
            let text = format!(
                "consumer delivery policy is deliver {name}, but optional start {what} is also set"
            );
            Err(err(400, 10094, &text))
        };
        let unset = |what: &str| {
            let text = format!(
                "consumer delivery policy is deliver {name}, but optional {what} is not set"
            );
            Err(err(400, 10094, &text))
        };
        match policy {
            DeliverPolicy::ByStartSequence if !seq => unset("start sequence"),
            DeliverPolicy::ByStartSequence if time => also("time"),
            DeliverPolicy::ByStartTime if !time => unset("start time"),
            // (nats-server's text says "start" twice here.)
            DeliverPolicy::ByStartTime if seq => also("start sequence"),
            DeliverPolicy::ByStartSequence | DeliverPolicy::ByStartTime => Ok(()),
            _ if seq => also("sequence"),
            _ if time => also("time"),
            DeliverPolicy::LastPerSubject if self.filters().is_empty() => unset("filter subject"),
            _ => Ok(()),
        }
    }

    /// Checks against the stream the consumer is for: delivery loops, replicas, work-queue
    /// rules that need no other consumer.
    pub(crate) fn check_for_stream(&self, stream: &StreamConfig) -> Result<(), ApiError> {
        if self.num_replicas > 1 && stream.num_replicas <= 1 {
            return Err(ApiError::replicas_not_supported());
        }
        if self.num_replicas > stream.num_replicas {
            return Err(err(
                400,
                10126,
                "consumer config replica count exceeds parent stream",
            ));
        }
        if let Some(d) = &self.deliver_subject {
            if stream.subjects.iter().any(|s| subject::covers(s, d)) {
                return Err(err(400, 10081, "consumer deliver subject forms a cycle"));
            }
        }
        if self.is_pull()
            && self.ack_policy == AckPolicy::None
            && stream.retention == Retention::WorkQueue
        {
            return Err(err(
                400,
                10084,
                "consumer in pull mode requires explicit ack policy on workqueue stream",
            ));
        }
        Ok(())
    }
}

impl ConsumerConfig {
    /// What an update may not change, with nats-server's errors (10012).
    pub(crate) fn check_update(&self, new: &ConsumerConfig) -> Result<(), ApiError> {
        let refused = |what: &str| Err(err(500, 10012, what));
        if self.deliver_policy != new.deliver_policy {
            return refused("deliver policy can not be updated");
        }
        if self.mem_storage != new.mem_storage {
            return refused("storage type can not be updated");
        }
        if self.direct != new.direct {
            return refused("direct can not be updated");
        }
        if self.sourcing != new.sourcing {
            return refused("sourcing can not be updated");
        }
        if self.opt_start_seq.unwrap_or(0) != new.opt_start_seq.unwrap_or(0) {
            return refused("start sequence can not be updated");
        }
        let time = |c: &ConsumerConfig| {
            c.opt_start_time
                .as_deref()
                .map(|t| super::time::parse_rfc3339(t).unwrap_or(i64::MIN))
        };
        if time(self) != time(new) {
            return refused("start time can not be updated");
        }
        if self.ack_policy != new.ack_policy {
            return refused("ack policy can not be updated");
        }
        if self.replay_policy != new.replay_policy {
            return refused("replay policy can not be updated");
        }
        if self.idle_heartbeat != new.idle_heartbeat {
            return refused("heart beats can not be updated");
        }
        if self.flow_control != new.flow_control {
            return refused("flow control can not be updated");
        }
        match (&self.deliver_subject, &new.deliver_subject) {
            (None, Some(_)) => return refused("can not update pull consumer to push based"),
            (Some(_), None) => return refused("can not update push consumer to pull based"),
            _ => {}
        }
        if self.max_waiting != new.max_waiting {
            return refused("max waiting can not be updated");
        }
        Ok(())
    }
}

fn err(code: u16, err_code: u32, text: &str) -> ApiError {
    ApiError::new(code, err_code, text)
}
