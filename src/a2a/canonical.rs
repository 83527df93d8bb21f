//! RFC 8785 (JSON Canonicalization Scheme) for the JSON of agent cards: what a card
//! signature covers, byte for byte, whoever serializes the card.
//!
//! Written here rather than taken from a crate because the one rule that matters for a
//! signature is that two parties produce the same bytes, and the cases where JCS is subtle
//! are refused rather than approximated:
//! - object members are sorted by their names' UTF-16 code units (not UTF-8 bytes: they
//!   differ for names with characters above U+FFFF);
//! - strings are escaped as ECMAScript's `JSON.stringify` does (`\"`, `\\`, `\b`, `\f`,
//!   `\n`, `\r`, `\t`, other controls as `\u00xx`, everything else literal), which is also
//!   what `serde_json` writes;
//! - numbers: integers of at most 2^53 - 1 in magnitude as decimal digits (floats with such
//!   an integral value too: `1.0` is `1`); other numbers are refused ([`CanonicalError`]):
//!   beyond 2^53 a double is not exact (the Python SDK refuses them too), and ECMAScript's
//!   shortest form of a fraction is not what `serde_json` writes; agent cards hold none;
//! - nesting deeper than [`MAX_DEPTH`] (128, as the Python SDK) is refused, so a value built
//!   in memory cannot exhaust the stack.

use std::fmt::Write as _;

use serde_json::Value;

/// Why a value has no canonical form here.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CanonicalError {
    /// A number that is not an integer of at most 2^53 - 1 (see the module docs).
    #[error(
        "the number {0} is not an integer of at most 2^53 - 1: signed agent cards hold such integers only"
    )]
    NotAnInteger(String),
    /// Objects and arrays nested deeper than [`MAX_DEPTH`].
    #[error("the value nests deeper than {MAX_DEPTH} objects and arrays")]
    TooDeep,
}

/// The deepest nesting of objects and arrays canonicalized (the Python SDK's bound).
pub const MAX_DEPTH: usize = 128;

/// `value` without its empty members, recursively: `null`, `""`, `[]` and `{}` (and what
/// becomes empty once they are gone), as the A2A SDKs remove them before they canonicalize a
/// card: the bytes signed must be the ones a verifier in another language computes. So an
/// empty member is not covered by a signature: a security requirement without scopes
/// (`{"mtls": []}`) can be added or removed without breaking it. `None` when nothing is
/// left. Nesting past [`MAX_DEPTH`] is cut there (its canonical form is refused anyway).
pub fn without_empty_members(value: &Value) -> Option<Value> {
    cleaned(value, 0)
}

fn cleaned(value: &Value, depth: usize) -> Option<Value> {
    if depth > MAX_DEPTH {
        // Deeper than anything canonical: kept as an empty array, which `canonical_json`
        // refuses for its depth.
        return Some(Value::Array(Vec::new()));
    }
    match value {
        Value::Null => None,
        Value::String(text) if text.is_empty() => None,
        Value::Array(items) => {
            let kept: Vec<Value> = items
                .iter()
                .filter_map(|item| cleaned(item, depth + 1))
                .collect();
            (!kept.is_empty()).then_some(Value::Array(kept))
        }
        Value::Object(members) => {
            let kept: serde_json::Map<String, Value> = members
                .iter()
                .filter_map(|(name, member)| {
                    cleaned(member, depth + 1).map(|member| (name.clone(), member))
                })
                .collect();
            (!kept.is_empty()).then_some(Value::Object(kept))
        }
        other => Some(other.clone()),
    }
}

/// The largest integer a double holds exactly and its neighbours do not share (2^53 - 1).
const MAX_SAFE: i64 = 9_007_199_254_740_991;

/// The RFC 8785 canonical JSON text of `value`.
///
/// # Errors
/// [`CanonicalError::NotAnInteger`] for a number with a fractional part or beyond 2^53 - 1,
/// [`CanonicalError::TooDeep`] past [`MAX_DEPTH`].
pub fn canonical_json(value: &Value) -> Result<String, CanonicalError> {
    let mut out = String::new();
    write_value(&mut out, value, 0)?;
    Ok(out)
}

fn write_value(out: &mut String, value: &Value, depth: usize) -> Result<(), CanonicalError> {
    if matches!(value, Value::Array(_) | Value::Object(_)) && depth >= MAX_DEPTH {
        return Err(CanonicalError::TooDeep);
    }
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(flag) => out.push_str(if *flag { "true" } else { "false" }),
        Value::Number(number) => write_number(out, number)?,
        Value::String(text) => write_string(out, text),
        Value::Array(items) => {
            out.push('[');
            for (index, item) in items.iter().enumerate() {
                if index > 0 {
                    out.push(',');
                }
                write_value(out, item, depth + 1)?;
            }
            out.push(']');
        }
        Value::Object(members) => {
            let mut sorted: Vec<(&String, &Value)> = members.iter().collect();
            sorted.sort_by(|(a, _), (b, _)| a.encode_utf16().cmp(b.encode_utf16()));
            out.push('{');
            for (index, (name, member)) in sorted.into_iter().enumerate() {
                if index > 0 {
                    out.push(',');
                }
                write_string(out, name);
                out.push(':');
                write_value(out, member, depth + 1)?;
            }
            out.push('}');
        }
    }
    Ok(())
}

fn write_number(out: &mut String, number: &serde_json::Number) -> Result<(), CanonicalError> {
    let refused = || CanonicalError::NotAnInteger(number.to_string());
    let integer = match number.as_i64() {
        Some(integer) => integer,
        None if number.is_u64() => return Err(refused()),
        None => {
            let float = number.as_f64().unwrap_or(f64::NAN);
            #[allow(clippy::cast_precision_loss)] // 2^53 - 1 is exact in a double
            let bound = MAX_SAFE as f64;
            if float.fract() != 0.0 || !float.is_finite() || float.abs() > bound {
                return Err(refused());
            }
            // Integral and exact: its decimal digits (`-0` is `0` in ECMAScript).
            #[allow(clippy::cast_possible_truncation)] // integral, at most 2^53 - 1
            let integer = float as i64;
            integer
        }
    };
    // `unsigned_abs`: `i64::MIN.abs()` overflows (a hostile card's number must not panic).
    if integer.unsigned_abs() > MAX_SAFE.unsigned_abs() {
        return Err(refused());
    }
    let _ = write!(out, "{integer}");
    Ok(())
}

fn write_string(out: &mut String, text: &str) {
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn members_sort_by_utf16_code_units_and_strings_escape_as_ecmascript() {
        // RFC 8785 section 3.2.3's sorting example: by UTF-16, U+1F600 (a surrogate pair,
        // 0xD83D...) sorts before U+FB33, though its UTF-8 sorts after.
        let value: Value = serde_json::from_str(
            r#"{"\u20ac":"Euro Sign","\r":"Carriage Return","\ufb33":"Hebrew Letter Dalet With Dagesh","1":"One","\ud83d\ude00":"Emoji: Grinning Face","\u0080":"Control","\u00f6":"Latin Small Letter O With Diaeresis"}"#,
        )
        .unwrap();
        let text = canonical_json(&value).unwrap();
        let order = [
            "\\r",
            "1",
            "\u{80}",
            "\u{f6}",
            "\u{20ac}",
            "\u{1f600}",
            "\u{fb33}",
        ];
        let positions: Vec<usize> = order
            .iter()
            .map(|name| text.find(&format!("\"{name}\":")).unwrap())
            .collect();
        assert!(positions.windows(2).all(|w| w[0] < w[1]), "{text}");

        let value = json!({"b": [1, true, null, "a\"\\\u{1}\n\u{2028}/"], "a": {"y": 2, "x": -3}});
        assert_eq!(
            canonical_json(&value).unwrap(),
            format!(
                r#"{{"a":{{"x":-3,"y":2}},"b":[1,true,null,"a\"\\\u0001\n{}/"]}}"#,
                '\u{2028}'
            )
        );
    }

    #[test]
    fn empty_members_go_recursively_and_false_and_zero_stay() {
        let card = json!({"a": "", "b": [], "c": {}, "d": null, "e": [{"f": {"g": []}}, ""],
                          "h": false, "i": 0, "j": [0, "x"], "k": {"l": "", "m": "n"}});
        assert_eq!(
            without_empty_members(&card),
            Some(json!({"h": false, "i": 0, "j": [0, "x"], "k": {"m": "n"}}))
        );
        assert_eq!(without_empty_members(&json!({"a": [{}]})), None);
    }

    #[test]
    fn integers_are_digits_and_other_numbers_are_refused() {
        assert_eq!(canonical_json(&json!(100.0)).unwrap(), "100");
        assert_eq!(canonical_json(&json!(-0.0)).unwrap(), "0");
        assert_eq!(
            canonical_json(&json!(9_007_199_254_740_991_i64)).unwrap(),
            "9007199254740991"
        );
        assert!(canonical_json(&json!(9_007_199_254_740_992_i64)).is_err());
        assert!(canonical_json(&json!(u64::MAX)).is_err());
        assert!(canonical_json(&json!(-9_007_199_254_740_992_i64)).is_err());
        assert_eq!(
            canonical_json(&json!(-9_007_199_254_740_991_i64)).unwrap(),
            "-9007199254740991"
        );
        assert!(canonical_json(&json!(i64::MIN)).is_err());
        let parsed: Value = serde_json::from_str("[-9223372036854775808]").unwrap();
        assert!(canonical_json(&parsed).is_err());
        assert!(canonical_json(&json!({"x": 0.5})).is_err());
        assert!(canonical_json(&json!(1e300)).is_err());
    }

    #[test]
    fn nesting_past_the_bound_is_refused_without_exhausting_the_stack() {
        // Built in memory (a parser stops at 128 itself), deep enough to overflow a naive
        // recursion.
        let mut value = Value::Null;
        for _ in 0..100_000 {
            let mut map = serde_json::Map::new();
            map.insert("a".into(), value);
            value = Value::Object(map);
        }
        assert_eq!(canonical_json(&value), Err(CanonicalError::TooDeep));
        assert!(without_empty_members(&value).is_some());
        let mut shallow = json!(1);
        for _ in 0..MAX_DEPTH - 1 {
            shallow = json!([shallow]);
        }
        assert!(canonical_json(&shallow).is_ok());
        // Dropped piece by piece: serde_json's own drop of such a value recurses.
        while let Value::Object(mut map) = value {
            value = map.remove("a").unwrap_or(Value::Null);
        }
    }
}
