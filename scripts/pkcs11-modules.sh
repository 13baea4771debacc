#!/usr/bin/env bash
# Installs the PKCS#11 modules the interop tests run against beside SoftHSM2
# (tests/modules.rs, tests/common/modules.rs) and prints kryoptic's path:
#   - openCryptoki's soft token (Debian opencryptoki): one token per machine
#     behind the system's pkcsslotd, started here, and initialised here as
#     "imgseal-ock" (SO PIN 76543210, user PIN 13572468) when it is not yet;
#   - the p11-kit proxy (Debian p11-kit-modules), which loads the modules
#     Debian registers (SoftHSM, tpm2-pkcs11; root ignores ~/.config/pkcs11);
#   - tpm2-pkcs11 (Debian libtpm2-pkcs11-1) over swtpm: the tests make
#     their tokens through the module (C_InitToken), so neither tpm2_ptool
#     nor a resource manager is needed;
#   - kryoptic, built once from crates.io into ~/.cache/imgseal/modules/ and kept there
#     (about 3 minutes of CPU on 2 cores; needs libclang for its bindings).
# Idempotent: installed packages, a running pkcsslotd, an initialised token
# and a built kryoptic are left as they are.
set -euo pipefail
# shellcheck source=scripts/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

KRYOPTIC_VERSION=1.5.4

ensure_packages opencryptoki p11-kit p11-kit-modules libtpm2-pkcs11-1 \
    swtpm swtpm-tools tpm2-tools softhsm2 opensc openssl libclang-dev
ensure_rust

# openCryptoki: pkcsslotd owns the slots; its soft token is slot 3.
if ! pgrep -x pkcsslotd >/dev/null; then
    log "starting pkcsslotd (openCryptoki)"
    pkcsslotd || die "pkcsslotd would not start"
fi
if ! pkcsconf -t -c 3 2>/dev/null | grep -q 'TOKEN_INITIALIZED'; then
    log "initialising openCryptoki's soft token as imgseal-ock"
    # pkcsconf reads the PINs from its terminal or, as here, standard input.
    printf '87654321\nimgseal-ock\n' | pkcsconf -I -c 3 >/dev/null
    printf '87654321\n76543210\n76543210\n' | pkcsconf -P -c 3 >/dev/null
    printf '76543210\n13572468\n13572468\n' | pkcsconf -u -c 3 >/dev/null
    pkcsconf -t -c 3 | grep -q 'imgseal-ock' || die "openCryptoki's soft token could not be initialised"
fi

# Kept outside the checkout, so that a fresh clone on the same machine (CI)
# does not build it again.
out="${IMGSEAL_MODULES_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/imgseal/modules}/kryoptic-$KRYOPTIC_VERSION"
if [[ ! -f "$out/libkryoptic_pkcs11.so" ]]; then
    log "building kryoptic $KRYOPTIC_VERSION (once; kept in $out)"
    work="$(mktemp -d)"
    trap 'rm -rf "$work"' EXIT
    # Fetch the crate's source through cargo (kryoptic is a cdylib, which
    # `cargo install` cannot install), then build it with its own Cargo.lock.
    mkdir -p "$work/fetch/src"
    cat >"$work/fetch/Cargo.toml" <<TOML
[package]
name = "fetch-kryoptic"
version = "0.0.0"
edition = "2021"
[dependencies]
kryoptic = { version = "=$KRYOPTIC_VERSION", default-features = false }
[workspace]
TOML
    : >"$work/fetch/src/lib.rs"
    (cd "$work/fetch" && cargo fetch -q) || die "cargo fetch kryoptic failed"
    src="$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/kryoptic-"$KRYOPTIC_VERSION" | head -n 1)"
    [[ -f "$src/Cargo.toml" ]] || die "kryoptic's source is not in cargo's registry after cargo fetch"
    # Debian 12 has OpenSSL 3.0: the minimal feature set (RSA, ECDSA, SHA-2,
    # AES, sqlite storage) linked dynamically against it.
    cargo build --release -q --locked --manifest-path "$src/Cargo.toml" \
        --target-dir "$work/target" --no-default-features \
        --features kryoptic-lib/minimal,kryoptic-lib/dynamic \
        || die "building kryoptic failed"
    mkdir -p "$out"
    cp "$work/target/release/libkryoptic_pkcs11.so" "$out/libkryoptic_pkcs11.so.tmp"
    mv "$out/libkryoptic_pkcs11.so.tmp" "$out/libkryoptic_pkcs11.so"
fi
echo "$out/libkryoptic_pkcs11.so"
