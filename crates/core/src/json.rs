//! Strict JSON parsing for untrusted input: duplicate members and deep nesting are refused.
//!
//! serde_json keeps the last of duplicate members silently, while other parsers keep the first;
//! a signed or hashed object must mean one thing to every reader, so duplicates are an error.

use serde::de::{self, MapAccess, SeqAccess, Visitor};
use serde_json::map::Entry;
use serde_json::{Map, Value};

/// Why JSON text was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed JSON: {0}")]
pub struct JsonError(String);

/// Parses JSON text, refusing duplicate object members and nesting deeper than `max_depth`.
pub fn parse_strict(bytes: &[u8], max_depth: usize) -> Result<Value, JsonError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let mut depth = 0;
    let value = de::DeserializeSeed::deserialize(
        StrictSeed {
            depth: &mut depth,
            max: max_depth,
        },
        &mut de,
    )
    .map_err(|e| JsonError(e.to_string()))?;
    de.end().map_err(|e| JsonError(e.to_string()))?;
    Ok(value)
}

struct StrictSeed<'a> {
    depth: &'a mut usize,
    max: usize,
}

impl<'de> de::DeserializeSeed<'de> for StrictSeed<'_> {
    type Value = Value;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(StrictVisitor(self))
    }
}

struct StrictVisitor<'a>(StrictSeed<'a>);

impl StrictVisitor<'_> {
    fn enter<E: de::Error>(&mut self) -> Result<(), E> {
        *self.0.depth += 1;
        if *self.0.depth > self.0.max {
            return Err(E::custom(format!("nesting deeper than {}", self.0.max)));
        }
        Ok(())
    }
}

impl<'de> Visitor<'de> for StrictVisitor<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(v.into())
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(v.into())
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        serde_json::Number::from_f64(v)
            .map(Value::Number)
            .ok_or_else(|| E::custom("non-finite number"))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(mut self, mut seq: A) -> Result<Value, A::Error> {
        self.enter()?;
        let mut out = Vec::new();
        while let Some(v) = seq.next_element_seed(StrictSeed {
            depth: self.0.depth,
            max: self.0.max,
        })? {
            out.push(v);
        }
        *self.0.depth -= 1;
        Ok(Value::Array(out))
    }
    fn visit_map<A: MapAccess<'de>>(mut self, mut map: A) -> Result<Value, A::Error> {
        self.enter()?;
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            // One lookup for the duplicate check and the insertion.
            let slot = match out.entry(key) {
                Entry::Vacant(slot) => slot,
                Entry::Occupied(taken) => {
                    let shown: String = taken.key().chars().take(64).collect();
                    return Err(de::Error::custom(format!("duplicate member `{shown}`")));
                }
            };
            let v = map.next_value_seed(StrictSeed {
                depth: self.0.depth,
                max: self.0.max,
            })?;
            slot.insert(v);
        }
        *self.0.depth -= 1;
        Ok(Value::Object(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_duplicates_depth_and_trailing_text() {
        assert!(parse_strict(br#"{"a":1,"b":{"c":[1,2]}}"#, 8).is_ok());
        let dup = parse_strict(br#"{"a":1,"b":{"a":1,"a":2}}"#, 8).unwrap_err();
        assert!(dup.to_string().contains("duplicate member `a`"), "{dup}");
        assert!(parse_strict(b"[[[1]]]", 2).is_err());
        assert!(parse_strict(b"[[[1]]]", 3).is_ok());
        assert!(parse_strict(b"{} x", 8).is_err());
        assert!(parse_strict(b"", 8).is_err());
    }
}
