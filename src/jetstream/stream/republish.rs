//! Republishing stored messages (`republish: {src, dest, headers_only}`) and the subject mapping
//! it uses.

use super::Stream;
use crate::jetstream::headers;

impl Stream {
    /// The republished copy of a just-stored message, if the stream's `republish` matches it.
    pub fn republish(
        &self,
        seq: u64,
        m: &crate::server::Message,
    ) -> Option<crate::jetstream::consumer::Outgoing> {
        let rp = self.config.republish.as_ref()?;
        let src = rp.get("src").and_then(|v| v.as_str()).unwrap_or(">");
        let dest = rp.get("dest").and_then(|v| v.as_str())?;
        let headers_only = rp
            .get("headers_only")
            .and_then(|v| v.as_bool())
            .unwrap_or(false);
        let to = map_subject(src, dest, &m.subject)?;
        let seq_s = seq.to_string();
        let size = m.payload.len().to_string();
        let mut pairs = vec![
            ("Nats-Stream", self.config.name.as_str()),
            ("Nats-Subject", m.subject.as_str()),
            ("Nats-Sequence", seq_s.as_str()),
        ];
        let last = seq.saturating_sub(1).to_string();
        pairs.push(("Nats-Last-Sequence", last.as_str()));
        if headers_only {
            pairs.push(("Nats-Msg-Size", size.as_str()));
        }
        Some(crate::jetstream::consumer::Outgoing {
            to: to.clone(),
            subject: to,
            reply: None,
            headers: Some(headers::append(m.headers.as_deref(), &pairs)),
            payload: if headers_only {
                bytes::Bytes::new()
            } else {
                m.payload.clone()
            },
        })
    }
}

/// Maps `subject` matched by `src` onto `dest`: wildcards of `dest` (`*`, `>`, `$N`,
/// `{{wildcard(N)}}`) take the tokens captured by `src`'s wildcards, in order.
pub(crate) fn map_subject(src: &str, dest: &str, subject: &str) -> Option<String> {
    if !crate::protocol::subject::matches(src, subject) {
        return None;
    }
    let stoks: Vec<&str> = subject.split('.').collect();
    let mut captures: Vec<String> = Vec::new();
    let mut rest: Option<String> = None;
    for (i, t) in src.split('.').enumerate() {
        match t {
            "*" => captures.push(stoks.get(i)?.to_string()),
            ">" => rest = Some(stoks.get(i..)?.join(".")),
            _ => {}
        }
    }
    let mut next = 0;
    let mut out = Vec::new();
    for t in dest.split('.') {
        let idx = t
            .strip_prefix('$')
            .and_then(|n| n.parse::<usize>().ok())
            .or_else(|| {
                t.strip_prefix("{{wildcard(")
                    .and_then(|r| r.strip_suffix(")}}"))
                    .and_then(|n| n.trim().parse::<usize>().ok())
            });
        match (t, idx) {
            (_, Some(n)) => out.push(captures.get(n.checked_sub(1)?)?.clone()),
            ("*", None) => {
                out.push(captures.get(next)?.clone());
                next += 1;
            }
            (">", None) => out.push(rest.clone().unwrap_or_else(|| stoks.join("."))),
            (lit, None) => out.push(lit.to_string()),
        }
    }
    Some(out.join("."))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jetstream::stream::parse_ttl;

    #[test]
    fn subject_mapping() {
        assert_eq!(
            map_subject(">", "repub.>", "a.b").as_deref(),
            Some("repub.a.b")
        );
        assert_eq!(
            map_subject("$KV.b.>", "rp.>", "$KV.b.k").as_deref(),
            Some("rp.k")
        );
        assert_eq!(
            map_subject("a.*.c", "x.$1", "a.q.c").as_deref(),
            Some("x.q")
        );
        assert_eq!(
            map_subject("a.*", "x.{{wildcard(1)}}", "a.z").as_deref(),
            Some("x.z")
        );
        assert_eq!(map_subject("a.*", "x.y", "b.z"), None);
        assert_eq!(parse_ttl("2s"), Some(2_000_000_000));
        assert_eq!(parse_ttl("5"), Some(5_000_000_000));
        assert_eq!(parse_ttl("never"), Some(-1));
        assert_eq!(parse_ttl("10ms"), None);
    }
}
