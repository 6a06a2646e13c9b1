//! JetStream API errors: nats-server's HTTP-like `code`, its `err_code` numbers and texts,
//! serialized as `{"code","err_code","description"}` inside a response's `error` field.

use serde::{Deserialize, Serialize};

/// One API error.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{description} ({err_code})")]
pub struct ApiError {
    /// HTTP-like status.
    pub code: u16,
    /// nats-server's error code.
    pub err_code: u32,
    /// Human-readable text.
    pub description: String,
}

macro_rules! api_errors {
    ($($fn_name:ident => ($code:expr, $err:expr, $text:expr);)*) => {
        impl ApiError {
            $(
                #[doc = $text]
                pub fn $fn_name() -> Self {
                    Self { code: $code, err_code: $err, description: $text.to_string() }
                }
            )*
        }
    };
}

api_errors! {
    not_enabled => (503, 10076, "JetStream not enabled");
    not_enabled_for_account => (503, 10039, "JetStream not enabled for account");
    stream_not_found => (404, 10059, "stream not found");
    stream_name_exist => (400, 10058, "stream name already in use with a different configuration");
    stream_name_invalid => (400, 10128, "Stream name can not contain path separators");
    subjects_overlap => (400, 10065, "subjects overlap with an existing stream");
    stream_mismatch => (400, 10056, "stream name in subject does not match request");
    replicas_not_supported => (500, 10074, "replicas > 1 not supported in non-clustered mode");
    dup_window_too_long => (400, 10052, "duplicates window can not be larger then max age");
    consumer_not_found => (404, 10014, "consumer not found");
    consumer_name_exist => (400, 10013, "consumer name already in use");
    consumer_already_exists => (400, 10148, "consumer already exists");
    consumer_does_not_exist => (400, 10149, "consumer does not exist");
    consumer_name_invalid => (500, 10052, "consumer name can not contain '.', '*', '>', '\\', '/'");
    consumer_durable_mismatch => (400, 10017, "consumer name in subject does not match durable name in request");
    consumer_create_filter_mismatch => (400, 10131, "Consumer create request did not match filtered subject from create subject");
    consumer_deliver_wildcards => (400, 10079, "consumer deliver subject has wildcards");
    consumer_wq_not_unique => (400, 10100, "filtered consumer not unique on workqueue stream");
    consumer_wq_multiple_unfiltered => (400, 10099, "multiple non-filtered consumers not allowed on workqueue stream");
    consumer_wq_explicit_ack => (400, 10098, "workqueue stream requires explicit ack");
    consumer_wq_deliver_all => (400, 10101, "consumer must be deliver all on workqueue stream");
    max_consumers => (400, 10026, "maximum consumers limit reached");
    max_streams => (400, 10027, "maximum number of streams reached");
    no_message_found => (404, 10037, "no message found");
    message_too_large => (400, 10054, "message size exceeds maximum allowed");
    expected_stream_mismatch => (400, 10060, "expected stream does not match");
    sealed => (400, 10109, "invalid operation on sealed stream");
    stream_msgs_exceeded => (503, 10077, "maximum messages exceeded");
    stream_bytes_exceeded => (503, 10077, "maximum bytes exceeded");
    stream_msgs_per_subject_exceeded => (503, 10077, "maximum messages per subject exceeded");
    rollup_not_allowed => (500, 10111, "rollup not permitted");
    ttl_invalid => (400, 10165, "invalid per-message TTL");
    ttl_disabled => (400, 10166, "per-message TTL is disabled");
    empty_request_expected => (400, 10038, "expected an empty request payload");
    insufficient_storage => (500, 10047, "insufficient storage resources available");
    insufficient_memory => (500, 10028, "insufficient memory resources available");
    insufficient_resources => (503, 10023, "insufficient resources");
    replicas_negative => (400, 10133, "replicas count cannot be negative");
    ack_wait_negative => (400, 10183, "consumer ack wait needs to be positive");
    stream_store_failed => (500, 10049, "error creating store for stream");
    consumer_store_failed => (500, 10012, "error creating store for consumer");
    consumer_ephemeral_with_durable => (400, 10020, "consumer expected to be ephemeral but a durable name was set in request");
    consumer_durable_name_missing => (400, 10018, "consumer expected to be durable but a durable name was not set");
    consumer_name_path_separators => (400, 10127, "Consumer name can not contain path separators");
    consumer_name_too_long => (400, 10102, "consumer name is too long, maximum allowed is 255");
    required_api_level => (412, 10185, "JetStream minimum api level required");
    consumer_priority_policy_without_group => (400, 10159, "Setting PriorityPolicy requires at least one PriorityGroup to be set");
    consumer_invalid_priority_group => (400, 10160, "Provided priority group does not exist for this consumer");
    consumer_empty_group_name => (400, 10161, "Group name cannot be an empty string");
    consumer_invalid_group_name => (400, 10162, "Valid priority group name must match A-Z, a-z, 0-9, -_/=)+ and may not exceed 16 characters");
    consumer_push_with_priority_group => (400, 10178, "priority groups can not be used with push consumers");
    consumer_priority_group_with_policy_none => (400, 10196, "consumer can not have priority groups when policy is none");
    consumer_pinned_ttl_without_priority_policy => (400, 10197, "PinnedTTL cannot be set when PriorityPolicy is none");
}

impl ApiError {
    /// An error with nats-server's status, code and text.
    pub fn new(code: u16, err_code: u32, text: &str) -> Self {
        Self {
            code,
            err_code,
            description: text.to_string(),
        }
    }

    /// 10003 with a specific text.
    pub fn bad_request(text: &str) -> Self {
        Self {
            code: 400,
            err_code: 10003,
            description: text.to_string(),
        }
    }

    /// 10052: the stream configuration is invalid.
    pub fn invalid_config(text: &str) -> Self {
        Self {
            code: 500,
            err_code: 10052,
            description: text.to_string(),
        }
    }

    /// 10025 invalid JSON.
    pub fn invalid_json(err: &str) -> Self {
        Self {
            code: 400,
            err_code: 10025,
            description: format!("invalid JSON: {err}"),
        }
    }

    /// 10025 for a request body serde could not decode, worded as nats-server's Go decoder:
    /// `invalid JSON: json: unknown field "x"`, `invalid JSON: unexpected EOF`.
    pub fn from_json(e: &serde_json::Error) -> Self {
        let text = e.to_string();
        if let Some(rest) = text.strip_prefix("unknown field `") {
            if let Some((field, _)) = rest.split_once('`') {
                return Self::invalid_json(&format!("json: unknown field \"{field}\""));
            }
        }
        if e.is_eof() {
            return Self::invalid_json("unexpected EOF");
        }
        Self::invalid_json(&text)
    }

    /// 10063 the op's assigned sequence is not the stream's next (nats-server's answer when a
    /// replica's sequence does not match its leader's).
    pub fn sequence_mismatch() -> Self {
        Self {
            code: 503,
            err_code: 10063,
            description: "expected stream sequence does not match".to_string(),
        }
    }

    /// 10071 wrong last sequence.
    pub fn wrong_last_sequence(seq: u64) -> Self {
        Self {
            code: 400,
            err_code: 10071,
            description: format!("wrong last sequence: {seq}"),
        }
    }

    /// 10070 wrong last msg id.
    pub fn wrong_last_msg_id(id: &str) -> Self {
        Self {
            code: 400,
            err_code: 10070,
            description: format!("wrong last msg ID: {id}"),
        }
    }

    /// 10043-like: a sequence that does not exist.
    pub fn sequence_not_found(seq: u64) -> Self {
        Self {
            code: 400,
            err_code: 10043,
            description: format!("sequence {seq} not found"),
        }
    }

    /// 10057 message delete failed.
    pub fn msg_delete_failed(err: &str) -> Self {
        Self {
            code: 500,
            err_code: 10057,
            description: err.to_string(),
        }
    }

    /// 10077 generic store failure.
    pub fn store_failed(err: &str) -> Self {
        Self {
            code: 503,
            err_code: 10077,
            description: err.to_string(),
        }
    }

    /// 10157: what a pedantic request refuses instead of defaulting.
    pub fn pedantic(what: &str) -> Self {
        Self {
            code: 400,
            err_code: 10157,
            description: format!("pedantic mode: {what}"),
        }
    }

    /// 10204: a consumer reset nats-server's rules refuse (`why`: "below start seq", ...).
    pub fn invalid_reset(why: &str) -> Self {
        Self {
            code: 400,
            err_code: 10204,
            description: format!("invalid reset: {why}"),
        }
    }

    /// 10012-like: a feature causeway does not implement yet.
    pub fn not_implemented(what: &str) -> Self {
        Self {
            code: 500,
            err_code: 10012,
            description: format!("{what} not supported by this server"),
        }
    }
}
