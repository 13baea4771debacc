#!/usr/bin/env bash
# Barbican costs (a benchmark, not a test), against the real stack of
# scripts/openstack/, medians of several runs, peers in the same run:
#   - `imgseal cert publish` vs the same REST calls made with curl (a token,
#     then POST /v1/secrets), start-up included; bar <= 1.2x;
#   - a certificate fetch (`imgseal cert show --cert-source barbican`) vs curl
#     (a token, GET the secret, GET its payload); bar <= 1.2x;
#   - `verify --cert-source barbican` over `--cert-dir` for the docs' chain
#     (Nova's 4-certificate example); bar <= +50 ms;
#   - the openstack CLI (`openstack secret get`), reported beside.
set -euo pipefail
# shellcheck source=scripts/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
ensure_packages "${BUILD_PACKAGES[@]}" openssl bc curl jq
build_release
runs=${RUNS:-7}
[[ -f "$REPO/target/openstack/admin.env" ]] || bash "$REPO/scripts/openstack/setup.sh"
bash "$REPO/scripts/openstack/start.sh"
# shellcheck source=/dev/null
source "$REPO/target/openstack/admin.env"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export IMGSEAL_HOME="$work/home"
cd "$work"
openssl req -x509 -newkey rsa:2048 -nodes -keyout k.pem -out c.pem -days 30 -subj /CN=bench 2>/dev/null
mkdir -p local

seconds() { # command…: wall seconds of one run
    local start end
    start=$(date +%s.%N)
    "$@" >/dev/null 2>&1
    end=$(date +%s.%N)
    echo "$end - $start" | bc
}
median_of() { # command…: median wall seconds over $runs runs (after one checked run)
    local i out=()
    "$@" >/dev/null 2>"$work/last.err" || die "$* failed: $(tail -n 1 "$work/last.err")"
    for ((i = 0; i < runs; i++)); do out+=("$(seconds "$@")"); done
    printf '%s\n' "${out[@]}" | median
}
token() {
    curl -s -D - -o /dev/null -H 'Content-Type: application/json' -d "$(jq -n \
        --arg u "$OS_USERNAME" --arg p "$OS_PASSWORD" --arg pr "$OS_PROJECT_NAME" \
        '{auth: {identity: {methods: ["password"], password: {user: {name: $u, domain: {name: "Default"}, password: $p}}},
          scope: {project: {name: $pr, domain: {name: "Default"}}}}}')" \
        "$OS_AUTH_URL/auth/tokens" | tr -d '\r' | awk -F': ' 'tolower($1) == "x-subject-token" { print $2 }'
}
barbican=$(curl -s -H "X-Auth-Token: $(token)" "$OS_AUTH_URL/auth/catalog" \
    | jq -r '.catalog[] | select(.type == "key-manager") | .endpoints[] | select(.interface == "public") | .url')
curl_publish() {
    local t
    t=$(token)
    curl -s -f -H "X-Auth-Token: $t" -H 'Content-Type: application/json' -d "$(jq -n --arg p "$(base64 -w0 c.pem)" \
        '{name: "bench", secret_type: "certificate", payload: $p, payload_content_type: "application/octet-stream", payload_content_encoding: "base64"}')" \
        "$barbican/v1/secrets" >/dev/null
}
curl_fetch() {
    local t
    t=$(token)
    curl -s -f -H "X-Auth-Token: $t" -H 'Accept: application/json' "$barbican/v1/secrets/$1" >/dev/null
    curl -s -f -H "X-Auth-Token: $t" -H 'Accept: application/octet-stream' "$barbican/v1/secrets/$1/payload" >/dev/null
}
uuid=$("$IMGSEAL_BIN" cert publish c.pem --cert-dir local)

ours=$(median_of "$IMGSEAL_BIN" cert publish c.pem --cert-dir local --name bench)
peer=$(median_of curl_publish)
printf 'cert publish: imgseal %.3f s, curl %.3f s: ratio %.3f (bar <= 1.2)\n' "$ours" "$peer" "$(echo "$ours / $peer" | bc -l)"
ours=$(median_of "$IMGSEAL_BIN" cert show "$uuid" --cert-source barbican)
peer=$(median_of curl_fetch "$uuid")
cli=$(median_of "$REPO/target/openstack/venv/bin/openstack" secret get --payload_content_type application/octet-stream --file "$work/got.pem" "$barbican/v1/secrets/$uuid")
printf 'certificate fetch: imgseal %.3f s, curl %.3f s: ratio %.3f (bar <= 1.2); openstack secret get %.3f s\n' \
    "$ours" "$peer" "$(echo "$ours / $peer" | bc -l)" "$cli"

# The docs' chain shape: CA -> Intermediate A -> Intermediate B -> client.
ca_ext=("basicConstraints=critical,CA:TRUE" "keyUsage=critical,keyCertSign,cRLSign")
openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 30 -subj "/CN=Bench CA" \
    -addext "${ca_ext[0]}" -addext "${ca_ext[1]}" 2>/dev/null
issue() { # name issuer extension…
    local name=$1 issuer=$2
    shift 2
    printf '%s\n' "$@" >"$name.ext"
    openssl req -new -newkey rsa:2048 -nodes -keyout "$name.key" -subj "/CN=Bench $name" -out "$name.csr" 2>/dev/null
    openssl x509 -req -in "$name.csr" -CA "$issuer.pem" -CAkey "$issuer.key" -CAcreateserial -days 30 \
        -extfile "$name.ext" -out "$name.pem" 2>/dev/null
}
issue inta ca "${ca_ext[@]}"
issue intb inta "${ca_ext[@]}"
issue client intb "keyUsage=critical,digitalSignature"
mkdir -p dir
ids=()
for c in ca inta intb client; do
    id=$("$IMGSEAL_BIN" cert publish "$c.pem" --cert-dir dir)
    ids+=("$id")
done
head -c 1048576 /dev/urandom >image.raw
openssl dgst -sha256 -sign client.key -sigopt rsa_padding_mode:pss -out image.sig image.raw
jq -n --arg s "$(base64 -w0 image.sig)" --arg u "${ids[3]}" '{img_signature: $s, img_signature_hash_method: "SHA-256",
    img_signature_key_type: "RSA-PSS", img_signature_certificate_uuid: $u}' >props.json
trusted="${ids[0]},${ids[1]},${ids[2]}"
# With --os-token-cache the login happens once, before the timed runs (a
# compute host verifying image after image); without it every run logs in.
export XDG_RUNTIME_DIR="$work/run"
mkdir -m 0700 "$XDG_RUNTIME_DIR"
for policy in nova strict; do
    dir_s=$(median_of "$IMGSEAL_BIN" verify --quiet --policy "$policy" --props props.json --cert-dir dir --trusted-cert-id "$trusted" image.raw)
    for cache in "" --os-token-cache; do
        bb_s=$(median_of "$IMGSEAL_BIN" verify --quiet --policy "$policy" --props props.json --cert-source barbican \
            --trusted-cert-id "$trusted" ${cache:+"$cache"} image.raw)
        printf 'verify (%s), the 4-certificate chain: --cert-dir %.3f s, Barbican%s %.3f s: +%.0f ms (bar <= +50 ms)\n' \
            "$policy" "$dir_s" "${cache:+ $cache}" "$bb_s" "$(echo "($bb_s - $dir_s) * 1000" | bc -l)"
    done
done
# The floor under any client that reads what castellan reads: the same eight
# requests (metadata and payload of each certificate) all at once with curl,
# with a token Barbican has already validated.
t=$(token)
args=()
for id in "${ids[@]}"; do
    args+=(-H "X-Auth-Token: $t" -H 'Accept: application/json' -o /dev/null "$barbican/v1/secrets/$id" --next)
    args+=(-H "X-Auth-Token: $t" -H 'Accept: application/octet-stream' -o /dev/null "$barbican/v1/secrets/$id/payload" --next)
done
unset 'args[${#args[@]}-1]' # the last --next
floor_fetch() {
    curl -s -f --parallel --parallel-immediate --parallel-max 8 "${args[@]}"
}
floor_fetch
floor=$(median_of floor_fetch)
printf 'the eight requests at once with curl (a validated token): %.0f ms\n' "$(echo "$floor * 1000" | bc -l)"
