//! A JSON object read with its members in order and duplicates kept, so that a token or key
//! that names a member twice is refused instead of one of the values winning silently (a
//! classic way to make two parsers disagree about the same token).

use std::fmt;

use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::Value;

/// The members of one JSON object, in document order.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct JsonObject(pub(crate) Vec<(String, Value)>);

impl JsonObject {
    /// Parses `bytes` as one JSON object with distinct member names.
    ///
    /// # Errors
    /// A message when the bytes are not a JSON object or name a member twice.
    pub(crate) fn parse(bytes: &[u8]) -> Result<Self, String> {
        let object: Self = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        object.check_distinct()?;
        Ok(object)
    }

    /// Refuses an object that names a member twice (for objects nested in a document read
    /// with this type).
    ///
    /// # Errors
    /// A message naming the repeated member.
    pub(crate) fn check_distinct(&self) -> Result<(), String> {
        let mut names: Vec<&str> = self.0.iter().map(|(name, _)| name.as_str()).collect();
        names.sort_unstable();
        match names.windows(2).find(|pair| pair[0] == pair[1]) {
            Some(pair) => Err(format!("member {:?} appears more than once", pair[0])),
            None => Ok(()),
        }
    }

    /// The value of member `name`.
    pub(crate) fn get(&self, name: &str) -> Option<&Value> {
        self.0.iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }

    /// The names of the members.
    pub(crate) fn names(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(|(name, _)| name.as_str())
    }
}

impl<'de> Deserialize<'de> for JsonObject {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ObjectVisitor;
        impl<'de> Visitor<'de> for ObjectVisitor {
            type Value = JsonObject;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<JsonObject, A::Error> {
                let mut members = Vec::new();
                while let Some((name, value)) = map.next_entry::<String, Value>()? {
                    members.push((name, value));
                }
                Ok(JsonObject(members))
            }
        }
        deserializer.deserialize_map(ObjectVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicates_are_refused_and_order_is_kept() {
        let object = JsonObject::parse(br#"{"b":1,"a":2}"#).unwrap();
        assert_eq!(object.names().collect::<Vec<_>>(), ["b", "a"]);
        assert_eq!(object.get("a"), Some(&Value::from(2)));
        let error = JsonObject::parse(br#"{"alg":"ES256","alg":"none"}"#).unwrap_err();
        assert!(error.contains("\"alg\" appears more than once"), "{error}");
        assert!(JsonObject::parse(b"[1]").is_err());
        assert!(JsonObject::parse(b"{} x").is_err());
    }
}
