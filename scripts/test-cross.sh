#!/usr/bin/env bash
# Proves the two-way SHA-256 kernels of src/fsverity/sha256x2.rs bit for bit
# against software `sha2` and FIPS 180-4's examples: natively (x86-64's
# SHA-NI kernel where the CPU has it), and for aarch64-unknown-linux-gnu under
# qemu-user (the ARMv8 SHA2 kernel; qemu's `max` CPU has the extension). The
# file is built on its own by tests/sha256x2-cross, since the main crate does
# not cross-build (OpenSSL, libtss2, PKCS#11). Installs qemu-user, the aarch64
# cross gcc and libc, and the Rust target when missing. Arguments go to the
# test binaries (a filter).
set -euo pipefail
# shellcheck source=scripts/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

TARGET=aarch64-unknown-linux-gnu
CRATE="$REPO/tests/sha256x2-cross"
LOG="$REPO/target/test-cross.log"

ensure_packages build-essential qemu-user gcc-aarch64-linux-gnu libc6-dev-arm64-cross
ensure_rust
if [[ ! -d "$(rustc --print target-libdir --target "$TARGET" 2>/dev/null)" ]]; then
    command -v rustup >/dev/null || die "the Rust standard library for $TARGET is missing and there is no rustup to add it"
    log "adding the Rust target $TARGET (output in $SETUP_LOG)"
    quietly "$SETUP_LOG" rustup target add "$TARGET" || die "rustup target add $TARGET failed"
fi

# Its own target directory unless the caller chose one: it is not the
# workspace's build (other flags, another target).
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$REPO/target/sha256x2-cross}"
mkdir -p "$REPO/target"
: >"$LOG"

# "N passed" from the log of one run.
passed() { grep -oE '^test result: ok\. [0-9]+ passed' "$1" | awk '{s += $4} END {print s + 0}'; }

start=$SECONDS
# Native: x86-64 CPUs with SHA-NI must take the kernel.
native_expect=0
if [[ "$(uname -m)" == x86_64 ]] && grep -qw sha_ni /proc/cpuinfo; then
    native_expect=1
fi
native_log="$(mktemp)"
trap 'rm -f "$native_log" "${cross_log:-}"' EXIT
(cd "$CRATE" && export IMGSEAL_SHA256X2_EXPECT_KERNEL=$native_expect \
    && quietly "$native_log" cargo test --locked -- "$@") \
    || { cat "$native_log" >>"$LOG"; die "the kernel tests failed natively ($LOG)"; }
cat "$native_log" >>"$LOG"

# AArch64 under qemu-user: tests/sha256x2-cross/.cargo/config.toml gives the
# linker and the runner (qemu-aarch64 -cpu max, kernel expected).
cross_log="$(mktemp)"
(cd "$CRATE" && quietly "$cross_log" cargo test --locked --target "$TARGET" -- "$@") \
    || { cat "$cross_log" >>"$LOG"; die "the kernel tests failed on $TARGET under qemu-user ($LOG)"; }
cat "$cross_log" >>"$LOG"

log "SHA-256 kernel tests: $(uname -m) $(passed "$native_log") passed (kernel expected: $([[ $native_expect == 1 ]] && echo yes || echo no)), $TARGET under qemu-user $(passed "$cross_log") passed (kernel expected), $((SECONDS - start)) s (log: $LOG)"
