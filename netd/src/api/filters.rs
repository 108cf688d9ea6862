//! Docker's `filters` query parameter for `GET /networks` and `POST /networks/prune`:
//! `{"name":{"foo":true}}` (current) or `{"name":["foo"]}` (legacy).

use std::collections::BTreeMap;

use serde_json::Value;

use crate::model::Network;

/// Parsed filters: key → accepted values.
#[derive(Debug, Default)]
pub struct Filters(BTreeMap<String, Vec<String>>);

impl Filters {
    /// Network filters: the keys in `allowed`, with Docker's checks of `type` and `dangling`.
    pub fn parse(raw: Option<&str>, allowed: &[&str]) -> Result<Self, String> {
        let Self(out) = Self::parse_keys(raw, allowed)?;
        if let Some(types) = out.get("type") {
            for t in types {
                if t != "custom" && t != "builtin" {
                    return Err(format!("invalid filter: 'type'='{t}'"));
                }
            }
        }
        if let Some(dangling) = out.get("dangling") {
            if dangling.len() > 1 {
                return Err(r#"got more than one value for filter key "dangling""#.into());
            }
            if !dangling.iter().all(|v| ["0", "1", "false", "true"].contains(&v.as_str())) {
                return Err(
                    r#"invalid value for filter 'dangling', must be "true" (or "1"), or "false" (or "0")"#.into()
                );
            }
        }
        Ok(Self(out))
    }

    /// Any filters with keys in `allowed`; their values unchecked.
    pub fn parse_keys(raw: Option<&str>, allowed: &[&str]) -> Result<Self, String> {
        let Some(raw) = raw.filter(|r| !r.is_empty()) else {
            return Ok(Self::default());
        };
        let v: Value = serde_json::from_str(raw).map_err(|e| format!("invalid filter: {e}"))?;
        let Value::Object(map) = v else {
            return Err("invalid filter: expected an object".into());
        };
        let mut out = BTreeMap::new();
        for (key, values) in map {
            if !allowed.contains(&key.as_str()) {
                return Err(format!("invalid filter '{key}'"));
            }
            let list: Vec<String> = match values {
                Value::Object(m) => {
                    m.into_iter().filter(|(_, on)| on.as_bool() != Some(false)).map(|(k, _)| k).collect()
                }
                Value::Array(a) => a.into_iter().filter_map(|x| x.as_str().map(str::to_owned)).collect(),
                _ => return Err(format!("invalid filter '{key}'")),
            };
            out.insert(key, list);
        }
        Ok(Self(out))
    }

    /// The values given for `key` (none: the key was not given).
    pub fn values(&self, key: &str) -> &[String] {
        self.0.get(key).map_or(&[], Vec::as_slice)
    }

    /// Whether `key`'s values (alternatives) let something pass, by `matches`; without values,
    /// everything passes.
    pub fn any(&self, key: &str, matches: impl Fn(&str) -> bool) -> bool {
        self.0.get(key).is_none_or(|values| values.is_empty() || values.iter().any(|v| matches(v)))
    }

    /// Label filters as (key, optional value).
    pub fn labels(&self) -> Vec<(String, Option<String>)> {
        self.0
            .get("label")
            .into_iter()
            .flatten()
            .map(|l| match l.split_once('=') {
                Some((k, v)) => (k.to_owned(), Some(v.to_owned())),
                None => (l.clone(), None),
            })
            .collect()
    }

    /// Whether `n` passes every filter, as Docker's: the values of one key are alternatives,
    /// except labels, which must all match; `dangling=true` keeps the custom networks no
    /// container uses, `dangling=false` the others.
    pub fn matches(&self, n: &Network) -> bool {
        self.0.iter().all(|(key, values)| {
            let one = |v: &String| match key.as_str() {
                "name" => n.name.contains(v.as_str()),
                "id" => n.id.contains(v.as_str()),
                "driver" => n.driver.name() == v,
                "scope" => v == "local",
                "type" => (v == "builtin") == n.predefined,
                "dangling" => (v == "true" || v == "1") == (!n.predefined && n.endpoints.is_empty()),
                "label" => match v.split_once('=') {
                    Some((k, val)) => n.labels.get(k).is_some_and(|x| x == val),
                    None => n.labels.contains_key(v.as_str()),
                },
                _ => false,
            };
            values.is_empty() || if key == "label" { values.iter().all(one) } else { values.iter().any(one) }
        })
    }
}
