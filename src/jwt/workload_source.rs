//! JWT bundles and JWT-SVIDs from a Workload API: the bundle stream followed in the background,
//! tokens fetched per audience set and cached until half their lifetime.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::task::JoinHandle;

use super::bundle::{JwtBundle, JwtBundleSet};
use super::source::{JwtBundleCell, JwtBundleSource, JwtSourceError};
use super::token::unverified_times;
use super::validate::MAX_NUMERIC_DATE;
use crate::source::Updates;
use crate::spiffe_id::{SpiffeId, TrustDomain};
use crate::workload::proto::{JwtBundlesRequest, JwtBundlesResponse};
use crate::workload::{EndpointAddress, IssuedJwtSvid, WorkloadClient, request};

/// How long [`JwtSource::connect`] waits for the first bundles.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest pause between two reconnection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// A JWT-SVID from the source's cache: the token and when it stops being valid.
///
/// Its `Debug` output shows the SPIFFE ID and expiry, never the token.
#[derive(Clone, PartialEq, Eq)]
pub struct CachedJwtSvid {
    svid: IssuedJwtSvid,
    issued_at: SystemTime,
    expires_at: SystemTime,
}

impl std::fmt::Debug for CachedJwtSvid {
    /// Never shows the token (a bearer credential).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CachedJwtSvid")
            .field("spiffe_id", self.spiffe_id())
            .field(
                "issued_at",
                &crate::verify::rfc3339_system_time(self.issued_at),
            )
            .field(
                "expires_at",
                &crate::verify::rfc3339_system_time(self.expires_at),
            )
            .field("token", &format_args!("<redacted>"))
            .finish()
    }
}

impl CachedJwtSvid {
    /// The identity.
    pub fn spiffe_id(&self) -> &SpiffeId {
        self.svid.spiffe_id()
    }

    /// The token, for `Authorization: Bearer`.
    pub fn token(&self) -> &str {
        self.svid.token()
    }

    /// Its `exp`.
    pub fn expires_at(&self) -> SystemTime {
        self.expires_at
    }

    /// When it is due for a refresh: half its lifetime.
    fn refresh_at(&self) -> SystemTime {
        let lifetime = self
            .expires_at
            .duration_since(self.issued_at)
            .unwrap_or_default();
        self.issued_at
            .checked_add(lifetime / 2)
            .unwrap_or(self.expires_at)
    }
}

type CacheKey = (Vec<String>, Option<SpiffeId>);

/// JWT bundles and JWT-SVIDs from a Workload API (a SPIRE agent, the dev server).
///
/// - The `FetchJWTBundles` stream is followed in the background (reconnecting after a
///   failure); [`jwt_bundles`](JwtBundleSource::jwt_bundles) reads the current set lock-free and
///   [`updates`](JwtBundleSource::updates) wakes on each change (a key rotation).
/// - [`fetch_svid`](Self::fetch_svid) fetches a token for an audience set and caches it (up
///   to [`MAX_CACHED_AUDIENCE_SETS`] sets); a background task refreshes each cached token at
///   half its lifetime, so the same set gets a token in the first half of its life without
///   waiting. When refreshing fails the cached token is still handed out until it expires,
///   never after (the source fails closed).
///
/// # Example
/// ```no_run
/// use spiffe_mtls::jwt::{JwtBundleSource, JwtSource, JwtSvidValidator};
/// use spiffe_mtls::workload::EndpointAddress;
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let source = JwtSource::connect(EndpointAddress::from_env()?).await?;
/// let svid = source.fetch_svid(&["spiffe://example.org/reports".into()]).await?;
/// let bearer = format!("Bearer {}", svid.token());
/// // ... and, on the receiving side:
/// let bundles = source.jwt_bundles()?;
/// let validated = JwtSvidValidator::new()?
///     .validate(svid.token(), "spiffe://example.org/reports", &bundles)?;
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct JwtSource {
    cell: Arc<JwtBundleCell>,
    tokens: Arc<TokenCache>,
    follower: JoinHandle<()>,
    refresher: JoinHandle<()>,
}

/// The most audience sets whose tokens are kept (and refreshed); past it, the token that
/// expires first is dropped.
pub const MAX_CACHED_AUDIENCE_SETS: usize = 256;

/// The tokens fetched so far, by audience set, and the client that fetches them.
struct TokenCache {
    client: WorkloadClient,
    entries: Mutex<HashMap<CacheKey, CachedJwtSvid>>,
    /// Wakes the refresher when an entry is added.
    added: tokio::sync::Notify,
}

impl std::fmt::Debug for TokenCache {
    /// How many tokens, never a token.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenCache")
            .field("client", &self.client)
            .field("cached_audience_sets", &self.lock().len())
            .finish_non_exhaustive()
    }
}

impl TokenCache {
    fn get(&self, key: &CacheKey) -> Option<CachedJwtSvid> {
        self.lock().get(key).cloned()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<CacheKey, CachedJwtSvid>> {
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn insert(&self, key: CacheKey, svid: CachedJwtSvid) {
        let mut entries = self.lock();
        if !entries.contains_key(&key) && entries.len() >= MAX_CACHED_AUDIENCE_SETS {
            let first = entries
                .iter()
                .min_by_key(|(_, cached)| cached.expires_at)
                .map(|(key, _)| key.clone());
            if let Some(first) = first {
                entries.remove(&first);
            }
        }
        entries.insert(key, svid);
        drop(entries);
        self.added.notify_one();
    }

    /// A fresh token for `key` from the Workload API.
    async fn fetch(
        &self,
        key: &CacheKey,
        now: SystemTime,
    ) -> Result<CachedJwtSvid, JwtSourceError> {
        let (audience, spiffe_id) = key;
        let svids = self
            .client
            .clone()
            .fetch_jwt_svids(audience, spiffe_id.as_ref())
            .await
            .map_err(|e| JwtSourceError::Workload(e.to_string()))?;
        let svid = svids
            .into_iter()
            .next()
            .ok_or_else(|| JwtSourceError::Workload("no JWT-SVID in the answer".to_owned()))?;
        let (exp, iat) = unverified_times(svid.token())
            .ok_or_else(|| JwtSourceError::Invalid("no readable exp claim".to_owned()))?;
        let expires_at = unix_time(exp).ok_or_else(|| {
            JwtSourceError::Invalid(format!(
                "exp {exp} is after {MAX_NUMERIC_DATE} (9999-12-31T23:59:59Z)"
            ))
        })?;
        Ok(CachedJwtSvid {
            issued_at: iat.and_then(unix_time).map_or(now, |at| at.min(now)),
            expires_at,
            svid,
        })
    }

    /// Refreshes every unexpired token past half its lifetime; when the next refresh is due
    /// (`None`: no unexpired token). An expired token stays (so the caller learns it expired)
    /// but is no longer refreshed in the background.
    async fn refresh_due(&self) -> Option<SystemTime> {
        let now = SystemTime::now();
        let due: Vec<CacheKey> = self
            .lock()
            .iter()
            .filter(|(_, cached)| now >= cached.refresh_at() && now < cached.expires_at)
            .map(|(key, _)| key.clone())
            .collect();
        let mut failed = false;
        for key in due {
            match self.fetch(&key, now).await {
                Ok(fresh) => {
                    self.lock().insert(key, fresh);
                }
                Err(error) => {
                    tracing::warn!(%error, "JWT-SVID refresh failed; the cached token serves until it expires");
                    failed = true;
                }
            }
        }
        let next = self
            .lock()
            .values()
            .filter(|cached| SystemTime::now() < cached.expires_at)
            .map(CachedJwtSvid::refresh_at)
            .min()?;
        // After a failure, try again soon rather than at once.
        Some(if failed {
            next.max(now.checked_add(RETRY_AFTER).unwrap_or(now))
        } else {
            next
        })
    }
}

/// `secs` after the epoch, when it is no later than [`MAX_NUMERIC_DATE`] (what the validator
/// accepts); `None` otherwise, never an overflow.
fn unix_time(secs: u64) -> Option<SystemTime> {
    if secs > MAX_NUMERIC_DATE {
        return None;
    }
    UNIX_EPOCH.checked_add(Duration::from_secs(secs))
}

/// How soon a failed background refresh is tried again.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// Refreshes cached tokens at half their lifetime, for as long as the source lives.
async fn refresh(tokens: Arc<TokenCache>) {
    loop {
        let wait = match tokens.refresh_due().await {
            Some(at) => at
                .duration_since(SystemTime::now())
                .unwrap_or_default()
                .max(Duration::from_millis(10)),
            None => Duration::from_secs(3600),
        };
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = tokens.added.notified() => {}
        }
    }
}

impl JwtSource {
    /// Connects to the Workload API at `address` and waits (up to 10 s) for the first JWT
    /// bundles.
    ///
    /// # Errors
    /// [`JwtSourceError::Workload`] when the endpoint cannot be reached, refuses, or sends no
    /// usable bundles in time.
    pub async fn connect(address: EndpointAddress) -> Result<Self, JwtSourceError> {
        let workload = |e: &dyn std::fmt::Display| JwtSourceError::Workload(e.to_string());
        let first = tokio::time::timeout(START_TIMEOUT, async {
            let client = WorkloadClient::connect(&address)
                .await
                .map_err(|e| workload(&e))?;
            let mut stream = open_bundles(&client).await?;
            let response = stream
                .message()
                .await
                .map_err(|e| workload(&e))?
                .ok_or_else(|| workload(&"the stream ended before the first bundles"))?;
            Ok::<_, JwtSourceError>((client, stream, bundle_set(&response)?))
        })
        .await
        .map_err(|_| {
            workload(&format!(
                "no JWT bundles from {address} within {START_TIMEOUT:?}"
            ))
        })?;
        let (client, stream, bundles) = first?;
        let cell = Arc::new(JwtBundleCell::new(bundles));
        let follower = tokio::spawn(follow(client.clone(), stream, Arc::clone(&cell)));
        let tokens = Arc::new(TokenCache {
            client,
            entries: Mutex::new(HashMap::new()),
            added: tokio::sync::Notify::new(),
        });
        let refresher = tokio::spawn(refresh(Arc::clone(&tokens)));
        Ok(Self {
            cell,
            tokens,
            follower,
            refresher,
        })
    }

    /// A JWT-SVID of the caller's default identity for `audience` (at least one), from the
    /// cache while it is in the first half of its lifetime (a background task refreshes the
    /// cached tokens then).
    ///
    /// # Errors
    /// [`JwtSourceError::Expired`] when no fresh token can be fetched and the cached one has
    /// expired; [`JwtSourceError::Workload`] when there was never a token.
    pub async fn fetch_svid(&self, audience: &[String]) -> Result<CachedJwtSvid, JwtSourceError> {
        self.fetch_svid_of(audience, None).await
    }

    /// As [`fetch_svid`](Self::fetch_svid), for the identity `spiffe_id` (when the caller
    /// has several).
    ///
    /// # Errors
    /// As [`fetch_svid`](Self::fetch_svid).
    pub async fn fetch_svid_of(
        &self,
        audience: &[String],
        spiffe_id: Option<&SpiffeId>,
    ) -> Result<CachedJwtSvid, JwtSourceError> {
        if self.follower.is_finished() {
            return Err(JwtSourceError::Closed);
        }
        let mut sorted = audience.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        let key = (sorted, spiffe_id.cloned());
        let now = SystemTime::now();
        let cached = self.tokens.get(&key);
        if let Some(cached) = &cached
            && now < cached.refresh_at()
        {
            return Ok(cached.clone());
        }
        match self.tokens.fetch(&key, now).await {
            Ok(fresh) => {
                self.tokens.insert(key, fresh.clone());
                Ok(fresh)
            }
            Err(error) => match cached {
                Some(cached) if now < cached.expires_at => {
                    tracing::warn!(%error, "JWT-SVID refresh failed; using the cached token until it expires");
                    Ok(cached)
                }
                Some(cached) => Err(JwtSourceError::Expired {
                    spiffe_id: cached.spiffe_id().clone(),
                    expired_at: cached.expires_at,
                }),
                None => Err(error),
            },
        }
    }

    /// Stops following the Workload API; the source then answers [`JwtSourceError::Closed`].
    pub fn shutdown(&self) {
        self.follower.abort();
        self.refresher.abort();
        self.cell.close();
    }
}

impl Drop for JwtSource {
    fn drop(&mut self) {
        self.follower.abort();
        self.refresher.abort();
    }
}

impl JwtBundleSource for JwtSource {
    fn jwt_bundles(&self) -> Result<Arc<JwtBundleSet>, JwtSourceError> {
        self.cell.read()
    }

    fn updates(&self) -> Updates {
        self.cell.updates()
    }
}

async fn open_bundles(
    client: &WorkloadClient,
) -> Result<tonic::Streaming<JwtBundlesResponse>, JwtSourceError> {
    Ok(client
        .clone()
        .into_raw()
        .fetch_jwt_bundles(request(JwtBundlesRequest {}))
        .await
        .map_err(|status| {
            JwtSourceError::Workload(crate::workload::WorkloadError::from(status).to_string())
        })?
        .into_inner())
}

/// The bundle set of one `FetchJWTBundles` message.
fn bundle_set(response: &JwtBundlesResponse) -> Result<JwtBundleSet, JwtSourceError> {
    let mut bundles = JwtBundleSet::new();
    for (key, jwks) in &response.bundles {
        let invalid =
            |reason: String| JwtSourceError::Workload(format!("JWT bundle {key:?}: {reason}"));
        let trust_domain: TrustDomain = key
            .strip_prefix("spiffe://")
            .unwrap_or(key)
            .parse()
            .map_err(|e| invalid(format!("{e}")))?;
        bundles.insert(JwtBundle::parse(trust_domain, jwks).map_err(|e| invalid(e.to_string()))?);
    }
    Ok(bundles)
}

/// Publishes every bundle update; reconnects after the stream fails or ends.
async fn follow(
    client: WorkloadClient,
    mut stream: tonic::Streaming<JwtBundlesResponse>,
    cell: Arc<JwtBundleCell>,
) {
    let mut backoff = Duration::from_millis(50);
    loop {
        loop {
            match stream.message().await {
                Ok(Some(response)) => match bundle_set(&response) {
                    Ok(bundles) => {
                        cell.publish(bundles);
                        backoff = Duration::from_millis(50);
                    }
                    Err(error) => {
                        tracing::warn!(%error, "dropping a JWT bundle update; keeping the last good bundles");
                    }
                },
                Ok(None) => break,
                Err(status) => {
                    tracing::warn!(%status, "JWT bundle stream failed; reconnecting");
                    break;
                }
            }
        }
        loop {
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
            match open_bundles(&client).await {
                Ok(opened) => {
                    stream = opened;
                    break;
                }
                Err(error) => tracing::debug!(%error, "JWT bundle stream: reconnecting"),
            }
        }
    }
}
