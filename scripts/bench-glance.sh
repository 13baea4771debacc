#!/usr/bin/env bash
# Glance costs (a benchmark, not a test), against the real stack of
# scripts/openstack/, medians of several runs, peers in the same run, on a
# SIZE (default 2 GiB) image:
#   - `imgseal publish` vs `openssl dgst -sign` + curl (create with the four
#     properties, upload with -T); bar <= 1.10x; peak RSS <= 64 MiB;
#   - `imgseal verify --image` vs curl downloading the image to /dev/null
#     (bar <= 1.05x), and vs `openstack image save` + `imgseal verify` of the
#     saved file (bar <= 0.6x);
#   - `imgseal audit` over 200 images (metadata only); bar <= 5 s.
set -euo pipefail
# shellcheck source=scripts/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
ensure_packages "${BUILD_PACKAGES[@]}" openssl bc curl jq time
build_release
runs=${RUNS:-3}
size=${SIZE:-$((2 << 30))}
[[ -f "$REPO/target/openstack/admin.env" ]] || bash "$REPO/scripts/openstack/setup.sh"
bash "$REPO/scripts/openstack/start.sh"
# shellcheck source=/dev/null
source "$REPO/target/openstack/admin.env"
OSC="$REPO/target/openstack/venv/bin/openstack"
work=$(mktemp -d)
export IMGSEAL_HOME="$work/home"
# A project of its own, as a release engineer has: `audit` then sees this
# run's images only, not every project's as the admin would.
bench_project=imgseal-bench-$$
bench_password=$(openssl rand -hex 12)
"$OSC" project create "$bench_project" >/dev/null
"$OSC" user create --password "$bench_password" --project "$bench_project" "$bench_project" >/dev/null
for role in member creator; do "$OSC" role add --project "$bench_project" --user "$bench_project" "$role"; done
admin_osc() { OS_USERNAME=admin OS_PASSWORD=$admin_password OS_PROJECT_NAME=admin "$OSC" "$@"; }
admin_password=$OS_PASSWORD
export OS_USERNAME=$bench_project OS_PASSWORD=$bench_password OS_PROJECT_NAME=$bench_project
cleanup() {
    # Every image of the bench's project, whatever state it is in.
    if [[ -n "${token:-}" ]]; then
        curl -s -H "X-Auth-Token: $token" "$glance/v2/images?limit=1000&owner=$project_id" \
            | jq -r '.images[].id' | xargs -r -P 4 -I{} curl -s -o /dev/null -X DELETE -H "X-Auth-Token: $token" "$glance/v2/images/{}"
    fi
    admin_osc user delete "$bench_project" >/dev/null 2>&1 || true
    admin_osc project delete "$bench_project" >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT
cd "$work"

seconds() { # command…: wall seconds of one run
    local start end
    start=$(date +%s.%N)
    "$@" >/dev/null 2>"$work/last.err" || die "$* failed: $(tail -n 1 "$work/last.err")"
    end=$(date +%s.%N)
    echo "$end - $start" | bc
}
median_of() { # command…: median wall seconds over $runs runs
    local i out=()
    for ((i = 0; i < runs; i++)); do out+=("$(seconds "$@")"); done
    printf '%s\n' "${out[@]}" | median
}
login() {
    curl -s -D - -o /dev/null -H 'Content-Type: application/json' -d "$(jq -n \
        --arg u "$OS_USERNAME" --arg p "$OS_PASSWORD" --arg pr "$OS_PROJECT_NAME" \
        '{auth: {identity: {methods: ["password"], password: {user: {name: $u, domain: {name: "Default"}, password: $p}}},
          scope: {project: {name: $pr, domain: {name: "Default"}}}}}')" \
        "$OS_AUTH_URL/auth/tokens" | tr -d '\r' | awk -F': ' 'tolower($1) == "x-subject-token" { print $2 }'
}
token=$(login)
project_id=$(curl -s -H "X-Auth-Token: $token" -H "X-Subject-Token: $token" "$OS_AUTH_URL/auth/tokens" | jq -r .token.project.id)
glance=$(curl -s -H "X-Auth-Token: $token" "$OS_AUTH_URL/auth/catalog" \
    | jq -r '.catalog[] | select(.type == "image") | .endpoints[] | select(.interface == "public") | .url')

log "making a $size-byte image and the keys"
head -c "$size" /dev/urandom >image.raw
openssl req -x509 -newkey rsa:3072 -nodes -keyout ca.key -out ca.pem -days 30 -subj "/CN=Bench CA" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
uri=$("$IMGSEAL_BIN" key generate --type rsa-pss-3072 --label bench)
"$IMGSEAL_BIN" key csr --key "$uri" --subject "CN=bench" --out bench.csr
openssl x509 -req -in bench.csr -CA ca.pem -CAkey ca.key -set_serial 7 -days 30 -out bench.pem 2>/dev/null
cert=$("$IMGSEAL_BIN" cert publish bench.pem)
ca=$("$IMGSEAL_BIN" cert publish ca.pem)
# The peer's key is a file, as `openssl dgst -sign` needs.
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:3072 -out peer.key 2>/dev/null
openssl req -new -key peer.key -subj /CN=peer -out peer.csr
openssl x509 -req -in peer.csr -CA ca.pem -CAkey ca.key -set_serial 8 -days 30 -out peer.pem 2>/dev/null
peer_cert=$("$IMGSEAL_BIN" cert publish peer.pem)

n=0
ours_publish() {
    n=$((n + 1))
    "$IMGSEAL_BIN" --json publish --key "$uri" --cert-id "$cert" --name "bench-$n" --property tag=x -q image.raw >published.json
}
peer_publish() {
    local sig id token
    # A token per run, as imgseal logs in per run (and as the other peers here do).
    token=$(login)
    sig=$(openssl dgst -sha256 -sign peer.key -sigopt rsa_padding_mode:pss -sigopt rsa_pss_saltlen:max image.raw | base64 -w0)
    id=$(curl -s -f -H "X-Auth-Token: $token" -H 'Content-Type: application/json' -d "$(jq -n --arg s "$sig" --arg c "$peer_cert" \
        '{name: "peer", disk_format: "raw", container_format: "bare", tags: ["imgseal-bench"], img_signature: $s,
          img_signature_hash_method: "SHA-256", img_signature_key_type: "RSA-PSS", img_signature_certificate_uuid: $c}')" \
        "$glance/v2/images" | jq -r .id)
    curl -s -f -X PUT -H "X-Auth-Token: $token" -H 'Content-Type: application/octet-stream' -T image.raw "$glance/v2/images/$id/file"
    [[ $(curl -s -H "X-Auth-Token: $token" "$glance/v2/images/$id" | jq -r .status) == active ]]
}
parts=${PARTS:-publish verify audit}
if [[ " $parts " == *" publish "* ]]; then
log "publish: $runs runs each"
ours=$(median_of ours_publish)
peer=$(median_of peer_publish)
rss=$(/usr/bin/time -f %M "$IMGSEAL_BIN" publish --key "$uri" --cert-id "$cert" --name bench-rss -q image.raw 2>&1 >/dev/null | tail -n 1)
printf 'publish: imgseal %.2f s, openssl dgst -sign + curl %.2f s: ratio %.3f (bar <= 1.10); peak RSS %d MiB (bar <= 64)\n' \
    "$ours" "$peer" "$(echo "$ours / $peer" | bc -l)" "$((rss / 1024))"
fi
[[ -f published.json ]] || ours_publish
id=$(jq -r .image_id published.json)

if [[ " $parts " == *" verify "* ]]; then
log "verify --image: $runs runs each"
curl_download() { curl -s -f -H "X-Auth-Token: $(login)" "$glance/v2/images/$id/file" -o /dev/null; }
save_then_verify() {
    "$OSC" image save --file saved.raw "$id"
    "$OSC" image show -f json "$id" >props.json
    "$IMGSEAL_BIN" verify --props props.json --trusted-cert-id "$ca" saved.raw
    rm -f saved.raw
}
ours=$(median_of "$IMGSEAL_BIN" verify --image "$id" --trusted-cert-id "$ca" -q)
peer=$(median_of curl_download)
cli=$(median_of save_then_verify)
rss=$(/usr/bin/time -f %M "$IMGSEAL_BIN" verify --image "$id" --trusted-cert-id "$ca" -q 2>&1 >/dev/null | tail -n 1)
printf 'verify --image: imgseal %.2f s, curl download %.2f s: ratio %.3f (bar <= 1.05); openstack image save + imgseal verify %.2f s: ratio %.3f (bar <= 0.6); peak RSS %d MiB\n' \
    "$ours" "$peer" "$(echo "$ours / $peer" | bc -l)" "$cli" "$(echo "$ours / $cli" | bc -l)" "$((rss / 1024))"

fi
if [[ " $parts " == *" audit "* ]]; then
log "audit: 200 images"
props=$(jq -c '{img_signature, img_signature_hash_method, img_signature_key_type, img_signature_certificate_uuid}' published.json)
seq 1 200 | xargs -P 4 -I{} curl -s -f -o /dev/null -H "X-Auth-Token: $token" -H 'Content-Type: application/json' \
    -d "$(jq -c '. + {name: "audit", disk_format: "raw", container_format: "bare", tags: ["imgseal-bench"]}' <<<"$props")" "$glance/v2/images"
listed=$("$IMGSEAL_BIN" --json audit --trusted-cert-id "$ca" -q | tail -n 1 | jq .summary.images) || true
ours=$(median_of bash -c "'$IMGSEAL_BIN' audit --trusted-cert-id '$ca' -q --warn-days 0 >/dev/null || [ \$? -eq 1 ]")
printf 'audit: %s images (metadata) in %.2f s (bar <= 5)\n' "$listed" "$ours"
fi
