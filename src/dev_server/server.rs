//! Starting the dev server on a socket, and the handle that drives it.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustls_pki_types::CertificateDer;
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::{TcpListenerStream, UnixListenerStream};
use tonic::Code;

use super::ca::DevCaError;
use super::config::{ConfigError, DevServerConfig, Entry};
use super::issuer::{Command, Issuer, IssuerSettings, Snapshot};
use super::refusal::CallerRefusal;
use super::service::{Faults, WorkloadService};
use super::socket::{SocketDirError, create_private_dirs, set_socket_mode};
use crate::bundle::X509Bundle;
use crate::svid::X509Svid;
use crate::workload::EndpointAddress;
use crate::workload::proto::spiffe_workload_api_server::SpiffeWorkloadApiServer;

/// Why the dev server could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DevServerError {
    /// Another server is live on the socket.
    #[error("a server is already listening on {0}")]
    SocketInUse(String),
    /// The socket could not be bound.
    #[error("cannot listen on {address}: {source}")]
    Bind {
        /// The address.
        address: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The CA could not issue.
    #[error(transparent)]
    Ca(#[from] DevCaError),
    /// The registration entries are invalid (an entry without selectors, for one).
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The socket directory is not private to this user.
    #[error(transparent)]
    SocketDir(#[from] SocketDirError),
    /// A TCP address that is not loopback, without [`DevServerOptions::allow_remote_tcp`].
    #[error(
        "refusing to listen on {address}: not a loopback address, and other hosts' callers cannot be attested (allow it with --allow-remote-tcp)"
    )]
    RemoteTcp {
        /// The address.
        address: std::net::SocketAddr,
    },
    /// A socket mode with bits beyond the permission bits.
    #[error("socket mode {0:o} is not a permission mode (expected at most 0777)")]
    SocketMode(u32),
}

/// Options beyond the registration entries.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct DevServerOptions {
    /// Lifetime of each CA (a successor is prepared at half of it). Default 24 h.
    pub ca_ttl: Duration,
    /// How long a new CA's root is published before it signs SVIDs. Default 1 s.
    pub ca_propagation: Duration,
    /// Bundles of federated trust domains, sent (as by SPIRE) to the callers whose entries
    /// federate with them ([`Entry::federates_with`](super::Entry::federates_with)).
    pub federated: Vec<X509Bundle>,
    /// JWT bundles of federated trust domains, sent to (`FetchJWTBundles`) and used by
    /// `ValidateJWTSVID` for the callers whose entries federate with them.
    pub federated_jwt: Vec<crate::jwt::JwtBundle>,
    /// Permission bits of the Unix socket file, set right after it is bound. Default `0o600`:
    /// only this user can connect.
    pub socket_mode: u32,
    /// Whether a TCP address other than loopback may be used. Default `false`: callers on other
    /// hosts cannot be attested (they match no entry), and the socket would be reachable from
    /// the network.
    pub allow_remote_tcp: bool,
}

impl Default for DevServerOptions {
    fn default() -> Self {
        Self {
            ca_ttl: Duration::from_secs(24 * 3600),
            ca_propagation: Duration::from_secs(1),
            federated: Vec::new(),
            federated_jwt: Vec::new(),
            socket_mode: 0o600,
            allow_remote_tcp: false,
        }
    }
}

impl DevServerOptions {
    /// Sets the CA lifetime.
    pub fn with_ca_ttl(mut self, ttl: Duration) -> Self {
        self.ca_ttl = ttl;
        self
    }

    /// Sets how long a new root is published before it signs.
    pub fn with_ca_propagation(mut self, delay: Duration) -> Self {
        self.ca_propagation = delay;
        self
    }

    /// Adds a federated trust domain's bundle, for the callers whose entries federate with its
    /// trust domain.
    pub fn with_federated(mut self, bundle: X509Bundle) -> Self {
        self.federated.push(bundle);
        self
    }

    /// Adds a federated trust domain's JWT bundle, for the callers whose entries federate with
    /// its trust domain.
    pub fn with_federated_jwt(mut self, bundle: crate::jwt::JwtBundle) -> Self {
        self.federated_jwt.push(bundle);
        self
    }

    /// Sets the Unix socket file's permission bits (e.g. `0o660` to let the group connect).
    pub fn with_socket_mode(mut self, mode: u32) -> Self {
        self.socket_mode = mode;
        self
    }

    /// Allows (or not) listening on a TCP address other than loopback.
    pub fn with_allow_remote_tcp(mut self, allow: bool) -> Self {
        self.allow_remote_tcp = allow;
        self
    }

    /// Whether these options allow serving on `address`: a TCP address must be loopback unless
    /// [`DevServerOptions::allow_remote_tcp`], and the socket mode must be permission bits.
    /// [`DevServer::start`] checks this before binding anything.
    ///
    /// # Errors
    /// [`DevServerError::RemoteTcp`] or [`DevServerError::SocketMode`].
    ///
    /// # Example
    /// ```
    /// use spiffe_mtls::dev_server::DevServerOptions;
    ///
    /// let anywhere = "tcp://0.0.0.0:8081".parse().unwrap();
    /// assert!(DevServerOptions::default().check_address(&anywhere).is_err());
    /// let options = DevServerOptions::default().with_allow_remote_tcp(true);
    /// assert!(options.check_address(&anywhere).is_ok());
    /// ```
    pub fn check_address(&self, address: &EndpointAddress) -> Result<(), DevServerError> {
        if self.socket_mode & !0o777 != 0 {
            return Err(DevServerError::SocketMode(self.socket_mode));
        }
        match address {
            EndpointAddress::Tcp(addr)
                if !self.allow_remote_tcp && !addr.ip().to_canonical().is_loopback() =>
            {
                Err(DevServerError::RemoteTcp { address: *addr })
            }
            _ => Ok(()),
        }
    }
}

/// A running dev server. Dropping it stops the server without waiting; prefer
/// [`DevServer::shutdown`], which also removes the socket file.
pub struct DevServer {
    address: EndpointAddress,
    commands: mpsc::Sender<Command>,
    snapshots: watch::Receiver<Arc<Snapshot>>,
    faults: Arc<Mutex<Faults>>,
    end_streams: watch::Sender<u64>,
    refusals: broadcast::Sender<CallerRefusal>,
    stop: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<()>>,
}

/// How many refusals a slow [`DevServer::refusals`] receiver may fall behind.
const REFUSALS_KEPT: usize = 64;

impl std::fmt::Debug for DevServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DevServer")
            .field("address", &self.address)
            .finish_non_exhaustive()
    }
}

/// Removes a socket file nobody listens on; refuses when a server answers on it.
async fn clear_stale_socket(path: &std::path::Path) -> Result<(), DevServerError> {
    if !path.exists() {
        return Ok(());
    }
    if tokio::net::UnixStream::connect(path).await.is_ok() {
        return Err(DevServerError::SocketInUse(path.display().to_string()));
    }
    std::fs::remove_file(path).map_err(|source| DevServerError::Bind {
        address: path.display().to_string(),
        source,
    })
}

/// Serves `router` on `incoming` connections until `shutdown` resolves.
fn serve<IO, IE>(
    router: tonic::transport::server::Router,
    incoming: impl tokio_stream::Stream<Item = Result<IO, IE>> + Send + 'static,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> JoinHandle<()>
where
    IO: tokio::io::AsyncRead
        + tokio::io::AsyncWrite
        + tonic::transport::server::Connected
        + Unpin
        + Send
        + 'static,
    IO::ConnectInfo: Clone + Send + Sync + 'static,
    IE: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    tokio::spawn(async move {
        if let Err(error) = router
            .serve_with_incoming_shutdown(incoming, shutdown)
            .await
        {
            tracing::error!(%error, "dev server stopped");
        }
    })
}

impl DevServer {
    /// Starts serving `config` on `address` (`tcp://127.0.0.1:0` picks a free port).
    ///
    /// A Unix socket's missing parent directories are created with mode 0700, and the socket
    /// file gets [`DevServerOptions::socket_mode`] (0600 by default) right after it is bound.
    /// A TCP address must be loopback unless [`DevServerOptions::allow_remote_tcp`].
    ///
    /// # Errors
    /// [`DevServerError`] when an entry is invalid, the address is not allowed, in use or
    /// cannot be bound, or the CA fails.
    pub async fn start(
        config: DevServerConfig,
        address: EndpointAddress,
        options: DevServerOptions,
    ) -> Result<Self, DevServerError> {
        config.validate()?;
        options.check_address(&address)?;
        let socket_mode = options.socket_mode;
        let settings = IssuerSettings {
            ca_ttl: options.ca_ttl,
            ca_propagation: options.ca_propagation,
            federated: options.federated,
            federated_jwt: options.federated_jwt,
        };
        let (issuer, snapshots) = Issuer::start(config, settings)?;
        let (commands, command_rx) = mpsc::channel(8);
        tokio::spawn(issuer.run(command_rx));

        let faults = Arc::new(Mutex::new(Faults::default()));
        let (end_streams, end_rx) = watch::channel(0);
        let (refusals, _) = broadcast::channel(REFUSALS_KEPT);
        let service = SpiffeWorkloadApiServer::new(WorkloadService {
            snapshots: snapshots.clone(),
            faults: Arc::clone(&faults),
            end_streams: end_rx,
            refusals: refusals.clone(),
        });
        let (stop, stopped) = oneshot::channel::<()>();
        let shutdown = async {
            let _ = stopped.await;
        };
        let bind_error = |source| DevServerError::Bind {
            address: address.to_string(),
            source,
        };
        let router = tonic::transport::Server::builder().add_service(service);
        let (address, server) = match &address {
            EndpointAddress::Unix(path) => {
                clear_stale_socket(path).await?;
                if let Some(dir) = path.parent() {
                    create_private_dirs(dir).map_err(bind_error)?;
                }
                let listener = tokio::net::UnixListener::bind(path).map_err(bind_error)?;
                if let Err(error) = set_socket_mode(path, socket_mode) {
                    drop(listener);
                    let _ = std::fs::remove_file(path);
                    return Err(bind_error(error));
                }
                // every connection through the :authority shim (see `authority`), its peer recorded
                let incoming = UnixListenerStream::new(listener)
                    .map(|accepted| accepted.map(super::connection::unix));
                let task = serve(router, incoming, shutdown);
                (address.clone(), task)
            }
            EndpointAddress::Tcp(addr) => {
                let listener = tokio::net::TcpListener::bind(addr)
                    .await
                    .map_err(bind_error)?;
                let bound = listener.local_addr().map_err(bind_error)?;
                let incoming = TcpListenerStream::new(listener)
                    .map(|accepted| accepted.map(super::connection::tcp));
                let task = serve(router, incoming, shutdown);
                (EndpointAddress::Tcp(bound), task)
            }
        };
        Ok(Self {
            address,
            commands,
            snapshots,
            faults,
            end_streams,
            refusals,
            stop: Some(stop),
            server: Some(server),
        })
    }

    /// Where the server listens (with the real port for `tcp://...:0`).
    pub fn address(&self) -> &EndpointAddress {
        &self.address
    }

    /// The calls refused from now on: each names the caller as attested (uid, gid, pid,
    /// executable) and why no entry matched (the nearest entries and the selectors the caller
    /// lacks). A receiver that falls more than 64 refusals behind misses the oldest. Each
    /// refusal is also a `tracing` warning (target `spiffe_mtls::dev_server`).
    ///
    /// # Example
    /// ```no_run
    /// # async fn run(server: spiffe_mtls::dev_server::DevServer) {
    /// let mut refusals = server.refusals();
    /// while let Ok(refusal) = refusals.recv().await {
    ///     // FetchX509SVID refused for uid 1000, gid 1000, pid 4242, path /usr/bin/curl:
    ///     // no entry matches: spiffe://example.org/web needs unix:path:/srv/web
    ///     eprintln!("{refusal}");
    /// }
    /// # }
    /// ```
    pub fn refusals(&self) -> broadcast::Receiver<CallerRefusal> {
        self.refusals.subscribe()
    }

    async fn command<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> Command) -> Option<T> {
        let (done, wait) = oneshot::channel();
        self.commands.send(make(done)).await.ok()?;
        wait.await.ok()
    }

    /// Re-issues every SVID now and pushes them on the open streams; returns once pushed.
    pub async fn rotate_svids(&self) {
        self.command(Command::RotateSvids).await;
    }

    /// Starts a CA rotation: the new root is pushed in the bundle now (returns then), and SVIDs
    /// signed by it follow after [`DevServerOptions::ca_propagation`].
    pub async fn rotate_ca(&self) {
        self.command(Command::RotateCa).await;
    }

    /// Replaces the registration entries and pushes the result.
    ///
    /// # Errors
    /// [`ConfigError`] when an entry is invalid; the old entries stay.
    pub async fn replace_entries(&self, entries: Vec<Entry>) -> Result<(), ConfigError> {
        self.command(|done| Command::ReplaceEntries(entries, done))
            .await
            .unwrap_or(Ok(()))
    }

    /// Makes the next `count` calls fail with `code` (after the header check).
    pub fn fail_next_calls(&self, code: Code, count: usize) {
        if let Ok(mut faults) = self.faults.lock() {
            faults.fail_next(code, count);
        }
    }

    /// Ends every open stream (clients see the stream close and reconnect).
    pub fn end_streams(&self) {
        self.end_streams.send_modify(|epoch| *epoch += 1);
    }

    /// An SVID for `request`, signed by the CA that signs now (for the server's own
    /// endpoints, such as a bundle endpoint; no caller is given it). `None` once the server
    /// is shut down.
    ///
    /// # Errors
    /// [`DevCaError`](super::DevCaError) when it cannot be issued.
    pub async fn issue_svid(
        &self,
        request: super::SvidRequest,
    ) -> Option<Result<X509Svid, super::DevCaError>> {
        self.command(|done| Command::Issue(request, done)).await
    }

    /// Replaces the bundle (and JWT bundle, `None`: none) of a federated trust domain, or adds
    /// it, and pushes it to the callers whose entries federate with it: a bundle fetched from
    /// that trust domain's bundle endpoint, say.
    pub async fn set_federated(&self, bundle: X509Bundle, jwt: Option<crate::jwt::JwtBundle>) {
        self.command(|done| Command::SetFederated(bundle, jwt, done))
            .await;
    }

    /// The JWT bundle of the local trust domain now (its keys: more than one during a CA
    /// rotation).
    ///
    /// # Errors
    /// [`JwtBundleError`](crate::jwt::JwtBundleError) if two keys shared an ID (the server
    /// never makes such keys).
    pub fn jwt_bundle(&self) -> Result<crate::jwt::JwtBundle, crate::jwt::JwtBundleError> {
        let snapshot = self.snapshots.borrow();
        crate::jwt::JwtBundle::new(
            snapshot.trust_domain.clone(),
            snapshot.jwt_keys.iter().cloned(),
        )
    }

    /// The current roots of the local trust domain.
    pub fn roots(&self) -> Vec<CertificateDer<'static>> {
        self.snapshots.borrow().roots.clone()
    }

    /// The current SVID of each entry, in entry order.
    pub fn svids(&self) -> Vec<Arc<X509Svid>> {
        self.snapshots
            .borrow()
            .issued
            .iter()
            .map(|(_, svid)| Arc::clone(svid))
            .collect()
    }

    /// Waits for the next push (an SVID or CA rotation, or new entries).
    pub async fn next_push(&self) {
        let mut pushes = self.snapshots.clone();
        pushes.mark_unchanged();
        let _ = pushes.changed().await;
    }

    /// Ends the streams, stops serving and removes the socket file.
    pub async fn shutdown(mut self) {
        self.signal_stop();
        if let Some(server) = self.server.take() {
            let _ = tokio::time::timeout(Duration::from_secs(5), server).await;
        }
        self.remove_socket();
    }

    /// Ends the open streams and tells the server task to stop.
    fn signal_stop(&mut self) {
        self.end_streams();
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }

    fn remove_socket(&self) {
        if let EndpointAddress::Unix(path) = &self.address {
            let _ = std::fs::remove_file(path);
        }
    }
}

impl Drop for DevServer {
    /// Stops without waiting; the socket is removed unless `shutdown` already did.
    fn drop(&mut self) {
        self.signal_stop();
        if self.server.is_some() {
            self.remove_socket();
        }
    }
}
