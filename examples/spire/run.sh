#!/usr/bin/env bash
# The README's SPIRE walk-through ("Agents", "Sidecar proxy") as one script: a real SPIRE
# (spire-server and spire-agent v1.13.3, built by interop/build.sh from the pinned Go module)
# in a temp dir, the A2A agents and the sidecar proxy on SPIRE-issued identities, each program
# attested by its executable's path. It checks every output and exits non-zero on any failure;
# every wait has a timeout; everything it started is killed on exit.
#
# Usage: examples/spire/run.sh
# Needs: Go (interop/build.sh builds SPIRE once into ~/.cache/spiffe-mtls-interop), cargo,
# python3 (the sidecar's plain backend). .ci/run runs it after `cargo test`.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD

say() { printf '\n== %s\n' "$*"; }
fail() { printf 'examples/spire/run.sh: FAILED: %s\n' "$*" >&2; exit 1; }

# --- the tools ------------------------------------------------------------------------------
say "locating SPIRE (interop/build.sh builds it when missing)"
BIN=$(interop/build.sh --print-bin spire-server spire-agent) || fail "interop/build.sh could not provide spire-server and spire-agent"
SERVER_BIN=$(readlink -f "$BIN/spire-server")
AGENT_BIN=$(readlink -f "$BIN/spire-agent")
[ -x "$SERVER_BIN" ] && [ -x "$AGENT_BIN" ] || fail "no spire-server or spire-agent in $BIN"
echo "spire-server: $SERVER_BIN"
echo "spire-agent:  $AGENT_BIN"
command -v python3 >/dev/null || fail "python3 is needed for the sidecar's plain backend"

CLI=$ROOT/target/debug/spiffe-mtls
AGENT_SERVER=$ROOT/target/debug/examples/agent_server
AGENT_CLIENT=$ROOT/target/debug/examples/agent_client
# Always asked for (a no-op when they are up to date): a binary older than the sources would
# test something else than the checkout.
say "building spiffe-mtls and the agent examples (if not up to date)"
cargo build --quiet --bin spiffe-mtls --example agent_server --example agent_client

# --- a temp dir, and everything started killed on exit ---------------------------------------
WORK=$(mktemp -d /tmp/spire-run.XXXXXX)
PIDS=()
cleanup() {
    status=$?
    for pid in "${PIDS[@]}"; do
        kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
    done
    wait 2>/dev/null || true
    if [ "$status" -ne 0 ]; then
        echo "--- logs (in $WORK, removed now) ---" >&2
        for log in "$WORK"/*.log; do
            [ -f "$log" ] || continue
            echo "--- $log (last lines)" >&2
            tail -n 15 "$log" >&2
        done
    fi
    rm -rf "$WORK"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Starts "$@" in its own session (so its whole process group can be killed), output to a log.
start() {
    local log=$1
    shift
    setsid "$@" >"$WORK/$log" 2>&1 </dev/null &
    PIDS+=($!)
}

# wait_for SECONDS WHAT COMMAND...: runs COMMAND every 0.2 s until it succeeds.
wait_for() {
    local seconds=$1 what=$2
    shift 2
    local deadline=$((SECONDS + seconds))
    until "$@" >/dev/null 2>&1; do
        [ "$SECONDS" -lt "$deadline" ] || fail "timed out after ${seconds}s waiting for $what"
        sleep 0.2
    done
}

# A free TCP port on 127.0.0.1.
free_port() {
    local port
    for _ in $(seq 100); do
        port=$((20000 + RANDOM % 40000))
        if ! (echo >"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            echo "$port"
            return
        fi
    done
    fail "no free port"
}

# The address of the first "listening on ADDR" (or "... on URL") line of a log.
listen_address() {
    local log=$WORK/$1 word=$2
    grep -m1 -o "$word [^ ,]*" "$log" | awk '{print $NF}'
}

UID_SELECTOR="unix:uid:$(id -u)"
PORT=$(free_port)
SERVER_SOCKET=$WORK/server.sock
AGENT_SOCKET=$WORK/agent/api.sock
mkdir -p "$WORK/data" "$WORK/agent/data" "$WORK/agent/keys"

# --- spire-server ----------------------------------------------------------------------------
say "starting spire-server for example.org on 127.0.0.1:$PORT"
cat >"$WORK/server.conf" <<EOF
server {
  bind_address = "127.0.0.1"
  bind_port = "$PORT"
  socket_path = "$SERVER_SOCKET"
  trust_domain = "example.org"
  data_dir = "$WORK/data"
  log_level = "INFO"
  ca_ttl = "1h"
  default_x509_svid_ttl = "10m"
}
plugins {
  DataStore "sql" {
    plugin_data {
      database_type = "sqlite3"
      connection_string = "$WORK/data/datastore.sqlite3"
    }
  }
  NodeAttestor "join_token" {
    plugin_data {}
  }
  KeyManager "memory" {
    plugin_data {}
  }
}
EOF
start server.log "$SERVER_BIN" run -config "$WORK/server.conf"
wait_for 30 "spire-server to be healthy" "$SERVER_BIN" healthcheck -socketPath "$SERVER_SOCKET"
spire_server() { timeout 30 "$SERVER_BIN" "$1" "$2" -socketPath "$SERVER_SOCKET" "${@:3}"; }

# --- spire-agent -----------------------------------------------------------------------------
say "joining a spire-agent with a join token"
TOKEN=$(spire_server token generate -ttl 600 | awk '/^Token:/{print $2}')
[ -n "$TOKEN" ] || fail "no join token"
spire_server bundle show >"$WORK/agent/bootstrap.pem"
cat >"$WORK/agent/agent.conf" <<EOF
agent {
  data_dir = "$WORK/agent/data"
  log_level = "INFO"
  server_address = "127.0.0.1"
  server_port = "$PORT"
  socket_path = "$AGENT_SOCKET"
  trust_bundle_path = "$WORK/agent/bootstrap.pem"
  trust_domain = "example.org"
}
plugins {
  NodeAttestor "join_token" {
    plugin_data {}
  }
  KeyManager "memory" {
    plugin_data {}
  }
  WorkloadAttestor "unix" {
    plugin_data {
      discover_workload_path = true
    }
  }
}
EOF
start agent.log "$AGENT_BIN" run -config "$WORK/agent/agent.conf" -joinToken "$TOKEN"
wait_for 30 "spire-agent to be healthy" "$AGENT_BIN" healthcheck -socketPath "$AGENT_SOCKET"
echo "the Workload API is at unix://$AGENT_SOCKET"
PARENT=spiffe://example.org/spire/agent/join_token/$TOKEN

# --- entries ---------------------------------------------------------------------------------
say "registering the agents and the sidecars, each by its executable's path"
# The sidecars are copies of the binary, so that each has an identity of its own.
for name in proxy-server proxy-client proxy-intruder; do
    ln "$CLI" "$WORK/$name" 2>/dev/null || cp "$CLI" "$WORK/$name"
done
entry() {
    local id=$1 path=$2
    shift 2
    spire_server entry create -parentID "$PARENT" -spiffeID "$id" \
        -selector "$UID_SELECTOR" -selector "unix:path:$(readlink -f "$path")" "$@" >/dev/null
    echo "registered $id for $(readlink -f "$path")"
}
entry spiffe://example.org/agent/server "$AGENT_SERVER" -dns localhost
entry spiffe://example.org/agent/client "$AGENT_CLIENT"
entry spiffe://example.org/server "$WORK/proxy-server"
entry spiffe://example.org/client "$WORK/proxy-client"
entry spiffe://example.org/intruder "$WORK/proxy-intruder"
# A last entry for spire-agent itself: once `spire-agent api fetch` sees it, the agent has
# synced the entries above too.
entry spiffe://example.org/ready "$AGENT_BIN" >/dev/null
agent_serves_entries() {
    timeout 10 "$AGENT_BIN" api fetch x509 -socketPath "$AGENT_SOCKET" | grep -q "spiffe://example.org/ready"
}
wait_for 60 "the agent to serve the entries" agent_serves_entries
echo "the agent serves them"

# --- the agents ------------------------------------------------------------------------------
say "starting the agent server as spiffe://example.org/agent/server"
cat >"$WORK/agents-policy.toml" <<EOF
[connect]
trust_domains = ["example.org"]
[routes.echo]
trust_domains = ["example.org"]
[routes.secret]
ids = ["spiffe://example.org/agent/boss"]
EOF
start agent-server.log "$AGENT_SERVER" --socket "unix://$AGENT_SOCKET" --listen 127.0.0.1:0 \
    --policy "$WORK/agents-policy.toml"
wait_for 30 "the agent server to listen" grep -q " on https://" "$WORK/agent-server.log"
BASE=$(listen_address agent-server.log on)
echo "the agent server is at $BASE"

client() {
    timeout 30 "$AGENT_CLIENT" --socket "unix://$AGENT_SOCKET" --server "$BASE" "$@" \
        >"$WORK/client.out" 2>"$WORK/client.err"
}

say "the agent client calls the echo skill"
client --server-id spiffe://example.org/agent/server --text hello || fail "the call failed: $(cat "$WORK/client.err")"
[ "$(cat "$WORK/client.out")" = "hello" ] || fail "expected hello, got: $(cat "$WORK/client.out")"
echo "answer: $(cat "$WORK/client.out")"

say "the agent client calls the secret skill: refused"
if client --server-id spiffe://example.org/agent/server --text hi --skill secret; then
    fail "the secret skill answered: $(cat "$WORK/client.out")"
fi
grep -q 'skill "secret" does not allow spiffe://example.org/agent/client' "$WORK/client.err" ||
    fail "unexpected refusal: $(cat "$WORK/client.err")"
tail -n 1 "$WORK/client.err"

say "the agent client expects another server ID: refused in the handshake"
if client --server-id spiffe://example.org/agent/other --text hi; then
    fail "a server with an unexpected ID was called"
fi
grep -q "expected the ID spiffe://example.org/agent/other, presented spiffe://example.org/agent/server" "$WORK/client.err" ||
    fail "unexpected error: $(cat "$WORK/client.err")"
tail -n 1 "$WORK/client.err"

# --- the sidecar -----------------------------------------------------------------------------
say "a plain HTTP backend, made mTLS-only by proxy server (allowing spiffe://example.org/client)"
mkdir -p "$WORK/www"
echo "hello from the plain backend" >"$WORK/www/hello.txt"
BACKEND_PORT=$(free_port)
start backend.log python3 -m http.server "$BACKEND_PORT" --bind 127.0.0.1 --directory "$WORK/www"
wait_for 30 "the backend" bash -c "echo >/dev/tcp/127.0.0.1/$BACKEND_PORT"
start proxy-server.log "$WORK/proxy-server" proxy server --listen 127.0.0.1:0 \
    --target "127.0.0.1:$BACKEND_PORT" --socket "unix://$AGENT_SOCKET" \
    --allow-id spiffe://example.org/client
wait_for 30 "proxy server to listen" grep -q "listening on" "$WORK/proxy-server.log"
PROXY_SERVER=$(listen_address proxy-server.log "listening on")
echo "proxy server on $PROXY_SERVER"

# proxy client as NAME: a plain port on loopback (in LISTEN) that reaches proxy server with
# mTLS. (Not in a $(...) subshell: the process it starts must be known to the cleanup.)
proxy_client() {
    local name=$1
    start "$name.log" "$WORK/$name" proxy client --listen 127.0.0.1:0 --target "$PROXY_SERVER" \
        --server-id spiffe://example.org/server --socket "unix://$AGENT_SOCKET"
    wait_for 30 "$name to listen" grep -q "listening on" "$WORK/$name.log"
    LISTEN=$(listen_address "$name.log" "listening on")
}
# A plain HTTP GET of /hello.txt through ADDR; the body (empty when refused).
http_get() {
    local host=${1%:*} port=${1##*:}
    timeout 15 bash -c "exec 3<>/dev/tcp/$host/$port
        printf 'GET /hello.txt HTTP/1.0\r\nHost: backend\r\n\r\n' >&3
        cat <&3" | sed '1,/^\r$/d' || true
}

say "proxy client as spiffe://example.org/client: a plain GET reaches the backend"
proxy_client proxy-client
BODY=$(http_get "$LISTEN")
[ "$BODY" = "hello from the plain backend" ] || fail "expected the backend's text, got: $BODY"
echo "body: $BODY"
wait_for 10 "the accepted audit line" grep -q "decision=accepted.*peer=spiffe://example.org/client\|peer=spiffe://example.org/client.*decision=accepted" "$WORK/proxy-server.log"
grep -m1 "peer=spiffe://example.org/client" "$WORK/proxy-server.log"

say "proxy client as spiffe://example.org/intruder: refused"
proxy_client proxy-intruder
BODY=$(http_get "$LISTEN")
[ -z "$BODY" ] || fail "the intruder got: $BODY"
wait_for 10 "the denied audit line" grep -q "peer=spiffe://example.org/intruder decision=denied" "$WORK/proxy-server.log"
grep -m1 "peer=spiffe://example.org/intruder" "$WORK/proxy-server.log"

say "all steps passed"
