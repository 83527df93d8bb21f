//! Workload API endpoint addresses (`SPIFFE_ENDPOINT_SOCKET`).

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;

/// The environment variable that names the Workload API endpoint.
pub const ENDPOINT_SOCKET_ENV: &str = "SPIFFE_ENDPOINT_SOCKET";

/// Why a string is not a Workload API endpoint address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{value:?} is not a Workload API address: {reason} (expected unix:///absolute/path or tcp://IP:port)"
)]
pub struct AddressError {
    /// The rejected input.
    pub value: String,
    /// What is wrong.
    pub reason: &'static str,
}

/// Where the Workload API listens: a Unix domain socket or a TCP address.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum EndpointAddress {
    /// `unix:///absolute/path`
    Unix(PathBuf),
    /// `tcp://IP:port`
    Tcp(SocketAddr),
}

impl EndpointAddress {
    /// The address in `SPIFFE_ENDPOINT_SOCKET`.
    ///
    /// # Errors
    /// [`AddressError`] when the variable is unset or not a valid address.
    pub fn from_env() -> Result<Self, AddressError> {
        let value = std::env::var(ENDPOINT_SOCKET_ENV).map_err(|_| AddressError {
            value: String::new(),
            reason: "SPIFFE_ENDPOINT_SOCKET is not set",
        })?;
        value.parse()
    }

    /// Parses a command-line address: the strict forms, or a bare absolute socket path.
    ///
    /// # Errors
    /// [`AddressError`] when the value is neither.
    pub fn parse_lenient(value: &str) -> Result<Self, AddressError> {
        if value.starts_with('/') {
            return Ok(Self::Unix(PathBuf::from(value)));
        }
        value.parse()
    }
}

impl FromStr for EndpointAddress {
    type Err = AddressError;

    /// Parses `unix:///absolute/path` or `tcp://IP:port`, nothing else.
    fn from_str(value: &str) -> Result<Self, AddressError> {
        let fail = |reason| AddressError {
            value: value.to_owned(),
            reason,
        };
        if let Some(path) = value.strip_prefix("unix://") {
            if !path.starts_with('/') {
                return Err(fail("a unix address needs an absolute path and no host"));
            }
            if path.contains(['?', '#']) {
                return Err(fail("a unix address has no query or fragment"));
            }
            if path.len() == 1 {
                return Err(fail("the socket path is empty"));
            }
            return Ok(Self::Unix(PathBuf::from(path)));
        }
        if let Some(rest) = value.strip_prefix("tcp://") {
            let addr: SocketAddr = rest.parse().map_err(|_| {
                fail("a tcp address is an IP address and a port, no host name or path")
            })?;
            return Ok(Self::Tcp(addr));
        }
        Err(fail("the scheme must be unix or tcp"))
    }
}

impl fmt::Display for EndpointAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unix(path) => write!(f, "unix://{}", path.display()),
            Self::Tcp(addr) => write!(f, "tcp://{addr}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_two_forms() {
        assert_eq!(
            "unix:///run/spire/agent.sock".parse(),
            Ok(EndpointAddress::Unix("/run/spire/agent.sock".into()))
        );
        assert_eq!(
            "tcp://127.0.0.1:8081".parse(),
            Ok(EndpointAddress::Tcp("127.0.0.1:8081".parse().unwrap()))
        );
        assert_eq!(
            "tcp://[::1]:8081"
                .parse::<EndpointAddress>()
                .unwrap()
                .to_string(),
            "tcp://[::1]:8081"
        );
    }

    #[test]
    fn rejects_everything_else() {
        for bad in [
            "",
            "/run/agent.sock",
            "unix:/run/agent.sock",
            "unix://host/run/agent.sock",
            "unix://relative.sock",
            "unix:///",
            "unix:///run/agent.sock?x=1",
            "tcp://localhost:8081",
            "tcp://127.0.0.1",
            "tcp://127.0.0.1:8081/path",
            "http://127.0.0.1:8081",
        ] {
            assert!(bad.parse::<EndpointAddress>().is_err(), "accepted {bad:?}");
        }
    }

    #[test]
    fn lenient_form_takes_a_bare_path() {
        assert_eq!(
            EndpointAddress::parse_lenient("/tmp/x.sock"),
            Ok(EndpointAddress::Unix("/tmp/x.sock".into()))
        );
        assert!(EndpointAddress::parse_lenient("x.sock").is_err());
    }
}
