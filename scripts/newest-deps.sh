#!/usr/bin/env bash
# The project against the newest semver-compatible dependencies, as a user who adds the crate
# today (no lock file of ours) resolves them: copies the project (without target/, .git and
# .venv), runs `cargo update` there, prints every crate whose version changed, then runs the
# library's tests, a bounded set of integration tests and the handshake benchmark's smoke
# run in the copy. When a step fails it names the step and the crates that changed.
#
# Usage: scripts/newest-deps.sh [--quick] [--bench [CRITERION ARGS...]]
#   --quick   only `cargo test --lib` and the handshake benchmark smoke, the smoke built with
#             the dev profile so that it shares the test build's dependencies (what CI runs)
#   --bench   afterwards, measure the handshake benchmark under the newest dependencies
#             (criterion arguments follow, e.g. `--bench '^(handshake|key_exchange)/'
#             --warm-up-time 2 --measurement-time 10`), for a side-by-side comparison with
#             the same command at the root
#
# The copy and its cargo target dir live under target/newest-deps/ (NEWEST_DEPS_DIR), kept
# between runs so that only what changed is built again. With --quick the copy builds into the
# project's own target dir instead, so every crate that `cargo update` left alone is reused
# from the root's build (the copy's own crates are distinct units there: their path differs;
# --quick builds no binary that could replace the root's). Exit status: 0 when every step
# passed, 1 when one failed, 2 on a usage error.
set -euo pipefail

quick=false
bench=false
bench_args=()
while [ $# -gt 0 ]; do
    case "$1" in
        --quick) quick=true; shift ;;
        --bench) bench=true; shift; bench_args=("$@"); break ;;
        -h|--help) sed -n '2,/^set -e/{/^#/p}' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "newest-deps: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done

root=$(cd "$(dirname "$0")/.." && pwd)
dir=${NEWEST_DEPS_DIR:-$root/target/newest-deps}
work=$dir/project
if $quick; then
    export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$root/target}
else
    export CARGO_TARGET_DIR=$dir/target
fi
mkdir -p "$work" "$CARGO_TARGET_DIR"

# The copy: the working tree as it is (committed or not), at a fixed path so that cargo
# reuses what it built before.
if command -v rsync >/dev/null; then
    rsync -a --delete --exclude=/target --exclude=/.git --exclude=/.venv \
        --exclude=/fuzz/target "$root/" "$work/"
else
    find "$work" -mindepth 1 -delete
    tar -C "$root" --exclude=./target --exclude=./.git --exclude=./.venv \
        --exclude=./fuzz/target -cf - . | tar -C "$work" -xf -
fi
cd "$work"

# `name version` of every package in a lock file.
versions() {
    awk -F'"' '/^name = /{name=$2} /^version = /{print name, $2}' "$1" | sort -u
}
cp Cargo.lock "$dir/Cargo.lock.ours"
cargo update --quiet
versions "$dir/Cargo.lock.ours" >"$dir/before"
versions Cargo.lock >"$dir/after"
# One line per crate whose versions differ: `name old -> new` (`-` where it had none).
changed=$(join -a1 -a2 -e - -o 0,1.2,2.2 \
    <(awk '{v[$1]=v[$1] (v[$1]?",":"") $2} END{for(n in v) print n, v[n]}' "$dir/before" | sort) \
    <(awk '{v[$1]=v[$1] (v[$1]?",":"") $2} END{for(n in v) print n, v[n]}' "$dir/after" | sort) |
    awk '$2 != $3 {print $1, $2, "->", $3}')
# Direct dependencies first: the likelier cause of a failure.
direct=$(sed -n '/^\[\(dev-\|build-\)\{0,1\}dependencies\]/,/^\[/p' Cargo.toml bench/Cargo.toml |
    awk -F'[ =]' '/^[a-zA-Z0-9_-]+ *=/{print $1}' | sort -u)
report=$(while read -r name rest; do
    [ -n "$name" ] || continue
    if grep -qx -- "$name" <<<"$direct"; then echo "$name $rest (direct)"; fi
done <<<"$changed"
while read -r name rest; do
    [ -n "$name" ] || continue
    if ! grep -qx -- "$name" <<<"$direct"; then echo "$name $rest"; fi
done <<<"$changed")
if [ -z "$changed" ]; then
    echo "newest-deps: the lock file already holds the newest compatible versions"
else
    echo "newest-deps: $(wc -l <<<"$changed") crates changed with cargo update:"
    sed 's/^/  /' <<<"$report"
fi
rustls=$(awk '$1 == "rustls" {print $2}' "$dir/after" | paste -sd, -)
echo "newest-deps: rustls resolves to $rustls"

step() {
    echo "newest-deps: $*"
    if ! "$@"; then
        echo "newest-deps: FAILED with the newest dependencies: $*" >&2
        if [ -n "$changed" ]; then
            echo "newest-deps: the crates that changed (direct dependencies first):" >&2
            sed 's/^/  /' <<<"$report" >&2
            echo "newest-deps: pin one back at the root to find the culprit:" \
                "cargo update -p NAME --precise OLD" >&2
        fi
        exit 1
    fi
}

step cargo test --lib
if ! $quick; then
    # Integration tests of the handshake, the modes, rotation and the verifier's rules:
    # what a rustls or webpki change would break first (bounded: no proxy, no interop).
    step cargo test --test api -- mtls:: modes:: rotation_under_load:: verify_rules::
fi
if $quick; then
    step cargo bench --profile dev -p spiffe-mtls-bench --bench handshake -- --test
else
    step cargo bench -p spiffe-mtls-bench --bench handshake -- --test
fi
if $bench; then
    step cargo bench -p spiffe-mtls-bench --bench handshake -- "${bench_args[@]}"
fi
echo "newest-deps: passed with the newest dependencies (rustls $rustls)"
