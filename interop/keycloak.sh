#!/usr/bin/env bash
# Runs Keycloak 26.5.6 (SPIFFE identity provider + federated client authentication) for the
# interop tests: a JWT-SVID signed by a key from a SPIFFE bundle endpoint that our crate serves
# over HTTPS is exchanged for an access token.
#
# Usage:
#   interop/keycloak.sh install           download (SHA-512-checked), unpack and `kc.sh build` once,
#                                         and create the bundle endpoints' web certificate once
#   interop/keycloak.sh start STATE_DIR   start on 127.0.0.1, a free port, an empty database in
#                                         STATE_DIR; writes and prints STATE_DIR/keycloak.env
#   interop/keycloak.sh stop STATE_DIR    stop the Keycloak started with that STATE_DIR
#
# Environment: SPIFFE_MTLS_CACHE   the cache (default $HOME/.cache/spiffe-mtls)
# Exit status: 0 on success, 1 on a failure, 2 on a usage error, 3 when java is missing.
set -euo pipefail
# What it writes (the admin password in keycloak.env, the key of the web certificate) is for
# this user alone, from the first byte.
umask 077

version=26.5.6
sha512=09473578015a4c9a8b74eb7461d114bfd48400544e022a8b8eee1b21f87006cfe0649e14836122c0e81d4daaf8a8e4b43d7ca85198fb9e4419da0426754a4b66
url=https://repo1.maven.org/maven2/org/keycloak/keycloak-quarkus-dist/$version/keycloak-quarkus-dist-$version.tar.gz
# Build-time options, fixed by `kc.sh build`: the two preview features, the embedded H2 database.
build_options=(--db=dev-file "--features=spiffe,client-auth-federated")
cache=${SPIFFE_MTLS_CACHE:-$HOME/.cache/spiffe-mtls}
home=$cache/keycloak-$version
cert=$home/bundle-endpoint-web.pem
key=$home/bundle-endpoint-web.key
truststore=$home/bundle-endpoint-web.p12
marker=$home/.built-with

fail() { echo "interop/keycloak.sh: $1" >&2; exit "${2:-1}"; }
need_java() {
    local tool
    for tool in java keytool; do
        command -v "$tool" >/dev/null 2>&1 ||
            fail "$tool is not installed (Keycloak $version needs Java 17 or newer on PATH)" 3
    done
}
# KEY=value lines of STATE_DIR/keycloak.env, read without sourcing the file.
env_value() { [ ! -f "$2/keycloak.env" ] || sed -n "s/^$1=//p" "$2/keycloak.env" | head -n 1; }

install() {
    need_java
    mkdir -p "$cache"
    # Tests running in parallel may all call install: one does the work, the others wait.
    if command -v flock >/dev/null 2>&1; then exec 9>"$cache/.keycloak-$version.lock" && flock 9; fi
    local did=false started tmp
    if [ ! -x "$home/bin/kc.sh" ]; then
        started=$SECONDS tmp=$(mktemp -d "$cache/.keycloak-download.XXXXXX")
        # shellcheck disable=SC2064 # expand $tmp now: it is local to this function
        trap "rm -rf '$tmp'" EXIT
        echo "downloading $url"
        curl --fail --location --silent --show-error --retry 5 --retry-delay 3 --retry-all-errors \
            --output "$tmp/dist.tar.gz" "$url"
        echo "$sha512  $tmp/dist.tar.gz" | sha512sum --check --quiet ||
            fail "the download does not have the SHA-512 pinned here"
        tar --no-same-owner -xzf "$tmp/dist.tar.gz" -C "$tmp"
        # Moved into place only when complete, so an interrupted run is simply redone.
        rm -rf "$home" && mv "$tmp/keycloak-$version" "$home"
        echo "downloaded and unpacked Keycloak $version into $home in $((SECONDS - started)) s"
        did=true
    fi
    if [ "$(cat "$marker" 2>/dev/null)" != "${build_options[*]}" ]; then
        started=$SECONDS
        # `start --optimized` then skips the ~11 s Quarkus augmentation on every start.
        "$home/bin/kc.sh" build "${build_options[@]}" >"$home/build.log" 2>&1 ||
            { tail -n 30 "$home/build.log" >&2; fail "kc.sh build failed (log: $home/build.log)"; }
        echo "${build_options[*]}" >"$marker"
        echo "ran kc.sh build ${build_options[*]} in $((SECONDS - started)) s"
        did=true
    fi
    if [ ! -s "$cert" ] || [ ! -s "$key" ] || [ ! -s "$truststore" ]; then
        # The web certificate of the tests' HTTPS bundle endpoints, and a trust store holding only
        # it. (--truststore-paths would do, but every start then rewrites the shared file
        # data/keycloak-truststore.p12 in the install directory, a race between parallel starts.)
        rm -f "$truststore"
        openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 3650 \
            -subj /CN=localhost -addext subjectAltName=DNS:localhost,IP:127.0.0.1 \
            -addext basicConstraints=critical,CA:FALSE \
            -keyout "$key.tmp" -out "$cert.tmp" 2>/dev/null
        keytool -importcert -noprompt -alias bundle-endpoint-web -file "$cert.tmp" \
            -keystore "$truststore.tmp" -storetype PKCS12 -storepass changeit >/dev/null 2>&1 ||
            fail "keytool could not create the trust store $truststore.tmp"
        mv "$key.tmp" "$key" && mv "$cert.tmp" "$cert" && mv "$truststore.tmp" "$truststore"
        echo "created the bundle endpoint web certificate $cert and key $key"
        did=true
    fi
    $did || echo "Keycloak $version is cached in $home (built with ${build_options[*]})"
}

start() {
    need_java
    if [ ! -x "$home/bin/kc.sh" ] || [ ! -s "$marker" ] || [ ! -s "$truststore" ]; then
        fail "Keycloak $version is not installed in $home: run interop/keycloak.sh install first"
    fi
    mkdir -p "$1"
    local state pid password port log started
    state=$(cd "$1" && pwd)
    pid=$(env_value KEYCLOAK_PID "$state")
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then fail "Keycloak already runs for $state (pid $pid)"; fi
    # A fresh database per start: the H2 files live in STATE_DIR, emptied here.
    rm -rf "$state/data" "$state/keycloak.env"
    password=$(openssl rand -hex 16) log=$state/keycloak.log started=$SECONDS port=
    : >"$log" # now, not when the background job gets to it: the loop below reads it at once
    # Job control gives the background job its own process group (pgid = its pid), which holds
    # kc.sh and the java it starts, so that stop can signal exactly these processes.
    set -m
    # --db-url-path (hidden, read by the dev-file JDBC URL) puts the H2 files in
    # STATE_DIR/data/h2 and the object store moves the transaction logs there too, so instances
    # share nothing writable. --cache=local: no JGroups cluster between instances on one machine.
    # The JSSE trust store: outgoing HTTPS (the SPIFFE bundle endpoint) trusts the web certificate.
    # (kc.sh splits JAVA_OPTS_APPEND with xargs, which honours the single quotes.)
    JAVA_OPTS_APPEND="${JAVA_OPTS_APPEND:-} '-Dquarkus.transaction-manager.object-store.directory=$state/data/transaction-logs'
        '-Djavax.net.ssl.trustStore=$truststore' -Djavax.net.ssl.trustStoreType=PKCS12
        -Djavax.net.ssl.trustStorePassword=changeit" \
        KC_BOOTSTRAP_ADMIN_USERNAME=admin KC_BOOTSTRAP_ADMIN_PASSWORD=$password \
        "$home/bin/kc.sh" start --optimized --http-enabled=true --http-host=127.0.0.1 \
        --http-port=0 --hostname-strict=false --cache=local --db-url-path="$state" \
        </dev/null >"$log" 2>&1 &
    pid=$!
    set +m
    # The pid first, so that stop works while Keycloak is still starting.
    echo "KEYCLOAK_PID=$pid" >"$state/keycloak.env"
    while [ $((SECONDS - started)) -lt 120 ]; do
        kill -0 "$pid" 2>/dev/null || break
        # Port 0 lets the kernel choose a free port, without a race; Quarkus logs which.
        [ -n "$port" ] || port=$(sed -n 's|.*Listening on: http://127\.0\.0\.1:\([0-9]*\).*|\1|p' "$log" | head -n 1)
        if [ -n "$port" ] &&
            [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/realms/master")" = 200 ]; then
            printf '%s\n' "KEYCLOAK_URL=http://127.0.0.1:$port" KEYCLOAK_ADMIN=admin \
                "KEYCLOAK_ADMIN_PASSWORD=$password" "KEYCLOAK_WEB_CERT=$cert" \
                "KEYCLOAK_WEB_KEY=$key" "KEYCLOAK_PID=$pid" >"$state/keycloak.env"
            chmod 600 "$state/keycloak.env"
            echo "Keycloak $version is ready after $((SECONDS - started)) s (log: $log)"
            cat "$state/keycloak.env"
            return 0
        fi
        sleep 0.5
    done
    tail -n 40 "$log" >&2
    kill -0 "$pid" 2>/dev/null || fail "Keycloak exited before it answered (log: $log)"
    kill -KILL -- "-$pid" 2>/dev/null || true
    fail "Keycloak did not answer GET /realms/master with 200 within 120 s (log: $log)"
}

stop() {
    local pid waited=0
    pid=$(env_value KEYCLOAK_PID "$1")
    [ -n "$pid" ] || fail "no KEYCLOAK_PID in $1/keycloak.env"
    # Only the process group that start created: its leader has that pid and is kc.sh.
    if ! kill -0 "$pid" 2>/dev/null ||
        [ "$(ps -o pgid= -p "$pid" | tr -d ' ')" != "$pid" ] ||
        ! ps -o args= -p "$pid" | grep -q 'kc\.sh'; then
        echo "Keycloak (pid $pid) is not running"
        return 0
    fi
    kill -TERM -- "-$pid"
    while kill -0 -- "-$pid" 2>/dev/null && [ $waited -lt 40 ]; do sleep 0.5 && waited=$((waited + 1)); done
    if kill -0 -- "-$pid" 2>/dev/null; then
        kill -KILL -- "-$pid" 2>/dev/null || true
        echo "Keycloak (process group $pid) did not stop within 20 s: killed"
    else
        echo "Keycloak (process group $pid) stopped"
    fi
}

case "${1:-}" in
    install) [ $# -eq 1 ] || fail "usage: interop/keycloak.sh install" 2; install ;;
    start | stop) [ $# -eq 2 ] || fail "usage: interop/keycloak.sh $1 STATE_DIR" 2; "$1" "$2" ;;
    *) fail "usage: interop/keycloak.sh install | start STATE_DIR | stop STATE_DIR" 2 ;;
esac
