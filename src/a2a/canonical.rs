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
//! - numbers: integers as decimal digits (floats with an integral value below 2^53 too);
//!   other floats are refused ([`CanonicalError`]): ECMAScript's shortest form of a double
//!   is not what `serde_json` writes, and agent cards hold none.

use std::fmt::Write as _;

use serde_json::Value;

/// Why a value has no canonical form here.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CanonicalError {
    /// A number that is not an integer (see the module docs).
    #[error("the number {0} is not an integer: signed agent cards hold integers only")]
    NotAnInteger(String),
}

/// `value` without its empty members, recursively: `null`, `""`, `[]` and `{}` (and what
/// becomes empty once they are gone), as the A2A SDKs remove them before they canonicalize a
/// card: a member set to an empty value says nothing a member left out does not, and the
/// bytes signed must be the ones a verifier in another language computes. `None` when
/// nothing is left.
pub fn without_empty_members(value: &Value) -> Option<Value> {
    match value {
        Value::Null => None,
        Value::String(text) if text.is_empty() => None,
        Value::Array(items) => {
            let kept: Vec<Value> = items.iter().filter_map(without_empty_members).collect();
            (!kept.is_empty()).then_some(Value::Array(kept))
        }
        Value::Object(members) => {
            let kept: serde_json::Map<String, Value> = members
                .iter()
                .filter_map(|(name, member)| {
                    without_empty_members(member).map(|member| (name.clone(), member))
                })
                .collect();
            (!kept.is_empty()).then_some(Value::Object(kept))
        }
        other => Some(other.clone()),
    }
}

/// The largest integer a double holds exactly.
const MAX_EXACT: f64 = 9_007_199_254_740_992.0;

/// The RFC 8785 canonical JSON text of `value`.
///
/// # Errors
/// [`CanonicalError::NotAnInteger`] for a number with a fractional part or beyond 2^53.
pub fn canonical_json(value: &Value) -> Result<String, CanonicalError> {
    let mut out = String::new();
    write_value(&mut out, value)?;
    Ok(out)
}

fn write_value(out: &mut String, value: &Value) -> Result<(), CanonicalError> {
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
                write_value(out, item)?;
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
                write_value(out, member)?;
            }
            out.push('}');
        }
    }
    Ok(())
}

fn write_number(out: &mut String, number: &serde_json::Number) -> Result<(), CanonicalError> {
    if let Some(integer) = number.as_i64() {
        let _ = write!(out, "{integer}");
    } else if let Some(integer) = number.as_u64() {
        let _ = write!(out, "{integer}");
    } else {
        let float = number.as_f64().unwrap_or(f64::NAN);
        if float.fract() != 0.0 || float.abs() > MAX_EXACT || !float.is_finite() {
            return Err(CanonicalError::NotAnInteger(number.to_string()));
        }
        // Integral and exact: its decimal digits (`-0` is `0` in ECMAScript).
        #[allow(clippy::cast_possible_truncation)] // integral, below 2^53
        let integer = float as i64;
        let _ = write!(out, "{integer}");
    }
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
            canonical_json(&json!(u64::MAX)).unwrap(),
            u64::MAX.to_string()
        );
        assert!(canonical_json(&json!({"x": 0.5})).is_err());
        assert!(canonical_json(&json!(1e300)).is_err());
    }
}
