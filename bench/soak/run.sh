#!/usr/bin/env bash
# The soak of issue 18 (not part of CI; about 12 minutes): live connections held open under
# SVID rotation, through `net::HttpServer` (in the soak process) and through `spiffe-mtls proxy
# server` (TCP mode), each run twice: plainly, then with faults (the Workload API killed and
# restarted 20 times, CA rotations with overlap, one peer revoked at half time). Each run prints
# one JSON line (bench/soak/soak.rs says what each field means); a run fails when a request
# failed, a connection dropped, or a revoked peer's connection stayed open.
#
# Usage: bench/soak/run.sh    (CONNECTIONS=1000 SOAK_SECONDS=120 ROTATIONS=10000 by default)
set -euo pipefail
cd "$(dirname "$0")/../.."

CONNECTIONS=${CONNECTIONS:-1000}
SECONDS_PER_RUN=${SOAK_SECONDS:-120}
ROTATIONS=${ROTATIONS:-10000}

# Two file descriptors per connection on each side, and the proxy's backend connections.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt $((CONNECTIONS * 4 + 256)) ]; then
    echo "soak: needs $((CONNECTIONS * 4 + 256)) file descriptors, ulimit -n is $(ulimit -n)" >&2
    exit 1
fi

cargo build --release --bin spiffe-mtls
cargo build --release -p spiffe-mtls-bench --example soak
BIN=$PWD/target/release/spiffe-mtls
SOAK=$PWD/target/release/examples/soak

failed=0
for target in http proxy; do
    for faults in "" --faults; do
        line=$("$SOAK" --target "$target" --proxy "$BIN" --connections "$CONNECTIONS" \
            --seconds "$SECONDS_PER_RUN" --rotations "$ROTATIONS" $faults)
        echo "$line"
        python3 - "$line" <<'PY' || failed=1
import json, sys
run = json.loads(sys.argv[1])
problems = [name for name in ("failed_requests", "dropped_connections",
                              "revoked_peer_connections_left_open") if run[name]]
if run["faults"] and not run["revoked_peer_connections_closed"]:
    problems.append("no revoked peer connection closed")
if problems:
    print(f"soak: {run['target']} faults={run['faults']}: {', '.join(problems)}", file=sys.stderr)
    sys.exit(1)
PY
    done
done
exit "$failed"
