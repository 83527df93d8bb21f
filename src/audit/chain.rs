//! Checking the hash chain of a JSON-lines audit log (see [`AuditLog`](super::AuditLog)).

use std::io::{self, BufRead, Read};

use super::event::sha256_hex;
use super::log_file::MAX_LINE;

/// A chain that verified.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ChainSummary {
    /// Its lines.
    pub lines: usize,
    /// The SHA-256 (hex) of its last line: keep it elsewhere to detect a later truncation
    /// or an edit of the last line (`spiffe-mtls audit verify --last`).
    pub last_sha256: Option<String>,
}

/// Where a chain breaks: the first line that does not follow the one before it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {reason}")]
pub struct ChainBreak {
    /// The line (counted from 1).
    pub line: usize,
    /// What is wrong with it.
    pub reason: String,
}

/// Why a log could not be checked.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ChainError {
    /// Reading it failed.
    #[error("cannot read the audit log: {0}")]
    Read(#[from] io::Error),
    /// Its chain is broken.
    #[error(transparent)]
    Broken(#[from] ChainBreak),
    /// The chain is whole, but no line of it has the digest kept from an earlier check: that
    /// line was edited, or cut from the end with the lines after it.
    #[error(
        "the chain is whole, but no line has the SHA-256 kept from an earlier check ({kept}): \
         that line was edited, or lines were cut from the end"
    )]
    KeptLineMissing {
        /// The digest looked for.
        kept: String,
    },
    /// There is no SHA-256 to check it with (no crypto provider).
    #[error(
        "no SHA-256 to check the chain with: no crypto provider (enable `ring` or `aws-lc-rs`)"
    )]
    NoHash,
}

/// Checks every line of a chained audit log: each is a JSON object whose `prev_sha256` is
/// `null` on the first line and the SHA-256 (hex) of the line before it (its bytes, without
/// the newline) on every other. An edited line breaks the link to the line after it; a
/// deleted, inserted or moved line breaks the link where it was or where it now is; a
/// deleted first line leaves a first line whose `prev_sha256` is not `null`.
///
/// A line longer than 1 MiB is refused as such (a log's lines are far shorter: their fields
/// are bounded). What the chain cannot show: the last line edited or lines cut from the end,
/// which [`ChainSummary::last_sha256`] kept elsewhere shows.
///
/// # Errors
/// [`ChainError::Broken`] naming the first line that breaks the chain,
/// [`ChainError::Read`] when reading fails.
pub fn verify_chain(reader: impl BufRead) -> Result<ChainSummary, ChainError> {
    verify_chain_holding(reader, None)
}

/// As [`verify_chain`], and the chain must hold a line whose SHA-256 is `kept` (the
/// [`ChainSummary::last_sha256`] of an earlier check, kept elsewhere): the log may have grown
/// since, but what was there then is still there, unchanged.
///
/// # Errors
/// As [`verify_chain`], and [`ChainError::KeptLineMissing`].
pub fn verify_chain_holding(
    mut reader: impl BufRead,
    kept: Option<&str>,
) -> Result<ChainSummary, ChainError> {
    let mut found = kept.is_none();
    let mut line = Vec::new();
    let mut previous: Option<String> = None;
    let mut number = 0;
    loop {
        line.clear();
        let limit = MAX_LINE as u64 + 1;
        if (&mut reader).take(limit).read_until(b'\n', &mut line)? == 0 {
            if !found {
                return Err(ChainError::KeptLineMissing {
                    kept: kept.unwrap_or_default().to_owned(),
                });
            }
            return Ok(ChainSummary {
                lines: number,
                last_sha256: previous,
            });
        }
        number += 1;
        let broken = |reason: String| ChainBreak {
            line: number,
            reason,
        };
        if line.last() == Some(&b'\n') {
            line.pop();
        } else if line.len() > MAX_LINE {
            return Err(broken(format!("longer than {MAX_LINE} bytes: not an audit event")).into());
        }
        let value: serde_json::Value = serde_json::from_slice(&line)
            .map_err(|e| broken(format!("not a JSON audit event ({e})")))?;
        let link = match value.get("prev_sha256") {
            Some(serde_json::Value::Null) => None,
            Some(serde_json::Value::String(digest)) => Some(digest.as_str()),
            Some(_) => return Err(broken("prev_sha256 is not a string or null".into()).into()),
            None => return Err(broken("no prev_sha256: the log is not chained".into()).into()),
        };
        match (&previous, link) {
            (None, None) => {}
            (None, Some(_)) => {
                return Err(broken(
                    "the first line names a line before it (prev_sha256 is not null): lines were deleted from the start"
                        .into(),
                )
                .into());
            }
            (Some(_), None) => {
                return Err(broken(format!(
                    "prev_sha256 is null, but line {} comes before it: lines were inserted or moved",
                    number - 1
                ))
                .into());
            }
            (Some(expected), Some(link)) if expected != link => {
                return Err(broken(format!(
                    "prev_sha256 is not the SHA-256 of line {}: line {} was edited, or lines before this one were deleted, inserted or moved",
                    number - 1,
                    number - 1
                ))
                .into());
            }
            (Some(_), Some(_)) => {}
        }
        let digest = sha256_hex(&line).ok_or(ChainError::NoHash)?;
        found = found || kept.is_some_and(|kept| kept.trim().eq_ignore_ascii_case(&digest));
        previous = Some(digest);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::{AuditEvent, Decision};
    use crate::tls::Side;

    fn chain(n: usize) -> Vec<String> {
        let mut previous: Option<String> = None;
        (0..n)
            .map(|i| {
                let event =
                    AuditEvent::new(Side::Server, Decision::Accepted, None, format!("rule {i}"));
                let line = event.to_json_line(Some(previous.as_deref()));
                previous = sha256_hex(line.as_bytes());
                line
            })
            .collect()
    }

    fn check(lines: &[String]) -> Result<usize, ChainError> {
        let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
        verify_chain(text.as_bytes()).map(|summary| summary.lines)
    }

    fn broken_at(lines: &[String]) -> usize {
        match check(lines) {
            Err(ChainError::Broken(ChainBreak { line, .. })) => line,
            other => panic!("expected a break, got {other:?}"),
        }
    }

    #[test]
    fn a_whole_chain_passes_and_each_tampering_is_caught_where_it_shows() {
        let lines = chain(5);
        assert_eq!(check(&lines).unwrap(), 5);
        assert_eq!(check(&[]).unwrap(), 0);

        let mut edited = lines.clone();
        edited[2] = edited[2].replace("rule 2", "rule X");
        assert_eq!(
            broken_at(&edited),
            4,
            "the link from the edited line 3 to line 4"
        );

        let mut deleted = lines.clone();
        deleted.remove(2);
        assert_eq!(broken_at(&deleted), 3);

        let mut first_deleted = lines.clone();
        first_deleted.remove(0);
        assert_eq!(broken_at(&first_deleted), 1);

        let mut reordered = lines.clone();
        reordered.swap(1, 3);
        assert_eq!(broken_at(&reordered), 2);

        let mut garbage = lines.clone();
        garbage.insert(2, "not json".into());
        assert_eq!(broken_at(&garbage), 3);

        let mut huge = lines.clone();
        huge[1] = "x".repeat(MAX_LINE + 10);
        assert_eq!(broken_at(&huge), 2);

        let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
        let summary = verify_chain(text.as_bytes()).unwrap();
        assert_eq!(summary.last_sha256, sha256_hex(lines[4].as_bytes()));
        // A digest kept after line 3: found while the log grows; gone when cut back.
        let kept = sha256_hex(lines[2].as_bytes()).unwrap();
        assert!(verify_chain_holding(text.as_bytes(), Some(&kept)).is_ok());
        let cut: String = lines[..2].iter().map(|l| format!("{l}\n")).collect();
        assert!(matches!(
            verify_chain_holding(cut.as_bytes(), Some(&kept)),
            Err(ChainError::KeptLineMissing { .. })
        ));
    }
}
