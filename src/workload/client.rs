//! A connection to a Workload API endpoint, and requests that carry the required header.

use hyper_util::rt::TokioIo;
use tonic::Request;
use tonic::transport::{Channel, Endpoint};

use super::address::EndpointAddress;
use super::proto::spiffe_workload_api_client::SpiffeWorkloadApiClient;

/// The gRPC metadata key every Workload API call must carry with the value `true`.
pub const WORKLOAD_HEADER: &str = "workload.spiffe.io";

/// The largest Workload API message the client decodes (tonic's default, made explicit).
pub const MAX_MESSAGE_BYTES: usize = 4 * 1024 * 1024;

/// Why the Workload API could not be reached or answered.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WorkloadError {
    /// No connection to the endpoint.
    #[error("cannot connect to the Workload API at {address}: {reason}")]
    Connect {
        /// The endpoint.
        address: String,
        /// Why.
        reason: String,
    },
    /// The server answered with an error status.
    #[error("Workload API error: {}: {}", .0.code(), .0.message())]
    Status(#[from] tonic::Status),
    /// The stream ended before the first message.
    #[error("the Workload API closed the stream without an update")]
    StreamEnded,
    /// A message could not be used.
    #[error("invalid Workload API response: {0}")]
    InvalidResponse(String),
}

/// Connects to the Workload API at `address`.
///
/// # Errors
/// [`WorkloadError::Connect`] when nothing listens there.
pub async fn connect(
    address: &EndpointAddress,
) -> Result<SpiffeWorkloadApiClient<Channel>, WorkloadError> {
    let fail = |e: &dyn std::fmt::Display| WorkloadError::Connect {
        address: address.to_string(),
        reason: e.to_string(),
    };
    let channel = match address {
        EndpointAddress::Tcp(addr) => Endpoint::from_shared(format!("http://{addr}"))
            .map_err(|e| fail(&e))?
            .connect()
            .await
            .map_err(|e| fail(&source_chain(&e)))?,
        EndpointAddress::Unix(path) => {
            let path = path.clone();
            // The URI is not used: the connector dials the socket.
            Endpoint::from_static("http://localhost")
                .connect_with_connector(tower::service_fn(move |_| {
                    let path = path.clone();
                    async move {
                        let stream = tokio::net::UnixStream::connect(path).await?;
                        Ok::<_, std::io::Error>(TokioIo::new(stream))
                    }
                }))
                .await
                .map_err(|e| fail(&source_chain(&e)))?
        }
    };
    Ok(SpiffeWorkloadApiClient::new(channel).max_decoding_message_size(MAX_MESSAGE_BYTES))
}

/// A request with the `workload.spiffe.io: true` metadata.
pub fn request<T>(message: T) -> Request<T> {
    let mut request = Request::new(message);
    request.metadata_mut().insert(
        WORKLOAD_HEADER,
        tonic::metadata::MetadataValue::from_static("true"),
    );
    request
}

/// An error and its sources, one line.
fn source_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}
