//! The issuing side of the dev server: CAs, the SVID of each entry, rotation, and the
//! snapshots that the Workload API streams send.
//!
//! Rotation rules:
//! - each SVID is re-issued at half its lifetime;
//! - a CA rotation first publishes the new root beside the old one, and only after
//!   `ca_propagation` starts signing with it, so peers hold the new root before any SVID signed
//!   by it is served; the old root leaves the bundle when the last SVID it signed has expired;
//! - each CA has a JWT-SVID signing key that follows the same steps: published with the new
//!   root, signing from its activation, gone `JWT_SVID_TTL` after it stopped signing.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rustls_pki_types::CertificateDer;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;

use super::ca::{DevCa, DevCaError, SvidRequest, new_jwt_signer};
use super::config::{ConfigError, DevServerConfig, Entry};
use crate::bundle::X509Bundle;
use crate::deadline::after;
use crate::jwt::{JwtBundle, JwtKey, JwtSigner};
use crate::spiffe_id::TrustDomain;
use crate::svid::X509Svid;

/// Everything the streams need, as of one moment. Each stream message is built from one.
#[derive(Debug)]
pub(crate) struct Snapshot {
    pub(crate) trust_domain: TrustDomain,
    /// The public JWT-SVID keys of the local trust domain (more than one during a rotation).
    pub(crate) jwt_keys: Vec<JwtKey>,
    /// The key that signs JWT-SVIDs now.
    pub(crate) jwt_signer: JwtSigner,
    /// Federated trust domains' JWT bundles.
    pub(crate) federated_jwt: Vec<JwtBundle>,
    /// The entries, with the current SVID of each, in file order.
    pub(crate) issued: Vec<(Entry, Arc<X509Svid>)>,
    /// The roots of the local trust domain (more than one during a CA rotation).
    pub(crate) roots: Vec<CertificateDer<'static>>,
    /// Federated trust domains' bundles.
    pub(crate) federated: Vec<X509Bundle>,
}

/// A request to the issuer task, answered once its snapshot is published.
pub(crate) enum Command {
    RotateSvids(oneshot::Sender<()>),
    RotateCa(oneshot::Sender<()>),
    ReplaceEntries(Vec<Entry>, oneshot::Sender<Result<(), ConfigError>>),
    Issue(SvidRequest, oneshot::Sender<Result<X509Svid, DevCaError>>),
    SetFederated(X509Bundle, Option<JwtBundle>, oneshot::Sender<()>),
}

/// How the issuer runs.
#[derive(Debug, Clone)]
pub(crate) struct IssuerSettings {
    pub(crate) ca_ttl: Duration,
    pub(crate) ca_propagation: Duration,
    pub(crate) federated: Vec<X509Bundle>,
    pub(crate) federated_jwt: Vec<JwtBundle>,
}

/// The longest lifetime of a JWT-SVID the dev server issues (shorter when the entry's TTL is):
/// a retired JWT key stays in the bundle this long after it last signed.
pub(crate) const JWT_SVID_TTL: Duration = Duration::from_secs(300);

/// Half a CA lifetime: when its successor is prepared.
fn settings_half(settings: &IssuerSettings) -> Duration {
    settings.ca_ttl / 2
}

struct Ca {
    ca: DevCa,
    /// The JWT-SVID key that rotates with this CA: published with its root, signing while it
    /// signs.
    jwt: JwtSigner,
    /// Latest expiry of an SVID this CA signed.
    last_expiry: SystemTime,
    /// When it stopped signing (its JWT-SVIDs have all expired `JWT_SVID_TTL` later).
    stopped_signing: Option<SystemTime>,
}

impl Ca {
    fn new(trust_domain: TrustDomain, ttl: Duration) -> Result<Self, DevCaError> {
        Ok(Self {
            ca: DevCa::new(trust_domain, ttl)?,
            jwt: new_jwt_signer()?,
            last_expiry: SystemTime::UNIX_EPOCH,
            stopped_signing: None,
        })
    }

    /// When nothing it signed is valid any more.
    fn retires_at(&self) -> SystemTime {
        let jwt = self.stopped_signing.map_or(SystemTime::UNIX_EPOCH, |at| {
            at.checked_add(JWT_SVID_TTL).unwrap_or(at)
        });
        self.last_expiry.max(jwt)
    }
}

/// The issuer's state; only its task touches it.
pub(crate) struct Issuer {
    config: DevServerConfig,
    settings: IssuerSettings,
    /// Trusted CAs, oldest first; the signing one is `cas[signing]`.
    cas: Vec<Ca>,
    signing: usize,
    /// When a prepared CA starts signing.
    activate_at: Option<Instant>,
    /// When the signing CA reaches half its lifetime and a successor is prepared.
    ca_rotate_at: Instant,
    /// Per entry: its SVID and when to re-issue it.
    issued: Vec<(Arc<X509Svid>, Instant)>,
    publish: watch::Sender<Arc<Snapshot>>,
}

impl Issuer {
    /// Issues every entry's SVID and publishes the first snapshot.
    pub(crate) fn start(
        config: DevServerConfig,
        settings: IssuerSettings,
    ) -> Result<(Self, watch::Receiver<Arc<Snapshot>>), DevCaError> {
        let cas = vec![Ca::new(config.trust_domain.clone(), settings.ca_ttl)?];
        let placeholder = Arc::new(Snapshot {
            trust_domain: config.trust_domain.clone(),
            jwt_keys: Vec::new(),
            jwt_signer: cas[0].jwt.clone(),
            federated_jwt: Vec::new(),
            issued: Vec::new(),
            roots: Vec::new(),
            federated: Vec::new(),
        });
        let (publish, snapshots) = watch::channel(placeholder);
        let mut issuer = Self {
            config,
            settings: settings.clone(),
            cas,
            signing: 0,
            activate_at: None,
            ca_rotate_at: after(settings_half(&settings)),
            issued: Vec::new(),
            publish,
        };
        issuer.reissue_all()?;
        issuer.publish();
        Ok((issuer, snapshots))
    }

    fn issue(&mut self, entry: &Entry) -> Result<(Arc<X509Svid>, Instant), DevCaError> {
        let signer = &mut self.cas[self.signing];
        let request = SvidRequest::new(entry.spiffe_id.clone(), entry.ttl)
            .with_dns_names(entry.dns_names.iter().cloned());
        let mut svid = signer.ca.issue(&request)?;
        if let Some(hint) = &entry.hint {
            svid = svid.with_hint(hint.clone());
        }
        signer.last_expiry = signer.last_expiry.max(svid.expires_at());
        Ok((Arc::new(svid), after(entry.ttl / 2)))
    }

    fn reissue_all(&mut self) -> Result<(), DevCaError> {
        let entries = self.config.entries.clone();
        self.issued = entries
            .iter()
            .map(|entry| self.issue(entry))
            .collect::<Result<_, _>>()?;
        Ok(())
    }

    fn publish(&self) {
        let snapshot = Snapshot {
            trust_domain: self.config.trust_domain.clone(),
            issued: self
                .config
                .entries
                .iter()
                .cloned()
                .zip(self.issued.iter().map(|(svid, _)| Arc::clone(svid)))
                .collect(),
            roots: self.cas.iter().map(|c| c.ca.root().clone()).collect(),
            federated: self.settings.federated.clone(),
            jwt_keys: self
                .cas
                .iter()
                .map(|c| c.jwt.public_key().clone())
                .collect(),
            jwt_signer: self.cas[self.signing].jwt.clone(),
            federated_jwt: self.settings.federated_jwt.clone(),
        };
        self.publish.send_replace(Arc::new(snapshot));
    }

    /// Prepares a new CA: it joins the bundle now and signs after the propagation delay.
    fn prepare_ca(&mut self) -> Result<(), DevCaError> {
        self.cas.push(Ca::new(
            self.config.trust_domain.clone(),
            self.settings.ca_ttl,
        )?);
        self.activate_at = Some(after(self.settings.ca_propagation));
        self.ca_rotate_at = after(settings_half(&self.settings));
        Ok(())
    }

    /// Switches to the newest CA and re-issues every SVID with it.
    fn activate_ca(&mut self) -> Result<(), DevCaError> {
        self.activate_at = None;
        self.cas[self.signing].stopped_signing = Some(SystemTime::now());
        self.signing = self.cas.len() - 1;
        self.reissue_all()
    }

    /// Drops CAs that no longer sign and whose SVIDs have all expired.
    fn retire_cas(&mut self) -> bool {
        let now = SystemTime::now();
        let before = self.cas.len();
        let signing_root = self.cas[self.signing].ca.root().clone();
        let mut index = 0;
        self.cas.retain(|c| {
            let keep = index >= self.signing || c.retires_at() > now;
            index += 1;
            keep
        });
        self.signing = self
            .cas
            .iter()
            .position(|c| c.ca.root() == &signing_root)
            .unwrap_or(self.cas.len() - 1);
        self.cas.len() != before
    }

    /// The next moment something is due: an SVID rotation, a CA activation or retirement.
    fn next_deadline(&self) -> Instant {
        let now_wall = SystemTime::now();
        let retirement = self.cas[..self.signing]
            .iter()
            .map(|c| after(c.retires_at().duration_since(now_wall).unwrap_or_default()));
        self.issued
            .iter()
            .map(|(_, at)| *at)
            .chain(self.activate_at)
            .chain(self.activate_at.is_none().then_some(self.ca_rotate_at))
            .chain(retirement)
            .min()
            .unwrap_or_else(|| after(Duration::from_secs(3600)))
    }

    /// Does what is due at `now`; returns whether anything changed.
    fn on_deadline(&mut self) -> Result<bool, DevCaError> {
        let now = Instant::now();
        let mut changed = false;
        if self.activate_at.is_none() && self.ca_rotate_at <= now {
            self.prepare_ca()?;
            changed = true;
        }
        if self.activate_at.is_some_and(|at| at <= now) {
            self.activate_ca()?;
            changed = true;
        }
        for i in 0..self.issued.len() {
            if self.issued[i].1 <= now {
                let entry = self.config.entries[i].clone();
                self.issued[i] = self.issue(&entry)?;
                changed = true;
            }
        }
        changed |= self.retire_cas();
        Ok(changed)
    }

    /// Runs until every command sender is gone.
    pub(crate) async fn run(mut self, mut commands: mpsc::Receiver<Command>) {
        loop {
            let deadline = self.next_deadline();
            let result = tokio::select! {
                command = commands.recv() => match command {
                    None => return,
                    Some(command) => self.on_command(command),
                },
                () = tokio::time::sleep_until(deadline) => self.on_deadline().map(|changed| {
                    if changed {
                        self.publish();
                    }
                }),
            };
            if let Err(error) = result {
                tracing::error!(%error, "dev server could not issue; retrying in 1 s");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }

    fn on_command(&mut self, command: Command) -> Result<(), DevCaError> {
        match command {
            Command::RotateSvids(done) => {
                self.reissue_all()?;
                self.publish();
                let _ = done.send(());
            }
            Command::RotateCa(done) => {
                self.prepare_ca()?;
                self.publish();
                let _ = done.send(());
            }
            Command::Issue(request, done) => {
                let signer = &mut self.cas[self.signing];
                let issued = signer.ca.issue(&request);
                if let Ok(svid) = &issued {
                    signer.last_expiry = signer.last_expiry.max(svid.expires_at());
                }
                let _ = done.send(issued);
            }
            Command::SetFederated(bundle, jwt, done) => {
                let trust_domain = bundle.trust_domain().clone();
                // The local trust domain's bundle is the server's own, never a federated one.
                if trust_domain == self.config.trust_domain {
                    tracing::warn!(%trust_domain, "refused a federated bundle of the local trust domain");
                    let _ = done.send(());
                    return Ok(());
                }
                self.settings
                    .federated
                    .retain(|b| b.trust_domain() != &trust_domain);
                self.settings.federated.push(bundle);
                self.settings
                    .federated_jwt
                    .retain(|b| b.trust_domain() != &trust_domain);
                self.settings.federated_jwt.extend(jwt);
                self.publish();
                let _ = done.send(());
            }
            Command::ReplaceEntries(entries, done) => {
                let config = DevServerConfig {
                    trust_domain: self.config.trust_domain.clone(),
                    entries,
                };
                match config.validate() {
                    Ok(()) => {
                        self.config = config;
                        self.reissue_all()?;
                        self.publish();
                        let _ = done.send(Ok(()));
                    }
                    Err(e) => {
                        let _ = done.send(Err(e));
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wait_past_what_an_instant_holds_is_cut_not_a_panic() {
        let before = Instant::now();
        let far = after(Duration::MAX);
        assert!(
            far >= before + Duration::from_secs(365 * 24 * 3600),
            "{far:?}"
        );
        let soon = after(Duration::from_secs(1));
        assert!(soon < before + Duration::from_secs(60), "{soon:?}");
    }
}
