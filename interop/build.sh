#!/usr/bin/env bash
# Builds the reference implementations the interop tests run against, from the pinned Go
# module in interop/go (go.mod and go.sum committed):
#   spire-server, spire-agent   SPIRE v1.13.3
#   ghostunnel                  ghostunnel v1.8.4 (for bench/proxy/run.sh)
#   go-spiffe-peer              our own go-spiffe v2.9.0 program (interop/go/peer)
#
# The binaries go to a cache directory outside the work tree, one directory per content of
# go.mod + go.sum (and, for go-spiffe-peer, of its sources), so a machine that already built
# the pinned versions skips them. Each build prints how long it took. A tool that cannot be
# built is named with the Go tool's own error; the others are still built.
#
# Usage: interop/build.sh [--print-bin]
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
case "${1:-}" in
    "") ;;
    --print-bin) print_bin=true ;;
    -h|--help) sed -n '2,/^set -e/{/^#/p}' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "interop/build.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
esac

if ! command -v go >/dev/null 2>&1; then
    echo "interop/build.sh: go is not installed (Go 1.26 or newer is needed to build SPIRE, ghostunnel and the go-spiffe peer)" >&2
    exit 2
fi

here=$(cd "$(dirname "$0")" && pwd)
module=$here/go
cache=${SPIFFE_MTLS_INTEROP_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/spiffe-mtls-interop}

# Progress goes to stderr when only the directory is wanted on stdout.
say() { if $print_bin; then echo "$@" >&2; else echo "$@"; fi; }

digest() { cat "$@" | sha256sum | cut -c1-16; }
tools_key=$(digest "$module/go.mod" "$module/go.sum")
peer_key=$(digest "$module/go.mod" "$module/go.sum" "$module"/peer/*.go)
out=$cache/build-$tools_key-$peer_key
mkdir -p "$cache/tools-$tools_key" "$out"

failed=()
# build NAME PACKAGE DIR: go build PACKAGE into DIR/NAME unless it is there already.
build() {
    local name=$1 package=$2 dir=$3
    if [ -x "$dir/$name" ]; then
        say "interop: $name is built already ($dir)"
    else
        local start=$SECONDS log
        log=$(mktemp)
        if (cd "$module" && go build -o "$dir/$name.partial" "$package") >"$log" 2>&1; then
            mv "$dir/$name.partial" "$dir/$name"
            say "interop: built $name in $((SECONDS - start)) s"
        else
            say "interop: could not build $name ($package):"
            sed 's/^/    /' "$log" >&2
            failed+=("$name")
        fi
        rm -f "$log"
    fi
    if [ "$dir" != "$out" ] && [ -x "$dir/$name" ]; then ln -sfn "$dir/$name" "$out/$name"; fi
}

build spire-server github.com/spiffe/spire/cmd/spire-server "$cache/tools-$tools_key"
build spire-agent github.com/spiffe/spire/cmd/spire-agent "$cache/tools-$tools_key"
build ghostunnel github.com/ghostunnel/ghostunnel "$cache/tools-$tools_key"
build go-spiffe-peer ./peer "$out"

# bin: the newest complete build, replaced atomically.
ln -sfn "$out" "$cache/bin.new" && mv -T "$cache/bin.new" "$cache/bin"

if [ ${#failed[@]} -gt 0 ]; then
    say "interop: could not build: ${failed[*]} (the error is above)"
    exit 1
fi
if $print_bin; then echo "$cache/bin"; else say "interop: the tools are in $cache/bin"; fi
