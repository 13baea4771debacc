#!/usr/bin/env bash
# Installs what the tests need on a fresh Debian machine and runs every test:
# the SHA-256 kernels natively and on AArch64 under qemu-user
# (scripts/test-cross.sh), unit tests, and integration tests against real
# SoftHSM2 tokens, swtpm instances, a real Keystone + Barbican + Glance
# (scripts/openstack/, pinned in a venv kept under target/openstack) and the
# peer tools (openssl, pkcs11-tool, fsverity, tpm2-tools, the openstack CLI,
# and cursive pinned in a venv), and the other PKCS#11 modules of
# tests/modules.rs (scripts/pkcs11-modules.sh). Each test makes its own
# token, swtpm or OpenStack project (openCryptoki's one soft token is shared).
set -euo pipefail
# shellcheck source=scripts/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

ensure_packages "${BUILD_PACKAGES[@]}" softhsm2 opensc openssl python3-venv python3-dev fsverity \
    swtpm swtpm-tools tpm2-tools libtss2-dev libtss2-tcti-swtpm0 curl groff-base man-db zsh fish \
    qemu-user gcc-aarch64-linux-gnu libc6-dev-arm64-cross
ensure_rust
# The AArch64 SHA-256 kernel runs nowhere else in this suite: under qemu-user.
log "proving the SHA-256 kernels natively and on AArch64 under qemu-user (scripts/test-cross.sh)"
mkdir -p "$REPO/target"
bash "$REPO/scripts/test-cross.sh" 2>"$REPO/target/test-cross.out" \
    || { tail -n 30 "$REPO/target/test-cross.out" >&2; die "the SHA-256 kernel tests failed (scripts/test-cross.sh)"; }
# Building kryoptic is CPU, the venvs below are mostly downloads: overlap them.
log "installing the PKCS#11 modules beside SoftHSM in the background (scripts/pkcs11-modules.sh)"
mkdir -p "$REPO/target"
modules_out="$REPO/target/pkcs11-modules.out"
bash "$REPO/scripts/pkcs11-modules.sh" >"$modules_out" 2>"$REPO/target/pkcs11-modules.log" &
modules_pid=$!
# The cursive peer tests skip themselves when this is set: never in this run.
unset IMGSEAL_SKIP_CURSIVE

log "preparing the cursive peer (pinned in tests/peers/requirements.txt)"
bash "$REPO/scripts/peers-venv.sh" >/dev/null

log "setting up and starting Keystone, Barbican and Glance (scripts/openstack/)"
mkdir -p "$REPO/target"
# The services go when this script does, however it ends.
trap 'bash "$REPO/scripts/openstack/stop.sh"' EXIT
bash "$REPO/scripts/openstack/setup.sh" >"$REPO/target/openstack-setup.log" 2>&1 \
    || { tail -n 20 "$REPO/target/openstack-setup.log" >&2; die "setting up the OpenStack test stack failed"; }
bash "$REPO/scripts/openstack/start.sh"

wait "$modules_pid" \
    || { tail -n 20 "$REPO/target/pkcs11-modules.log" >&2; die "installing the PKCS#11 modules failed"; }
IMGSEAL_TEST_KRYOPTIC="$(tail -n 1 "$modules_out")"
export IMGSEAL_TEST_KRYOPTIC
log "PKCS#11 modules ready (kryoptic: $IMGSEAL_TEST_KRYOPTIC)"

cd "$REPO"
# Expected TPM errors in tests would otherwise fill stderr with ESYS warnings.
export TSS2_LOG="${TSS2_LOG:-all+none}"
# Lints are part of passing: clippy on every target, warnings refused
# (the lints themselves are [workspace.lints] in Cargo.toml).
if ! cargo clippy --version >/dev/null 2>&1; then
    command -v rustup >/dev/null || die "cargo clippy is missing and there is no rustup to add it"
    quietly "$SETUP_LOG" rustup component add clippy || die "rustup component add clippy failed"
fi
log "linting (cargo clippy --workspace --all-targets, warnings refused)"
cargo clippy --workspace --all-targets --locked --quiet -- -D warnings \
    || die "cargo clippy found warnings (above)"
log "running the tests (cargo test --workspace)"
output="$(mktemp)"
trap 'rm -f "$output"; bash "$REPO/scripts/openstack/stop.sh"' EXIT
# Library, binary and integration tests; the crates have no doc tests.
set +e
cargo test --workspace --locked --no-fail-fast --lib --bins --tests "$@" 2>&1 | tee "$output"
status=${PIPESTATUS[0]}
set -e
passed=$(grep -oE '^test result: [a-zA-Z]+\. [0-9]+ passed' "$output" | awk '{s += $4} END {print s + 0}')
failed=$(grep -E '^test result:' "$output" | grep -oE '; [0-9]+ failed' | awk '{s += $2} END {print s + 0}')
echo
echo "tests: $passed passed, $failed failed"
# A test binary that crashed reports no 'test result:' line of its own.
if [[ "$status" -ne 0 && "$failed" -eq 0 ]]; then
    echo "cargo test exited $status: a test binary failed without a result line (see above)"
fi
exit "$status"
