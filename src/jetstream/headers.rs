//! Reading and writing `NATS/1.0` header blocks: the publish headers JetStream acts on and the
//! status messages (100/404/408/409) it sends to consumers.

/// `Nats-Msg-Id`: de-duplication id.
pub const MSG_ID: &str = "Nats-Msg-Id";
/// `Nats-Expected-Stream`.
pub const EXPECTED_STREAM: &str = "Nats-Expected-Stream";
/// `Nats-Expected-Last-Sequence`.
pub const EXPECTED_LAST_SEQ: &str = "Nats-Expected-Last-Sequence";
/// `Nats-Expected-Last-Subject-Sequence`.
pub const EXPECTED_LAST_SUBJ_SEQ: &str = "Nats-Expected-Last-Subject-Sequence";
/// `Nats-Expected-Last-Subject-Sequence-Subject`.
pub const EXPECTED_LAST_SUBJ_SEQ_SUBJ: &str = "Nats-Expected-Last-Subject-Sequence-Subject";
/// `Nats-Expected-Last-Msg-Id`.
pub const EXPECTED_LAST_MSG_ID: &str = "Nats-Expected-Last-Msg-Id";
/// `Nats-Rollup`.
pub const ROLLUP: &str = "Nats-Rollup";
/// `Nats-TTL`.
pub const TTL: &str = "Nats-TTL";
/// Where a sourced message came from: `<stream> <seq> <filter> <dest> <subject>`.
pub const STREAM_SOURCE: &str = "Nats-Stream-Source";

/// Returns the first value of `key` (case-insensitive) in a raw header block.
pub fn get<'a>(block: &'a [u8], key: &str) -> Option<&'a str> {
    let text = std::str::from_utf8(block).ok()?;
    text.split("\r\n").skip(1).find_map(|line| {
        let (k, v) = line.split_once(':')?;
        k.trim().eq_ignore_ascii_case(key).then(|| v.trim())
    })
}

/// Builds a header block with an optional status line and key/value pairs.
pub fn build(status: Option<(u16, &str)>, pairs: &[(&str, &str)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    out.extend_from_slice(b"NATS/1.0");
    if let Some((code, desc)) = status {
        out.extend_from_slice(format!(" {code}").as_bytes());
        if !desc.is_empty() {
            out.push(b' ');
            out.extend_from_slice(desc.as_bytes());
        }
    }
    out.extend_from_slice(b"\r\n");
    finish(out, pairs)
}

/// Appends key/value pairs to an existing header block (or starts one).
pub fn append(block: Option<&[u8]>, pairs: &[(&str, &str)]) -> Vec<u8> {
    let out = match block {
        Some(b) if b.len() >= 4 && b.ends_with(b"\r\n\r\n") => b[..b.len() - 2].to_vec(),
        _ => b"NATS/1.0\r\n".to_vec(),
    };
    finish(out, pairs)
}

/// The header block without the lines whose key `drop` picks (`None` if none is left).
pub fn without(block: Option<&[u8]>, drop: impl Fn(&str) -> bool) -> Option<Vec<u8>> {
    let text = std::str::from_utf8(block?).ok()?;
    let mut lines = text.split("\r\n");
    let first = lines.next()?;
    let kept: Vec<&str> = lines
        .filter(|l| !l.is_empty())
        .filter(|l| l.split_once(':').is_some_and(|(k, _)| !drop(k.trim())))
        .collect();
    (!kept.is_empty()).then(|| {
        let mut out = format!("{first}\r\n");
        for line in kept {
            out.push_str(line);
            out.push_str("\r\n");
        }
        out.push_str("\r\n");
        out.into_bytes()
    })
}

/// The header block with the value of `key` (its first line of that exact name) replaced.
pub fn replace(block: &[u8], key: &str, value: &str) -> Vec<u8> {
    let Ok(text) = std::str::from_utf8(block) else {
        return block.to_vec();
    };
    let mut done = false;
    let lines: Vec<String> = text
        .split("\r\n")
        .map(|line| match line.split_once(':') {
            Some((k, _)) if !done && k == key => {
                done = true;
                format!("{k}: {value}")
            }
            _ => line.to_string(),
        })
        .collect();
    lines.join("\r\n").into_bytes()
}

/// Adds `Key: Value` lines and the closing blank line.
fn finish(mut out: Vec<u8>, pairs: &[(&str, &str)]) -> Vec<u8> {
    for (k, v) in pairs {
        out.extend_from_slice(k.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(v.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn get_and_build() {
        let h = build(None, &[("Nats-Msg-Id", "abc"), ("X", "1")]);
        assert_eq!(get(&h, "nats-msg-id"), Some("abc"));
        assert_eq!(get(&h, "Y"), None);
        let s = build(Some((404, "No Messages")), &[]);
        assert_eq!(s, b"NATS/1.0 404 No Messages\r\n\r\n");
        let a = append(Some(&h), &[("Nats-Stream", "S")]);
        assert_eq!(get(&a, "Nats-Stream"), Some("S"));
        assert_eq!(get(&a, "X"), Some("1"));
    }
}
