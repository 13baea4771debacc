#!/usr/bin/env bash
# imgseal end to end on a fresh Debian 12 machine:
#
#   key in the embedded SoftHSM token -> CSR signed in the token -> test CA
#   issues the signing certificate -> certificate imported -> image signed ->
#   verified by imgseal (exit 0) and by the openssl CLI -> a tampered copy
#   fails verification (exit 1) -> the CA sealed as the trust anchor in the
#   embedded TPM (swtpm): verified with no trusted ids, attested to a nonce.
#
# Usage: scripts/demo.sh
#
# Environment:
#   IMGSEAL_DEMO_DIR  work directory, emptied at each run (default: target/demo)
#   IMGSEAL_HOME      imgseal's home; if you set it, your token is used and kept
#                     (default: a fresh $IMGSEAL_DEMO_DIR/home)
#   IMGSEAL_BIN       an imgseal binary to use instead of building one
#
# Installs what it needs with apt-get (as root, or through sudo). Exits non-zero
# if any step does not behave as expected; the last line is "demo OK".
set -Eeuo pipefail

# shellcheck source=lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

trap 'log "error: failed at line $LINENO: $BASH_COMMAND"' ERR

STEP=0
step() {
    STEP=$((STEP + 1))
    printf '\n==> %d. %s\n' "$STEP" "$*"
}
ok() { printf '    ok: %s\n' "$*"; }

# Echo a command the way a user would type it, then run it.
show_cmd() {
    local a out=()
    for a in "$@"; do
        if [[ "$a" =~ ^[A-Za-z0-9_./:=@%+,-]+$ || "$a" == ">" ]]; then
            out+=("$a")
        else
            out+=("'${a//\'/\'\\\'\'}'")
        fi
    done
    printf '    $ %s\n' "${out[*]}"
}
imgseal() { "$IMGSEAL_BIN" "$@"; }
run() {
    show_cmd "$@"
    "$@"
}
# run, with the command's output (stdout and stderr) indented under it.
run_i() {
    show_cmd "$@"
    "$@" 2>&1 | indent
}

# run CMD… and insist on exit code WANT.
expect_exit() {
    local want=$1 what=$2 rc=0
    shift 2
    show_cmd "$@"
    "$@" 2>&1 | indent || rc=$?
    ((rc == want)) || die "$what: expected exit $want, got $rc"
    ok "$what (exit $rc, as expected)"
}

# Invert the byte at OFFSET of FILE in place.
flip_byte() {
    local file=$1 offset=$2 byte
    byte=$(od -An -tu1 -j "$offset" -N1 "$file" | tr -d ' \n')
    [[ -n "$byte" ]] || die "cannot read byte $offset of $file"
    # shellcheck disable=SC2059
    printf "$(printf '\\%03o' $((byte ^ 0xff)))" \
        | dd of="$file" bs=1 seek="$offset" count=1 conv=notrunc status=none
}

indent() { sed 's/^/    /'; }

# Stops the embedded swtpm imgseal started for STATE_DIR, if it still runs.
stop_embedded_swtpm() {
    local state=$1 pid
    [[ -f "$state/swtpm.pid" ]] || return 0
    pid=$(cat "$state/swtpm.pid")
    # Only a swtpm serving this state directory: pids are reused.
    # imgseal hands swtpm the resolved path: compare with that, as text.
    if tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "dir=$state"; then
        kill "$pid" 2>/dev/null || true
    fi
}

# ---------------------------------------------------------------------------
step "Install what the demo needs (Debian packages)"
ensure_packages softhsm2 openssl jq swtpm swtpm-tools tpm2-tools libtss2-tcti-swtpm0 "${BUILD_PACKAGES[@]}"
ok "softhsm2, openssl, jq, swtpm, tpm2-tools and the build dependencies are installed"

step "Build imgseal (release)"
build_release
ok "$IMGSEAL_BIN ($("$IMGSEAL_BIN" --version))"

step "Prepare a clean demo directory and imgseal home"
DEMO_DIR="${IMGSEAL_DEMO_DIR:-$REPO/target/demo}"
MARKER=".imgseal-demo-dir"
if [[ -e "$DEMO_DIR" ]]; then
    if [[ -e "$DEMO_DIR/$MARKER" ]] || [[ -z "$(ls -A "$DEMO_DIR")" ]]; then
        stop_embedded_swtpm "$(cd "$DEMO_DIR" && pwd -P)/tpm-home/swtpm"
        rm -rf "$DEMO_DIR"
    else
        die "$DEMO_DIR exists and was not made by this demo: move it away or set IMGSEAL_DEMO_DIR"
    fi
fi
mkdir -p "$DEMO_DIR"
touch "$DEMO_DIR/$MARKER"
DEMO_DIR="$(cd "$DEMO_DIR" && pwd -P)"
cd "$DEMO_DIR"
if [[ -n "${IMGSEAL_HOME:-}" ]]; then
    ok "using your IMGSEAL_HOME=$IMGSEAL_HOME (left as it is)"
else
    IMGSEAL_HOME="$DEMO_DIR/home"
    ok "IMGSEAL_HOME=$IMGSEAL_HOME (new: imgseal creates its embedded SoftHSM token on first use)"
fi
export IMGSEAL_HOME
if [[ -n "${IMGSEAL_TOKEN:-}" ]]; then
    log "ignoring IMGSEAL_TOKEN for the demo: it uses the embedded token"
    unset IMGSEAL_TOKEN
fi
ok "work files go to $DEMO_DIR"

# ---------------------------------------------------------------------------
step "Generate an RSA-PSS 3072 signing key inside the token"
LABEL="imgseal-demo-$(date +%Y%m%d-%H%M%S)"
show_cmd imgseal key generate --type rsa-pss-3072 --label "$LABEL"
KEY_URI="$(imgseal key generate --type rsa-pss-3072 --label "$LABEL")"
[[ "$KEY_URI" == pkcs11:* ]] || die "key generate printed \"$KEY_URI\", not a pkcs11: URI"
printf '    %s\n' "$KEY_URI"
run_i imgseal key list
show_cmd imgseal key show "$KEY_URI"
imgseal key show "$KEY_URI" >signer-key.pub.pem
ok "public key written to signer-key.pub.pem (the private key never leaves the token)"

step "Make a certificate request, signed inside the token"
run_i imgseal key csr --key "$KEY_URI" --subject "CN=imgseal demo image signer,O=Example Cloud" --out signer.csr
run_i openssl req -in signer.csr -noout -verify -subject
openssl req -in signer.csr -noout -pubkey | cmp -s - signer-key.pub.pem \
    || die "the CSR does not hold the token key's public key"
ok "the CSR's self-signature verifies and it holds the token key"

step "Create a test CA with the openssl CLI and issue the signing certificate"
cat >ca.cnf <<'EOF'
[req]
distinguished_name = dn
prompt             = no
x509_extensions    = root_ca

[dn]
O  = Example Cloud
CN = imgseal demo root CA

[root_ca]
basicConstraints       = critical, CA:TRUE
keyUsage               = critical, keyCertSign, cRLSign
subjectKeyIdentifier   = hash
authorityKeyIdentifier = keyid:always

[image_signer]
basicConstraints       = critical, CA:FALSE
keyUsage               = critical, digitalSignature
extendedKeyUsage       = codeSigning
subjectKeyIdentifier   = hash
authorityKeyIdentifier = keyid, issuer
EOF
run openssl genpkey -quiet -algorithm RSA -pkeyopt rsa_keygen_bits:3072 -out ca.key
run openssl req -x509 -config ca.cnf -key ca.key -out ca.pem -days 3650 -sha256
run_i openssl x509 -req -in signer.csr -CA ca.pem -CAkey ca.key -CAcreateserial -CAserial ca.srl \
    -days 365 -sha256 -extfile ca.cnf -extensions image_signer -out signer.pem
run_i openssl verify -CAfile ca.pem signer.pem
openssl x509 -in signer.pem -noout -subject -issuer -ext basicConstraints,keyUsage,extendedKeyUsage | indent
ok "signer.pem issued by the test root CA (ca.pem)"

step "Import the certificate into the token under a UUID"
CERT_ID="$(cat /proc/sys/kernel/random/uuid)"
run_i imgseal cert import --id "$CERT_ID" signer.pem
run_i imgseal cert list
run_i imgseal cert show "$CERT_ID"

step "Make a sample image"
if command -v qemu-img >/dev/null; then
    IMAGE=demo-image.qcow2
    DISK_FORMAT=qcow2
    qemu-img create -q -f raw demo-image.raw 64M
    head -c 4M /dev/urandom | dd of=demo-image.raw conv=notrunc status=none
    run qemu-img convert -O qcow2 demo-image.raw "$IMAGE"
    rm -f demo-image.raw
    qemu-img info "$IMAGE" | sed -n '1,4p' | indent
else
    IMAGE=demo-image.raw
    DISK_FORMAT=raw
    show_cmd head -c 64M /dev/urandom ">" "$IMAGE"
    head -c 64M /dev/urandom >"$IMAGE"
    ok "no qemu-img here: a 64 MiB raw image of random bytes"
fi
ok "$IMAGE: $(stat -c %s "$IMAGE") bytes, sha256 $(sha256sum "$IMAGE" | cut -c1-16)…"

step "Sign the image: the four Glance properties"
show_cmd imgseal sign --key "$KEY_URI" --cert-id "$CERT_ID" "$IMAGE" ">" props.json
imgseal sign --key "$KEY_URI" --cert-id "$CERT_ID" "$IMAGE" >props.json
indent <props.json
for k in img_signature img_signature_hash_method img_signature_key_type img_signature_certificate_uuid; do
    jq -e --arg k "$k" 'has($k) and (.[$k] | type == "string" and length > 0)' props.json >/dev/null \
        || die "props.json lacks $k"
done
[[ "$(jq -r .img_signature_certificate_uuid props.json)" == "$CERT_ID" ]] \
    || die "props.json names another certificate"
ok "props.json holds the four img_signature properties"

show_cmd imgseal sign --key "$KEY_URI" --cert-id "$CERT_ID" --format openstack "$IMAGE"
OPENSTACK_PROPS="$(imgseal sign --key "$KEY_URI" --cert-id "$CERT_ID" --format openstack "$IMAGE")"
printf '\n    What to upload with (a second signing run: PSS salts are random, so this\n'
printf '    signature differs from the one in props.json; both are valid):\n\n'
printf '    openstack image create --disk-format %s --container-format bare \\\n' "$DISK_FORMAT"
printf '        --file %s \\\n' "$IMAGE"
printf '        %s \\\n' "$OPENSTACK_PROPS"
printf '        imgseal-demo-image\n'
# Turn the --property k=v line back into JSON, to verify it too.
read -r -a words <<<"$OPENSTACK_PROPS"
((${#words[@]} == 8)) || die "--format openstack printed ${#words[@]} words, expected 8 (4 x --property k=v)"
jq_args=()
for ((i = 0; i < ${#words[@]}; i += 2)); do
    [[ "${words[i]}" == --property ]] || die "--format openstack: expected --property, got ${words[i]}"
    jq_args+=(--arg "${words[i + 1]%%=*}" "${words[i + 1]#*=}")
done
jq -n '$ARGS.named' "${jq_args[@]}" >props-openstack.json

step "Verify the image with imgseal"
expect_exit 0 "props.json verifies" imgseal verify --props props.json "$IMAGE"
expect_exit 0 "the --format openstack properties verify" imgseal verify --props props-openstack.json "$IMAGE"
mkdir certs
imgseal cert export "$CERT_ID" --out "certs/$CERT_ID.pem"
expect_exit 0 "verifies with the certificate taken from a directory instead of the token" \
    imgseal verify --cert-dir certs --props props.json "$IMAGE"

step "Interoperability: verify the same signature with the openssl CLI"
HASH_METHOD="$(jq -r .img_signature_hash_method props.json)"   # e.g. SHA-256
OPENSSL_HASH="$(tr -d '-' <<<"${HASH_METHOD,,}")"              # e.g. sha256
jq -r .img_signature props.json | base64 -d >signature.bin
openssl x509 -in signer.pem -noout -pubkey >signer-cert.pub.pem
cmp -s signer-cert.pub.pem signer-key.pub.pem || die "the certificate's public key is not the token key's"
expect_exit 0 "openssl verifies imgseal's signature with the certificate's public key" \
    openssl dgst "-$OPENSSL_HASH" -verify signer-cert.pub.pem -sigopt rsa_padding_mode:pss \
    -signature signature.bin "$IMAGE"

step "Tamper with a copy of the image: verification must fail"
TAMPERED="tampered-$IMAGE"
cp "$IMAGE" "$TAMPERED"
OFFSET=$(($(stat -c %s "$TAMPERED") / 2))
flip_byte "$TAMPERED" "$OFFSET"
cmp -s "$IMAGE" "$TAMPERED" && die "flipping byte $OFFSET changed nothing"
ok "$TAMPERED: byte $OFFSET inverted"
expect_exit 1 "imgseal rejects the tampered image" imgseal verify --props props.json "$TAMPERED"
expect_exit 1 "openssl rejects it too" \
    openssl dgst "-$OPENSSL_HASH" -verify signer-cert.pub.pem -sigopt rsa_padding_mode:pss \
    -signature signature.bin "$TAMPERED"
expect_exit 0 "the original still verifies" imgseal verify --props props.json "$IMAGE"

# ---------------------------------------------------------------------------
step "Seal the CA as the trust anchor in the embedded TPM (swtpm)"
# A home of its own: sealing makes verify use the TPM anchors automatically,
# and a home you gave the demo stays as it was.
DEMO_HOME="$IMGSEAL_HOME"
TPM_HOME="$DEMO_DIR/tpm-home"
export IMGSEAL_HOME="$TPM_HOME"
unset TPM2TOOLS_TCTI TCTI # the embedded swtpm, not a TPM named by the environment
trap 'stop_embedded_swtpm "$TPM_HOME/swtpm"' EXIT
ok "IMGSEAL_HOME=$TPM_HOME; the certificates come from certs/ (--cert-dir)"
run_i imgseal anchors seal --cert ca.pem
[[ -f "$TPM_HOME/swtpm/swtpm.pid" ]] || die "the embedded swtpm was not started under $TPM_HOME/swtpm"
ok "swtpm started on demand, state in $TPM_HOME/swtpm; the anchor record is at NV 0x0181a000"
run_i imgseal anchors show

step "Verify with the sealed anchor: no --trusted-cert-id"
show_cmd imgseal verify --cert-dir certs --props props.json "$IMAGE"
VERIFY_OUT="$(imgseal verify --cert-dir certs --props props.json "$IMAGE" 2>&1)" \
    || { indent <<<"$VERIFY_OUT"; die "verification against the TPM-sealed anchor failed"; }
indent <<<"$VERIFY_OUT"
grep -q '^valid:' <<<"$VERIFY_OUT" || die "verify did not say valid"
grep -q 'trusted ids from the TPM-sealed anchors: ca' <<<"$VERIFY_OUT" \
    || die "verify did not take its trusted certificate from the TPM"
ok "valid, and the certificate chain was validated against the CA sealed in the TPM"
expect_exit 1 "the tampered image still fails" imgseal verify --cert-dir certs --props props.json "$TAMPERED"

step "Attest the sealed anchors to a verifier's nonce, and check it offline"
AK_ARGS=()
EK_CA=() # swtpm_setup's local CA issued the embedded TPM's EK certificate
for f in /var/lib/swtpm-localca/issuercert.pem /var/lib/swtpm-localca/swtpm-localca-rootca-cert.pem; do
    [[ -r "$f" ]] && EK_CA+=(--ek-ca "$f")
done
show_cmd imgseal attest enroll --out enrollment.json "${EK_CA[@]}"
if imgseal attest enroll --out enrollment.json "${EK_CA[@]}" 2>&1 | indent; then
    AK_ARGS=(--ak enrollment.json)
    ok "the attestation key is tied to the TPM's endorsement key (EK certificate + credential activation)"
    if ((${#EK_CA[@]})); then
        # The verifier's own check: a secret only this TPM can open.
        run_i imgseal attest challenge enrollment.json "${EK_CA[@]}" --out challenge.json --secret-out verifier-secret.json
        run_i imgseal attest activate challenge.json --out response.json
        run_i imgseal attest confirm enrollment.json --secret verifier-secret.json --response response.json --out confirmed-enrollment.json
        AK_ARGS=(--ak confirmed-enrollment.json)
        ok "the verifier confirmed the AK itself (MakeCredential on its side, ActivateCredential on the host)"
    fi
else
    log "no EK certificate in the embedded TPM (swtpm_setup could not run): the AK is not pinned"
fi
NONCE="$(openssl rand -hex 16)"
run_i imgseal attest --nonce "$NONCE" --out attestation.json
expect_exit 0 "the TPM's certification of the anchors verifies for this nonce" \
    imgseal attest verify attestation.json --nonce "$NONCE" --expected-anchors "$TPM_HOME/anchors/bundle" "${AK_ARGS[@]}"
expect_exit 1 "the same attestation is refused for another nonce (no replay)" \
    imgseal attest verify attestation.json --nonce "$(openssl rand -hex 16)" --expected-anchors "$TPM_HOME/anchors/bundle" "${AK_ARGS[@]}"

printf '\nEverything is in %s (IMGSEAL_HOME=%s; TPM step: %s).\n' "$DEMO_DIR" "$DEMO_HOME" "$TPM_HOME"
echo "demo OK"
