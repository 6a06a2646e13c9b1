//! Subject syntax: validation of subjects and queue names, and wildcard matching.
//!
//! A subject is a non-empty sequence of non-empty tokens separated by `.`. In subscriptions a
//! token may be `*` (any one token) or, as the last token only, `>` (one or more tokens).

/// True if `b` may not appear inside a token.
#[inline]
fn is_bad_byte(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n' | 0)
}

/// Validates a subscription subject: wildcards allowed as whole tokens, `>` only last.
pub fn is_valid_subject(s: &[u8]) -> bool {
    if s.is_empty() {
        return false;
    }
    let mut tokens = s.split(|&b| b == b'.').peekable();
    while let Some(tok) = tokens.next() {
        if tok.is_empty() || tok.iter().any(|&b| is_bad_byte(b)) {
            return false;
        }
        if tok == b">" && tokens.peek().is_some() {
            return false;
        }
    }
    true
}

/// Validates a publish subject: a valid subject with no wildcard tokens.
pub fn is_valid_literal_subject(s: &[u8]) -> bool {
    is_valid_subject(s) && s.split(|&b| b == b'.').all(|t| t != b"*" && t != b">")
}

/// True if the subject has an empty token (`foo..bar`, `foo.`, `.foo`, `.`, or is empty):
/// nats-server delivers such a publish to no one, whatever the subscriptions.
#[inline]
pub fn has_empty_token(s: &[u8]) -> bool {
    s.first().is_none_or(|&b| b == b'.')
        || s.last() == Some(&b'.')
        || memchr::memmem::find(s, b"..").is_some()
}

/// True if the subject contains a wildcard token.
pub fn has_wildcard(s: &[u8]) -> bool {
    s.split(|&b| b == b'.').any(|t| t == b"*" || t == b">")
}

/// Validates a queue group name: non-empty, no whitespace.
pub fn is_valid_queue(q: &[u8]) -> bool {
    !q.is_empty() && !q.iter().any(|&b| is_bad_byte(b))
}

/// True if the literal `subject` is matched by `pattern` (which may hold wildcards).
pub fn matches(pattern: &str, subject: &str) -> bool {
    let mut p = pattern.split('.');
    let mut s = subject.split('.');
    loop {
        match (p.next(), s.next()) {
            (Some(">"), Some(_)) => return true,
            (Some("*"), Some(_)) => {}
            (Some(pt), Some(st)) if pt == st => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// True if every subject matched by `sub` (a pattern) is also matched by `pattern`.
pub fn covers(pattern: &str, sub: &str) -> bool {
    let mut p = pattern.split('.');
    let mut s = sub.split('.');
    loop {
        match (p.next(), s.next()) {
            (Some(">"), Some(_)) => return true,
            (Some("*"), Some(st)) if st != ">" => {}
            (Some(pt), Some(st)) if pt == st => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// True if some subject could match both patterns.
pub fn overlaps(a: &str, b: &str) -> bool {
    let mut x = a.split('.');
    let mut y = b.split('.');
    loop {
        match (x.next(), y.next()) {
            (Some(">"), Some(_)) | (Some(_), Some(">")) => return true,
            (Some("*"), Some(_)) | (Some(_), Some("*")) => {}
            (Some(p), Some(q)) if p == q => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// Rewrites `subj`, a subject `from` matches, into the space of `to`, a pattern with the
/// same wildcards: the i-th `*` of `to` takes the token the i-th `*` of `from` matched, and
/// `>` takes the rest. `map_subject("a.*.>", "b.*.x.>", "a.1.2.3")` is `"b.1.x.2.3"`.
pub fn map_subject(from: &str, to: &str, subj: &str) -> String {
    if from == to {
        return subj.to_string();
    }
    let tokens: Vec<&str> = subj.split('.').collect();
    let mut stars: Vec<&str> = Vec::new();
    let mut tail: &[&str] = &[];
    for (i, t) in from.split('.').enumerate() {
        match t {
            "*" => stars.extend(tokens.get(i)),
            ">" => {
                tail = tokens.get(i..).unwrap_or_default();
                break;
            }
            _ => {}
        }
    }
    let mut stars = stars.into_iter();
    let mut out: Vec<&str> = Vec::with_capacity(tokens.len());
    for t in to.split('.') {
        match t {
            "*" => out.extend(stars.next()),
            ">" => out.extend_from_slice(tail),
            lit => out.push(lit),
        }
    }
    out.join(".")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_map_between_patterns() {
        assert_eq!(map_subject("a.*.>", "b.*.x.>", "a.1.2.3"), "b.1.x.2.3");
        assert_eq!(
            map_subject("orders.>", "from_a.orders.>", "orders.new"),
            "from_a.orders.new"
        );
        assert_eq!(map_subject("svc.echo", "a.echo", "svc.echo"), "a.echo");
        assert_eq!(map_subject("x.*", "x.*", "x.y"), "x.y");
    }

    #[test]
    fn validation() {
        for ok in [
            "foo",
            "foo.bar",
            "foo.*",
            "foo.>",
            ">",
            "*",
            "*.*.>",
            "a.b-c_d.$e",
        ] {
            assert!(is_valid_subject(ok.as_bytes()), "{ok}");
        }
        for bad in [
            "",
            ".",
            "foo.",
            ".foo",
            "foo..bar",
            "foo.>.bar",
            "foo bar",
            "a.\tb",
        ] {
            assert!(!is_valid_subject(bad.as_bytes()), "{bad:?}");
        }
        assert!(is_valid_literal_subject(b"foo.bar"));
        assert!(!is_valid_literal_subject(b"foo.*"));
        assert!(!is_valid_literal_subject(b"foo.>"));
        assert!(is_valid_literal_subject(b"foo.*x"));
    }

    #[test]
    fn matching() {
        assert!(matches("foo.*", "foo.bar"));
        assert!(!matches("foo.*", "foo.bar.baz"));
        assert!(matches("foo.>", "foo.bar.baz"));
        assert!(!matches("foo.>", "foo"));
        assert!(matches(">", "a"));
        assert!(matches("*.b.*", "a.b.c"));
        assert!(!matches("a.b", "a.b.c"));
        assert!(covers("foo.>", "foo.*"));
        assert!(covers("foo.*", "foo.bar"));
        assert!(!covers("foo.*", "foo.>"));
        assert!(!covers("foo.bar", "foo.*"));
        assert!(overlaps("foo.*", "*.bar"));
        assert!(!overlaps("foo.*", "bar.*"));
        assert!(overlaps("foo.>", "foo.a.b"));
    }
}
