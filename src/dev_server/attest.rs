//! Workload attestation by the caller's socket credentials (SO_PEERCRED), as SPIRE's `unix`
//! workload attestor does: selectors `unix:uid:N`, `unix:gid:N` and `unix:path:/abs/exe`,
//! taken from the connection's [`Peer`] record (bound to the connection at accept time; see
//! `peer` for what is re-checked at each call, and the race that remains). A loopback TCP
//! caller has only `unix:uid:N`; any other TCP caller has nothing and matches no entry.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use super::peer::{BindingError, Peer};

/// A selector of a registration entry.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Selector {
    /// `unix:uid:N`: the caller's user ID.
    Uid(u32),
    /// `unix:gid:N`: the caller's group ID.
    Gid(u32),
    /// `unix:path:/abs/exe`: the caller's executable.
    Path(PathBuf),
}

impl FromStr for Selector {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let bad = |why: &str| format!("{text:?} is not a selector: {why}");
        let (kind, value) = text
            .strip_prefix("unix:")
            .and_then(|rest| rest.split_once(':'))
            .ok_or_else(|| bad("expected unix:uid:N, unix:gid:N or unix:path:/abs/exe"))?;
        let number = || value.parse::<u32>().map_err(|_| bad("not a number"));
        match kind {
            "uid" => Ok(Self::Uid(number()?)),
            "gid" => Ok(Self::Gid(number()?)),
            "path" if value.starts_with('/') => Ok(Self::Path(PathBuf::from(value))),
            "path" => Err(bad("the path must be absolute")),
            _ => Err(bad("unknown kind; expected uid, gid or path")),
        }
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Uid(uid) => write!(f, "unix:uid:{uid}"),
            Self::Gid(gid) => write!(f, "unix:gid:{gid}"),
            Self::Path(path) => write!(f, "unix:path:{}", path.display()),
        }
    }
}

impl<'de> serde::Deserialize<'de> for Selector {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// What is known of a caller: the selectors it has.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Caller {
    selectors: Vec<Selector>,
}

impl Caller {
    /// A caller known by nothing (a TCP peer not on loopback): it matches no entry.
    pub fn anonymous() -> Self {
        Self::default()
    }

    /// The selectors of a connection's peer, as recorded when the connection was accepted
    /// (see [`Peer`]): uid, gid and the executable for a Unix socket peer, the socket owner's
    /// uid for a loopback TCP peer. Checks first that the process that connected is still the
    /// one there.
    ///
    /// # Errors
    /// [`BindingError`] when it exited, its pid was reused, or it runs another executable.
    pub(crate) fn attest(peer: &Peer) -> Result<Self, BindingError> {
        peer.check()?;
        let selectors = match peer {
            Peer::Unix { uid, gid, process } => {
                let mut selectors = vec![Selector::Uid(*uid), Selector::Gid(*gid)];
                if let Some(exe) = process.as_ref().and_then(|p| p.exe.as_ref()) {
                    selectors.push(Selector::Path(exe.path.clone()));
                }
                selectors
            }
            Peer::Tcp { uid: Some(uid), .. } => vec![Selector::Uid(*uid)],
            Peer::Tcp { uid: None, .. } | Peer::Unknown => Vec::new(),
        };
        Ok(Self { selectors })
    }

    /// A caller with exactly these selectors (for tests).
    pub fn with_selectors(selectors: Vec<Selector>) -> Self {
        Self { selectors }
    }

    /// The caller's selectors.
    pub fn selectors(&self) -> &[Selector] {
        &self.selectors
    }

    /// Whether the caller has every one of `required`; an empty `required` matches nobody.
    pub fn matches(&self, required: &[Selector]) -> bool {
        !required.is_empty() && required.iter().all(|s| self.selectors.contains(s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selector_syntax() {
        assert_eq!("unix:uid:1000".parse(), Ok(Selector::Uid(1000)));
        assert_eq!("unix:gid:0".parse(), Ok(Selector::Gid(0)));
        assert_eq!(
            "unix:path:/bin/sh".parse(),
            Ok(Selector::Path("/bin/sh".into()))
        );
        for bad in [
            "uid:1",
            "unix:uid:-1",
            "unix:uid:",
            "unix:path:bin/sh",
            "k8s:ns:x",
            "unix:pid:1",
        ] {
            assert!(bad.parse::<Selector>().is_err(), "{bad}");
        }
        assert_eq!(
            Selector::Path("/bin/sh".into()).to_string(),
            "unix:path:/bin/sh"
        );
    }

    #[test]
    fn all_selectors_must_match() {
        let caller = Caller::with_selectors(vec![Selector::Uid(1), Selector::Gid(2)]);
        assert!(caller.matches(&[Selector::Uid(1)]));
        assert!(caller.matches(&[Selector::Uid(1), Selector::Gid(2)]));
        assert!(!caller.matches(&[Selector::Uid(1), Selector::Gid(3)]));
        assert!(!caller.matches(&[]), "no selector matches nobody");
        assert!(!Caller::anonymous().matches(&[Selector::Uid(1)]));
    }

    #[test]
    fn selectors_of_peers() {
        let tcp = |uid| Peer::Tcp {
            remote: "127.0.0.1:1".parse().unwrap(),
            uid,
        };
        assert_eq!(
            Caller::attest(&tcp(Some(7))).unwrap().selectors(),
            [Selector::Uid(7)]
        );
        assert_eq!(Caller::attest(&tcp(None)).unwrap(), Caller::anonymous());
        assert_eq!(Caller::attest(&Peer::Unknown).unwrap(), Caller::anonymous());
        let unix = Peer::Unix {
            uid: 1,
            gid: 2,
            process: None,
        };
        assert_eq!(
            Caller::attest(&unix).unwrap().selectors(),
            [Selector::Uid(1), Selector::Gid(2)]
        );
    }
}
