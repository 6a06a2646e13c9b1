//! Parser for the nats-server configuration file syntax: produces a [`Value`] tree.
//!
//! The syntax is forgiving: `key: value`, `key = value` and `key value` are all accepted;
//! maps are `{ ... }`, arrays `[ ... ]`; entries end at a newline, `,` or `;`; comments start
//! with `#` or `//`. Values are quoted strings, bare strings, booleans
//! (`true/false/yes/no/on/off`), integers with optional size suffixes (`K` = 1000,
//! `KB`/`KiB` = 1024, likewise M, G, T, P, E), floats, `$VARIABLE` references (resolved
//! against keys defined earlier in this or an enclosing map, then the environment) and
//! `include <path>` directives that merge another file's keys into the current map.
//! Interpreting the tree (durations, host/port pairs, ...) is left to the loader.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use super::ConfigError;

/// How deeply `include` directives may nest before the parser assumes a cycle.
const MAX_INCLUDE_DEPTH: usize = 10;

/// One value in a parsed configuration file.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// `true`, `yes`, `on` / `false`, `no`, `off`.
    Bool(bool),
    /// An integer, with any size suffix already applied.
    Int(i64),
    /// A number with a fractional part.
    Float(f64),
    /// A quoted or bare string.
    String(String),
    /// `[ ... ]`.
    Array(Vec<Value>),
    /// `{ ... }`, in the order keys were written. Keys keep their original case.
    Map(Vec<(String, Value)>),
}

impl Value {
    /// A short name for the kind of value, for error messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Bool(_) => "boolean",
            Value::Int(_) => "integer",
            Value::Float(_) => "float",
            Value::String(_) => "string",
            Value::Array(_) => "array",
            Value::Map(_) => "map",
        }
    }

    /// Looks a key up in a map, ignoring ASCII case; the last matching entry wins.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.as_map()?
            .iter()
            .rev()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v)
    }

    /// The entries of a map, or `None` for any other kind of value.
    pub fn as_map(&self) -> Option<&[(String, Value)]> {
        match self {
            Value::Map(entries) => Some(entries),
            _ => None,
        }
    }

    /// The text of a string value.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }
}

/// Parses configuration text into a top-level [`Value::Map`].
///
/// `base_dir` is the directory relative `include` paths are resolved against (normally the
/// directory holding the config file); `None` means the current directory.
pub fn parse(text: &str, base_dir: Option<&Path>) -> Result<Value, ConfigError> {
    parse_tracking(text, base_dir).map(|(v, _)| v)
}

/// Like [`parse`], also returning the names of the keys that `$VARIABLE` references used (a
/// key defined only to be referenced is no unknown configuration key, as in nats-server).
pub fn parse_tracking(
    text: &str,
    base_dir: Option<&Path>,
) -> Result<(Value, HashSet<String>), ConfigError> {
    let mut parser = Parser::new(text, base_dir, 0);
    let value = parser.document()?;
    Ok((value, parser.used))
}

/// Parses a size such as `1024`, `64MiB`, `128KB` or `1K` into bytes, using nats-server's
/// rules: a bare letter (`K`, `M`, `G`, `T`, `P`, `E`) is a power of 1000, the letter
/// followed by `B`, `I` or `IB` a power of 1024. Case-insensitive. `None` if malformed or
/// out of range.
pub fn parse_size(text: &str) -> Option<i64> {
    let text = text.trim();
    let digits_start = usize::from(text.starts_with('-'));
    let digits_end = text[digits_start..]
        .find(|c: char| !c.is_ascii_digit())
        .map_or(text.len(), |i| i + digits_start);
    if digits_end == digits_start {
        return None;
    }
    let num: i64 = text[..digits_end].parse().ok()?;
    let suffix = text[digits_end..].trim().to_ascii_lowercase();
    if suffix.is_empty() {
        return Some(num);
    }
    let power = match suffix.as_bytes()[0] {
        b'k' => 1,
        b'm' => 2,
        b'g' => 3,
        b't' => 4,
        b'p' => 5,
        b'e' => 6,
        _ => return None,
    };
    let base: i64 = match &suffix[1..] {
        "" => 1000,
        "b" | "i" | "ib" => 1024,
        _ => return None,
    };
    num.checked_mul(base.checked_pow(power)?)
}

fn parse_nested(text: &str, base_dir: Option<&Path>, depth: usize) -> Result<Value, ConfigError> {
    Parser::new(text, base_dir, depth).document()
}

struct Parser {
    chars: Vec<char>,
    pos: usize,
    line: usize,
    /// Maps under construction, outermost first; used to resolve `$VARIABLE`s.
    scopes: Vec<Vec<(String, Value)>>,
    base_dir: Option<PathBuf>,
    depth: usize,
    /// Keys that variable references resolved to.
    used: HashSet<String>,
}

impl Parser {
    fn new(text: &str, base_dir: Option<&Path>, depth: usize) -> Self {
        Parser {
            chars: text.chars().collect(),
            pos: 0,
            line: 1,
            scopes: Vec::new(),
            base_dir: base_dir.map(Path::to_path_buf),
            depth,
            used: HashSet::new(),
        }
    }
}

/// Characters that end a bare (unquoted) value.
fn ends_bare_value(c: char) -> bool {
    c.is_whitespace() || matches!(c, ',' | ';' | ']' | '}')
}

/// Characters that end a bare key.
fn ends_bare_key(c: char) -> bool {
    c.is_whitespace() || matches!(c, ':' | '=' | '{' | '[')
}

impl Parser {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn peek_at(&self, offset: usize) -> Option<char> {
        self.chars.get(self.pos + offset).copied()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += 1;
        if c == '\n' {
            self.line += 1;
        }
        Some(c)
    }

    fn err<T>(&self, msg: impl Into<String>) -> Result<T, ConfigError> {
        Err(ConfigError::Parse {
            line: self.line,
            msg: msg.into(),
        })
    }

    /// True at the start of a `#` or `//` comment.
    fn at_comment(&self) -> bool {
        match self.peek() {
            Some('#') => true,
            Some('/') => self.peek_at(1) == Some('/'),
            _ => false,
        }
    }

    fn skip_comment(&mut self) {
        while let Some(c) = self.peek() {
            if c == '\n' {
                break;
            }
            self.bump();
        }
    }

    /// Skips spaces and tabs (and stray `\r`), but not newlines.
    fn skip_inline_space(&mut self) {
        while matches!(self.peek(), Some(' ' | '\t' | '\r')) {
            self.bump();
        }
    }

    /// Skips whitespace including newlines, and comments.
    fn skip_space_and_comments(&mut self) {
        loop {
            match self.peek() {
                Some(c) if c.is_whitespace() => {
                    self.bump();
                }
                _ if self.at_comment() => self.skip_comment(),
                _ => break,
            }
        }
    }

    /// The whole file: either bare entries, or entries wrapped in one `{ }` (JSON style).
    fn document(&mut self) -> Result<Value, ConfigError> {
        self.skip_space_and_comments();
        if self.peek() == Some('{') {
            self.bump();
            let map = self.entries(Some('}'))?;
            self.skip_space_and_comments();
            if let Some(c) = self.peek() {
                return self.err(format!("unexpected '{c}' after the closing '}}'"));
            }
            return Ok(map);
        }
        self.entries(None)
    }

    /// Entries of a map up to `close` (or end of input when `None`), consuming `close`.
    fn entries(&mut self, close: Option<char>) -> Result<Value, ConfigError> {
        self.scopes.push(Vec::new());
        let result = self.entries_inner(close);
        let map = self.scopes.pop().unwrap_or_default();
        result.map(|()| Value::Map(map))
    }

    fn entries_inner(&mut self, close: Option<char>) -> Result<(), ConfigError> {
        loop {
            self.skip_space_and_comments();
            while matches!(self.peek(), Some(',' | ';')) {
                self.bump();
                self.skip_space_and_comments();
            }
            match self.peek() {
                None if close.is_some() => return self.err("unexpected end of file, expected '}'"),
                None => return Ok(()),
                Some(c) if Some(c) == close => {
                    self.bump();
                    return Ok(());
                }
                Some(c @ ('}' | ']' | ':' | '=' | '{' | '[')) => {
                    return self.err(format!("unexpected '{c}', expected a key"));
                }
                Some(_) => {}
            }
            let (key, quoted) = self.key()?;
            if !quoted && key.eq_ignore_ascii_case("include") && self.at_include_path() {
                self.include()?;
            } else {
                self.skip_inline_space();
                if matches!(self.peek(), Some(':' | '=')) {
                    self.bump();
                    self.skip_inline_space();
                }
                let value = self.value(&key)?;
                self.insert(key, value);
            }
            self.entry_end(close)?;
        }
    }

    /// After a value: only spaces, a comment, a separator or the closing brace may follow.
    fn entry_end(&mut self, close: Option<char>) -> Result<(), ConfigError> {
        self.skip_inline_space();
        match self.peek() {
            None | Some('\n' | ',' | ';') => Ok(()),
            Some(c) if Some(c) == close => Ok(()),
            _ if self.at_comment() => Ok(()),
            Some(c) => self.err(format!(
                "unexpected '{c}' after a value, expected a new line, ',' or ';'"
            )),
        }
    }

    fn insert(&mut self, key: String, value: Value) {
        let Some(scope) = self.scopes.last_mut() else {
            return;
        };
        match scope.iter_mut().find(|(k, _)| *k == key) {
            Some(entry) => entry.1 = value,
            None => scope.push((key, value)),
        }
    }

    fn key(&mut self) -> Result<(String, bool), ConfigError> {
        if let Some(q @ ('"' | '\'')) = self.peek() {
            self.bump();
            let mut key = String::new();
            loop {
                match self.bump() {
                    Some(c) if c == q => return Ok((key, true)),
                    Some('\n') | None => return self.err("unterminated quoted key"),
                    Some(c) => key.push(c),
                }
            }
        }
        let mut key = String::new();
        while let Some(c) = self.peek() {
            if ends_bare_key(c) {
                break;
            }
            key.push(c);
            self.bump();
        }
        Ok((key, false))
    }

    /// After the word `include`: true when a path (not a `:`/`=` separator) follows.
    fn at_include_path(&self) -> bool {
        let mut i = self.pos;
        if !matches!(self.chars.get(i), Some(' ' | '\t')) {
            return false;
        }
        while matches!(self.chars.get(i), Some(' ' | '\t')) {
            i += 1;
        }
        !matches!(self.chars.get(i), None | Some('\n' | ':' | '=' | '{' | '['))
    }

    fn include(&mut self) -> Result<(), ConfigError> {
        self.skip_inline_space();
        let line = self.line;
        let path = match self.peek() {
            Some('"' | '\'') => self.quoted_string()?,
            _ => self.bare_token(),
        };
        if self.depth >= MAX_INCLUDE_DEPTH {
            return self.err(format!("include '{path}' nested too deeply (cycle?)"));
        }
        let full = match &self.base_dir {
            Some(dir) => dir.join(&path),
            None => PathBuf::from(&path),
        };
        let text = std::fs::read_to_string(&full).map_err(|e| ConfigError::Parse {
            line,
            msg: format!("error opening include file '{}': {e}", full.display()),
        })?;
        let included =
            parse_nested(&text, full.parent(), self.depth + 1).map_err(|e| ConfigError::Parse {
                line,
                msg: format!("error parsing include file '{path}': {e}"),
            })?;
        if let Value::Map(entries) = included {
            for (k, v) in entries {
                self.insert(k, v);
            }
        }
        Ok(())
    }

    fn value(&mut self, key: &str) -> Result<Value, ConfigError> {
        match self.peek() {
            None | Some('\n') => self.err(format!("expected a value for '{key}'")),
            Some('{') => {
                self.bump();
                self.entries(Some('}'))
            }
            Some('[') => self.array(key),
            Some('"' | '\'') => Ok(Value::String(self.quoted_string()?)),
            Some(c @ (',' | ';' | ']' | '}')) => {
                self.err(format!("unexpected '{c}', expected a value for '{key}'"))
            }
            Some(_) => {
                let token = self.bare_token();
                self.bare_value(token)
            }
        }
    }

    fn array(&mut self, key: &str) -> Result<Value, ConfigError> {
        self.bump();
        let mut items = Vec::new();
        loop {
            self.skip_space_and_comments();
            match self.peek() {
                None => return self.err(format!("unterminated array for '{key}'")),
                Some(']') => {
                    self.bump();
                    return Ok(Value::Array(items));
                }
                Some(',') => return self.err(format!("unexpected ',' in array for '{key}'")),
                Some(_) => {}
            }
            items.push(self.value(key)?);
            self.skip_inline_space();
            if self.at_comment() {
                self.skip_comment();
            }
            match self.peek() {
                Some(',') => {
                    self.bump();
                }
                Some('\n' | ']') => {}
                None => return self.err(format!("unterminated array for '{key}'")),
                Some(c) => {
                    return self.err(format!(
                        "unexpected '{c}' in array for '{key}', expected ',' or ']'"
                    ))
                }
            }
        }
    }

    /// A `"..."` string (with `\t \n \r \" \\ \xHH` escapes) or a raw `'...'` string.
    fn quoted_string(&mut self) -> Result<String, ConfigError> {
        let start_line = self.line;
        let quote = self.bump();
        let mut out = String::new();
        loop {
            match self.bump() {
                None => {
                    return Err(ConfigError::Parse {
                        line: start_line,
                        msg: "unterminated string".into(),
                    })
                }
                Some(c) if Some(c) == quote => return Ok(out),
                Some('\\') if quote == Some('"') => out.push(self.escape()?),
                Some(c) => out.push(c),
            }
        }
    }

    fn escape(&mut self) -> Result<char, ConfigError> {
        match self.bump() {
            Some('t') => Ok('\t'),
            Some('n') => Ok('\n'),
            Some('r') => Ok('\r'),
            Some('"') => Ok('"'),
            Some('\\') => Ok('\\'),
            Some('x') => {
                let hex: String = [self.bump(), self.bump()].into_iter().flatten().collect();
                match u8::from_str_radix(&hex, 16) {
                    Ok(b) if hex.len() == 2 => Ok(char::from(b)),
                    _ => self.err(format!("expected two hex digits after '\\x', got '{hex}'")),
                }
            }
            Some(c) => self.err(format!(
                "invalid escape '\\{c}' (allowed: \\t \\n \\r \\\" \\\\ \\xXX)"
            )),
            None => self.err("unterminated string"),
        }
    }

    fn bare_token(&mut self) -> String {
        let mut token = String::new();
        while let Some(c) = self.peek() {
            if ends_bare_value(c) {
                break;
            }
            token.push(c);
            self.bump();
        }
        token
    }

    /// Classifies an unquoted token: boolean, variable, number, or plain string.
    fn bare_value(&mut self, token: String) -> Result<Value, ConfigError> {
        match token.to_ascii_lowercase().as_str() {
            "true" | "yes" | "on" => return Ok(Value::Bool(true)),
            "false" | "no" | "off" => return Ok(Value::Bool(false)),
            _ => {}
        }
        if let Some(name) = token.strip_prefix('$') {
            // Bare bcrypt hashes (`$2a$...`) are strings, not variable references.
            if ["2a$", "2b$", "2y$"].iter().any(|p| name.starts_with(p)) {
                return Ok(Value::String(token));
            }
            return self.variable(name);
        }
        let unsigned = token.strip_prefix('-').unwrap_or(&token);
        if !unsigned.starts_with(|c: char| c.is_ascii_digit()) {
            return Ok(Value::String(token));
        }
        let digits_end = unsigned
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(unsigned.len());
        let rest = &unsigned[digits_end..];
        if rest.is_empty() || rest.starts_with(|c: char| c.is_ascii_alphabetic()) {
            if let Some(n) = parse_size(&token) {
                return Ok(Value::Int(n));
            }
            if rest.is_empty() || is_size_suffix(rest) {
                return self.err(format!("integer '{token}' is out of range"));
            }
        } else if let Some(frac) = rest.strip_prefix('.') {
            if !frac.is_empty() && frac.chars().all(|c| c.is_ascii_digit()) {
                if let Ok(f) = token.parse::<f64>() {
                    return Ok(Value::Float(f));
                }
            }
        }
        // Things like `127.0.0.1:4222`, `100ms` or `3secret` are plain strings.
        Ok(Value::String(token))
    }

    fn variable(&mut self, name: &str) -> Result<Value, ConfigError> {
        if name.is_empty() {
            return self.err("'$' must be followed by a variable name");
        }
        for scope in self.scopes.iter().rev() {
            if let Some((_, v)) = scope.iter().rev().find(|(k, _)| k == name) {
                let v = v.clone();
                self.used.insert(name.to_string());
                return Ok(v);
            }
        }
        match std::env::var(name) {
            Ok(text) => Ok(env_value(text)),
            Err(_) => self.err(format!("variable reference for '{name}' can not be found")),
        }
    }
}

fn is_size_suffix(s: &str) -> bool {
    parse_size(&format!("1{s}")).is_some()
}

/// An environment variable's text, typed as if it had been written unquoted in the file.
fn env_value(text: String) -> Value {
    let mut parser = Parser::new(&text, None, MAX_INCLUDE_DEPTH);
    parser.skip_inline_space();
    let parsed = match parser.peek() {
        Some('$') | None => None,
        Some(_) => parser.value("").ok(),
    };
    parser.skip_inline_space();
    match parsed {
        Some(v) if parser.peek().is_none() => v,
        _ => Value::String(text),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(text: &str) -> Value {
        match parse(text, None) {
            Ok(v) => v,
            Err(e) => panic!("parse failed: {e}\n{text}"),
        }
    }

    fn err_line(text: &str) -> usize {
        match parse(text, None) {
            Err(ConfigError::Parse { line, .. }) => line,
            other => panic!("expected a parse error, got {other:?}"),
        }
    }

    fn s(text: &str) -> Value {
        Value::String(text.to_string())
    }

    #[test]
    fn separators() {
        let v = p("a: 1\nb = 2\nc 3\nd:4; e=5, f  :  6");
        for (k, n) in [("a", 1), ("b", 2), ("c", 3), ("d", 4), ("e", 5), ("f", 6)] {
            assert_eq!(v.get(k), Some(&Value::Int(n)), "{k}");
        }
    }

    #[test]
    fn keeps_order_and_case_but_looks_up_case_insensitively() {
        let v = p("Port: 1\nhost: x\nalpha: 2");
        let keys: Vec<&str> = v
            .as_map()
            .unwrap()
            .iter()
            .map(|(k, _)| k.as_str())
            .collect();
        assert_eq!(keys, ["Port", "host", "alpha"]);
        assert_eq!(v.get("PORT"), Some(&Value::Int(1)));
    }

    #[test]
    fn duplicate_key_replaces_value() {
        let v = p("port: 1\nport: 2");
        assert_eq!(v, Value::Map(vec![("port".into(), Value::Int(2))]));
    }

    #[test]
    fn nested_blocks() {
        let text = "authorization {\n  user: a\n  inner = { x: 1, y: [1, 2] }\n}\nother: {k: v}\nthird: {\n}";
        let v = p(text);
        let auth = v.get("authorization").unwrap();
        assert_eq!(auth.get("user"), Some(&s("a")));
        let inner = auth.get("inner").unwrap();
        assert_eq!(inner.get("x"), Some(&Value::Int(1)));
        assert_eq!(
            inner.get("y"),
            Some(&Value::Array(vec![Value::Int(1), Value::Int(2)]))
        );
        assert_eq!(v.get("other").unwrap().get("k"), Some(&s("v")));
        assert_eq!(v.get("third"), Some(&Value::Map(vec![])));
        let v = p("authorization{user: a}");
        assert_eq!(v.get("authorization").unwrap().get("user"), Some(&s("a")));
    }

    #[test]
    fn json_style_document() {
        let v = p("{\n  \"port\": 4222,\n  \"jetstream\": {\"store_dir\": \"/tmp/js\"}\n}\n");
        assert_eq!(v.get("port"), Some(&Value::Int(4222)));
        assert_eq!(
            v.get("jetstream").unwrap().get("store_dir"),
            Some(&s("/tmp/js"))
        );
    }

    #[test]
    fn arrays() {
        let v = p("a: [1, 2, 3,]\nb: [\n  x\n  \"y\", # comment\n  'z'\n]\nc: []\nd [ {user: a}, {user: b} ]");
        assert_eq!(
            v.get("a"),
            Some(&Value::Array(vec![
                Value::Int(1),
                Value::Int(2),
                Value::Int(3)
            ]))
        );
        assert_eq!(
            v.get("b"),
            Some(&Value::Array(vec![s("x"), s("y"), s("z")]))
        );
        assert_eq!(v.get("c"), Some(&Value::Array(vec![])));
        let Some(Value::Array(users)) = v.get("d") else {
            panic!("d")
        };
        assert_eq!(users[1].get("user"), Some(&s("b")));
    }

    #[test]
    fn comments() {
        let v = p(
            "# top\n// also\na: 1 # trailing\nb: 2 // trailing\nc {\n  # inside\n  d: 3 // x\n}\n",
        );
        assert_eq!(v.get("a"), Some(&Value::Int(1)));
        assert_eq!(v.get("b"), Some(&Value::Int(2)));
        assert_eq!(v.get("c").unwrap().get("d"), Some(&Value::Int(3)));
        // A '#' inside a quoted or bare string is kept.
        let v = p("a: \"x#y\"\nb: x#y");
        assert_eq!(v.get("a"), Some(&s("x#y")));
        assert_eq!(v.get("b"), Some(&s("x#y")));
    }

    #[test]
    fn strings() {
        let v = p(r#"a: "x y\t\"q\"\x41"
b: 'raw \n $x'
host: 127.0.0.1
listen: 0.0.0.0:4222
store_dir: /tmp/x
c: 3secret
d: "2m"
e: 100ms
f: 1h30m
g: ::1
"quoted key": 1
'other key' = 2
"#);
        assert_eq!(v.get("a"), Some(&s("x y\t\"q\"A")));
        assert_eq!(v.get("b"), Some(&s("raw \\n $x")));
        assert_eq!(v.get("host"), Some(&s("127.0.0.1")));
        assert_eq!(v.get("listen"), Some(&s("0.0.0.0:4222")));
        assert_eq!(v.get("store_dir"), Some(&s("/tmp/x")));
        assert_eq!(v.get("c"), Some(&s("3secret")));
        assert_eq!(v.get("d"), Some(&s("2m")));
        assert_eq!(v.get("e"), Some(&s("100ms")));
        assert_eq!(v.get("f"), Some(&s("1h30m")));
        assert_eq!(v.get("g"), Some(&s("::1")));
        assert_eq!(v.get("quoted key"), Some(&Value::Int(1)));
        assert_eq!(v.get("other key"), Some(&Value::Int(2)));
    }

    #[test]
    fn numbers_and_booleans() {
        let v =
            p("a: 42\nb: -1\nc: 1.5\nd: -0.25\ne: true\nf: FALSE\ng: yes\nh: No\ni: on\nj: off");
        assert_eq!(v.get("a"), Some(&Value::Int(42)));
        assert_eq!(v.get("b"), Some(&Value::Int(-1)));
        assert_eq!(v.get("c"), Some(&Value::Float(1.5)));
        assert_eq!(v.get("d"), Some(&Value::Float(-0.25)));
        for (k, b) in [
            ("e", true),
            ("f", false),
            ("g", true),
            ("h", false),
            ("i", true),
            ("j", false),
        ] {
            assert_eq!(v.get(k), Some(&Value::Bool(b)), "{k}");
        }
        // Quoted booleans stay strings.
        assert_eq!(p("a: \"true\"").get("a"), Some(&s("true")));
    }

    #[test]
    fn size_suffixes_follow_nats_server() {
        let cases = [
            ("1K", 1000),
            ("1k", 1000),
            ("1KB", 1024),
            ("1Ki", 1024),
            ("128KB", 128 * 1024),
            ("1M", 1_000_000),
            ("1MB", 1 << 20),
            ("64MiB", 64 << 20),
            ("1G", 1_000_000_000),
            ("10GiB", 10 << 30),
            ("2gb", 2 << 30),
            ("1T", 1_000_000_000_000),
            ("1TiB", 1 << 40),
        ];
        for (text, want) in cases {
            assert_eq!(
                p(&format!("x: {text}")).get("x"),
                Some(&Value::Int(want)),
                "{text}"
            );
            assert_eq!(parse_size(text), Some(want), "{text}");
        }
        assert_eq!(parse_size("1XB"), None);
        assert_eq!(parse_size("MB"), None);
        assert_eq!(parse_size("-1"), Some(-1));
        assert_eq!(parse_size("99999999999EB"), None);
    }

    #[test]
    fn integer_out_of_range_is_an_error() {
        assert_eq!(err_line("a: 1\nb: 99999999999999999999"), 2);
        assert_eq!(err_line("a: 99999999999EB"), 1);
    }

    #[test]
    fn variables() {
        let v = p("TOKEN: secret\nlimit = 10\nauthorization {\n  token: $TOKEN\n  inner { n: $limit }\n}\nlist: [$limit]");
        let auth = v.get("authorization").unwrap();
        assert_eq!(auth.get("token"), Some(&s("secret")));
        assert_eq!(auth.get("inner").unwrap().get("n"), Some(&Value::Int(10)));
        assert_eq!(v.get("list"), Some(&Value::Array(vec![Value::Int(10)])));
        // Inner scopes shadow outer ones.
        let v = p("x: 1\nm { x: 2, y: $x }\nz: $x");
        assert_eq!(v.get("m").unwrap().get("y"), Some(&Value::Int(2)));
        assert_eq!(v.get("z"), Some(&Value::Int(1)));
    }

    #[test]
    fn variables_from_environment() {
        std::env::set_var("CAUSEWAY_CONF_TEST_PORT", "4333");
        std::env::set_var("CAUSEWAY_CONF_TEST_NAME", "hello world");
        let v = p("port: $CAUSEWAY_CONF_TEST_PORT\nname: $CAUSEWAY_CONF_TEST_NAME");
        assert_eq!(v.get("port"), Some(&Value::Int(4333)));
        assert_eq!(v.get("name"), Some(&s("hello world")));
    }

    #[test]
    fn undefined_variable_is_an_error() {
        assert_eq!(
            err_line("a: 1\n\nb: $CAUSEWAY_SURELY_UNDEFINED_VARIABLE"),
            3
        );
        // Variables defined in a sibling block are not visible.
        assert_eq!(err_line("m { x: 1 }\ny: $x"), 2);
        assert_eq!(err_line("a: $"), 1);
    }

    #[test]
    fn bcrypt_strings_are_not_variables() {
        let hash = "$2a$11$W2zko751KUvVy59mUTWmpOdWjpEm5qhcCZRd05GjI/sSOT.xtiHyG";
        let v = p(&format!("password: {hash}"));
        assert_eq!(v.get("password"), Some(&s(hash)));
    }

    #[test]
    fn includes() {
        let dir = std::env::temp_dir().join(format!("causeway-conf-test-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        std::fs::write(dir.join("auth.conf"), "user: alice\npassword: \"pw\"\n").unwrap();
        std::fs::write(
            dir.join("sub/more.conf"),
            "debug: true\ninclude ../extra.conf\n",
        )
        .unwrap();
        std::fs::write(dir.join("extra.conf"), "trace: on\n").unwrap();
        let text = "port: 1\nauthorization {\n  include \"auth.conf\"\n}\ninclude ./sub/more.conf\nport: 2\n";
        let v = parse(text, Some(&dir)).unwrap();
        let auth = v.get("authorization").unwrap();
        assert_eq!(auth.get("user"), Some(&s("alice")));
        assert_eq!(auth.get("password"), Some(&s("pw")));
        assert_eq!(v.get("debug"), Some(&Value::Bool(true)));
        assert_eq!(v.get("trace"), Some(&Value::Bool(true)));
        assert_eq!(v.get("port"), Some(&Value::Int(2)));

        let missing = parse("a: 1\ninclude 'nope.conf'", Some(&dir));
        assert!(
            matches!(missing, Err(ConfigError::Parse { line: 2, .. })),
            "{missing:?}"
        );
        std::fs::write(dir.join("bad.conf"), "x: [1,\n").unwrap();
        let bad = parse("include bad.conf", Some(&dir))
            .unwrap_err()
            .to_string();
        assert!(bad.contains("bad.conf"), "{bad}");
        std::fs::write(dir.join("loop.conf"), "include loop.conf\n").unwrap();
        assert!(parse("include loop.conf", Some(&dir)).is_err());
        // `include` followed by a separator is an ordinary key.
        assert_eq!(p("include: 3").get("include"), Some(&Value::Int(3)));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn syntax_errors_report_the_line() {
        assert_eq!(err_line("a: 1\nb: [1, 2"), 2);
        assert_eq!(err_line("a: 1\nb {\n c: 1\n"), 4);
        assert_eq!(err_line("a: 1\nb:\n"), 2);
        assert_eq!(err_line("a: 1\n}"), 2);
        assert_eq!(err_line("a: 1\nb: \"unterminated\n\n"), 2);
        assert_eq!(err_line("a: 1 2"), 1);
        assert_eq!(err_line("a: [1,,2]"), 1);
        assert_eq!(err_line("\n\na: \"bad \\q escape\""), 3);
        assert_eq!(err_line("a: \"\\xZZ\""), 1);
        assert_eq!(err_line("{ a: 1 } b"), 1);
        assert_eq!(err_line(": 1"), 1);
        let msg = parse("a: [1 2]", None).unwrap_err().to_string();
        assert!(msg.starts_with("Parse error on line 1"), "{msg}");
    }

    #[test]
    fn empty_input_is_an_empty_map() {
        assert_eq!(p(""), Value::Map(vec![]));
        assert_eq!(p("# only a comment\n\n"), Value::Map(vec![]));
    }
}
