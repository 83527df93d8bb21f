//! RFC 5280 name constraints (section 4.2.1.10) for the names an SVID chain carries.
//!
//! URI constraints are honored, not refused: they constrain the host of a URI, which for a
//! SPIFFE ID is its trust domain (`example.org` permits exactly that host, `.example.org` any
//! host below it). DNS and IP constraints are honored too. A constraint of a form this module
//! does not evaluate (directory name, e-mail, other names) fails closed when the certificate
//! carries a name of that form, as RFC 5280 allows.

use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::{GeneralName, NameConstraints as ParsedConstraints};

/// One permitted or excluded subtree, owned so a trust anchor can keep it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Subtree {
    Dns(String),
    Uri(String),
    Ip { address: Vec<u8>, mask: Vec<u8> },
    Unevaluated(Form),
}

/// The kinds of name a constraint or a certificate can carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Form {
    Dns,
    Uri,
    Ip,
    Email,
    Directory,
    Other,
}

impl Form {
    fn label(self) -> &'static str {
        match self {
            Form::Dns => "DNS",
            Form::Uri => "URI",
            Form::Ip => "IP",
            Form::Email => "e-mail",
            Form::Directory => "directory name",
            Form::Other => "other",
        }
    }
}

/// A certificate name that a constraint rejects, described for the error message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Violation(pub(crate) String);

/// The name constraints of one CA certificate.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct NameConstraints {
    permitted: Vec<Subtree>,
    excluded: Vec<Subtree>,
}

fn subtree(name: &GeneralName<'_>) -> Subtree {
    match name {
        GeneralName::DNSName(dns) => Subtree::Dns(dns.to_ascii_lowercase()),
        GeneralName::URI(host) => Subtree::Uri(host.to_ascii_lowercase()),
        GeneralName::IPAddress(bytes) if bytes.len() == 8 || bytes.len() == 32 => {
            let (address, mask) = bytes.split_at(bytes.len() / 2);
            Subtree::Ip {
                address: address.to_vec(),
                mask: mask.to_vec(),
            }
        }
        other => Subtree::Unevaluated(form_of(other)),
    }
}

fn form_of(name: &GeneralName<'_>) -> Form {
    match name {
        GeneralName::DNSName(_) => Form::Dns,
        GeneralName::URI(_) => Form::Uri,
        GeneralName::IPAddress(_) => Form::Ip,
        GeneralName::RFC822Name(_) => Form::Email,
        GeneralName::DirectoryName(_) => Form::Directory,
        _ => Form::Other,
    }
}

impl NameConstraints {
    /// Copies the subtrees of a parsed nameConstraints extension.
    pub(crate) fn from_parsed(parsed: &ParsedConstraints<'_>) -> Self {
        let copy = |subtrees: &Option<Vec<x509_parser::extensions::GeneralSubtree<'_>>>| {
            subtrees
                .iter()
                .flatten()
                .map(|s| subtree(&s.base))
                .collect()
        };
        Self {
            permitted: copy(&parsed.permitted_subtrees),
            excluded: copy(&parsed.excluded_subtrees),
        }
    }

    /// Checks every name of `cert` (its subject alternative names and a non-empty subject).
    pub(crate) fn check(&self, cert: &X509Certificate<'_>) -> Result<(), Violation> {
        if let Ok(Some(san)) = cert.subject_alternative_name() {
            for name in &san.value.general_names {
                self.check_name(name)?;
            }
        }
        if cert.subject().iter_attributes().next().is_some() {
            self.check_form(Form::Directory, &cert.subject().to_string(), |_| false)?;
        }
        Ok(())
    }

    fn check_name(&self, name: &GeneralName<'_>) -> Result<(), Violation> {
        match name {
            GeneralName::DNSName(dns) => {
                let dns = dns.to_ascii_lowercase();
                self.check_form(Form::Dns, &dns, |s| match s {
                    Subtree::Dns(base) => dns_matches(&dns, base),
                    _ => false,
                })
            }
            GeneralName::URI(uri) => {
                let host = uri_host(uri).map(str::to_ascii_lowercase);
                self.check_form(Form::Uri, uri, |s| match (s, &host) {
                    (Subtree::Uri(base), Some(host)) => uri_host_matches(host, base),
                    _ => false,
                })
                .and_then(|()| match host {
                    None if self.constrains(Form::Uri) => {
                        Err(Violation(format!("URI {uri:?} has no host to constrain")))
                    }
                    _ => Ok(()),
                })
            }
            GeneralName::IPAddress(ip) => self.check_form(Form::Ip, &shown_ip(ip), |s| match s {
                Subtree::Ip { address, mask } => ip_matches(ip, address, mask),
                _ => false,
            }),
            other => self.check_form(form_of(other), &shown_name(other), |_| false),
        }
    }

    fn constrains(&self, form: Form) -> bool {
        self.permitted
            .iter()
            .chain(&self.excluded)
            .any(|s| subtree_form(s) == form)
    }

    /// Applies the subtrees of `form` to one name: an unevaluated subtree of that form fails
    /// closed, an excluded match fails, and permitted subtrees of that form need one match.
    fn check_form(
        &self,
        form: Form,
        shown: &str,
        matches: impl Fn(&Subtree) -> bool,
    ) -> Result<(), Violation> {
        let of_form = |s: &&Subtree| subtree_form(s) == form;
        for s in self.permitted.iter().chain(&self.excluded).filter(of_form) {
            if matches!(s, Subtree::Unevaluated(_)) {
                return Err(Violation(format!(
                    "{} name constraints are not supported and a {} name {shown:?} is present",
                    form.label(),
                    form.label()
                )));
            }
        }
        if self.excluded.iter().filter(of_form).any(&matches) {
            return Err(Violation(format!("{shown:?} is in an excluded subtree")));
        }
        let mut permitted = self.permitted.iter().filter(of_form).peekable();
        if permitted.peek().is_some() && !permitted.any(&matches) {
            return Err(Violation(format!(
                "{shown:?} is outside the permitted subtrees"
            )));
        }
        Ok(())
    }
}

/// An IP address name as people write it (`10.0.0.1`, `::1`), else its bytes in hex.
fn shown_ip(bytes: &[u8]) -> String {
    if let Ok(v4) = <[u8; 4]>::try_from(bytes) {
        return std::net::Ipv4Addr::from(v4).to_string();
    }
    if let Ok(v6) = <[u8; 16]>::try_from(bytes) {
        return std::net::Ipv6Addr::from(v6).to_string();
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A name of another form, as text where it has one, else what kind of name it is.
fn shown_name(name: &GeneralName<'_>) -> String {
    match name {
        GeneralName::RFC822Name(text) | GeneralName::DNSName(text) | GeneralName::URI(text) => {
            (*text).to_owned()
        }
        GeneralName::DirectoryName(name) => name.to_string(),
        GeneralName::IPAddress(ip) => shown_ip(ip),
        GeneralName::RegisteredID(oid) => oid.to_id_string(),
        GeneralName::OtherName(oid, _) => format!("otherName {}", oid.to_id_string()),
        GeneralName::X400Address(_) => "x400Address".to_owned(),
        GeneralName::EDIPartyName(_) => "ediPartyName".to_owned(),
        GeneralName::Invalid(..) => "a malformed name".to_owned(),
    }
}

fn subtree_form(s: &Subtree) -> Form {
    match s {
        Subtree::Dns(_) => Form::Dns,
        Subtree::Uri(_) => Form::Uri,
        Subtree::Ip { .. } => Form::Ip,
        Subtree::Unevaluated(form) => *form,
    }
}

/// The host of a URI with an authority (`scheme://[userinfo@]host[:port]/...`), or `None` when
/// there is no host name (no authority, an empty host, or an IP literal).
fn uri_host(uri: &str) -> Option<&str> {
    let (_, rest) = uri.split_once("://")?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    if host_port.starts_with('[') {
        return None;
    }
    let host = host_port.split(':').next().unwrap_or_default();
    let is_ipv4 = host.split('.').count() == 4 && host.split('.').all(|p| p.parse::<u8>().is_ok());
    (!host.is_empty() && !is_ipv4).then_some(host)
}

/// `example.org` permits exactly that host; `.example.org` any host below it, not itself.
fn uri_host_matches(host: &str, constraint: &str) -> bool {
    match constraint.strip_prefix('.') {
        Some(_) => host.len() > constraint.len() && host.ends_with(constraint),
        None => host == constraint,
    }
}

/// A DNS constraint is satisfied by the name itself and by any name with labels added on the
/// left; a leading `.` allows only names below it. An empty constraint matches every name.
fn dns_matches(name: &str, constraint: &str) -> bool {
    let name = name.trim_end_matches('.');
    let constraint = constraint.trim_end_matches('.');
    if constraint.is_empty() {
        return true;
    }
    if constraint.starts_with('.') {
        return name.len() > constraint.len() && name.ends_with(constraint);
    }
    name == constraint
        || (name.len() > constraint.len()
            && name.ends_with(constraint)
            && name.as_bytes()[name.len() - constraint.len() - 1] == b'.')
}

fn ip_matches(ip: &[u8], address: &[u8], mask: &[u8]) -> bool {
    ip.len() == address.len()
        && ip
            .iter()
            .zip(address)
            .zip(mask)
            .all(|((i, a), m)| i & m == a & m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uri_hosts() {
        assert_eq!(uri_host("spiffe://example.org/x"), Some("example.org"));
        assert_eq!(uri_host("https://u@h.example:8443/p?q"), Some("h.example"));
        assert_eq!(uri_host("urn:uuid:1234"), None);
        assert_eq!(uri_host("https://10.0.0.1/x"), None);
        assert_eq!(uri_host("https://[::1]/x"), None);
        assert_eq!(uri_host("spiffe:///x"), None);
    }

    #[test]
    fn uri_host_constraints() {
        assert!(uri_host_matches("example.org", "example.org"));
        assert!(!uri_host_matches("a.example.org", "example.org"));
        assert!(uri_host_matches("a.example.org", ".example.org"));
        assert!(!uri_host_matches("example.org", ".example.org"));
        assert!(!uri_host_matches("badexample.org", ".example.org"));
    }

    #[test]
    fn dns_constraints() {
        assert!(dns_matches("example.org", "example.org"));
        assert!(dns_matches("a.example.org", "example.org"));
        assert!(!dns_matches("badexample.org", "example.org"));
        assert!(!dns_matches("example.org", ".example.org"));
        assert!(dns_matches("a.example.org", ".example.org"));
        assert!(dns_matches("anything", ""));
    }

    #[test]
    fn ip_constraints() {
        assert!(ip_matches(&[10, 1, 2, 3], &[10, 0, 0, 0], &[255, 0, 0, 0]));
        assert!(!ip_matches(&[11, 1, 2, 3], &[10, 0, 0, 0], &[255, 0, 0, 0]));
        assert!(!ip_matches(&[10; 16], &[10, 0, 0, 0], &[255, 0, 0, 0]));
    }
}
