//! The Workload API source's own stream: one `FetchX509SVID` call at a time on this crate's
//! client, each update checked once by this crate's rules (what it left unchanged taken from
//! the context it replaces), and reconnection with backoff.

use std::sync::Arc;
use std::time::Duration;

use tonic::{Code, Status, Streaming};

use super::cell::SourceCell;
use super::{ContextError, SourceError, UpdateLimits, X509Context};
use crate::workload::proto::{X509svidRequest, X509svidResponse};
use crate::workload::{EndpointAddress, WorkloadClient, WorkloadError, request};

/// The first pause after a failed connection or a closed stream.
pub(super) const MIN_BACKOFF: Duration = Duration::from_millis(50);

/// An open `FetchX509SVID` stream.
pub(super) type Responses = Streaming<X509svidResponse>;

/// Where the stream comes from and how it is followed.
#[derive(Debug, Clone)]
pub(super) struct StreamSettings {
    /// The endpoint.
    pub(super) address: EndpointAddress,
    /// Bounds on each update.
    pub(super) limits: UpdateLimits,
    /// The longest pause between two reconnection attempts.
    pub(super) max_backoff: Duration,
}

/// What went wrong last while waiting for the first context.
#[derive(Debug)]
enum Failure {
    /// The call failed: no connection, a status, the stream ended.
    Api(WorkloadError),
    /// An update arrived and broke a rule.
    Invalid(ContextError),
}

/// Opens a `FetchX509SVID` stream on a new connection.
async fn open(address: &EndpointAddress) -> Result<Responses, WorkloadError> {
    let client = WorkloadClient::connect(address).await?;
    Ok(client
        .into_raw()
        .fetch_x509svid(request(X509svidRequest {}))
        .await?
        .into_inner())
}

/// The next pause after `backoff`: doubled, at most `max`.
fn next_backoff(backoff: Duration, max: Duration) -> Duration {
    (backoff * 2).min(max)
}

/// Connects (again, with backoff, until `deadline`) and reads until an update passes this
/// crate's checks; returns it with the stream it came on, to follow.
///
/// # Errors
/// Why none arrived in time: [`SourceError::NoSocket`], [`SourceError::Unreachable`],
/// [`SourceError::NoIdentity`], [`SourceError::Refused`], [`SourceError::Invalid`] or
/// [`SourceError::Timeout`].
pub(super) async fn first_context(
    settings: &StreamSettings,
    timeout: Duration,
) -> Result<(X509Context, Responses), SourceError> {
    let deadline = crate::deadline::after(timeout);
    let mut backoff = MIN_BACKOFF;
    let mut last: Option<Failure> = None;
    loop {
        let attempt = tokio::time::timeout_at(deadline, async {
            let mut responses = open(&settings.address).await.map_err(Failure::Api)?;
            loop {
                match responses.message().await {
                    Ok(Some(response)) => {
                        match X509Context::from_response_after(response, &settings.limits, None) {
                            Ok(context) => return Ok((context, responses)),
                            Err(error) => {
                                tracing::warn!(%error, "dropping a Workload API update");
                                last = Some(Failure::Invalid(error));
                            }
                        }
                    }
                    Ok(None) => return Err(Failure::Api(WorkloadError::StreamEnded)),
                    Err(status) => return Err(Failure::Api(status.into())),
                }
            }
        })
        .await;
        match attempt {
            Ok(Ok(found)) => return Ok(found),
            Ok(Err(failure)) => last = Some(failure),
            Err(_) => break,
        }
        let pause = tokio::time::sleep(backoff);
        if tokio::time::timeout_at(deadline, pause).await.is_err() {
            break;
        }
        backoff = next_backoff(backoff, settings.max_backoff);
    }
    Err(explain(&settings.address, timeout, last))
}

/// Names why no context arrived, from the last failure seen.
fn explain(address: &EndpointAddress, timeout: Duration, last: Option<Failure>) -> SourceError {
    if let EndpointAddress::Unix(path) = address
        && !path.exists()
    {
        return SourceError::NoSocket(path.clone());
    }
    let address_text = address.to_string();
    match last {
        Some(Failure::Api(WorkloadError::Connect { reason, .. })) => SourceError::Unreachable {
            address: address_text,
            reason,
        },
        Some(Failure::Api(WorkloadError::Status(status)))
            if status.code() == Code::PermissionDenied =>
        {
            SourceError::no_identity(address, status.message())
        }
        Some(Failure::Api(WorkloadError::Status(status))) => SourceError::Refused {
            address: address_text,
            reason: format!("{}: {}", status.code(), status.message()),
        },
        Some(Failure::Api(WorkloadError::InvalidResponse(reason))) => SourceError::Invalid(reason),
        Some(Failure::Invalid(error)) => SourceError::from(error),
        Some(Failure::Api(other)) => SourceError::Timeout {
            address: address_text,
            after: timeout,
            reason: other.to_string(),
        },
        None => SourceError::Timeout {
            address: address_text,
            after: timeout,
            reason: "no update arrived".to_owned(),
        },
    }
}

/// Follows `responses`, then each stream after it, into `cell`, until aborted: an update
/// that passes is published, one that fails is dropped (the last good context stays); a
/// PermissionDenied withdraws the identity until an update passes again; any other failure
/// or a closed stream is met by reconnecting with backoff, the last context kept meanwhile.
pub(super) async fn follow(
    mut responses: Responses,
    cell: Arc<SourceCell>,
    settings: StreamSettings,
) {
    let mut backoff = MIN_BACKOFF;
    cell.set_stream(true);
    loop {
        let ended = read(&mut responses, &cell, &settings.limits, &mut backoff).await;
        cell.set_stream(false);
        match ended {
            Some(status) => on_status(&cell, &status),
            None => tracing::debug!("the Workload API closed the stream; reconnecting"),
        }
        responses = loop {
            tokio::time::sleep(backoff).await;
            backoff = next_backoff(backoff, settings.max_backoff);
            match open(&settings.address).await {
                Ok(responses) => break responses,
                Err(WorkloadError::Status(status)) => on_status(&cell, &status),
                Err(error) => tracing::debug!(%error, "reconnecting to the Workload API"),
            }
        };
    }
}

/// Reads `responses` into `cell` until the stream ends (`None`) or fails (its status).
async fn read(
    responses: &mut Responses,
    cell: &SourceCell,
    limits: &UpdateLimits,
    backoff: &mut Duration,
) -> Option<Status> {
    loop {
        match responses.message().await {
            Ok(Some(response)) => {
                *backoff = MIN_BACKOFF;
                cell.set_stream(true);
                let previous = cell.last();
                match X509Context::from_response_after(response, limits, Some(&previous)) {
                    Ok(context) => cell.publish(context),
                    Err(error) => tracing::warn!(
                        %error,
                        "dropping a Workload API update; keeping the last good context"
                    ),
                }
            }
            Ok(None) => return None,
            Err(status) => return Some(status),
        }
    }
}

/// Withdraws the identity on a PermissionDenied; logs any other status.
fn on_status(cell: &SourceCell, status: &Status) {
    if status.code() == Code::PermissionDenied {
        if matches!(cell.read(), Err(SourceError::Withdrawn(_))) {
            return;
        }
        tracing::warn!(reason = %status.message(), "the Workload API withdrew the identity");
        cell.withdraw(format!("{}: {}", status.code(), status.message()));
    } else {
        tracing::warn!(
            code = %status.code(),
            message = %status.message(),
            "the Workload API stream failed; reconnecting"
        );
    }
}
