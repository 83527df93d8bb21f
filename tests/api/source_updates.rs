//! Updates that must not be taken: a scripted Workload API sends a good update, then one that
//! breaks the X.509-SVID profile or a limit, then a good one. The source keeps the first until
//! the third.
#![cfg(all(feature = "workload-api", feature = "grpc"))]

use crate::common;

use std::pin::Pin;
use std::time::Duration;

use common::{Ca, key_usage_digital_signature};
use rcgen::CertificateParams;
use spiffe_mtls::source::{UpdateLimits, WorkloadApiSource, X509Context, X509Source};
use spiffe_mtls::workload::EndpointAddress;
use spiffe_mtls::workload::proto::spiffe_workload_api_server::{
    SpiffeWorkloadApi, SpiffeWorkloadApiServer,
};
use spiffe_mtls::workload::proto::{
    JwtBundlesRequest, JwtBundlesResponse, JwtsvidRequest, JwtsvidResponse, ValidateJwtsvidRequest,
    ValidateJwtsvidResponse, X509BundlesRequest, X509BundlesResponse, X509svid, X509svidRequest,
    X509svidResponse,
};
use tokio::sync::watch;
use tokio_stream::wrappers::{UnixListenerStream, WatchStream};
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status};

const ID: &str = "spiffe://example.org/scripted";

type Updates<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

/// Streams the latest update the test set, and each one after it, on every X.509-SVID stream.
struct Scripted {
    updates: watch::Receiver<X509svidResponse>,
}

#[tonic::async_trait]
impl SpiffeWorkloadApi for Scripted {
    type FetchX509SVIDStream = Updates<X509svidResponse>;
    type FetchX509BundlesStream = Updates<X509BundlesResponse>;
    type FetchJWTBundlesStream = Updates<JwtBundlesResponse>;

    async fn fetch_x509svid(
        &self,
        _: Request<X509svidRequest>,
    ) -> Result<Response<Self::FetchX509SVIDStream>, Status> {
        let updates = WatchStream::new(self.updates.clone()).map(Ok);
        Ok(Response::new(Box::pin(updates)))
    }

    async fn fetch_x509_bundles(
        &self,
        _: Request<X509BundlesRequest>,
    ) -> Result<Response<Self::FetchX509BundlesStream>, Status> {
        Err(Status::unimplemented("scripted"))
    }

    async fn fetch_jwtsvid(
        &self,
        _: Request<JwtsvidRequest>,
    ) -> Result<Response<JwtsvidResponse>, Status> {
        Err(Status::unimplemented("scripted"))
    }

    async fn fetch_jwt_bundles(
        &self,
        _: Request<JwtBundlesRequest>,
    ) -> Result<Response<Self::FetchJWTBundlesStream>, Status> {
        Err(Status::unimplemented("scripted"))
    }

    async fn validate_jwtsvid(
        &self,
        _: Request<ValidateJwtsvidRequest>,
    ) -> Result<Response<ValidateJwtsvidResponse>, Status> {
        Err(Status::unimplemented("scripted"))
    }
}

fn update(ca: &Ca, edit: impl FnOnce(&mut CertificateParams)) -> X509svidResponse {
    let issued = ca.leaf_with(ID, edit);
    X509svidResponse {
        svids: vec![X509svid {
            spiffe_id: ID.into(),
            x509_svid: issued.chain[0].to_vec(),
            x509_svid_key: issued.key.serialize_der(),
            bundle: ca.der.to_vec(),
            hint: String::new(),
        }],
        crl: Vec::new(),
        federated_bundles: Default::default(),
    }
}

/// A scripted Workload API on a socket in `dir`, and a source reading it with `limits`.
struct Harness {
    send: watch::Sender<X509svidResponse>,
    source: WorkloadApiSource,
    server: tokio::task::JoinHandle<Result<(), tonic::transport::Error>>,
}

impl Harness {
    async fn start(dir: &std::path::Path, first: X509svidResponse, limits: UpdateLimits) -> Self {
        let path = dir.join("scripted.sock");
        let listener = tokio::net::UnixListener::bind(&path).unwrap();
        let (send, updates) = watch::channel(first);
        let service = Scripted { updates };
        let server = tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(SpiffeWorkloadApiServer::new(service))
                .serve_with_incoming(UnixListenerStream::new(listener)),
        );
        let source = WorkloadApiSource::builder()
            .address(EndpointAddress::Unix(path))
            .start_timeout(Duration::from_secs(5))
            .max_backoff(Duration::from_millis(100))
            .limits(limits)
            .build()
            .await
            .unwrap();
        Self {
            send,
            source,
            server,
        }
    }

    fn leaf(&self) -> Vec<u8> {
        self.source
            .x509_context()
            .unwrap()
            .default_svid()
            .leaf()
            .to_vec()
    }

    /// Sends `bad`: nobody is woken and the current leaf stays; then `good` is taken.
    async fn refuses(&self, what: &str, bad: X509svidResponse, good: X509svidResponse) {
        let before = self.leaf();
        let mut updates = self.source.updates();
        self.send.send(bad).unwrap();
        let changed = tokio::time::timeout(Duration::from_millis(500), updates.changed()).await;
        assert!(changed.is_err(), "{what}: a dropped update wakes nobody");
        assert_eq!(self.leaf(), before, "{what}: the last good context stays");
        self.send.send(good.clone()).unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        let leaf = X509Context::from_response(good.clone(), &UpdateLimits::default())
            .unwrap()
            .default_svid()
            .leaf()
            .to_vec();
        while self.leaf() != leaf {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{what}: the good update is taken"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.server.abort();
    }
}

#[tokio::test]
async fn an_update_breaking_the_profile_is_dropped_and_the_last_good_context_kept() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::root("example.org");
    let first = update(&ca, |_| {});
    let harness = Harness::start(dir.path(), first.clone(), UpdateLimits::default()).await;
    assert_eq!(harness.leaf(), first.svids[0].x509_svid);

    // keyUsage present but not critical: the spiffe crate takes it, the profile does not.
    let broken = update(&ca, |params| {
        params.key_usages.clear();
        params
            .custom_extensions
            .push(key_usage_digital_signature(false));
    });
    assert!(
        spiffe::X509Svid::parse_from_der(
            &broken.svids[0].x509_svid,
            &broken.svids[0].x509_svid_key
        )
        .is_ok(),
        "the spiffe crate accepts it: only this crate's check drops it"
    );
    harness
        .refuses("profile", broken, update(&ca, |_| {}))
        .await;
}

/// An update with `count` SVIDs of distinct hints.
fn with_svids(ca: &Ca, count: usize) -> X509svidResponse {
    let mut response = update(ca, |_| {});
    let template = response.svids[0].clone();
    response.svids = (0..count)
        .map(|i| {
            let issued = ca.leaf(ID);
            X509svid {
                x509_svid: issued.chain[0].to_vec(),
                x509_svid_key: issued.key.serialize_der(),
                hint: format!("svid-{i}"),
                ..template.clone()
            }
        })
        .collect();
    response
}

#[tokio::test]
async fn updates_past_each_limit_are_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let root = Ca::root("example.org");
    let intermediate = root.intermediate("intermediate", |_| {});
    let partner = Ca::root("partner.org");
    let limits = UpdateLimits::default()
        .with_max_svids(3)
        .with_max_chain_length(2)
        .with_max_bundle_roots(2)
        .with_max_bundles(2);
    let harness = Harness::start(dir.path(), with_svids(&root, 3), limits).await;

    // one SVID too many
    harness
        .refuses("svids", with_svids(&root, 4), with_svids(&root, 3))
        .await;

    // a chain one certificate too long: leaf, intermediate, and the root again
    let issued = intermediate.leaf(ID).via(&intermediate);
    let mut long = update(&root, |_| {});
    long.svids[0].x509_svid = [&issued.chain[0][..], &issued.chain[1][..], &root.der[..]].concat();
    long.svids[0].x509_svid_key = issued.key.serialize_der();
    let mut at_limit = long.clone();
    at_limit.svids[0].x509_svid = [&issued.chain[0][..], &issued.chain[1][..]].concat();
    harness.refuses("chain", long, at_limit).await;

    // a bundle with one root too many
    let mut roots = update(&root, |_| {});
    let extra = Ca::root("example.org");
    let other = Ca::root("example.org");
    roots.svids[0].bundle = [&root.der[..], &extra.der[..], &other.der[..]].concat();
    harness.refuses("roots", roots, update(&root, |_| {})).await;

    // one federated bundle too many (the local one counts)
    let mut federated = update(&root, |_| {});
    let third = Ca::root("third.org");
    federated
        .federated_bundles
        .insert("spiffe://partner.org".into(), partner.der.to_vec());
    federated
        .federated_bundles
        .insert("spiffe://third.org".into(), third.der.to_vec());
    let mut good = update(&root, |_| {});
    good.federated_bundles
        .insert("spiffe://partner.org".into(), partner.der.to_vec());
    harness.refuses("bundles", federated, good).await;
}

/// A message larger than the client decodes (4 MiB): the stream fails, the source
/// reconnects, and the last good context stays until a good update comes.
#[tokio::test]
async fn an_oversized_message_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::root("example.org");
    let harness = Harness::start(dir.path(), update(&ca, |_| {}), UpdateLimits::default()).await;
    let mut huge = update(&ca, |_| {});
    huge.federated_bundles.insert(
        "spiffe://partner.org".into(),
        vec![0; spiffe_mtls::source::DEFAULT_MAX_MESSAGE_BYTES + 1],
    );
    harness.refuses("size", huge, update(&ca, |_| {})).await;
}

#[test]
fn limits_are_checked_before_parsing() {
    let ca = Ca::root("example.org");
    let mut response = update(&ca, |_| {});
    // garbage that would fail to parse: the limit is reported, not the garbage
    response.svids[0].x509_svid.extend([0x30, 0x00].repeat(20));
    let error = X509Context::from_response(response, &UpdateLimits::default())
        .unwrap_err()
        .to_string();
    assert_eq!(
        error,
        "21 certificates in an SVID chain, more than the limit of 16"
    );
    let response = with_svids(&ca, 65);
    let error = X509Context::from_response(response, &UpdateLimits::default())
        .unwrap_err()
        .to_string();
    assert_eq!(error, "65 SVIDs in the update, more than the limit of 64");
    X509Context::from_response(with_svids(&ca, 64), &UpdateLimits::default())
        .expect("at the limit");
}
