//! The development server's registration entries: from a TOML file, or one identity for any
//! caller.
//!
//! ```toml
//! trust_domain = "example.org"
//! svid_ttl = "1h"                 # optional, default for entries
//! [[entry]]
//! spiffe_id = "spiffe://example.org/agent/server"
//! selectors = ["unix:uid:1000", "unix:path:/usr/local/bin/agent-server"]
//! dns_names = ["localhost"]       # optional
//! hint = "server"                 # optional
//! ttl = "10m"                     # optional
//! ```

use std::collections::HashSet;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use super::attest::Selector;
use crate::spiffe_id::{SpiffeId, TrustDomain};

/// The default SVID lifetime.
pub const DEFAULT_SVID_TTL: Duration = Duration::from_secs(3600);

/// Why a configuration cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file cannot be read.
    #[error("cannot read config {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The TOML is invalid or has an unknown key.
    #[error("config line {line}: {message}")]
    Invalid {
        /// 1-based line.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// An entry breaks a rule.
    #[error("entry #{index} ({id}): {reason}")]
    Entry {
        /// 1-based entry number, in file order.
        index: usize,
        /// The entry's SPIFFE ID.
        id: String,
        /// What is wrong.
        reason: String,
    },
}

/// A registration entry: who (selectors) gets which SVID.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Entry {
    /// The SVID's SPIFFE ID.
    pub spiffe_id: SpiffeId,
    /// All must match the caller; none matches any caller.
    pub selectors: Vec<Selector>,
    /// DNS SANs of the SVID.
    pub dns_names: Vec<String>,
    /// The Workload API hint.
    pub hint: Option<String>,
    /// The SVID lifetime.
    pub ttl: Duration,
}

impl Entry {
    /// An entry for `spiffe_id` with no selector: it matches any caller.
    pub fn for_anyone(spiffe_id: SpiffeId, ttl: Duration) -> Self {
        Self {
            spiffe_id,
            selectors: Vec::new(),
            dns_names: Vec::new(),
            hint: None,
            ttl,
        }
    }

    /// Adds selectors.
    pub fn with_selectors(mut self, selectors: impl IntoIterator<Item = Selector>) -> Self {
        self.selectors.extend(selectors);
        self
    }

    /// Adds DNS names.
    pub fn with_dns_names(mut self, names: impl IntoIterator<Item = String>) -> Self {
        self.dns_names.extend(names);
        self
    }

    /// Sets the hint.
    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

/// The trust domain and its registration entries.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DevServerConfig {
    /// The trust domain the server issues for.
    pub trust_domain: TrustDomain,
    /// The registration entries, in file order.
    pub entries: Vec<Entry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    trust_domain: TrustDomain,
    svid_ttl: Option<String>,
    #[serde(default, rename = "entry")]
    entries: Vec<EntryFile>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EntryFile {
    spiffe_id: SpiffeId,
    selectors: Vec<Selector>,
    #[serde(default)]
    dns_names: Vec<String>,
    hint: Option<String>,
    ttl: Option<String>,
}

/// Parses a duration such as `90s`, `10m`, `1h`, `1h30m`, `500ms`.
///
/// # Errors
/// A message when the text is not a positive duration.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let duration =
        humantime::parse_duration(text).map_err(|e| format!("{text:?} is not a duration: {e}"))?;
    if duration.is_zero() {
        return Err(format!("{text:?}: a lifetime must be positive"));
    }
    Ok(duration)
}

impl DevServerConfig {
    /// One identity for any caller (the `--trust-domain TD --id ID` mode).
    ///
    /// # Errors
    /// [`ConfigError::Entry`] when `id` is not in `trust_domain`.
    pub fn one_identity(
        trust_domain: TrustDomain,
        id: SpiffeId,
        ttl: Duration,
    ) -> Result<Self, ConfigError> {
        let config = Self {
            trust_domain,
            entries: vec![Entry::for_anyone(id, ttl)],
        };
        config.validate()?;
        Ok(config)
    }

    /// Parses a TOML configuration.
    ///
    /// # Errors
    /// [`ConfigError`] naming the line or entry at fault.
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        Self::from_toml_with_default_ttl(text, DEFAULT_SVID_TTL)
    }

    /// Parses a TOML configuration; `default_ttl` applies when the file sets no `svid_ttl`.
    ///
    /// # Errors
    /// [`ConfigError`] naming the line or entry at fault.
    pub fn from_toml_with_default_ttl(
        text: &str,
        default_ttl: Duration,
    ) -> Result<Self, ConfigError> {
        let file: ConfigFile = toml::from_str(text).map_err(|e| ConfigError::Invalid {
            line: e.span().map_or(1, |span| {
                text.as_bytes()[..span.start.min(text.len())]
                    .iter()
                    .filter(|&&b| b == b'\n')
                    .count()
                    + 1
            }),
            message: e.message().trim().to_owned(),
        })?;
        let default_ttl = match &file.svid_ttl {
            Some(text) => parse_duration(text).map_err(|message| ConfigError::Invalid {
                line: 1,
                message: format!("svid_ttl: {message}"),
            })?,
            None => default_ttl,
        };
        let entries = file
            .entries
            .into_iter()
            .enumerate()
            .map(|(i, entry)| {
                let ttl = match &entry.ttl {
                    Some(text) => parse_duration(text).map_err(|reason| ConfigError::Entry {
                        index: i + 1,
                        id: entry.spiffe_id.to_string(),
                        reason,
                    })?,
                    None => default_ttl,
                };
                Ok(Entry {
                    spiffe_id: entry.spiffe_id,
                    selectors: entry.selectors,
                    dns_names: entry.dns_names,
                    hint: entry.hint,
                    ttl,
                })
            })
            .collect::<Result<_, ConfigError>>()?;
        let config = Self {
            trust_domain: file.trust_domain,
            entries,
        };
        config.validate_file_entries()?;
        config.validate()?;
        Ok(config)
    }

    /// Reads and parses a TOML configuration file; `default_ttl` as in
    /// [`DevServerConfig::from_toml_with_default_ttl`].
    ///
    /// # Errors
    /// [`ConfigError`] when unreadable or invalid.
    pub fn load(path: impl AsRef<Path>, default_ttl: Duration) -> Result<Self, ConfigError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_toml_with_default_ttl(&text, default_ttl)
    }

    fn entry_error(&self, index: usize, reason: impl Into<String>) -> ConfigError {
        ConfigError::Entry {
            index: index + 1,
            id: self.entries[index].spiffe_id.to_string(),
            reason: reason.into(),
        }
    }

    /// File entries need at least one selector (an entry without would match every caller).
    fn validate_file_entries(&self) -> Result<(), ConfigError> {
        match self.entries.iter().position(|e| e.selectors.is_empty()) {
            Some(i) => Err(self.entry_error(i, "an entry needs at least one selector")),
            None => Ok(()),
        }
    }

    /// Every ID in the trust domain with a path, hints unique, DNS names valid.
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        let mut hints = HashSet::new();
        for (i, entry) in self.entries.iter().enumerate() {
            if entry.spiffe_id.trust_domain() != &self.trust_domain {
                return Err(
                    self.entry_error(i, format!("not in trust domain {}", self.trust_domain))
                );
            }
            if entry.spiffe_id.path().is_empty() {
                return Err(self.entry_error(i, "a workload ID needs a path"));
            }
            if let Some(hint) = &entry.hint
                && (hint.is_empty() || !hints.insert(hint.as_str()))
            {
                return Err(self.entry_error(i, format!("hint {hint:?} is empty or not unique")));
            }
            for name in &entry.dns_names {
                if name.is_empty() || !name.is_ascii() || name.contains(['/', ' ', ':']) {
                    return Err(self.entry_error(i, format!("{name:?} is not a DNS name")));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = r#"
trust_domain = "example.org"
svid_ttl = "1h"
[[entry]]
spiffe_id = "spiffe://example.org/agent/server"
selectors = ["unix:uid:1000", "unix:path:/usr/local/bin/agent-server"]
dns_names = ["localhost"]
hint = "server"
ttl = "10m"

[[entry]]
spiffe_id = "spiffe://example.org/agent/client"
selectors = ["unix:gid:1000"]
"#;

    #[test]
    fn parses_the_documented_shape() {
        let config = DevServerConfig::from_toml(EXAMPLE).unwrap();
        assert_eq!(config.trust_domain.as_str(), "example.org");
        assert_eq!(config.entries.len(), 2);
        let server = &config.entries[0];
        assert_eq!(server.ttl, Duration::from_secs(600));
        assert_eq!(server.hint.as_deref(), Some("server"));
        assert_eq!(server.dns_names, ["localhost"]);
        assert_eq!(
            server.selectors,
            [
                Selector::Uid(1000),
                Selector::Path("/usr/local/bin/agent-server".into())
            ]
        );
        assert_eq!(config.entries[1].ttl, Duration::from_secs(3600));
    }

    #[test]
    fn rejects_bad_files() {
        let cases = [
            ("trust_domain = \"example.org\"\nport = 3\n", "line 2"),
            ("trust_domain = \"Example.org\"\n", "line 1"),
            (
                "trust_domain = \"example.org\"\n[[entry]]\nspiffe_id = \"spiffe://example.org/a\"\nselectors = [\"unix:uid:x\"]\n",
                "line 4",
            ),
            (
                "trust_domain = \"example.org\"\n[[entry]]\nspiffe_id = \"spiffe://other.org/a\"\nselectors = [\"unix:uid:1\"]\n",
                "not in trust domain",
            ),
            (
                "trust_domain = \"example.org\"\n[[entry]]\nspiffe_id = \"spiffe://example.org/a\"\nselectors = []\n",
                "at least one selector",
            ),
            (
                "trust_domain = \"example.org\"\n[[entry]]\nspiffe_id = \"spiffe://example.org/a\"\nselectors = [\"unix:uid:1\"]\nttl = \"soon\"\n",
                "not a duration",
            ),
            (
                "trust_domain = \"example.org\"\n[[entry]]\nspiffe_id = \"spiffe://example.org/a\"\nselectors = [\"unix:uid:1\"]\nhint = \"x\"\n[[entry]]\nspiffe_id = \"spiffe://example.org/b\"\nselectors = [\"unix:uid:1\"]\nhint = \"x\"\n",
                "not unique",
            ),
        ];
        for (text, needle) in cases {
            let err = DevServerConfig::from_toml(text).unwrap_err().to_string();
            assert!(err.contains(needle), "{needle:?} not in {err:?}");
        }
    }
}
