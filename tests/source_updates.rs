//! Updates that must not be taken: a scripted Workload API sends a good update, then one that
//! breaks the X.509-SVID profile, then a good one. The source keeps the first until the third.

mod common;

use std::pin::Pin;
use std::time::Duration;

use common::{Ca, key_usage_digital_signature};
use rcgen::CertificateParams;
use spiffe_mtls::source::{WorkloadApiSource, X509Source};
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

#[tokio::test]
async fn an_update_breaking_the_profile_is_dropped_and_the_last_good_context_kept() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("scripted.sock");
    let listener = tokio::net::UnixListener::bind(&path).unwrap();
    let ca = Ca::root("example.org");
    let first = update(&ca, |_| {});
    let (send, updates) = watch::channel(first.clone());
    let service = Scripted { updates };
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(SpiffeWorkloadApiServer::new(service))
            .serve_with_incoming(UnixListenerStream::new(listener)),
    );
    let source = WorkloadApiSource::builder()
        .address(EndpointAddress::Unix(path))
        .start_timeout(Duration::from_secs(5))
        .build()
        .await
        .unwrap();
    let leaf = || {
        source
            .x509_context()
            .unwrap()
            .default_svid()
            .leaf()
            .to_vec()
    };
    assert_eq!(leaf(), first.svids[0].x509_svid);

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
    let mut updates = source.updates();
    send.send(broken).unwrap();
    let changed = tokio::time::timeout(Duration::from_millis(500), updates.changed()).await;
    assert!(changed.is_err(), "a dropped update wakes nobody");
    assert_eq!(
        leaf(),
        first.svids[0].x509_svid,
        "the last good context stays"
    );

    let third = update(&ca, |_| {});
    send.send(third.clone()).unwrap();
    tokio::time::timeout(Duration::from_secs(2), updates.changed())
        .await
        .expect("the good update arrives")
        .unwrap();
    assert_eq!(leaf(), third.svids[0].x509_svid);
    server.abort();
}
