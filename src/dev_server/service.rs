//! The `SpiffeWorkloadAPI` gRPC service of the dev server.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use tokio::sync::{broadcast, mpsc, watch};
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Code, Request, Response, Status};

use super::attest::Caller;
use super::issuer::Snapshot;
use super::jwt_service as jwt;
use super::peer::{BindingError, Peer};
use super::refusal::{CallerRefusal, why_no_entry};
use crate::workload::WORKLOAD_HEADER;
use crate::workload::proto::spiffe_workload_api_server::SpiffeWorkloadApi;
use crate::workload::proto::{
    JwtBundlesRequest, JwtBundlesResponse, JwtsvidRequest, JwtsvidResponse, ValidateJwtsvidRequest,
    ValidateJwtsvidResponse, X509BundlesRequest, X509BundlesResponse, X509svid, X509svidRequest,
    X509svidResponse,
};

/// Calls the handle asked to fail: a status code and how many more calls get it.
#[derive(Debug, Default)]
pub(crate) struct Faults {
    pending: Option<(Code, usize)>,
}

impl Faults {
    pub(crate) fn fail_next(&mut self, code: Code, count: usize) {
        self.pending = (count > 0).then_some((code, count));
    }

    fn take(&mut self) -> Option<Code> {
        let (code, count) = self.pending.as_mut()?;
        let code = *code;
        *count -= 1;
        if *count == 0 {
            self.pending = None;
        }
        Some(code)
    }
}

/// The service: reads snapshots, answers each caller with what its selectors entitle it to.
#[derive(Clone)]
pub(crate) struct WorkloadService {
    pub(crate) snapshots: watch::Receiver<Arc<Snapshot>>,
    pub(crate) faults: Arc<Mutex<Faults>>,
    /// Bumped to end every open stream.
    pub(crate) end_streams: watch::Receiver<u64>,
    /// Where refusals go (see `refusal`).
    pub(crate) refusals: broadcast::Sender<CallerRefusal>,
}

type ResponseStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

fn concat(certs: &[rustls_pki_types::CertificateDer<'_>]) -> Vec<u8> {
    certs
        .iter()
        .flat_map(|c| c.as_ref().iter().copied())
        .collect()
}

pub(crate) fn no_identity() -> Status {
    Status::permission_denied("no identity issued")
}

/// The refusal of a call whose connection is no longer held by the process that opened it;
/// reported with the caller as it was attested when it connected.
fn refused(
    call: &'static str,
    peer: &Peer,
    error: &BindingError,
    refusals: &broadcast::Sender<CallerRefusal>,
) -> Status {
    let reason = format!("caller attestation failed: {error}");
    CallerRefusal::new(call, peer, &Caller::anonymous(), reason.clone()).report(refusals);
    Status::permission_denied(reason)
}

/// The refusal of a caller that no entry matches (`wanted`: the SPIFFE ID it asked for, if
/// any); reported with the caller and why no entry matched, answered as SPIRE answers.
fn unmatched(
    call: &'static str,
    snapshot: &Snapshot,
    (caller, peer): (&Caller, &Peer),
    wanted: Option<&str>,
    refusals: &broadcast::Sender<CallerRefusal>,
) -> Status {
    let entries = snapshot.issued.iter().map(|(entry, _)| entry);
    let reason = why_no_entry(entries, caller, wanted);
    CallerRefusal::new(call, peer, caller, reason).report(refusals);
    no_identity()
}

/// The X.509-SVID response for a caller, or `None` when no entry matches it.
fn svid_response(snapshot: &Snapshot, caller: &Caller) -> Option<X509svidResponse> {
    let bundle = concat(&snapshot.roots);
    let svids: Vec<X509svid> = snapshot
        .issued
        .iter()
        .filter(|(entry, _)| caller.matches(&entry.selectors))
        .map(|(entry, svid)| X509svid {
            spiffe_id: entry.spiffe_id.to_string(),
            x509_svid: concat(svid.chain()),
            x509_svid_key: svid.private_key().secret_der().to_vec(),
            bundle: bundle.clone(),
            hint: entry.hint.clone().unwrap_or_default(),
        })
        .collect();
    if svids.is_empty() {
        return None;
    }
    Some(X509svidResponse {
        svids,
        crl: Vec::new(),
        federated_bundles: federated(snapshot, caller),
    })
}

/// The federated bundles a caller gets: as in SPIRE, those of the trust domains its matching
/// entries federate with (`federates_with`), and only those.
fn federated(snapshot: &Snapshot, caller: &Caller) -> HashMap<String, Vec<u8>> {
    snapshot
        .federated
        .iter()
        .filter(|b| federates_with(snapshot, caller, b.trust_domain()))
        .map(|b| {
            let roots: Vec<_> = b.roots().cloned().collect();
            (b.trust_domain().id_string(), concat(&roots))
        })
        .collect()
}

/// Whether one of the caller's entries federates with `trust_domain`.
pub(crate) fn federates_with(
    snapshot: &Snapshot,
    caller: &Caller,
    trust_domain: &crate::spiffe_id::TrustDomain,
) -> bool {
    snapshot.issued.iter().any(|(entry, _)| {
        entry.federates_with.contains(trust_domain) && caller.matches(&entry.selectors)
    })
}

/// The bundles response for a caller, or `None` when no entry matches it.
fn bundles_response(snapshot: &Snapshot, caller: &Caller) -> Option<X509BundlesResponse> {
    if !snapshot
        .issued
        .iter()
        .any(|(entry, _)| caller.matches(&entry.selectors))
    {
        return None;
    }
    let mut bundles = federated(snapshot, caller);
    bundles.insert(snapshot.trust_domain.id_string(), concat(&snapshot.roots));
    Some(X509BundlesResponse {
        crl: Vec::new(),
        bundles,
    })
}

impl WorkloadService {
    /// The header rule, injected faults, then attestation of the connection's peer.
    fn admit<T>(
        &self,
        call: &'static str,
        request: &Request<T>,
    ) -> Result<(Caller, Arc<Peer>), Status> {
        let header = request.metadata().get(WORKLOAD_HEADER);
        if header.is_none_or(|value| value != "true") {
            return Err(Status::invalid_argument(
                "security header missing from request",
            ));
        }
        if let Some(code) = self.faults.lock().ok().and_then(|mut f| f.take()) {
            return Err(Status::new(
                code,
                "failure injected by the dev server handle",
            ));
        }
        let peer = request
            .extensions()
            .get::<Arc<Peer>>()
            .cloned()
            .unwrap_or_else(|| Arc::new(Peer::Unknown));
        let caller =
            Caller::attest(&peer).map_err(|error| refused(call, &peer, &error, &self.refusals))?;
        Ok((caller, peer))
    }

    /// A stream that sends `build(snapshot)` now and at every new snapshot, until the client
    /// leaves, the streams are ended, or the caller loses its identity. Before each later
    /// message the peer is checked again (see `peer`): a process that exec'd or exited ends its
    /// stream with `PermissionDenied`.
    fn stream<T: Send + 'static>(
        &self,
        call: &'static str,
        (caller, peer): (Caller, Arc<Peer>),
        build: fn(&Snapshot, &Caller) -> Option<T>,
    ) -> Result<ResponseStream<T>, Status> {
        let refusals = self.refusals.clone();
        let respond = move |snapshot: &Snapshot, caller: &Caller, peer: &Peer| {
            build(snapshot, caller)
                .ok_or_else(|| unmatched(call, snapshot, (caller, peer), None, &refusals))
        };
        let mut snapshots = self.snapshots.clone();
        let first = respond(&snapshots.borrow_and_update(), &caller, &peer)?;
        let refusals = self.refusals.clone();
        let mut end = self.end_streams.clone();
        end.mark_unchanged();
        let (tx, rx) = mpsc::channel(4);
        tokio::spawn(async move {
            let mut next = Ok(first);
            loop {
                let last = next.is_err();
                if tx.send(next).await.is_err() || last {
                    return;
                }
                tokio::select! {
                    changed = snapshots.changed() => {
                        if changed.is_err() {
                            return;
                        }
                    }
                    _ = end.changed() => return,
                    () = tx.closed() => return,
                }
                next = match peer.check() {
                    Ok(()) => respond(&snapshots.borrow_and_update(), &caller, &peer),
                    Err(error) => Err(refused(call, &peer, &error, &refusals)),
                };
            }
        });
        Ok(Box::pin(ReceiverStream::new(rx)))
    }
}

impl WorkloadService {
    /// `status`, reported as a refusal when it is the "no identity" of a caller no entry
    /// matches.
    fn denied(
        &self,
        call: &'static str,
        status: Status,
        snapshot: &Snapshot,
        who: (&Caller, &Peer),
        wanted: Option<&str>,
    ) -> Status {
        if status.code() == Code::PermissionDenied && status.message() == no_identity().message() {
            return unmatched(call, snapshot, who, wanted, &self.refusals);
        }
        status
    }
}

/// The calls, as the Workload API names them.
const X509_SVID: &str = "FetchX509SVID";
const X509_BUNDLES: &str = "FetchX509Bundles";
const JWT_SVID: &str = "FetchJWTSVID";
const JWT_BUNDLES: &str = "FetchJWTBundles";
const VALIDATE_JWT_SVID: &str = "ValidateJWTSVID";

#[tonic::async_trait]
impl SpiffeWorkloadApi for WorkloadService {
    type FetchX509SVIDStream = ResponseStream<X509svidResponse>;
    type FetchX509BundlesStream = ResponseStream<X509BundlesResponse>;
    type FetchJWTBundlesStream = ResponseStream<JwtBundlesResponse>;

    async fn fetch_x509svid(
        &self,
        request: Request<X509svidRequest>,
    ) -> Result<Response<Self::FetchX509SVIDStream>, Status> {
        let caller = self.admit(X509_SVID, &request)?;
        Ok(Response::new(self.stream(
            X509_SVID,
            caller,
            svid_response,
        )?))
    }

    async fn fetch_x509_bundles(
        &self,
        request: Request<X509BundlesRequest>,
    ) -> Result<Response<Self::FetchX509BundlesStream>, Status> {
        let caller = self.admit(X509_BUNDLES, &request)?;
        Ok(Response::new(self.stream(
            X509_BUNDLES,
            caller,
            bundles_response,
        )?))
    }

    async fn fetch_jwtsvid(
        &self,
        request: Request<JwtsvidRequest>,
    ) -> Result<Response<JwtsvidResponse>, Status> {
        let (caller, peer) = self.admit(JWT_SVID, &request)?;
        let snapshot = Arc::clone(&self.snapshots.borrow());
        let wanted = Some(request.get_ref().spiffe_id.as_str()).filter(|id| !id.is_empty());
        jwt::svids(&snapshot, &caller, request.get_ref())
            .map(Response::new)
            .map_err(|status| self.denied(JWT_SVID, status, &snapshot, (&caller, &peer), wanted))
    }

    async fn fetch_jwt_bundles(
        &self,
        request: Request<JwtBundlesRequest>,
    ) -> Result<Response<Self::FetchJWTBundlesStream>, Status> {
        let caller = self.admit(JWT_BUNDLES, &request)?;
        Ok(Response::new(self.stream(
            JWT_BUNDLES,
            caller,
            jwt::bundles_response,
        )?))
    }

    async fn validate_jwtsvid(
        &self,
        request: Request<ValidateJwtsvidRequest>,
    ) -> Result<Response<ValidateJwtsvidResponse>, Status> {
        let (caller, peer) = self.admit(VALIDATE_JWT_SVID, &request)?;
        let snapshot = Arc::clone(&self.snapshots.borrow());
        jwt::validate(&snapshot, &caller, request.get_ref())
            .map(Response::new)
            .map_err(|status| {
                self.denied(VALIDATE_JWT_SVID, status, &snapshot, (&caller, &peer), None)
            })
    }
}
