//! The JWT half of the dev server's Workload API: `FetchJWTSVID` signs a token per attested
//! identity for the requested audiences, `FetchJWTBundles` streams a JWKS per trust domain,
//! `ValidateJWTSVID` validates a token against them with this crate's validator.

use std::collections::HashMap;
use std::time::SystemTime;

use serde_json::Value;
use tonic::Status;

use super::attest::Caller;
use super::issuer::{JWT_SVID_TTL, Snapshot};
use super::service::{federates_with, no_identity};
use crate::jwt::{JwtBundle, JwtBundleSet, JwtSvidValidator};
use crate::workload::proto::{
    JwtBundlesResponse, Jwtsvid, JwtsvidRequest, JwtsvidResponse, ValidateJwtsvidRequest,
    ValidateJwtsvidResponse,
};

/// The local JWT bundle: every key the trust domain publishes now.
fn local_bundle(snapshot: &Snapshot) -> Result<JwtBundle, Status> {
    JwtBundle::new(
        snapshot.trust_domain.clone(),
        snapshot.jwt_keys.iter().cloned(),
    )
    .map_err(|e| Status::internal(e.to_string()))
}

/// Whether the caller holds any identity.
fn has_identity(snapshot: &Snapshot, caller: &Caller) -> bool {
    snapshot
        .issued
        .iter()
        .any(|(entry, _)| caller.matches(&entry.selectors))
}

/// One JWT-SVID per identity of the caller (or the one `spiffe_id` names).
pub(crate) fn svids(
    snapshot: &Snapshot,
    caller: &Caller,
    request: &JwtsvidRequest,
) -> Result<JwtsvidResponse, Status> {
    if request.audience.is_empty() || request.audience.iter().any(String::is_empty) {
        return Err(Status::invalid_argument("audience must be specified"));
    }
    let now = SystemTime::now();
    let mut svids = Vec::new();
    for (entry, _) in &snapshot.issued {
        if !caller.matches(&entry.selectors)
            || (!request.spiffe_id.is_empty() && entry.spiffe_id.to_string() != request.spiffe_id)
        {
            continue;
        }
        let token = snapshot
            .jwt_signer
            .sign_svid(
                &entry.spiffe_id,
                &request.audience,
                // at most JWT_SVID_TTL (300 s) after now: cannot overflow, checked anyway
                now.checked_add(entry.ttl.min(JWT_SVID_TTL)).unwrap_or(now),
            )
            .map_err(|e| Status::internal(e.to_string()))?;
        svids.push(Jwtsvid {
            spiffe_id: entry.spiffe_id.to_string(),
            svid: token,
            hint: entry.hint.clone().unwrap_or_default(),
        });
    }
    if svids.is_empty() {
        return Err(no_identity());
    }
    Ok(JwtsvidResponse { svids })
}

/// The JWT bundles of the local trust domain and of the federated ones the caller's entries
/// federate with, keyed by trust domain ID, each a JWKS document; `None` when the caller holds
/// no identity.
pub(crate) fn bundles_response(snapshot: &Snapshot, caller: &Caller) -> Option<JwtBundlesResponse> {
    if !has_identity(snapshot, caller) {
        return None;
    }
    let local = local_bundle(snapshot).ok()?;
    let federated = snapshot
        .federated_jwt
        .iter()
        .filter(|bundle| federates_with(snapshot, caller, bundle.trust_domain()));
    // The local bundle last: it wins over any federated one of the same name.
    let bundles: HashMap<String, Vec<u8>> = federated
        .chain(std::iter::once(&local))
        .map(|bundle| {
            (
                bundle.trust_domain().id_string(),
                bundle.to_jwks().to_string().into_bytes(),
            )
        })
        .collect();
    Some(JwtBundlesResponse { bundles })
}

/// Validates a token for the caller, against the local JWT bundle and those of the federated
/// trust domains its entries federate with.
pub(crate) fn validate(
    snapshot: &Snapshot,
    caller: &Caller,
    request: &ValidateJwtsvidRequest,
) -> Result<ValidateJwtsvidResponse, Status> {
    if !has_identity(snapshot, caller) {
        return Err(no_identity());
    }
    if request.audience.is_empty() {
        return Err(Status::invalid_argument("audience must be specified"));
    }
    if request.svid.is_empty() {
        return Err(Status::invalid_argument("svid must be specified"));
    }
    let mut bundles: JwtBundleSet = snapshot
        .federated_jwt
        .iter()
        .filter(|bundle| federates_with(snapshot, caller, bundle.trust_domain()))
        .cloned()
        .collect();
    bundles.insert(local_bundle(snapshot)?);
    let validator = JwtSvidValidator::new().map_err(|e| Status::internal(e.to_string()))?;
    let svid = validator
        .validate(&request.svid, &request.audience, &bundles)
        .map_err(|e| Status::invalid_argument(format!("invalid JWT-SVID: {e}")))?;
    Ok(ValidateJwtsvidResponse {
        spiffe_id: svid.spiffe_id().to_string(),
        claims: Some(to_struct(svid.claims())),
    })
}

/// JSON claims as a protobuf `Struct`.
fn to_struct(claims: &serde_json::Map<String, Value>) -> prost_types::Struct {
    prost_types::Struct {
        fields: claims
            .iter()
            .map(|(name, value)| (name.clone(), to_value(value)))
            .collect(),
    }
}

fn to_value(value: &Value) -> prost_types::Value {
    use prost_types::value::Kind;
    let kind = match value {
        Value::Null => Kind::NullValue(0),
        Value::Bool(b) => Kind::BoolValue(*b),
        Value::Number(n) => Kind::NumberValue(n.as_f64().unwrap_or_default()),
        Value::String(s) => Kind::StringValue(s.clone()),
        Value::Array(items) => Kind::ListValue(prost_types::ListValue {
            values: items.iter().map(to_value).collect(),
        }),
        Value::Object(map) => Kind::StructValue(to_struct(map)),
    };
    prost_types::Value { kind: Some(kind) }
}
