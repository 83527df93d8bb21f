#!/usr/bin/env bash
# The sidecar benchmark: `spiffe-mtls proxy server` vs stunnel (Debian stunnel4) vs haproxy
# (Debian package) vs ghostunnel (v1.8.4, built by interop/build.sh from the pinned Go module)
# vs a direct plaintext connection, on loopback, in one run.
#
# Same backend (the Rust backend of bench/proxy/load.rs), same certificates (X.509-SVIDs of
# the dev server, written by `spiffe-mtls fetch --write`), same client (bench/proxy/load.rs,
# rustls on one thread) for every contender:
# - full mTLS handshakes/s, sequential and with 8 concurrent clients; a handshake counts only
#   when the client got the backend's reply through it (a refused TLS 1.3 client can finish
#   its side of the handshake);
# - the server's CPU time (user + system, /proc/PID/stat) per completed handshake;
# - bulk MB/s (10^6 bytes) of a 64 MiB transfer, backend to client (the median of
#   BULK_TRANSFERS transfers per run, 5 by default, each on a new connection), and the server's
#   CPU time per transfer;
# - a refused-certificate control: a client whose SVID comes from another CA must complete 0.
# Medians of RUNS runs, contenders interleaved. Not part of CI (it takes a few minutes).
#
# Usage: bench/proxy/run.sh     (RUNS=3 SECONDS_PER_RUN=4 BULK_TRANSFERS=5 by default)
# Needs: root or sudo for apt-get when stunnel4 or haproxy is missing (Debian bookworm); Go for
# ghostunnel (GHOSTUNNEL=/path/to/ghostunnel to use another build; without either, ghostunnel's
# row is left out and the run says so).
set -euo pipefail
cd "$(dirname "$0")/../.."

RUNS=${RUNS:-3}
SECONDS_PER_RUN=${SECONDS_PER_RUN:-4}
BULK_BYTES=$((64 * 1024 * 1024))
BULK_TRANSFERS=${BULK_TRANSFERS:-5}
BASE_PORT=${BASE_PORT:-19440}

missing=()
command -v stunnel4 >/dev/null || missing+=(stunnel4)
command -v haproxy >/dev/null || missing+=(haproxy)
if [ ${#missing[@]} -gt 0 ]; then
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO=sudo
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}"
fi

GHOSTUNNEL=${GHOSTUNNEL:-}
if [ -z "$GHOSTUNNEL" ] && command -v go >/dev/null; then
    GHOSTUNNEL=$(interop/build.sh --print-bin ghostunnel)/ghostunnel
fi
if [ -z "$GHOSTUNNEL" ]; then
    echo "ghostunnel: left out (no Go to build it with interop/build.sh, and GHOSTUNNEL is not set)"
fi

cargo build --release --bin spiffe-mtls
cargo build --release -p spiffe-mtls-bench --example proxy_bench
BIN=$PWD/target/release/spiffe-mtls
LOAD=$PWD/target/release/examples/proxy_bench

WORK=$(mktemp -d /tmp/proxy-bench.XXXXXX)
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT

wait_for_port() {
    for _ in $(seq 1 100); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
        sleep 0.1
    done
    echo "nothing listens on port $1" >&2
    tail -n 5 "$WORK"/*.log "$WORK"/*.err >&2 || true
    return 1
}

# Identities: the dev server tells workloads apart by executable path (`unix:path`).
cp "$BIN" "$WORK/bench-server"
cp "$BIN" "$WORK/bench-client"
cat >"$WORK/dev.toml" <<EOF
trust_domain = "example.org"
svid_ttl = "24h"
[[entry]]
spiffe_id = "spiffe://example.org/server"
selectors = ["unix:path:$WORK/bench-server"]
[[entry]]
spiffe_id = "spiffe://example.org/client"
selectors = ["unix:path:$WORK/bench-client"]
EOF
"$BIN" dev-server --socket "unix://$WORK/agent.sock" --config "$WORK/dev.toml" >"$WORK/dev.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 1 100); do [ -S "$WORK/agent.sock" ] && break; sleep 0.1; done
"$WORK/bench-server" fetch --socket "unix://$WORK/agent.sock" --write "$WORK/server" >/dev/null
"$WORK/bench-client" fetch --socket "unix://$WORK/agent.sock" --write "$WORK/client" >/dev/null
cat "$WORK/server/svid.0.pem" "$WORK/server/svid.0.key" >"$WORK/haproxy.pem"

# The backend.
"$LOAD" backend 127.0.0.1:0 >"$WORK/backend.log" &
PIDS+=($!)
BACKEND_PID=$!
for _ in $(seq 1 100); do grep -q "listening on" "$WORK/backend.log" 2>/dev/null && break; sleep 0.1; done
BACKEND=$(sed -n 's/^listening on //p' "$WORK/backend.log")

PROXY_PORT=$BASE_PORT
STUNNEL_PORT=$((BASE_PORT + 1))
HAPROXY_PORT=$((BASE_PORT + 2))
GHOSTUNNEL_PORT=$((BASE_PORT + 3))

# spiffe-mtls proxy server, on the same files (hot-reloaded) as the others use.
"$BIN" proxy server --listen "127.0.0.1:$PROXY_PORT" --target "$BACKEND" \
    --files "$WORK/server" --allow-td example.org >/dev/null 2>"$WORK/proxy.err" &
PIDS+=($!)
PROXY_PID=$!

cat >"$WORK/stunnel.conf" <<EOF
foreground = yes
pid =
syslog = no
output = /dev/null
debug = 0
[bench]
accept = 127.0.0.1:$STUNNEL_PORT
connect = $BACKEND
cert = $WORK/server/svid.0.pem
key = $WORK/server/svid.0.key
CAfile = $WORK/server/bundle.0.pem
verifyChain = yes
requireCert = yes
sslVersionMin = TLSv1.3
EOF
stunnel4 "$WORK/stunnel.conf" >"$WORK/stunnel.log" 2>&1 &
PIDS+=($!)
STUNNEL_PID=$!

cat >"$WORK/haproxy.cfg" <<EOF
global
    nbthread 2
    maxconn 4096
    ssl-default-bind-options ssl-min-ver TLSv1.3
defaults
    mode tcp
    timeout connect 5s
    timeout client 30s
    timeout server 30s
frontend bench
    bind 127.0.0.1:$HAPROXY_PORT ssl crt $WORK/haproxy.pem ca-file $WORK/server/bundle.0.pem verify required
    default_backend backend
backend backend
    server b1 $BACKEND
EOF
haproxy -db -f "$WORK/haproxy.cfg" >"$WORK/haproxy.log" 2>&1 &
PIDS+=($!)
HAPROXY_PID=$!

# ghostunnel checks the chain against the bundle and the client's URI SAN (its SPIFFE ID).
PORTS=("$PROXY_PORT" "$STUNNEL_PORT" "$HAPROXY_PORT")
if [ -n "$GHOSTUNNEL" ]; then
    "$GHOSTUNNEL" server --listen "127.0.0.1:$GHOSTUNNEL_PORT" --target "$BACKEND" \
        --cert "$WORK/server/svid.0.pem" --key "$WORK/server/svid.0.key" \
        --cacert "$WORK/server/bundle.0.pem" --allow-uri spiffe://example.org/client \
        --quiet all >"$WORK/ghostunnel.log" 2>&1 &
    PIDS+=($!)
    GHOSTUNNEL_PID=$!
    PORTS+=("$GHOSTUNNEL_PORT")
fi
for port in "${PORTS[@]}"; do wait_for_port "$port"; done
CLK_TCK=$(getconf CLK_TCK)

# name address pid certificate-flag
CONTENDERS=(
    "spiffe-mtls|127.0.0.1:$PROXY_PORT|$PROXY_PID|--certs $WORK/client"
    "stunnel|127.0.0.1:$STUNNEL_PORT|$STUNNEL_PID|--certs $WORK/client"
    "haproxy|127.0.0.1:$HAPROXY_PORT|$HAPROXY_PID|--certs $WORK/client"
)
if [ -n "$GHOSTUNNEL" ]; then
    CONTENDERS+=("ghostunnel|127.0.0.1:$GHOSTUNNEL_PORT|$GHOSTUNNEL_PID|--certs $WORK/client")
fi
PROXIES=${#CONTENDERS[@]}
CONTENDERS+=("direct|$BACKEND|$BACKEND_PID|--plain")
RESULTS="$WORK/results.jsonl"
: >"$RESULTS"

record() { # contender test json
    printf '{"contender":"%s","test":"%s","result":%s}\n' "$1" "$2" "$3" >>"$RESULTS"
}

echo "refused-certificate control (a client SVID of another CA):"
for contender in "${CONTENDERS[@]:0:PROXIES}"; do
    IFS='|' read -r name address pid _ <<<"$contender"
    out=$("$LOAD" handshakes "$address" --untrusted "$WORK/client" --conns 1 --seconds 1)
    echo "  $name: $out"
    record "$name" control "$out"
done

for run in $(seq 1 "$RUNS"); do
    echo "run $run of $RUNS"
    for contender in "${CONTENDERS[@]}"; do
        IFS='|' read -r name address pid certs <<<"$contender"
        # shellcheck disable=SC2086
        seq_out=$("$LOAD" handshakes "$address" $certs --conns 1 --seconds "$SECONDS_PER_RUN" --pid "$pid" --clk-tck "$CLK_TCK")
        record "$name" sequential "$seq_out"
        # shellcheck disable=SC2086
        par_out=$("$LOAD" handshakes "$address" $certs --conns 8 --seconds "$SECONDS_PER_RUN" --pid "$pid" --clk-tck "$CLK_TCK")
        record "$name" concurrent8 "$par_out"
        # shellcheck disable=SC2086
        bulk_out=$("$LOAD" bulk "$address" $certs --bytes "$BULK_BYTES" --repeat "$BULK_TRANSFERS" --pid "$pid" --clk-tck "$CLK_TCK")
        record "$name" bulk "$bulk_out"
        echo "  $name: sequential $seq_out"
        echo "  $name: 8 clients  $par_out"
        echo "  $name: bulk       $bulk_out"
    done
done

echo
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
ghostunnel_version=""
if [ -n "$GHOSTUNNEL" ]; then
    # The module version Go recorded in the binary (its --version says only "rev master").
    ghostunnel_version=", ghostunnel $(go version -m "$GHOSTUNNEL" 2>/dev/null |
        awk '$1 == "mod" && $2 == "github.com/ghostunnel/ghostunnel" {print $3}') ($($GHOSTUNNEL --version 2>&1 | head -1 | sed 's/.*built with //'))"
fi
echo "versions: $("$BIN" --version), $(stunnel4 -version 2>&1 | grep -m1 '^stunnel'), $(haproxy -v | head -1 | cut -d' ' -f1-3)$ghostunnel_version"
python3 - "$RESULTS" <<'EOF'
import json, statistics, sys
rows = [json.loads(line) for line in open(sys.argv[1])]
def med(name, test, key):
    values = [r["result"][key] for r in rows if r["contender"] == name and r["test"] == test and r["result"].get(key) is not None]
    return statistics.median(values) if values else None
def fmt(v, digits=0):
    return "-" if v is None else f"{v:.{digits}f}"
names = [n for n in ["spiffe-mtls", "stunnel", "haproxy", "ghostunnel", "direct"]
         if any(r["contender"] == n for r in rows)]
print()
print("| contender | handshakes/s (1 client) | handshakes/s (8 clients) | server CPU ms/handshake (1 / 8 clients) | bulk MB/s (64 MiB) | server CPU s per 64 MiB | refused control completed |")
print("|---|---|---|---|---|---|---|")
for n in names:
    control = [r["result"]["completed"] for r in rows if r["contender"] == n and r["test"] == "control"]
    print(f"| {n} | {fmt(med(n,'sequential','per_second'))} | {fmt(med(n,'concurrent8','per_second'))} | "
          f"{fmt(med(n,'sequential','server_cpu_ms_per_handshake'),3)} / {fmt(med(n,'concurrent8','server_cpu_ms_per_handshake'),3)} | "
          f"{fmt(med(n,'bulk','mb_per_s'))} | {fmt(med(n,'bulk','server_cpu_seconds'),3)} | {control[0] if control else '-'} |")
failed = sum(r["result"].get("failed", 0) for r in rows if r["test"] != "control")
print(f"\nfailed exchanges outside the control: {failed}")
h = "haproxy"
for key, test, label in [("server_cpu_ms_per_handshake", "concurrent8", "CPU/handshake (8 clients)"),
                         ("per_second", "concurrent8", "handshakes/s (8 clients)"),
                         ("mb_per_s", "bulk", "bulk MB/s")]:
    ours, theirs = med("spiffe-mtls", test, key), med(h, test, key)
    if ours and theirs:
        line = f"spiffe-mtls / haproxy, {label}: {ours/theirs:.2f}x"
        for other in ["stunnel", "ghostunnel"]:
            value = med(other, test, key)
            if value:
                line += f"; spiffe-mtls / {other}: {ours/value:.2f}x"
        print(line)
EOF
