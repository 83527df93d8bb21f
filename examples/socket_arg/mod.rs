//! What the examples share: where the Workload API is, and the source that follows it.

use spiffe_mtls::source::WorkloadApiSource;
use spiffe_mtls::workload::EndpointAddress;

/// `--socket ADDR`, else `SPIFFE_ENDPOINT_SOCKET`: a SPIRE agent's or the dev server's socket.
#[derive(clap::Args, Debug)]
pub struct SocketArg {
    /// The Workload API: unix:///abs/path, a bare absolute path, or tcp://IP:PORT
    /// (default: $SPIFFE_ENDPOINT_SOCKET).
    #[arg(long, value_name = "ADDR", value_parser = EndpointAddress::parse_lenient)]
    pub socket: Option<EndpointAddress>,
}

impl SocketArg {
    /// A source following the Workload API: the first update is awaited, then SVIDs and
    /// bundles stay current by themselves.
    pub async fn source(&self) -> Result<WorkloadApiSource, Box<dyn std::error::Error>> {
        let address = match &self.socket {
            Some(address) => address.clone(),
            None => {
                EndpointAddress::from_env().map_err(|e| format!("no --socket given and {e}"))?
            }
        };
        Ok(WorkloadApiSource::builder()
            .address(address)
            .build()
            .await?)
    }
}
