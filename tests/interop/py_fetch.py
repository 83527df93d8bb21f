"""Fetch an X.509 context from a Workload API with the Python `spiffe` package (py-spiffe).

Usage: py_fetch.py SOCKET_ADDRESS
Prints, one per line: `svid <spiffe id> <leaf serial hex>`, then `bundle <trust domain>` for each
bundle, then `x509-source <spiffe id>` from the package's long-lived X509Source.
Exits non-zero (with the exception) when anything fails.
"""

import sys

from spiffe import WorkloadApiClient, X509Source


def main(address: str) -> None:
    with WorkloadApiClient(socket_path=address) as client:
        context = client.fetch_x509_context()
        for svid in context.x509_svids:
            leaf = svid.leaf
            print(f"svid {svid.spiffe_id} {leaf.serial_number:x}")
        for bundle in sorted(context.x509_bundle_set.bundles, key=lambda b: str(b.trust_domain)):
            print(f"bundle {bundle.trust_domain}")
        bundles = client.fetch_x509_bundles()
        print(f"fetch-bundles {len(bundles.bundles)}")
    with X509Source(socket_path=address) as source:
        print(f"x509-source {source.get_x509_context().default_svid.spiffe_id}")


if __name__ == "__main__":
    main(sys.argv[1])
