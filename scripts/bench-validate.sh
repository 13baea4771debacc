#!/usr/bin/env bash
# Certificate validation cost (a benchmark, not a test): the docs' 4-certificate
# chain per validation under both policies (CPU time, parsing excluded, with
# `openssl verify` beside it), and `imgseal cert verify` over every PKITS
# end-entity certificate in one process. Medians of several runs.
set -euo pipefail
# shellcheck source=scripts/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
ensure_packages "${BUILD_PACKAGES[@]}" openssl bc
build_release
PKITS="${IMGSEAL_PKITS_DIR:-$REPO/tests/data/pkits}"
export IMGSEAL_PKITS_DIR="$PKITS"
(cd "$REPO" && cargo bench -q --bench validate)

[[ -d "$PKITS/certs" ]] || die "PKITS data not found at $PKITS (set IMGSEAL_PKITS_DIR)"
cd "$PKITS"
mapfile -t ees < <(cd certs && ls Valid*EE.crt Invalid*EE.crt | sed 's/\.crt$//')
crls=()
for f in crls/*.crl; do crls+=(--crl "$f"); done
runs=()
for _ in 1 2 3 4 5; do
    start=$(date +%s.%N)
    "$IMGSEAL_BIN" cert verify --cert-dir certs --trusted-cert-id TrustAnchorRootCertificate "${crls[@]}" \
        --at 2020-01-01T00:00:00Z --allow-sha1 --min-rsa-bits 1024 "${ees[@]}" >/dev/null || true
    end=$(date +%s.%N)
    runs+=("$(echo "$end - $start" | bc)")
done
printf 'imgseal cert verify, all %d PKITS end-entity certificates in one process: median %.3f s (bar: < 2 s)\n' \
    "${#ees[@]}" "$(printf '%s\n' "${runs[@]}" | median)"
