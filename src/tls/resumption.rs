//! Session resumption that cannot bypass a check: off by default, turned on by the builders'
//! `resumption` switch.
//!
//! A resumed TLS handshake proves that the peer holds a ticket's secret, not that its
//! certificate is still good: rustls restores the stored peer chain and skips the verifier.
//! So here, on the server, every ticket is checked when rustls opens it, before the
//! handshake goes on and so before any application data:
//! - it was sealed by this config (a key of its own, made at build time: a ticket of another
//!   config or another server does not open);
//! - at the same config generation: the source's update count plus the authorizer's
//!   (a reloaded policy) — a rotated SVID or bundle, or a policy reload, retires every ticket
//!   issued before;
//! - within the ticket lifetime ([`DEFAULT_TICKET_LIFETIME`] by default), counted from the
//!   ticket's issue: a resumed handshake gets new tickets, so a peer that keeps resuming keeps
//!   its session past one lifetime, each time with every check below made again, until the
//!   next generation change (the next rotation of the server's SVID, say);
//! - and the stored client chain passes the full check again, now: verified against the
//!   current bundle of its trust domain, within its validity, allowed by the current
//!   authorizer.
//!
//! A ticket that fails any of these is not used: rustls falls back to a full handshake, which
//! verifies the client's certificate afresh (and refuses it when it no longer passes). Each
//! such decline records an audit event (`denied`, rule `resumed session re-checked`, the
//! reason).
//!
//! On the client, tickets live in a cache of the config (two configs never share one), are
//! dropped when the config generation changes (as above, with the client's source and
//! authorizer) or their lifetime ends, and are TLS 1.3 only. rustls keeps the stored server
//! chain out of reach of a session store, so the client's full check is made on the
//! connection: `net::connect` refuses a resumed connection whose server chain no longer
//! verifies against the current bundle, has expired or is no longer allowed, before it
//! returns the stream. A config used without `net::connect` keeps the generation and
//! lifetime checks only.
//!
//! The stored chain is read from rustls' session encoding by hand (`client_chain`): rustls
//! offers no hook that sees it on resumption. The reader fails closed: anything it does not
//! understand declines the ticket, so a change of that encoding costs full handshakes, never
//! a skipped check.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustls::NamedGroup;
use rustls::client::ClientSessionMemoryCache;
use rustls::client::ClientSessionStore;
use rustls::client::Tls13ClientSessionValue;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::ProducesTickets;

use super::TlsConfigError;
use super::audit;
#[cfg(feature = "net")]
use super::audit::Side;
use super::verifier::PeerCheck;

/// How long a ticket can be used after it was issued, unless the builder says otherwise.
/// A config generation change (a rotated SVID or bundle, a policy reload) retires it sooner.
pub const DEFAULT_TICKET_LIFETIME: Duration = Duration::from_secs(600);

/// The longest ticket lifetime the builders take: TLS 1.3's limit (RFC 8446, 4.6.1).
pub const MAX_TICKET_LIFETIME: Duration = Duration::from_secs(7 * 24 * 3600);

/// How many servers' tickets a client config keeps.
const CLIENT_CACHE_SERVERS: usize = 256;

/// Opens a sealed ticket: the format version of what this module puts before rustls' own
/// session encoding.
const HEADER_VERSION: u8 = 1;
/// Version byte, generation (8), issue time in seconds (8).
const HEADER_LEN: usize = 17;

/// The config generation of a check: the source's update count plus the authorizer's.
/// Both only go up, so the sum changes whenever either does.
fn generation(check: &PeerCheck) -> u64 {
    check
        .source()
        .updates()
        .generation()
        .wrapping_add(check.authorizer().generation())
}

fn now_seconds() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}

/// The server's tickets: sealed with a key of this config, bound to its generation, and
/// re-checked when opened (see the module documentation).
pub(crate) struct SessionTickets {
    sealer: Arc<dyn ProducesTickets>,
    check: Arc<PeerCheck>,
    lifetime: Duration,
    /// Digests of the tickets declined lately: a client may offer one ticket many times in
    /// one ClientHello (rustls opens every identity offered), and each copy would cost a
    /// re-check and an audit event. A copy is declined again silently.
    declined: Mutex<Declined>,
}

/// A bounded ring of ticket digests (keyed hashes: a collision only costs a full handshake).
struct Declined {
    keys: std::hash::RandomState,
    recent: std::collections::VecDeque<u64>,
}

/// How many declined tickets are remembered.
const DECLINED_REMEMBERED: usize = 64;

impl Declined {
    fn digest(&self, ticket: &[u8]) -> u64 {
        use std::hash::BuildHasher;
        self.keys.hash_one(ticket)
    }
}

impl std::fmt::Debug for SessionTickets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionTickets")
            .field("lifetime", &self.lifetime)
            .finish_non_exhaustive()
    }
}

impl SessionTickets {
    pub(crate) fn new(check: Arc<PeerCheck>, lifetime: Duration) -> Result<Self, TlsConfigError> {
        Ok(Self {
            sealer: sealer()?,
            check,
            lifetime,
            declined: Mutex::new(Declined {
                keys: std::hash::RandomState::new(),
                recent: std::collections::VecDeque::with_capacity(DECLINED_REMEMBERED),
            }),
        })
    }

    /// Why an opened ticket (our `header`, the client `chain` read from rustls' session)
    /// cannot be used now, if it cannot.
    fn decline_reason(
        &self,
        header: &[u8],
        chain: Option<&[CertificateDer<'static>]>,
    ) -> Option<String> {
        let generation_then = u64::from_be_bytes(header[1..9].try_into().ok()?);
        let issued = u64::from_be_bytes(header[9..17].try_into().ok()?);
        if generation_then != generation(&self.check) {
            return Some(
                "the config changed since the ticket was issued (a rotated SVID or bundle, or a \
                 policy reload)"
                    .into(),
            );
        }
        let age = now_seconds().saturating_sub(issued);
        if age > self.lifetime.as_secs() {
            return Some(format!(
                "the ticket is {age} s old, over its lifetime of {} s",
                self.lifetime.as_secs()
            ));
        }
        let Some(chain) = chain else {
            return Some("the stored session could not be read".into());
        };
        // A session without a client certificate (a server that lets anonymous clients in)
        // has nothing to re-check: its resumption is as anonymous as its first handshake.
        if chain.is_empty() {
            return None;
        }
        self.check
            .recheck_stored(chain, UnixTime::now())
            .err()
            .map(|reason| format!("the stored client certificate no longer passes: {reason}"))
    }
}

impl ProducesTickets for SessionTickets {
    fn enabled(&self) -> bool {
        true
    }

    fn lifetime(&self) -> u32 {
        u32::try_from(self.lifetime.as_secs()).unwrap_or(u32::MAX)
    }

    fn encrypt(&self, plain: &[u8]) -> Option<Vec<u8>> {
        let mut sealed = Vec::with_capacity(HEADER_LEN + plain.len());
        sealed.push(HEADER_VERSION);
        sealed.extend_from_slice(&generation(&self.check).to_be_bytes());
        sealed.extend_from_slice(&now_seconds().to_be_bytes());
        sealed.extend_from_slice(plain);
        self.sealer.encrypt(&sealed)
    }

    fn decrypt(&self, cipher: &[u8]) -> Option<Vec<u8>> {
        let digest = {
            let declined = self.declined.lock().unwrap_or_else(PoisonError::into_inner);
            let digest = declined.digest(cipher);
            if declined.recent.contains(&digest) {
                return None;
            }
            digest
        };
        // A ticket that does not open was sealed by another config or server, or forged: a
        // full handshake follows, as for a client that offers no ticket.
        let mut opened = self.sealer.decrypt(cipher)?;
        if opened.len() < HEADER_LEN || opened[0] != HEADER_VERSION {
            return None;
        }
        let session = opened.split_off(HEADER_LEN);
        let chain = client_chain(&session);
        if let Some(reason) = self.decline_reason(&opened, chain.as_deref()) {
            let mut declined = self.declined.lock().unwrap_or_else(PoisonError::into_inner);
            if declined.recent.len() == DECLINED_REMEMBERED {
                declined.recent.pop_front();
            }
            declined.recent.push_back(digest);
            drop(declined);
            let peer = chain
                .as_ref()
                .and_then(|chain| chain.first().and_then(super::identity::leaf_spiffe_id));
            let leaf = chain.as_ref().and_then(|chain| chain.first());
            audit::resumption_denied(
                self.check.side(),
                peer.as_ref(),
                &format_args!("{reason}; a full handshake follows"),
                &|event| match leaf {
                    Some(leaf) => self.check.evidence(event, leaf, None),
                    None => event,
                },
            );
            return None;
        }
        Some(session)
    }
}

/// The provider's ticket sealer (an AEAD with a random key, rotated every 6 hours).
fn sealer() -> Result<Arc<dyn ProducesTickets>, TlsConfigError> {
    #[cfg(feature = "aws-lc-rs")]
    return Ok(rustls::crypto::aws_lc_rs::Ticketer::new()?);
    #[cfg(all(feature = "ring", not(feature = "aws-lc-rs")))]
    return Ok(rustls::crypto::ring::Ticketer::new()?);
    #[allow(unreachable_code)]
    Err(TlsConfigError::NoTicketSealer)
}

/// The client certificate chain in rustls' encoding of a server session (rustls 0.23
/// `persist::ServerSessionValue`): an optional server name, version, cipher suite, secret,
/// extended-master-secret flag, then an optional chain. `Some(empty)` when the session has
/// no client certificate, `None` when the bytes are not such an encoding.
fn client_chain(session: &[u8]) -> Option<Vec<CertificateDer<'static>>> {
    let mut reader = Reader(session);
    match reader.byte()? {
        0 => {}
        1 => {
            let len = reader.byte()?;
            reader.take(usize::from(len))?;
        }
        _ => return None,
    }
    reader.take(2)?; // the protocol version
    reader.take(2)?; // the cipher suite
    let secret = reader.byte()?;
    reader.take(usize::from(secret))?;
    if reader.byte()? > 1 {
        return None; // the extended master secret flag
    }
    match reader.byte()? {
        0 => return Some(Vec::new()),
        1 => {}
        _ => return None,
    }
    let list = reader.u24()?;
    let mut certificates = Reader(reader.take(list)?);
    let mut chain = Vec::new();
    while !certificates.0.is_empty() {
        let len = certificates.u24()?;
        chain.push(CertificateDer::from(certificates.take(len)?.to_vec()));
    }
    // An empty list is not what rustls writes for a client without a certificate.
    (!chain.is_empty()).then_some(chain)
}

/// Reads big-endian fields off a byte slice; every read is bounds-checked.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, len: usize) -> Option<&'a [u8]> {
        if self.0.len() < len {
            return None;
        }
        let (taken, rest) = self.0.split_at(len);
        self.0 = rest;
        Some(taken)
    }

    fn byte(&mut self) -> Option<u8> {
        self.take(1).map(|bytes| bytes[0])
    }

    fn u24(&mut self) -> Option<usize> {
        let bytes = self.take(3)?;
        Some(usize::from(bytes[0]) << 16 | usize::from(bytes[1]) << 8 | usize::from(bytes[2]))
    }
}

/// The client's tickets: a cache of this config, emptied when the config generation
/// changes; a ticket is offered only within its lifetime.
pub(crate) struct SessionCache {
    check: Arc<PeerCheck>,
    lifetime: Duration,
    state: Mutex<CacheState>,
}

struct CacheState {
    generation: u64,
    tickets: Arc<ClientSessionMemoryCache>,
    /// When each server's newest ticket arrived, by server name.
    issued: std::collections::HashMap<ServerName<'static>, u64>,
}

impl std::fmt::Debug for SessionCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionCache")
            .field("lifetime", &self.lifetime)
            .finish_non_exhaustive()
    }
}

impl SessionCache {
    pub(crate) fn new(check: Arc<PeerCheck>, lifetime: Duration) -> Self {
        let generation = generation(&check);
        Self {
            check,
            lifetime,
            state: Mutex::new(CacheState {
                generation,
                tickets: Arc::new(ClientSessionMemoryCache::new(CLIENT_CACHE_SERVERS)),
                issued: std::collections::HashMap::new(),
            }),
        }
    }

    /// The tickets of the current generation (a fresh cache when it changed), and whether
    /// this call found the generation changed.
    fn current(&self) -> (std::sync::MutexGuard<'_, CacheState>, bool) {
        let now = generation(&self.check);
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let changed = state.generation != now;
        if changed {
            if !state.issued.is_empty() {
                audit::resumption_denied(
                    self.check.side(),
                    None,
                    &"the config changed since the tickets were issued (a rotated SVID or \
                      bundle, or a policy reload): they are dropped",
                    &audit::no_evidence,
                );
            }
            state.generation = now;
            state.tickets = Arc::new(ClientSessionMemoryCache::new(CLIENT_CACHE_SERVERS));
            state.issued.clear();
        }
        (state, changed)
    }
}

impl ClientSessionStore for SessionCache {
    fn set_kx_hint(&self, server_name: ServerName<'static>, group: NamedGroup) {
        self.current().0.tickets.set_kx_hint(server_name, group);
    }

    fn kx_hint(&self, server_name: &ServerName<'_>) -> Option<NamedGroup> {
        self.current().0.tickets.kx_hint(server_name)
    }

    fn set_tls12_session(
        &self,
        _server_name: ServerName<'static>,
        _value: rustls::client::Tls12ClientSessionValue,
    ) {
        // TLS 1.3 only: nothing kept.
    }

    fn tls12_session(
        &self,
        _server_name: &ServerName<'_>,
    ) -> Option<rustls::client::Tls12ClientSessionValue> {
        None
    }

    fn remove_tls12_session(&self, _server_name: &ServerName<'static>) {}

    fn insert_tls13_ticket(
        &self,
        server_name: ServerName<'static>,
        value: Tls13ClientSessionValue,
    ) {
        let (mut state, changed) = self.current();
        if changed {
            // The session was verified under the generation that just ended: its ticket
            // would outlive that check. (One verified under an older generation and arriving
            // later still is caught by `net::connect`'s full re-check.)
            return;
        }
        if state.issued.len() >= CLIENT_CACHE_SERVERS && !state.issued.contains_key(&server_name) {
            // The ticket cache forgets servers beyond its size too; start over rather than
            // grow.
            state.issued.clear();
            state.tickets = Arc::new(ClientSessionMemoryCache::new(CLIENT_CACHE_SERVERS));
        }
        state.issued.insert(server_name.clone(), now_seconds());
        state.tickets.insert_tls13_ticket(server_name, value);
    }

    fn take_tls13_ticket(
        &self,
        server_name: &ServerName<'static>,
    ) -> Option<Tls13ClientSessionValue> {
        let (state, _) = self.current();
        let issued = *state.issued.get(server_name)?;
        let age = now_seconds().saturating_sub(issued);
        if age > self.lifetime.as_secs() {
            return None;
        }
        state.tickets.take_tls13_ticket(server_name)
    }
}

/// Why the stored chain of a resumed connection no longer holds on the client (see the
/// module documentation): a certificate of it has expired, or one cannot be read.
#[cfg(feature = "net")]
pub(crate) fn stored_chain_expired(chain: &[CertificateDer<'_>]) -> Option<String> {
    let now = i64::try_from(now_seconds()).unwrap_or(i64::MAX);
    for (index, certificate) in chain.iter().enumerate() {
        let what = if index == 0 { "leaf" } else { "intermediate" };
        match crate::verify::spiffe_uri_and_not_after(certificate) {
            Ok((_, not_after)) if not_after < now => {
                return Some(format!(
                    "the server's {what} certificate expired {} s ago",
                    now - not_after
                ));
            }
            Ok(_) => {}
            Err(error) => return Some(format!("the server's {what} certificate: {error}")),
        }
    }
    None
}

/// The checks of the client configs built with resumption on, found by their certificate
/// resolver (a field of `ClientConfig` that every clone of a config shares): rustls gives a
/// session store no way to see a ticket's server chain, so the full re-check of a resumed
/// client connection is made on the connection, by `net::connect`, with the check of the
/// config it was made with. Entries whose config is gone are pruned at each registration.
#[cfg(feature = "net")]
type ClientChecks = Vec<(
    std::sync::Weak<dyn rustls::client::ResolvesClientCert>,
    std::sync::Weak<PeerCheck>,
)>;

#[cfg(feature = "net")]
static CLIENT_CHECKS: Mutex<ClientChecks> = Mutex::new(Vec::new());

/// Registers the check of a client config with resumption on (see [`CLIENT_CHECKS`]).
#[cfg(feature = "net")]
pub(crate) fn register_client(
    resolver: &Arc<dyn rustls::client::ResolvesClientCert>,
    check: &Arc<PeerCheck>,
) {
    let mut checks = CLIENT_CHECKS.lock().unwrap_or_else(PoisonError::into_inner);
    checks.retain(|(resolver, _)| resolver.strong_count() > 0);
    checks.push((Arc::downgrade(resolver), Arc::downgrade(check)));
}

/// The check of `config`, if it was built by this crate with resumption on.
#[cfg(feature = "net")]
fn client_check(config: &rustls::ClientConfig) -> Option<Arc<PeerCheck>> {
    let resolver = Arc::downgrade(&config.client_auth_cert_resolver);
    let checks = CLIENT_CHECKS.lock().unwrap_or_else(PoisonError::into_inner);
    checks
        .iter()
        .find(|(registered, _)| std::sync::Weak::ptr_eq(registered, &resolver))
        .and_then(|(_, check)| check.upgrade())
}

/// Records the acceptance of a resumed connection, or refuses it: the error to end the
/// connection with. On a server, the checks were made when the ticket was opened. On a
/// client (`config` given), the stored server chain is checked here as a full handshake
/// would check it now (current bundle, validity, the config's rule), or, for a config not
/// built by this crate with resumption on, for expiry only.
#[cfg(feature = "net")]
pub(crate) fn accept_resumed(
    side: Side,
    peer: Option<&crate::tls::PeerIdentity>,
    config: Option<&rustls::ClientConfig>,
) -> Result<(), std::io::Error> {
    if let Some(config) = config {
        let chain = peer
            .map(crate::tls::PeerIdentity::chain)
            .unwrap_or_default();
        let refusal = match client_check(config) {
            Some(check) => check
                .recheck_stored(chain, UnixTime::now())
                .err()
                .map(|reason| format!("the stored server certificate no longer passes: {reason}")),
            None => stored_chain_expired(chain),
        };
        if let Some(reason) = refusal {
            audit::resumption_denied(
                side,
                peer.map(crate::tls::PeerIdentity::spiffe_id),
                &reason,
                &|event| match peer {
                    Some(peer) => audit::with_peer(event, peer),
                    None => event,
                },
            );
            return Err(std::io::Error::new(
                std::io::ErrorKind::PermissionDenied,
                format!("the resumed session was refused: {reason}"),
            ));
        }
    }
    if let Some(peer) = peer {
        audit::resumed(side, peer.spiffe_id(), &|event| {
            audit::with_peer(event, peer)
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// rustls' encoding of a session, written here field by field.
    fn session(sni: Option<&str>, chain: Option<&[&[u8]]>) -> Vec<u8> {
        let mut bytes = Vec::new();
        match sni {
            Some(name) => {
                bytes.push(1);
                bytes.push(name.len() as u8);
                bytes.extend_from_slice(name.as_bytes());
            }
            None => bytes.push(0),
        }
        bytes.extend_from_slice(&[0x03, 0x04, 0x13, 0x01]);
        bytes.push(3);
        bytes.extend_from_slice(&[9, 9, 9]);
        bytes.push(0);
        match chain {
            Some(certificates) => {
                bytes.push(1);
                let mut list = Vec::new();
                for certificate in certificates {
                    let len = certificate.len();
                    list.extend_from_slice(&[(len >> 16) as u8, (len >> 8) as u8, len as u8]);
                    list.extend_from_slice(certificate);
                }
                let len = list.len();
                bytes.extend_from_slice(&[(len >> 16) as u8, (len >> 8) as u8, len as u8]);
                bytes.extend_from_slice(&list);
            }
            None => bytes.push(0),
        }
        bytes.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        bytes
    }

    #[test]
    fn the_client_chain_is_read_from_the_session_encoding() {
        let two: &[&[u8]] = &[b"leaf", b"intermediate"];
        let chain = client_chain(&session(Some("localhost"), Some(two))).unwrap();
        assert_eq!(chain.len(), 2);
        assert_eq!(chain[0].as_ref(), b"leaf");
        assert_eq!(chain[1].as_ref(), b"intermediate");
        assert_eq!(client_chain(&session(None, None)).unwrap().len(), 0);
    }

    #[test]
    fn what_is_not_such_an_encoding_reads_as_nothing() {
        let good = session(Some("localhost"), Some(&[b"leaf"]));
        // Every truncation fails closed.
        for len in 0..good.len() - 16 {
            assert!(client_chain(&good[..len]).is_none(), "{len} bytes");
        }
        // A flag that is neither 0 nor 1.
        let mut bad = good.clone();
        bad[0] = 2;
        assert!(client_chain(&bad).is_none());
        // A certificate longer than its list.
        let mut long = session(None, Some(&[b"leaf"]));
        let at = long.len() - 16 - 4 - 3 + 2;
        long[at] = 0xff;
        assert!(client_chain(&long).is_none());
        // An empty list.
        assert!(client_chain(&session(None, Some(&[]))).is_none());
    }
}
