//! Subject transforms as nats-server defines them (stream `subject_transform`, and the mapping
//! language of its account mappings and source transforms): a source pattern and a
//! destination whose tokens are literals, `>`, `$N` or a `{{function(args)}}` — `wildcard`,
//! `partition` (FNV-1a hash into N buckets), `splitFromLeft`/`splitFromRight`,
//! `sliceFromLeft`/`sliceFromRight`, `split`, `left`/`right` and `random`.

use std::fmt;

/// Why a transform cannot be made; `Display` gives nats-server's text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransformError {
    /// The source or destination is not a valid subject.
    #[error("invalid subject")]
    BadSubject,
    /// A destination problem, with the token it is about (if any).
    #[error("{}", destination_text(.0, .1))]
    Destination(&'static str, String),
}

fn destination_text(what: &str, token: &str) -> String {
    let text = format!("invalid mapping destination: {what}");
    if token.is_empty() {
        text
    } else {
        format!("{text} in {token}")
    }
}

const INVALID: &str = "invalid transform";
const UNKNOWN: &str = "unknown function";
const OUT_OF_RANGE: &str = "wildcard index out of range";
const NOT_ENOUGH: &str = "not enough arguments passed to the function";
const BAD_ARG: &str = "function argument is invalid or in the wrong format";
const TOO_MANY: &str = "too many arguments passed to the function";

/// One destination token.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Literal(String),
    /// The tail `>` matched.
    Rest,
    /// The source token at this index.
    Wildcard(usize),
    /// A bucket of the FNV-1a hash of these source tokens (the whole subject if none).
    Partition(u32, Vec<usize>),
    SplitFromLeft(usize, usize),
    SplitFromRight(usize, usize),
    SliceFromLeft(usize, usize),
    SliceFromRight(usize, usize),
    Split(usize, String),
    Left(usize, usize),
    Right(usize, usize),
    Random(u32),
}

/// A transform from subjects matching `src` onto `dest`.
#[derive(Clone, PartialEq, Eq)]
pub struct Transform {
    src: String,
    src_len: usize,
    dest: Vec<Token>,
}

impl fmt::Debug for Transform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Transform({} -> {:?})", self.src, self.dest)
    }
}

/// nats-server's check of a destination before the transform is made.
pub fn validate(src: &str, dest: &str) -> Result<(), TransformError> {
    if dest.is_empty() {
        return Ok(());
    }
    let mut after_fwc = false;
    for t in dest.split('.') {
        if t.is_empty() || after_fwc {
            return Err(TransformError::Destination(INVALID, t.to_string()));
        }
        if is_function(t) {
            parse_token(t)?;
            continue;
        }
        if t == ">" {
            after_fwc = true;
        } else if t.contains([' ', '\t', '\n', '\r', '\x0c']) {
            return Err(TransformError::Destination(INVALID, String::new()));
        }
    }
    Transform::new(src, dest).map(|_| ())
}

fn is_function(t: &str) -> bool {
    t.len() > 4 && t.starts_with("{{") && t.ends_with("}}")
}

/// A `{{ name(args) }}` token's lower-cased name and its comma-separated arguments.
fn function_of(t: &str) -> Option<(String, Vec<String>)> {
    let inner = t.strip_prefix("{{")?.strip_suffix("}}")?.trim();
    let open = inner.find('(')?;
    let args = inner[open + 1..].trim_end().strip_suffix(')')?;
    let name = inner[..open].trim().to_ascii_lowercase();
    let args = args
        .split(',')
        .map(|a| a.trim_start().to_string())
        .collect();
    Some((name, args))
}

fn int(arg: &str, token: &str) -> Result<i64, TransformError> {
    arg.trim()
        .parse::<i64>()
        .map_err(|_| TransformError::Destination(BAD_ARG, token.to_string()))
}

fn bounded(arg: &str, token: &str) -> Result<u32, TransformError> {
    u32::try_from(int(arg, token)?)
        .ok()
        .filter(|n| *n <= i32::MAX as u32)
        .ok_or_else(|| TransformError::Destination(BAD_ARG, token.to_string()))
}

/// What one destination token means: its function and the wildcard positions (1-based) it
/// reads, before they are mapped to source token indexes.
enum Parsed {
    Plain,
    Func(Kind, Vec<i64>, i64, String),
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Wildcard,
    Partition,
    SplitFromLeft,
    SplitFromRight,
    SliceFromLeft,
    SliceFromRight,
    Split,
    Left,
    Right,
    Random,
}

fn parse_token(t: &str) -> Result<Parsed, TransformError> {
    let err = |what| TransformError::Destination(what, t.to_string());
    if t.len() > 1 && t.starts_with('$') {
        return Ok(match t[1..].parse::<i64>() {
            Ok(n) => Parsed::Func(Kind::Wildcard, vec![n], -1, String::new()),
            Err(_) => Parsed::Plain,
        });
    }
    if !is_function(t) {
        return Ok(Parsed::Plain);
    }
    let Some((name, args)) = function_of(t) else {
        return Err(err(UNKNOWN));
    };
    let two_ints = |kind| -> Result<Parsed, TransformError> {
        match args.len() {
            0 | 1 => Err(err(NOT_ENOUGH)),
            2 => Ok(Parsed::Func(
                kind,
                vec![int(&args[0], t)?],
                int(&args[1], t)?,
                String::new(),
            )),
            _ => Err(err(TOO_MANY)),
        }
    };
    match name.as_str() {
        "wildcard" => match args.as_slice() {
            [a] if a.is_empty() => Err(err(NOT_ENOUGH)),
            [a] => Ok(Parsed::Func(
                Kind::Wildcard,
                vec![int(a, t)?],
                -1,
                String::new(),
            )),
            _ => Err(err(TOO_MANY)),
        },
        "partition" => {
            let n = bounded(&args[0], t)?;
            let idx = args[1..]
                .iter()
                .map(|a| int(a, t))
                .collect::<Result<_, _>>()?;
            Ok(Parsed::Func(
                Kind::Partition,
                idx,
                i64::from(n),
                String::new(),
            ))
        }
        "splitfromleft" => two_ints(Kind::SplitFromLeft),
        "splitfromright" => two_ints(Kind::SplitFromRight),
        "slicefromleft" => two_ints(Kind::SliceFromLeft),
        "slicefromright" => two_ints(Kind::SliceFromRight),
        "left" => two_ints(Kind::Left),
        "right" => two_ints(Kind::Right),
        "split" => match args.as_slice() {
            [_] | [] => Err(err(NOT_ENOUGH)),
            [i, sep] if !sep.contains([' ', '.']) => {
                Ok(Parsed::Func(Kind::Split, vec![int(i, t)?], -1, sep.clone()))
            }
            [_, _] => Err(err(BAD_ARG)),
            _ => Err(err(TOO_MANY)),
        },
        "random" => match args.as_slice() {
            [n] => Ok(Parsed::Func(
                Kind::Random,
                Vec::new(),
                i64::from(bounded(n, t)?),
                String::new(),
            )),
            _ => Err(err(NOT_ENOUGH)),
        },
        _ => Err(err(UNKNOWN)),
    }
}

/// Tokens of a subject, the number of `*` and whether it ends in `>`; `None` if invalid.
fn shape(subject: &str) -> Option<(Vec<&str>, usize, bool)> {
    if subject.is_empty() {
        return None;
    }
    let tokens: Vec<&str> = subject.split('.').collect();
    let mut stars = 0;
    let mut fwc = false;
    for t in &tokens {
        if t.is_empty() || fwc {
            return None;
        }
        match *t {
            ">" => fwc = true,
            "*" => stars += 1,
            _ => {}
        }
    }
    Some((tokens, stars, fwc))
}

impl Transform {
    /// Makes a transform (an empty `src` is `>`).
    pub fn new(src: &str, dest: &str) -> Result<Transform, TransformError> {
        let src = if src.is_empty() { ">" } else { src };
        let (stoks, stars, sfwc) = shape(src).ok_or(TransformError::BadSubject)?;
        let (dtoks, dstars, dfwc) = shape(dest).ok_or(TransformError::BadSubject)?;
        if dstars > 0 || sfwc != dfwc {
            return Err(TransformError::BadSubject);
        }
        // The source token index of each `*`, by its 1-based position.
        let star_at: Vec<usize> = (0..stoks.len()).filter(|&i| stoks[i] == "*").collect();
        let mut dest_tokens = Vec::with_capacity(dtoks.len());
        for t in dtoks {
            let token = match parse_token(t)? {
                Parsed::Plain if t == ">" => Token::Rest,
                Parsed::Plain => Token::Literal(t.to_string()),
                Parsed::Func(kind, positions, n, s) => {
                    // Without wildcards in the source only `random` and `partition` (of the
                    // whole subject) are possible.
                    let positions = match (stars == 0 && !sfwc, kind) {
                        (true, Kind::Random | Kind::Partition) => Vec::new(),
                        (true, _) => {
                            let token = t.to_string();
                            return Err(TransformError::Destination(OUT_OF_RANGE, token));
                        }
                        (false, _) => positions,
                    };
                    let mut idx = Vec::with_capacity(positions.len());
                    for p in positions {
                        let at = usize::try_from(p)
                            .ok()
                            .filter(|p| (1..=stars).contains(p))
                            .map(|p| star_at[p - 1]);
                        match at {
                            Some(i) => idx.push(i),
                            None => {
                                let at = format!("{t}: [{p}]");
                                return Err(TransformError::Destination(OUT_OF_RANGE, at));
                            }
                        }
                    }
                    let first = idx.first().copied().unwrap_or(0);
                    let size = usize::try_from(n).unwrap_or(0);
                    match kind {
                        Kind::Wildcard => Token::Wildcard(first),
                        Kind::Partition => Token::Partition(n as u32, idx),
                        Kind::SplitFromLeft => Token::SplitFromLeft(first, size),
                        Kind::SplitFromRight => Token::SplitFromRight(first, size),
                        Kind::SliceFromLeft => Token::SliceFromLeft(first, size),
                        Kind::SliceFromRight => Token::SliceFromRight(first, size),
                        Kind::Split => Token::Split(first, s),
                        Kind::Left => Token::Left(first, size),
                        Kind::Right => Token::Right(first, size),
                        Kind::Random => Token::Random(n as u32),
                    }
                }
            };
            dest_tokens.push(token);
        }
        Ok(Transform {
            src: src.to_string(),
            src_len: stoks.len(),
            dest: dest_tokens,
        })
    }

    /// The transformed subject, if `subject` (a literal subject) matches the source.
    pub fn apply(&self, subject: &str) -> Option<String> {
        if !super::subject::matches(&self.src, subject) {
            return None;
        }
        let tokens: Vec<&str> = subject.split('.').collect();
        let mut out: Vec<String> = Vec::with_capacity(self.dest.len());
        for t in &self.dest {
            let at = |i: &usize| tokens.get(*i).copied().unwrap_or_default();
            match t {
                Token::Literal(s) => out.push(s.clone()),
                Token::Rest => out.extend(
                    tokens[self.src_len.saturating_sub(1)..]
                        .iter()
                        .map(|s| s.to_string()),
                ),
                Token::Wildcard(i) => out.push(at(i).to_string()),
                Token::Partition(n, idx) => {
                    let key: String = match idx.is_empty() {
                        true => subject.to_string(),
                        false => idx.iter().map(at).collect(),
                    };
                    out.push(partition(key.as_bytes(), *n));
                }
                Token::SplitFromLeft(i, p) => out.push(split_at(at(i), *p, false)),
                Token::SplitFromRight(i, p) => out.push(split_at(at(i), *p, true)),
                Token::SliceFromLeft(i, n) => out.push(slices(at(i), *n, false)),
                Token::SliceFromRight(i, n) => out.push(slices(at(i), *n, true)),
                Token::Split(i, sep) => out.push(
                    at(i)
                        .split(sep.as_str())
                        .filter(|p| !p.is_empty())
                        .collect::<Vec<_>>()
                        .join("."),
                ),
                Token::Left(i, n) => out.push(edge(at(i), *n, false)),
                Token::Right(i, n) => out.push(edge(at(i), *n, true)),
                Token::Random(n) => {
                    use rand::Rng;
                    let v = if *n == 0 {
                        0
                    } else {
                        rand::rng().random_range(0..*n)
                    };
                    out.push(v.to_string());
                }
            }
        }
        Some(out.join("."))
    }
}

/// FNV-1a (32 bit) of `key`, modulo `buckets`.
fn partition(key: &[u8], buckets: u32) -> String {
    if buckets == 0 {
        return "0".into();
    }
    let mut h: u32 = 0x811c_9dc5;
    for b in key {
        h ^= u32::from(*b);
        h = h.wrapping_mul(0x0100_0193);
    }
    (h % buckets).to_string()
}

fn split_at(t: &str, p: usize, from_right: bool) -> String {
    let len = t.len();
    if p == 0 || p >= len {
        return t.to_string();
    }
    let cut = if from_right { len - p } else { p };
    match (t.get(..cut), t.get(cut..)) {
        (Some(a), Some(b)) => format!("{a}.{b}"),
        _ => t.to_string(),
    }
}

fn slices(t: &str, n: usize, from_right: bool) -> String {
    let len = t.len();
    if n == 0 || n >= len || !t.is_ascii() {
        return t.to_string();
    }
    let bytes = t.as_bytes();
    let mut parts: Vec<&[u8]> = Vec::new();
    if from_right {
        let rem = len % n;
        if rem > 0 {
            parts.push(&bytes[..rem]);
        }
        parts.extend(bytes[rem..].chunks(n));
    } else {
        parts.extend(bytes.chunks(n));
    }
    parts
        .iter()
        .map(|p| String::from_utf8_lossy(p))
        .collect::<Vec<_>>()
        .join(".")
}

fn edge(t: &str, n: usize, right: bool) -> String {
    let len = t.len();
    if n == 0 || n >= len || !t.is_ascii() {
        return t.to_string();
    }
    if right {
        t[len - n..].to_string()
    } else {
        t[..n].to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(src: &str, dest: &str, subject: &str) -> Option<String> {
        Transform::new(src, dest).unwrap().apply(subject)
    }

    #[test]
    fn transforms_map_as_nats_server_maps() {
        assert_eq!(map("a.*.*", "b.$2.$1", "a.x.y").as_deref(), Some("b.y.x"));
        assert_eq!(
            map("a.*", "b.{{wildcard(1)}}", "a.x").as_deref(),
            Some("b.x")
        );
        assert_eq!(map("a.>", "b.>", "a.x.y").as_deref(), Some("b.x.y"));
        assert_eq!(
            map("a.*.>", "b.$1.>", "a.x.y.z").as_deref(),
            Some("b.x.y.z")
        );
        assert_eq!(map("a.*", "b.$1", "c.x"), None);
        assert_eq!(map(">", "x.>", "a.b").as_deref(), Some("x.a.b"));
        assert_eq!(
            map("a.*", "{{splitfromleft(1,2)}}", "a.abcd").as_deref(),
            Some("ab.cd")
        );
        assert_eq!(
            map("a.*", "{{SplitFromRight(1,1)}}", "a.abcd").as_deref(),
            Some("abc.d")
        );
        assert_eq!(
            map("a.*", "{{slicefromleft(1,3)}}", "a.abcdefgh").as_deref(),
            Some("abc.def.gh")
        );
        assert_eq!(
            map("a.*", "{{slicefromright(1,3)}}", "a.abcdefgh").as_deref(),
            Some("ab.cde.fgh")
        );
        assert_eq!(
            map("a.*", "{{split(1,-)}}", "a.-x--y-").as_deref(),
            Some("x.y")
        );
        assert_eq!(map("a.*", "{{left(1,2)}}", "a.abcd").as_deref(), Some("ab"));
        assert_eq!(
            map("a.*", "{{right(1,2)}}", "a.abcd").as_deref(),
            Some("cd")
        );
        // FNV-1a of "foo" is 0xa9f37ed7 (2851307223): bucket 3 of 10.
        assert_eq!(
            map("a.*", "p.{{partition(10,1)}}", "a.foo").as_deref(),
            Some("p.3")
        );
        let r = map("a.*", "r.{{random(3)}}", "a.x").unwrap();
        assert!(["r.0", "r.1", "r.2"].contains(&r.as_str()), "{r}");
    }

    #[test]
    fn bad_destinations_say_what_nats_server_says() {
        let text = |src: &str, dest: &str| validate(src, dest).unwrap_err().to_string();
        assert_eq!(
            text("a.*", "b.$2"),
            "invalid mapping destination: wildcard index out of range in $2: [2]"
        );
        assert_eq!(
            text("a.*", "b.{{nope(1)}}"),
            "invalid mapping destination: unknown function in {{nope(1)}}"
        );
        assert_eq!(text("a.*", "b.{{wildcard()}}"), "invalid mapping destination: not enough arguments passed to the function in {{wildcard()}}");
        assert_eq!(text("a.*", "b.{{splitfromleft(1)}}"), "invalid mapping destination: not enough arguments passed to the function in {{splitfromleft(1)}}");
        assert_eq!(text("a.*", "b.*"), "invalid subject");
        assert_eq!(text("a.>", "b.c"), "invalid subject");
        assert_eq!(
            text("a.*", "b..c"),
            "invalid mapping destination: invalid transform"
        );
        assert_eq!(
            text("a.b", "c.$1"),
            "invalid mapping destination: wildcard index out of range in $1"
        );
        assert_eq!(
            map("a.b", "p.{{partition(10)}}", "a.b").as_deref(),
            Some("p.2")
        );
        assert!(validate("a.*", "b.$1").is_ok());
    }
}
