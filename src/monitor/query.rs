//! A monitoring request's query string, read as nats-server reads it: Go's `ParseBool`
//! spellings, and its plain-text 400 answers for values it cannot decode.

use std::collections::HashMap;

/// A value the endpoint could not decode: answered 400 with this text.
#[derive(Debug)]
pub(crate) struct QueryError(pub String);

/// The decoded query parameters (the first value of each).
#[derive(Debug, Default)]
pub(crate) struct Query(HashMap<String, String>);

impl Query {
    pub fn parse(query: Option<&str>) -> Self {
        let mut map = HashMap::new();
        for (k, v) in form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
            map.entry(k.into_owned()).or_insert_with(|| v.into_owned());
        }
        Self(map)
    }

    /// Parameters given as pairs (a system request's JSON options).
    pub fn from_pairs(pairs: Vec<(String, String)>) -> Self {
        Self(pairs.into_iter().collect())
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    /// A boolean as Go's `strconv.ParseBool` reads it; absent or empty is `false`.
    pub fn bool(&self, key: &str) -> Result<bool, QueryError> {
        match self.get(key).unwrap_or_default() {
            "" | "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(false),
            "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(true),
            other => Err(QueryError(format!(
                "Error decoding boolean for '{key}': strconv.ParseBool: parsing \"{other}\": invalid syntax"
            ))),
        }
    }

    /// A signed integer; absent or empty is 0.
    pub fn int(&self, key: &str) -> Result<i64, QueryError> {
        match self.get(key).unwrap_or_default() {
            "" => Ok(0),
            text => text.parse().map_err(|_| {
                QueryError(format!(
                    "Error decoding int for '{key}': strconv.Atoi: parsing \"{text}\": invalid syntax"
                ))
            }),
        }
    }

    /// An unsigned integer; absent or empty is 0.
    pub fn uint(&self, key: &str) -> Result<u64, QueryError> {
        match self.get(key).unwrap_or_default() {
            "" => Ok(0),
            text => text.parse().map_err(|_| {
                QueryError(format!(
                    "Error decoding uint64 for '{key}': strconv.ParseUint: parsing \"{text}\": invalid syntax"
                ))
            }),
        }
    }
}
