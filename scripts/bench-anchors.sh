#!/usr/bin/env bash
# TPM trust anchors cost (a benchmark, not a test): `imgseal verify` of a small
# signed image with its CA sealed as the trust anchor in a swtpm, against the
# same verification with the CA given by id (--trusted-cert-id); and sealing
# 16 certificates. Release build; medians of several alternating runs.
#
# Bars: verify with TPM anchors at most 50 ms slower than by id; a seal of 16
# certificates at most 1 s.
#
# Environment: IMGSEAL_BENCH_RUNS (default 21), IMGSEAL_BIN (skip the build).
set -euo pipefail
# shellcheck source=scripts/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
ensure_packages "${BUILD_PACKAGES[@]}" softhsm2 openssl bc swtpm swtpm-tools tpm2-tools libtss2-tcti-swtpm0
build_release

RUNS="${IMGSEAL_BENCH_RUNS:-21}"
WORK="$(mktemp -d -t imgseal-bench-anchors.XXXXXX)"
SWTPM_PID=""
EMBEDDED_STATE=""
cleanup() {
    # Only the swtpm processes this script started.
    if [[ -n "$SWTPM_PID" ]]; then
        kill "$SWTPM_PID" 2>/dev/null || true
    fi
    if [[ -n "$EMBEDDED_STATE" && -f "$EMBEDDED_STATE/swtpm.pid" ]]; then
        kill "$(cat "$EMBEDDED_STATE/swtpm.pid")" 2>/dev/null || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT
unset TPM2TOOLS_TCTI TCTI IMGSEAL_TOKEN IMGSEAL_CONFIG OS_TRUSTED_IMAGE_CERTIFICATE_IDS
export TSS2_LOG=all+none
export IMGSEAL_HOME="$WORK/home"
cd "$WORK"
imgseal() { "$IMGSEAL_BIN" "$@"; }

# Wall time of one run of CMD… in ms; the command must succeed.
time_ms() {
    local t0 t1
    t0=$(date +%s%N)
    "$@" >/dev/null 2>"$WORK/last.err" || { cat "$WORK/last.err" >&2; die "failed: $*"; }
    t1=$(date +%s%N)
    echo "scale=3; ($t1 - $t0) / 1000000" | bc
}

# ---- a swtpm of our own, on a free even port pair ---------------------------
mkdir -p state
for _ in $(seq 20); do
    port=$((20000 + 2 * (RANDOM % 19000)))
    if swtpm socket --tpm2 --tpmstate dir="$WORK/state" \
        --server type=tcp,port=$port,bindaddr=127.0.0.1 \
        --ctrl type=tcp,port=$((port + 1)),bindaddr=127.0.0.1 \
        --flags not-need-init,startup-clear --daemon --pid file="$WORK/swtpm.pid" 2>/dev/null; then
        SWTPM_PID=$(cat "$WORK/swtpm.pid")
        break
    fi
done
[[ -n "$SWTPM_PID" ]] || die "could not start swtpm"
TCTI="swtpm:host=127.0.0.1,port=$port"
log "swtpm (pid $SWTPM_PID) at $TCTI"

# ---- a CA, a token key with a certificate, a small signed image -------------
cat >ca.cnf <<'EOF'
[req]
distinguished_name = dn
prompt = no
x509_extensions = root_ca
[dn]
CN = bench root CA
[root_ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[leaf]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = codeSigning
authorityKeyIdentifier = keyid
EOF
openssl genpkey -quiet -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out ca.key
openssl req -x509 -config ca.cnf -key ca.key -out ca.pem -days 30 -sha256
uri=$(imgseal key generate --type ecc-secp384r1 --label bench)
imgseal key csr --key "$uri" --subject "CN=bench signer" --out signer.csr 2>/dev/null
openssl x509 -req -in signer.csr -CA ca.pem -CAkey ca.key -CAcreateserial -CAserial ca.srl \
    -days 30 -sha256 -extfile ca.cnf -extensions leaf -out signer.pem 2>/dev/null
imgseal cert import --id signer signer.pem 2>/dev/null
imgseal cert import --id root ca.pem 2>/dev/null
head -c 1024 /dev/urandom >image.raw
imgseal sign --key "$uri" --cert-id signer image.raw >props.json
imgseal --tcti "$TCTI" anchors seal --cert ca.pem >/dev/null

# Both ways must agree before they are timed.
# (Output captured first: `imgseal … | grep -q` under pipefail fails when grep
# exits before imgseal has written its last line.)
out=$(imgseal verify --props props.json --trusted-cert-id root image.raw)
grep -q "trusted ids from --trusted-cert-id" <<<"$out" \
    || die "verification by id did not validate against the CA"
out=$(imgseal --tcti "$TCTI" verify --props props.json image.raw)
grep -q "trusted ids from the TPM-sealed anchors" <<<"$out" \
    || die "verification did not use the TPM-sealed anchors"

by_id=()
by_tpm=()
for i in $(seq "$((RUNS + 3))"); do
    a=$(time_ms imgseal verify --props props.json --trusted-cert-id root image.raw)
    b=$(time_ms imgseal --tcti "$TCTI" verify --props props.json image.raw)
    ((i > 3)) || continue # warm-up
    by_id+=("$a")
    by_tpm+=("$b")
done
med_id=$(printf '%s\n' "${by_id[@]}" | median)
med_tpm=$(printf '%s\n' "${by_tpm[@]}" | median)
# Per-round differences: the same moment's noise on both sides.
diffs=()
for ((i = 0; i < ${#by_id[@]}; i++)); do
    diffs+=("$(echo "${by_tpm[i]} - ${by_id[i]}" | bc)")
done
med_diff=$(printf '%s\n' "${diffs[@]}" | median)

# ---- the embedded swtpm (the default: no --tcti), in a second home ----------
HOME2="$WORK/home2"
EMBEDDED_STATE="$HOME2/swtpm"
cp -a "$IMGSEAL_HOME" "$HOME2"
rm -rf "$HOME2/anchors"
IMGSEAL_HOME="$HOME2" imgseal anchors seal --cert ca.pem >/dev/null
out=$(IMGSEAL_HOME="$HOME2" imgseal verify --props props.json image.raw)
grep -q "TPM-sealed anchors" <<<"$out" \
    || die "the embedded swtpm's anchors were not used"
by_embedded=()
for i in $(seq "$((RUNS + 3))"); do
    c=$(IMGSEAL_HOME="$HOME2" time_ms imgseal verify --props props.json image.raw)
    ((i > 3)) || continue
    by_embedded+=("$c")
done
med_embedded=$(printf '%s\n' "${by_embedded[@]}" | median)

# ---- sealing 16 certificates --------------------------------------------------
certs=()
for n in $(seq 16); do
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout /dev/null \
        -subj "/CN=anchor $n" -days 30 -out "anchor-$n.pem" 2>/dev/null
    certs+=(--cert "anchor-$n.pem")
done
seals=()
for i in $(seq "$((RUNS + 1))"); do
    t=$(time_ms imgseal --tcti "$TCTI" anchors seal "${certs[@]}")
    ((i > 1)) || continue
    seals+=("$t")
done
med_seal=$(printf '%s\n' "${seals[@]}" | median)
imgseal --tcti "$TCTI" anchors show | grep -q "intact" || die "the 16-certificate set is not intact"

verdict() { if (($(echo "$1 <= $2" | bc))); then echo PASS; else echo FAIL; fi; }
printf '\nTPM trust anchors: %d runs each (+ warm-up), release build, 1 KiB image, swtpm 0.7 over TCP\n\n' "$RUNS"
printf '%-58s %10s\n' "case" "median ms"
printf '%-58s %10.2f\n' "verify, CA by id (--trusted-cert-id)" "$med_id"
printf '%-58s %10.2f\n' "verify, CA sealed in the TPM (--tcti swtpm)" "$med_tpm"
printf '%-58s %10.2f\n' "verify, CA sealed in the embedded swtpm (no --tcti)" "$med_embedded"
printf '%-58s %10.2f  %s (bar <= 50 ms)\n' "difference, TPM - by id (median of per-round differences)" "$med_diff" \
    "$(verdict "$med_diff" 50)"
printf '%-58s %10.2f  %s (bar <= 1000 ms)\n' "anchors seal, 16 certificates" "$med_seal" "$(verdict "$med_seal" 1000)"
