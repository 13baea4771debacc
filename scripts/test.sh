#!/usr/bin/env bash
# Installs what the tests need on a fresh Debian machine and runs every test:
# unit tests, and integration tests against real SoftHSM2 tokens, swtpm
# instances and the peer tools (openssl, pkcs11-tool, fsverity, tpm2-tools,
# and cursive pinned in a venv). Each test makes its own token or swtpm.
set -euo pipefail
# shellcheck source=scripts/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

ensure_packages "${BUILD_PACKAGES[@]}" softhsm2 opensc openssl python3-venv fsverity \
    swtpm swtpm-tools tpm2-tools libtss2-dev libtss2-tcti-swtpm0
command -v cargo >/dev/null || die "cargo not found: install Rust >= 1.85 (e.g. with rustup) and re-run"

log "preparing the cursive peer (pinned in tests/peers/requirements.txt)"
bash "$REPO/scripts/peers-venv.sh" >/dev/null

cd "$REPO"
# Expected TPM errors in tests would otherwise fill stderr with ESYS warnings.
export TSS2_LOG="${TSS2_LOG:-all+none}"
log "running the tests (cargo test --workspace)"
cargo test --workspace --locked "$@"
