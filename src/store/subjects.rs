//! Subject filters as the store understands them: `*` stands for exactly one token and a final
//! `>` for one or more tokens. The store trusts callers to pass valid subjects; malformed
//! filters simply match nothing sensible rather than panicking.

/// True if `subject` (a literal subject) is selected by `filter` (which may hold wildcards).
pub fn subject_matches(filter: &str, subject: &str) -> bool {
    let mut wanted = filter.split('.');
    let mut have = subject.split('.');
    loop {
        match (wanted.next(), have.next()) {
            (None, None) => return true,
            (Some(">"), Some(_)) => return true,
            (Some(w), Some(h)) if w == "*" || w == h => continue,
            _ => return false,
        }
    }
}

/// True if the filter has no wildcard token, so it names exactly one subject.
pub fn is_literal(filter: &str) -> bool {
    !filter.split('.').any(|t| t == "*" || t == ">")
}

/// True if the filter selects every subject (`None` or `">"`).
pub fn selects_all(filter: Option<&str>) -> bool {
    matches!(filter, None | Some(">"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards() {
        assert!(subject_matches("a.b", "a.b"));
        assert!(!subject_matches("a.b", "a.b.c"));
        assert!(!subject_matches("a.b.c", "a.b"));
        assert!(subject_matches("a.*", "a.b"));
        assert!(!subject_matches("a.*", "a.b.c"));
        assert!(subject_matches("a.>", "a.b.c"));
        assert!(!subject_matches("a.>", "a"));
        assert!(subject_matches(">", "x"));
        assert!(subject_matches("*.b.>", "a.b.c.d"));
        assert!(!subject_matches("*.b.>", "a.c.c"));
        assert!(is_literal("a.b"));
        assert!(!is_literal("a.*"));
        assert!(selects_all(Some(">")));
        assert!(!selects_all(Some("a.>")));
    }
}
