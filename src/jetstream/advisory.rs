//! JetStream advisories with nats-server's subjects and JSON, published in the stream's
//! account when someone listens: `$JS.EVENT.ADVISORY.STREAM.CREATED|UPDATED|DELETED.<stream>`
//! and `$JS.EVENT.ADVISORY.CONSUMER.CREATED|DELETED.<stream>.<consumer>` (the consumer
//! delivery advisories, max deliveries and terminated, are sent where they happen).

use serde_json::{json, Value};

use crate::server::Client;

/// A stream or consumer action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    Create,
    Modify,
    Delete,
}

impl Action {
    fn word(self) -> &'static str {
        match self {
            Action::Create => "create",
            Action::Modify => "modify",
            Action::Delete => "delete",
        }
    }

    fn subject_token(self) -> &'static str {
        match self {
            Action::Create => "CREATED",
            Action::Modify => "UPDATED",
            Action::Delete => "DELETED",
        }
    }
}

/// `type`, `id` and `timestamp`, as every advisory starts.
pub(crate) fn typed(kind: &str) -> Value {
    json!({
        "type": format!("io.nats.jetstream.advisory.v1.{kind}"),
        "id": nuid::next().to_string(),
        "timestamp": super::time::rfc3339(super::time::now_nanos()),
    })
}

fn publish(client: &Client, subject: &str, body: &Value) {
    if client.has_interest(subject) {
        let bytes = serde_json::to_vec(body).unwrap_or_default();
        client.publish_sync(subject, None, None, &bytes);
    }
}

/// A stream was created, updated or deleted.
pub(crate) fn stream_action(client: &Client, stream: &str, action: Action) {
    let mut v = typed("stream_action");
    v["stream"] = json!(stream);
    v["action"] = json!(action.word());
    let subject = format!(
        "$JS.EVENT.ADVISORY.STREAM.{}.{stream}",
        action.subject_token()
    );
    publish(client, &subject, &v);
}

/// A consumer was created or deleted.
pub(crate) fn consumer_action(client: &Client, stream: &str, consumer: &str, action: Action) {
    let mut v = typed("consumer_action");
    v["stream"] = json!(stream);
    v["consumer"] = json!(consumer);
    v["action"] = json!(action.word());
    let subject = format!(
        "$JS.EVENT.ADVISORY.CONSUMER.{}.{stream}.{consumer}",
        action.subject_token()
    );
    publish(client, &subject, &v);
}

/// The advisory a successful API response implies (`stream_create` → created, ...), sent
/// where the response is: `name` is the stream the request was about.
pub(crate) fn after_response(client: &Client, kind: &str, name: &str, ok: bool) {
    if !ok {
        return;
    }
    let action = match kind {
        "stream_create" => Action::Create,
        "stream_update" => Action::Modify,
        "stream_delete" => Action::Delete,
        _ => return,
    };
    stream_action(client, name, action);
}
