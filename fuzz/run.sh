#!/usr/bin/env bash
# Runs each fuzz target for SECONDS seconds, one libFuzzer process at a time, and prints per
# target the number of executions and whether it crashed. Exits non-zero when a target
# crashed or does not build. See fuzz/README.md.
#
#   fuzz/run.sh SECONDS [TARGET...]
#
# Environment: FUZZ_SANITIZER (default "address"; "none" for a plain instrumented build),
# FUZZ_ARGS (extra libFuzzer flags).
set -euo pipefail

CARGO_FUZZ_VERSION=0.13.2
# Targets run by default; every one must build.
DEFAULT_TARGETS=(spiffe_id verify_chain bundle_document policy_file endpoint_address x509_svid_response h2_header_shim)

usage() {
    echo "usage: $0 SECONDS [TARGET...]" >&2
    exit 2
}

[[ $# -ge 1 && $1 =~ ^[0-9]+$ && $1 -gt 0 ]] || usage
duration=$1
shift
if [[ $# -gt 0 ]]; then
    targets=("$@")
else
    targets=("${DEFAULT_TARGETS[@]}")
fi

cd "$(dirname "$0")"

# cargo-fuzz passes -Zsanitizer=... and friends: stable rustc takes them with RUSTC_BOOTSTRAP=1.
export RUSTC_BOOTSTRAP=1
if ! cargo fuzz --version 2>/dev/null | grep -qF "$CARGO_FUZZ_VERSION"; then
    echo "installing cargo-fuzz $CARGO_FUZZ_VERSION" >&2
    cargo install cargo-fuzz --version "$CARGO_FUZZ_VERSION" --locked
fi

sanitizer=${FUZZ_SANITIZER:-address}
read -r -a extra_args <<<"${FUZZ_ARGS:-}"
mkdir -p logs

summary=()
failed=0
for target in "${targets[@]}"; do
    build_log=logs/$target.build.log
    echo "== $target: building" >&2
    if ! cargo fuzz build -s "$sanitizer" "$target" >"$build_log" 2>&1; then
        tail -n 30 "$build_log" >&2
        echo "== $target: BUILD FAILED (see fuzz/$build_log)" >&2
        summary+=("$(printf '%-20s %12s  %s' "$target" "-" "BUILD FAILED")")
        failed=1
        continue
    fi

    # the committed seeds start a working corpus that keeps what earlier runs found
    mkdir -p "corpus/$target"
    if [[ -d seeds/$target ]]; then
        cp -n "seeds/$target"/* "corpus/$target/" 2>/dev/null || true
    fi
    mkdir -p "artifacts/$target"
    before=$(find "artifacts/$target" -type f | wc -l)

    run_log=logs/$target.log
    echo "== $target: fuzzing for ${duration}s (log: fuzz/$run_log)" >&2
    status=0
    cargo fuzz run -s "$sanitizer" "$target" "corpus/$target" -- \
        -max_total_time="$duration" -timeout=30 -print_final_stats=1 "${extra_args[@]}" \
        >"$run_log" 2>&1 || status=$?

    runs=$(sed -n 's/^stat::number_of_executed_units: *\([0-9]*\).*/\1/p' "$run_log" | tail -n 1)
    if [[ -z $runs ]]; then
        runs=$(sed -n 's/^Done \([0-9]*\) runs.*/\1/p' "$run_log" | tail -n 1)
    fi
    after=$(find "artifacts/$target" -type f | wc -l)
    if [[ $status -ne 0 || $after -gt $before ]]; then
        grep -E -m 5 "panicked at|ERROR: (libFuzzer|AddressSanitizer)|SUMMARY:|Test unit written" \
            "$run_log" >&2 || true
        summary+=("$(printf '%-20s %12s  %s' "$target" "${runs:-?}" "CRASHED (exit $status; see fuzz/$run_log, fuzz/artifacts/$target/)")")
        failed=1
    else
        summary+=("$(printf '%-20s %12s  %s' "$target" "${runs:-?}" "ok")")
    fi
done

printf '%-20s %12s  %s\n' "target" "executions" "result"
printf '%s\n' "${summary[@]}"
exit "$failed"
