//! RFC 5280 path validation from a leaf to a trust anchor of one bundle: path building over
//! the presented certificates, signatures, validity, path length and name constraints.

use rustls_pki_types::SignatureVerificationAlgorithm;

use super::anchor::Anchor;
use super::certificate::ParsedCert;
use super::der::{PublicKeyParts, SignedCertificate};
use super::error::{Position, VerifyError};
use super::name_constraints::NameConstraints;
use crate::spiffe_id::TrustDomain;

/// The most intermediates a path may hold.
const MAX_INTERMEDIATES: usize = 8;
/// The most signature checks one path search may spend on candidate issuers.
const SIGNATURE_BUDGET: u32 = 64;

/// The times (Unix seconds, inclusive) between which every certificate of a validated path,
/// its anchor included, is within its validity period.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PathValidity {
    pub(crate) from: i64,
    pub(crate) until: i64,
}

/// Searches a path from `chain[0]` to one of `anchors` that passes every check; returns the
/// window in which that path's validity periods all hold, and the index in `anchors` of the
/// anchor it ends at.
pub(crate) fn validate(
    chain: &[ParsedCert<'_>],
    anchors: &[Anchor],
    trust_domain: &TrustDomain,
    now: i64,
    algorithms: &[&dyn SignatureVerificationAlgorithm],
) -> Result<(PathValidity, usize), VerifyError> {
    let mut search = Search {
        chain,
        anchors,
        now,
        algorithms,
        budget: SIGNATURE_BUDGET,
        first_error: None,
        found: None,
    };
    let mut path = vec![0];
    if search.extend(&mut path)
        && let Some(validity) = search.found
    {
        return Ok(validity);
    }
    Err(search
        .first_error
        .unwrap_or_else(|| VerifyError::UnknownIssuer {
            trust_domain: trust_domain.clone(),
        }))
}

struct Search<'s, 'c> {
    chain: &'s [ParsedCert<'c>],
    anchors: &'s [Anchor],
    now: i64,
    algorithms: &'s [&'s dyn SignatureVerificationAlgorithm],
    budget: u32,
    first_error: Option<VerifyError>,
    found: Option<(PathValidity, usize)>,
}

impl Search<'_, '_> {
    /// Tries to finish `path` (indices into the chain, leaf first) at an anchor, directly or
    /// through further presented certificates. Returns whether a valid path was found.
    fn extend(&mut self, path: &mut Vec<usize>) -> bool {
        let Some(&current) = path.last() else {
            return false;
        };
        let cert = &self.chain[current];
        let issuer = cert.x509.issuer().as_raw();
        let anchors = self.anchors;
        for (index, anchor) in anchors
            .iter()
            .enumerate()
            .filter(|(_, a)| a.subject == issuer)
        {
            if !self.signature_holds(cert, &anchor.spki) {
                continue;
            }
            match self.check_complete(path, anchor) {
                Ok(validity) => {
                    self.found = Some((validity, index));
                    return true;
                }
                Err(e) => self.note(e),
            }
        }
        if path.len() > MAX_INTERMEDIATES {
            self.note(VerifyError::PathTooDeep {
                max: MAX_INTERMEDIATES,
            });
            return false;
        }
        for next in 1..self.chain.len() {
            let candidate = &self.chain[next];
            if path.contains(&next) || candidate.x509.subject().as_raw() != issuer {
                continue;
            }
            if !self.signature_holds(cert, candidate.x509.public_key().raw) {
                continue;
            }
            path.push(next);
            if self.extend(path) {
                return true;
            }
            path.pop();
        }
        false
    }

    fn note(&mut self, error: VerifyError) {
        self.first_error.get_or_insert(error);
    }

    /// Checks `cert`'s signature with the issuer key `spki`, noting why it fails.
    fn signature_holds(&mut self, cert: &ParsedCert<'_>, spki: &[u8]) -> bool {
        if self.budget == 0 {
            self.note(VerifyError::PathBuildingBudget(SIGNATURE_BUDGET));
            return false;
        }
        self.budget -= 1;
        match verify_signature(&cert.signed, spki, self.algorithms) {
            Ok(()) => true,
            Err(unsupported) => {
                let position = cert.position;
                self.note(if unsupported {
                    VerifyError::UnsupportedSignatureAlgorithm { position }
                } else {
                    VerifyError::BadSignature { position }
                });
                false
            }
        }
    }

    /// The checks on a whole path whose signatures hold: validity, path length, names.
    fn check_complete(&self, path: &[usize], anchor: &Anchor) -> Result<PathValidity, VerifyError> {
        let certs: Vec<&ParsedCert<'_>> = path.iter().map(|&i| &self.chain[i]).collect();
        let mut window = PathValidity {
            from: anchor.not_before,
            until: anchor.not_after,
        };
        for cert in &certs {
            let validity = cert.x509.validity();
            let (not_before, not_after) = (
                validity.not_before.timestamp(),
                validity.not_after.timestamp(),
            );
            check_time(cert.position, not_before, not_after, self.now)?;
            window.from = window.from.max(not_before);
            window.until = window.until.min(not_after);
        }
        check_time(
            Position::Root,
            anchor.not_before,
            anchor.not_after,
            self.now,
        )?;

        // Intermediates below a CA, not counting self-issued ones (RFC 5280 6.1.4 (l)).
        let counted_below = |ca_index: usize| -> u32 {
            let below = certs[1..ca_index].iter().filter(|c| !c.is_self_issued());
            u32::try_from(below.count()).unwrap_or(u32::MAX)
        };
        for (i, ca) in certs.iter().enumerate().skip(1) {
            if let (_, Some(max)) = ca.ca() {
                check_path_len(ca.position, max, counted_below(i))?;
            }
            if let Ok(Some(nc)) = ca.x509.name_constraints() {
                check_names(
                    ca.position,
                    &NameConstraints::from_parsed(nc.value),
                    &certs[..i],
                )?;
            }
        }
        if let Some(max) = anchor.path_len {
            check_path_len(Position::Root, max, counted_below(certs.len()))?;
        }
        if let Some(nc) = &anchor.name_constraints {
            check_names(Position::Root, nc, &certs)?;
        }
        Ok(window)
    }
}

fn check_time(
    position: Position,
    not_before: i64,
    not_after: i64,
    now: i64,
) -> Result<(), VerifyError> {
    if now < not_before {
        return Err(VerifyError::NotYetValid {
            position,
            not_before: rfc3339(not_before),
        });
    }
    if now > not_after {
        return Err(VerifyError::Expired {
            position,
            not_after: rfc3339(not_after),
        });
    }
    Ok(())
}

fn check_path_len(position: Position, max: u32, found: u32) -> Result<(), VerifyError> {
    if found > max {
        return Err(VerifyError::PathLengthExceeded {
            position,
            max,
            found,
        });
    }
    Ok(())
}

fn check_names(
    position: Position,
    constraints: &NameConstraints,
    below: &[&ParsedCert<'_>],
) -> Result<(), VerifyError> {
    for cert in below {
        constraints.check(&cert.x509).map_err(|violation| {
            VerifyError::NameConstraintViolation {
                position,
                constrained: cert.position,
                reason: violation.0,
            }
        })?;
    }
    Ok(())
}

/// Verifies a certificate's signature with the issuer's SubjectPublicKeyInfo. `Err(true)`:
/// no algorithm of the provider fits; `Err(false)`: the signature does not verify.
fn verify_signature(
    signed: &SignedCertificate<'_>,
    issuer_spki: &[u8],
    algorithms: &[&dyn SignatureVerificationAlgorithm],
) -> Result<(), bool> {
    let key = PublicKeyParts::parse(issuer_spki).map_err(|_| false)?;
    let algorithm = algorithms
        .iter()
        .find(|alg| {
            alg.signature_alg_id().as_ref() == signed.algorithm
                && alg.public_key_alg_id().as_ref() == key.algorithm
        })
        .ok_or(true)?;
    algorithm
        .verify_signature(key.key, signed.tbs, signed.signature)
        .map_err(|_| false)
}

/// A Unix time as RFC 3339, for messages.
pub(crate) fn rfc3339(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| format!("unix time {unix}"))
}
