#!/usr/bin/env bash
# Runs every cargo-fuzz target in fuzz/ for a set time each (default 600 s):
#   scripts/fuzz.sh [SECONDS] [TARGET…]
# Needs cargo-fuzz (installed here if missing). The machine's stable toolchain
# builds the sanitizer runtime with RUSTC_BOOTSTRAP=1, as nightly would.
# A crash stops the run and leaves its input in fuzz/artifacts/<target>/; so
# does an input that takes over 25 s (a hang). fuzz/seeds/<target>/ (made by
# fuzz/seeds/make.sh) seeds the corpus kept in fuzz/corpus/<target>/. The
# whole libFuzzer output of each target is kept in fuzz/artifacts/<target>.log.
set -euo pipefail
# shellcheck source=scripts/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
ensure_packages "${BUILD_PACKAGES[@]}"
command -v cargo-fuzz >/dev/null || cargo install --locked cargo-fuzz
seconds="${1:-600}"
shift || true
cd "$REPO/fuzz"
if (($#)); then
    targets=("$@")
else
    # Not a process substitution: a failing `cargo fuzz list` must stop the run,
    # not fuzz nothing and report no crash.
    list=$(cargo fuzz list) || die "cargo fuzz list failed"
    mapfile -t targets <<<"$list"
fi
((${#targets[@]})) && [[ -n "${targets[0]}" ]] || die "no fuzz targets found"
export RUSTC_BOOTSTRAP=1
for t in "${targets[@]}"; do
    log "fuzzing $t for $seconds s"
    mkdir -p "corpus/$t" artifacts
    seeds=()
    [[ -d "seeds/$t" ]] && seeds=("seeds/$t")
    cargo fuzz run "$t" "corpus/$t" "${seeds[@]}" -- \
        -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=25 2>&1 | tee "artifacts/$t.log" | tail -n 3
done
log "no crash in ${#targets[@]} targets × $seconds s"
