"""JWT-SVIDs with clients we did not write: the Python `spiffe` package and PyJWT.

Usage:
  py_jwt.py fetch SOCKET_ADDRESS AUDIENCE
      py-spiffe fetches a JWT-SVID and the JWT bundles, validates the token itself
      (JwtSvid.parse_and_validate, on PyJWT), then asks the Workload API to validate it.
      Prints `fetched <id>`, `bundles <td,...>`, `validated <id>`, `server-validated <id>`.
  py_jwt.py sign DIR SUBJECT AUDIENCE
      Makes an EC P-256 and an RSA 2048 key with `cryptography`, publishes both in
      DIR/example.org.jwks (a JWK Set written by PyJWT's own JWK export), and prints one
      PyJWT-signed token per key (ES256, then RS256).
  py_jwt.py verify JWKS_FILE AUDIENCE TOKEN
      PyJWT verifies TOKEN with the key of its kid from JWKS_FILE; prints `verified <sub>`.
Exits non-zero (with the exception) when anything fails.
"""

import json
import sys
import time

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from spiffe import JwtSvid, TrustDomain, WorkloadApiClient


def fetch(address: str, audience: str) -> None:
    with WorkloadApiClient(socket_path=address) as client:
        svid = client.fetch_jwt_svid(audience={audience})
        print(f"fetched {svid.spiffe_id}")
        bundles = client.fetch_jwt_bundles()
        names = sorted(str(b.trust_domain) for b in bundles.bundles)
        print(f"bundles {','.join(names)}")
        bundle = bundles.get_bundle_for_trust_domain(TrustDomain("example.org"))
        validated = JwtSvid.parse_and_validate(svid.token, bundle, {audience})
        print(f"validated {validated.spiffe_id}")
        answered = client.validate_jwt_svid(svid.token, audience)
        print(f"server-validated {answered.spiffe_id}")


def sign(directory: str, subject: str, audience: str) -> None:
    keys = [
        ("py-es256", "ES256", ec.generate_private_key(ec.SECP256R1())),
        ("py-rs256", "RS256", rsa.generate_private_key(public_exponent=65537, key_size=2048)),
    ]
    published = []
    tokens = []
    for kid, alg, key in keys:
        jwk = json.loads(jwt.algorithms.get_default_algorithms()[alg].to_jwk(key.public_key()))
        jwk.update({"kid": kid, "use": "jwt-svid"})
        published.append(jwk)
        claims = {"sub": subject, "aud": [audience], "exp": int(time.time()) + 300}
        tokens.append(jwt.encode(claims, key, algorithm=alg, headers={"kid": kid}))
    with open(f"{directory}/example.org.jwks", "w") as out:
        json.dump({"keys": published}, out)
    for token in tokens:
        print(token)


def verify(jwks_file: str, audience: str, token: str) -> None:
    with open(jwks_file) as source:
        keys = jwt.PyJWKSet.from_dict(json.load(source))
    kid = jwt.get_unverified_header(token)["kid"]
    key = next(k for k in keys.keys if k.key_id == kid)
    claims = jwt.decode(token, key, algorithms=["ES256"], audience=audience)
    print(f"verified {claims['sub']}")


if __name__ == "__main__":
    command, *args = sys.argv[1:]
    {"fetch": fetch, "sign": sign, "verify": verify}[command](*args)
