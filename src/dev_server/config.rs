//! The development server's registration entries: from a TOML file, or one identity for the
//! callers running as the server's own user.
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
//! federates_with = ["partner.org"] # optional: its callers also get these bundles
//! ```
//!
//! As in SPIRE, a federated trust domain's bundle (given with
//! `DevServerOptions::with_federated`) goes only to the callers with an entry that federates
//! with it (`federates_with`, SPIRE's `-federatesWith`); the others get their own trust
//! domain's bundle alone.
//!
//! Every entry needs at least one selector: an entry without any would give its identity to
//! every caller, and is refused wherever entries come in (the file, the builder, the handle's
//! `replace_entries`, the server's start).

use std::collections::HashSet;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use super::attest::Selector;
use crate::spiffe_id::{SpiffeId, TrustDomain};

/// The default SVID lifetime.
pub const DEFAULT_SVID_TTL: Duration = Duration::from_secs(3600);

/// Why an entry without selectors is refused.
const NO_SELECTOR: &str =
    "an entry needs at least one selector (without one it would match every caller)";

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
    /// All must match the caller; at least one is required.
    pub selectors: Vec<Selector>,
    /// DNS SANs of the SVID.
    pub dns_names: Vec<String>,
    /// The Workload API hint.
    pub hint: Option<String>,
    /// The SVID lifetime.
    pub ttl: Duration,
    /// The federated trust domains whose bundles the entry's callers get (SPIRE's
    /// `-federatesWith`).
    pub federates_with: Vec<TrustDomain>,
}

impl Entry {
    /// An entry giving `spiffe_id` to the callers that have `selector` (add more with
    /// [`Entry::with_selectors`]; all must match).
    ///
    /// # Example
    /// ```
    /// use spiffe_mtls::dev_server::{Entry, Selector};
    /// use std::time::Duration;
    ///
    /// let entry = Entry::new(
    ///     "spiffe://example.org/agent/server".parse().unwrap(),
    ///     Selector::Uid(1000),
    ///     Duration::from_secs(3600),
    /// )
    /// .with_selectors(["unix:path:/usr/local/bin/agent-server".parse().unwrap()]);
    /// assert_eq!(entry.selectors.len(), 2);
    /// ```
    pub fn new(spiffe_id: SpiffeId, selector: Selector, ttl: Duration) -> Self {
        Self {
            spiffe_id,
            selectors: vec![selector],
            dns_names: Vec::new(),
            hint: None,
            ttl,
            federates_with: Vec::new(),
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

    /// Gives the entry's callers the bundles of these federated trust domains too (SPIRE's
    /// `-federatesWith`); a bundle of a trust domain the server was not given is not sent.
    pub fn federates_with(mut self, trust_domains: impl IntoIterator<Item = TrustDomain>) -> Self {
        self.federates_with.extend(trust_domains);
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
    entries: Vec<toml::Spanned<EntryFile>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EntryFile {
    spiffe_id: SpiffeId,
    selectors: toml::Spanned<Vec<Selector>>,
    #[serde(default)]
    dns_names: Vec<String>,
    hint: Option<String>,
    ttl: Option<String>,
    #[serde(default)]
    federates_with: Vec<TrustDomain>,
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
    /// One identity for the callers running as this process's user: an entry with the selector
    /// `unix:uid:<effective uid>` (the `--trust-domain TD --id ID` mode).
    ///
    /// # Errors
    /// [`ConfigError::Entry`] when `id` is not in `trust_domain` or this process's uid cannot
    /// be read from `/proc/self/status`.
    pub fn one_identity(
        trust_domain: TrustDomain,
        id: SpiffeId,
        ttl: Duration,
    ) -> Result<Self, ConfigError> {
        let uid = super::procfs::effective_uid().map_err(|e| ConfigError::Entry {
            index: 1,
            id: id.to_string(),
            reason: format!("cannot read this process's uid: {e}"),
        })?;
        let config = Self {
            trust_domain,
            entries: vec![Entry::new(id, Selector::Uid(uid), ttl)],
        };
        config.validate()?;
        Ok(config)
    }

    /// Every entry federates with `trust_domain` too (SPIRE's `-federatesWith` on each): its
    /// callers get that trust domain's bundle, when the server has it.
    #[must_use]
    pub fn with_federation(mut self, trust_domain: TrustDomain) -> Self {
        for entry in &mut self.entries {
            entry.federates_with.push(trust_domain.clone());
        }
        self
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
        let line_of = |offset: usize| {
            text.as_bytes()[..offset.min(text.len())]
                .iter()
                .filter(|&&b| b == b'\n')
                .count()
                + 1
        };
        let file: ConfigFile = toml::from_str(text).map_err(|e| ConfigError::Invalid {
            line: e.span().map_or(1, |span| line_of(span.start)),
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
                let entry_line = line_of(entry.span().start);
                let entry = entry.into_inner();
                if entry.selectors.get_ref().is_empty() {
                    return Err(ConfigError::Invalid {
                        line: line_of(entry.selectors.span().start),
                        message: format!(
                            "entry #{} ({}, line {entry_line}): {NO_SELECTOR}",
                            i + 1,
                            entry.spiffe_id
                        ),
                    });
                }
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
                    selectors: entry.selectors.into_inner(),
                    dns_names: entry.dns_names,
                    hint: entry.hint,
                    ttl,
                    federates_with: entry.federates_with,
                })
            })
            .collect::<Result<_, ConfigError>>()?;
        let config = Self {
            trust_domain: file.trust_domain,
            entries,
        };
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

    /// Every entry with a selector, every ID in the trust domain with a path, hints unique, DNS
    /// names valid, no entry federating with its own trust domain.
    ///
    /// # Errors
    /// [`ConfigError::Entry`] naming the first entry at fault.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut hints = HashSet::new();
        for (i, entry) in self.entries.iter().enumerate() {
            if entry.selectors.is_empty() {
                return Err(self.entry_error(i, NO_SELECTOR));
            }
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
            if entry.federates_with.contains(&self.trust_domain) {
                return Err(self.entry_error(
                    i,
                    format!(
                        "federates_with names its own trust domain {}",
                        self.trust_domain
                    ),
                ));
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
                "config line 4: entry #1 (spiffe://example.org/a, line 2): an entry needs at least one selector",
            ),
            (
                "trust_domain = \"example.org\"\n[[entry]]\nspiffe_id = \"spiffe://example.org/a\"\n",
                "config line 2: missing field `selectors`",
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

    #[test]
    fn every_entry_needs_a_selector() {
        let mut config = DevServerConfig::one_identity(
            "example.org".parse().unwrap(),
            "spiffe://example.org/a".parse().unwrap(),
            DEFAULT_SVID_TTL,
        )
        .unwrap();
        assert!(matches!(
            config.entries[0].selectors[..],
            [Selector::Uid(_)]
        ));
        assert!(config.validate().is_ok());
        config.entries[0].selectors.clear();
        assert_eq!(
            config.validate().unwrap_err().to_string(),
            "entry #1 (spiffe://example.org/a): an entry needs at least one selector (without one it would match every caller)"
        );
    }
}
