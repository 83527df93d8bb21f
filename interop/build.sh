#!/usr/bin/env bash
# Builds the reference implementations the interop tests run against, from pinned Go modules
# (go.mod and go.sum committed), one per program so that each is built with exactly the
# dependency versions its release names (in one module, Go's version selection would build
# SPIRE with go-spiffe v2.9.0 and ghostunnel's newer zlint instead of its own):
#   interop/go/spire        spire-server, spire-agent   SPIRE v1.13.3 (as `tool`s)
#   interop/go/ghostunnel   ghostunnel                  ghostunnel v1.8.4 (bench/proxy/run.sh)
#   interop/go/peer         go-spiffe-peer              our own program on go-spiffe v2.9.0
#
# The binaries go to a cache directory outside the work tree, one directory per content of a
# module's go.mod + go.sum (and, for go-spiffe-peer, its sources), so a machine that already
# built the pinned versions skips them. Each build prints how long it took. A tool that cannot
# be built is named with the Go tool's own error; the others are still built.
#
# Usage: interop/build.sh [--print-bin] [TOOL...]
#   TOOL          build only these (spire-server, spire-agent, ghostunnel, go-spiffe-peer);
#                 all four by default. CI builds what its tests run; bench/proxy/run.sh
#                 asks for ghostunnel.
#   --print-bin   print only the directory that holds the binaries (building what is missing
#                 first, its progress on standard error)
#
# Environment:
#   SPIFFE_MTLS_INTEROP_CACHE   the cache (default ${XDG_CACHE_HOME:-$HOME/.cache}/spiffe-mtls-interop)
#
# The tests find the binaries in $SPIFFE_MTLS_INTEROP_CACHE/bin (a link to the newest build)
# or in SPIFFE_MTLS_INTEROP_BIN. Exit status: 0 when every tool is there, 1 when one could not
# be built, 2 on a usage error or when Go is missing.
set -euo pipefail

print_bin=false
wanted=()
for argument in "$@"; do
    case "$argument" in
        --print-bin) print_bin=true ;;
        -h|--help) sed -n '2,/^set -e/{/^#/p}' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        spire-server|spire-agent|ghostunnel|go-spiffe-peer) wanted+=("$argument") ;;
        *) echo "interop/build.sh: unknown argument $argument (see --help)" >&2; exit 2 ;;
    esac
done
if [ ${#wanted[@]} -eq 0 ]; then
    wanted=(spire-server spire-agent ghostunnel go-spiffe-peer)
fi

if ! command -v go >/dev/null 2>&1; then
    echo "interop/build.sh: go is not installed (Go 1.26 or newer is needed to build SPIRE, ghostunnel and the go-spiffe peer)" >&2
    exit 2
fi

here=$(cd "$(dirname "$0")" && pwd)
module=$here/go
cache=${SPIFFE_MTLS_INTEROP_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/spiffe-mtls-interop}

# Progress goes to stderr when only the directory is wanted on stdout.
say() { if $print_bin; then echo "$@" >&2; else echo "$@"; fi; }

# The cache directory of a module: named after the content of its go.mod, go.sum and sources.
key() {
    local dir=$module/$1
    cat "$dir/go.mod" "$dir/go.sum" $(find "$dir" -name '*.go' | sort) | sha256sum | cut -c1-16
}
out=$cache/build-$(key spire)-$(key ghostunnel)-$(key peer)
mkdir -p "$out"

failed=()
# build NAME MODULE PACKAGE: go build PACKAGE in interop/go/MODULE, unless built already.
build() {
    local name=$1 dir=$module/$2 package=$3
    local target
    target=$cache/$2-$(key "$2")
    mkdir -p "$target"
    if [ -x "$target/$name" ]; then
        ln -sfn "$target/$name" "$out/$name"
    fi
    # Not asked for: only linked when a build of these sources is there already.
    [[ " ${wanted[*]} " == *" $name "* ]] || return 0
    if [ -x "$target/$name" ]; then
        say "interop: $name is built already ($target)"
    else
        local start=$SECONDS log
        log=$(mktemp)
        if (cd "$dir" && go build -o "$target/$name.partial" "$package") >"$log" 2>&1; then
            mv "$target/$name.partial" "$target/$name"
            say "interop: built $name in $((SECONDS - start)) s"
        else
            say "interop: could not build $name ($package in interop/go/$2):"
            sed 's/^/    /' "$log" >&2
            failed+=("$name")
        fi
        rm -f "$log"
    fi
    if [ -x "$target/$name" ]; then ln -sfn "$target/$name" "$out/$name"; fi
}

build spire-server spire github.com/spiffe/spire/cmd/spire-server
build spire-agent spire github.com/spiffe/spire/cmd/spire-agent
build ghostunnel ghostunnel github.com/ghostunnel/ghostunnel
build go-spiffe-peer peer .

# bin: the newest complete build, replaced atomically.
ln -sfn "$out" "$cache/bin.new" && mv -T "$cache/bin.new" "$cache/bin"

if [ ${#failed[@]} -gt 0 ]; then
    say "interop: could not build: ${failed[*]} (the error is above)"
    exit 1
fi
if $print_bin; then echo "$cache/bin"; else say "interop: the tools are in $cache/bin"; fi
