#!/usr/bin/env bash
# Benchmark (not a test): `imgseal sign` against the openssl CLI and pkcs11-tool.
#
# 1. Large image (BENCH_SIZE, default 2 GiB, page cache warm): for each of
#    SHA-224/256/384/512, BENCH_RUNS rounds (default 5) of
#        imgseal sign --key URI --cert-id bench --no-cert-check --hash SHA-xxx FILE   (key in the embedded SoftHSM token)
#        openssl dgst -shaxxx -sign key.pem -sigopt rsa_padding_mode:pss -sigopt rsa_pss_saltlen:max FILE
#    run alternately (the order flips every round), after one untimed warm-up
#    run of each. Bars: median wall time ratio imgseal/openssl <= 1.05 and
#    imgseal's peak RSS <= 64 MiB. Each round also measures one core's
#    single-stream rate of the hash, `openssl speed -evp shaxxx -bytes 16384`
#    (1 s): the limit of one hash stream. Issue #15's targets: imgseal's rate
#    >= 0.95x that limit, and for SHA-224/256 imgseal/openssl <= 0.85 (for
#    SHA-384/512 the rate alone: openssl dgst is already near their limit).
# 2. Small image (1 KiB): BENCH_SMALL_RUNS rounds (default 21), alternating, of
#        imgseal sign --hash SHA-256 small.img                          (the whole process)
#        pkcs11-tool --sign --mechanism RSA-PKCS-PSS … -i small.sha256  (same key, precomputed digest)
#    Bar: median wall time ratio <= 1.2.
#
# Wall time is taken by this script around each process (bash $EPOCHREALTIME,
# microseconds); for the large image the process runs under
# /usr/bin/time -f "%e %M", which gives the peak RSS (and a 10 ms %e kept in
# the CSV). Nothing runs in parallel: the machine has 2 cores.
#
# Environment:
#   BENCH_SIZE        large image size, coreutils/IEC suffixes (2G, 64M, …)   default 2G
#   BENCH_RUNS        timed rounds per hash for the large image                default 5
#   BENCH_SMALL_RUNS  timed rounds for the 1 KiB image                         default 21
#   BENCH_DIR         where the images, keys and results go                    default target/bench
#   BENCH_KEY_TYPE    rsa-pss-2048|3072|4096 or ecc-<curve>                    default rsa-pss-3072
#   BENCH_HASHES      hash methods of the large-image part                     default "SHA-224 SHA-256 SHA-384 SHA-512"
#   BENCH_STRICT      1: exit 1 when a bar is missed (default: report only, exit 0)
#   IMGSEAL_BIN       an imgseal binary to use instead of building one
#
# Output: the tables on stdout (also in $BENCH_DIR/summary.txt) and every
# measurement in $BENCH_DIR/results.csv.
set -Eeuo pipefail
export LC_ALL=C # "." decimal separator in $EPOCHREALTIME, printf and awk

# shellcheck source=lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

trap 'log "error: failed at line $LINENO: $BASH_COMMAND"' ERR

BENCH_SIZE="${BENCH_SIZE:-2G}"
BENCH_RUNS="${BENCH_RUNS:-5}"
BENCH_SMALL_RUNS="${BENCH_SMALL_RUNS:-21}"
BENCH_DIR="${BENCH_DIR:-$REPO/target/bench}"
BENCH_KEY_TYPE="${BENCH_KEY_TYPE:-rsa-pss-3072}"
BENCH_HASHES="${BENCH_HASHES:-SHA-224 SHA-256 SHA-384 SHA-512}"
BENCH_STRICT="${BENCH_STRICT:-0}"

RATIO_BAR=1.05
RSS_BAR_MIB=64
SMALL_RATIO_BAR=1.2
SMALL_WARMUP=3

[[ "$BENCH_RUNS" =~ ^[1-9][0-9]*$ ]] || die "BENCH_RUNS=$BENCH_RUNS: not a positive integer"
[[ "$BENCH_SMALL_RUNS" =~ ^[1-9][0-9]*$ ]] || die "BENCH_SMALL_RUNS=$BENCH_SMALL_RUNS: not a positive integer"
BYTES="$(numfmt --from=iec "$BENCH_SIZE" 2>/dev/null || numfmt --from=iec-i "$BENCH_SIZE" 2>/dev/null)" \
    || die "BENCH_SIZE=$BENCH_SIZE: not a size (use e.g. 2G, 512M, 64M)"
((BYTES > 0)) || die "BENCH_SIZE=$BENCH_SIZE: must be more than 0 bytes"

case "$BENCH_KEY_TYPE" in
    rsa-pss-2048 | rsa-pss-3072 | rsa-pss-4096)
        OSSL_GENPKEY=(-algorithm RSA -pkeyopt "rsa_keygen_bits:${BENCH_KEY_TYPE#rsa-pss-}")
        # imgseal signs with the largest salt (as Glance's cursive expects);
        # "max" makes openssl do the same work.
        OSSL_SIGOPTS=(-sigopt rsa_padding_mode:pss -sigopt rsa_pss_saltlen:max)
        P11_SIGN=(--mechanism RSA-PKCS-PSS --hash-algorithm SHA256 --mgf MGF1-SHA256 --salt-len -2)
        ;;
    ecc-*)
        OSSL_GENPKEY=(-algorithm EC -pkeyopt "ec_paramgen_curve:${BENCH_KEY_TYPE#ecc-}")
        OSSL_SIGOPTS=()
        P11_SIGN=(--mechanism ECDSA --signature-format openssl)
        ;;
    *) die "BENCH_KEY_TYPE=$BENCH_KEY_TYPE: this benchmark supports rsa-pss-* and ecc-* keys" ;;
esac

ensure_packages softhsm2 opensc openssl time jq "${BUILD_PACKAGES[@]}"
build_release

mkdir -p "$BENCH_DIR"
BENCH_DIR="$(cd "$BENCH_DIR" && pwd)"
CSV="$BENCH_DIR/results.csv"
ERRLOG="$BENCH_DIR/stderr.log"
SUMMARY="$BENCH_DIR/summary.txt"
: >"$ERRLOG"
echo "tool,case,hash,round,wall_s,time_e_s,max_rss_kib" >"$CSV"

# Everything printed from here on also goes to summary.txt.
exec > >(tee "$SUMMARY")

# ---------------------------------------------------------------------------
softhsm_module() {
    local p
    for p in ${IMGSEAL_SOFTHSM_MODULE:-} /usr/lib/softhsm/libsofthsm2.so \
        /usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so /usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so \
        /usr/lib64/pkcs11/libsofthsm2.so /usr/local/lib/softhsm/libsofthsm2.so; do
        [[ -f "$p" ]] && { echo "$p"; return 0; }
    done
    die "libsofthsm2.so not found (set IMGSEAL_SOFTHSM_MODULE)"
}
pkg_version() { dpkg-query -W -f '${Version}' "$1" 2>/dev/null || echo "?"; }

# Microseconds of wall time of one run of CMD…; stdout dropped, stderr to the log.
# Sets T_US. Dies if CMD fails.
time_us() {
    local t0 t1 rc=0
    t0=$EPOCHREALTIME
    "$@" >/dev/null 2>>"$ERRLOG" || rc=$?
    t1=$EPOCHREALTIME
    ((rc == 0)) || { tail -n 5 "$ERRLOG" >&2; die "exit $rc from: $*"; }
    T_US=$((${t1/./} - ${t0/./}))
}

# One run of CMD… under /usr/bin/time; records a CSV row for TOOL CASE HASH ROUND.
measure() {
    local tool=$1 case=$2 hash=$3 round=$4 e rss
    shift 4
    local tf="$BENCH_DIR/.time.out"
    time_us /usr/bin/time -f '%e %M' -o "$tf" "$@"
    read -r e rss <"$tf"
    printf '%s,%s,%s,%s,%d.%06d,%s,%s\n' "$tool" "$case" "$hash" "$round" \
        $((T_US / 1000000)) $((T_US % 1000000)) "$e" "$rss" >>"$CSV"
}

# Plain wall-time run (no /usr/bin/time in between), for the small image.
measure_plain() {
    local tool=$1 case=$2 hash=$3 round=$4
    shift 4
    time_us "$@"
    printf '%s,%s,%s,%s,%d.%06d,,\n' "$tool" "$case" "$hash" "$round" \
        $((T_US / 1000000)) $((T_US % 1000000)) >>"$CSV"
}

# Column COL (1-based) of the CSV rows for TOOL CASE HASH.
column() {
    awk -F, -v t="$1" -v c="$2" -v h="$3" -v col="$4" \
        'NR > 1 && $1 == t && $2 == c && $3 == h { print $col }' "$CSV"
}
max_of() { sort -g | tail -n 1; }

# ---------------------------------------------------------------------------
SOFTHSM_MODULE="$(softhsm_module)"
echo "== imgseal sign benchmark  $(date -u +%Y-%m-%dT%H:%M:%SZ)"
echo "machine:  $(nproc) CPUs, $(cpu_summary),"\
     "$(awk '/MemTotal/ { printf "%.1f GiB RAM", $2 / 1048576 }' /proc/meminfo), Linux $(uname -r)"
echo "software: $("$IMGSEAL_BIN" --version), $(openssl version),"\
     "softhsm2 $(pkg_version softhsm2), opensc $(pkg_version opensc)"
echo "key:      $BENCH_KEY_TYPE (imgseal: embedded SoftHSM token; openssl: software key of the same type)"
echo "dir:      $BENCH_DIR"

# A fresh embedded token, with one key.
export IMGSEAL_HOME="$BENCH_DIR/imgseal-home"
unset IMGSEAL_TOKEN
export SOFTHSM2_CONF="$IMGSEAL_HOME/softhsm2.conf" # for pkcs11-tool (imgseal sets the same itself)
rm -rf "$IMGSEAL_HOME"
KEY_JSON="$("$IMGSEAL_BIN" --json key generate --type "$BENCH_KEY_TYPE" --label bench 2>>"$ERRLOG")"
KEY_URI="$(jq -r .uri <<<"$KEY_JSON")"
KEY_ID="$(jq -r .id <<<"$KEY_JSON")"
jq -r .public_key_pem <<<"$KEY_JSON" >"$BENCH_DIR/imgseal-key.pub.pem"
OSSL_KEY="$BENCH_DIR/openssl-key.pem"
openssl genpkey -quiet "${OSSL_GENPKEY[@]}" -out "$OSSL_KEY"

# ---------------------------------------------------------------------------
IMAGE="$BENCH_DIR/image-$BENCH_SIZE.bin"
if [[ ! -f "$IMAGE" ]] || (($(stat -c %s "$IMAGE") != BYTES)); then
    log "writing $IMAGE ($BYTES random bytes)…"
    head -c "$BYTES" /dev/urandom >"$IMAGE.tmp"
    mv "$IMAGE.tmp" "$IMAGE"
fi
AVAIL_KIB="$(awk '/MemAvailable/ { print $2 }' /proc/meminfo)"
((AVAIL_KIB * 1024 > BYTES * 11 / 10)) \
    || log "warning: $BYTES bytes may not fit in the page cache ($AVAIL_KIB KiB available): results will include disk reads"
cat "$IMAGE" >/dev/null
cat "$IMAGE" >/dev/null
if command -v fincore >/dev/null; then
    echo "page cache: $(fincore --bytes --noheadings --output RES,SIZE "$IMAGE" | awk '{ printf "%.0f of %.0f bytes of the image cached", $1, $2 }')"
fi

echo
echo "== 1. Large image: $BENCH_SIZE ($BYTES bytes), page cache warm, $BENCH_RUNS alternating rounds per hash (+1 warm-up each)"
LARGE_ROWS=()
MISSED=0
for hash in $BENCH_HASHES; do
    ossl_hash="${hash,,}"
    ossl_hash="${ossl_hash//-/}" # SHA-256 -> sha256
    imgseal_cmd=("$IMGSEAL_BIN" sign --key "$KEY_URI" --cert-id bench --no-cert-check --hash "$hash" "$IMAGE")
    openssl_cmd=(openssl dgst "-$ossl_hash" -sign "$OSSL_KEY" "${OSSL_SIGOPTS[@]}" -out /dev/null "$IMAGE")
    log "$hash: warm-up"
    time_us "${imgseal_cmd[@]}"
    time_us "${openssl_cmd[@]}"
    for ((r = 1; r <= BENCH_RUNS; r++)); do
        printf 'speed,large,%s,%s,%s,,\n' "$hash" "$r" "$(speed_gbs "$ossl_hash" 16384)" >>"$CSV"
        if ((r % 2)); then
            measure imgseal large "$hash" "$r" "${imgseal_cmd[@]}"
            measure openssl large "$hash" "$r" "${openssl_cmd[@]}"
        else
            measure openssl large "$hash" "$r" "${openssl_cmd[@]}"
            measure imgseal large "$hash" "$r" "${imgseal_cmd[@]}"
        fi
    done
    mi="$(column imgseal large "$hash" 5 | median)"
    mo="$(column openssl large "$hash" 5 | median)"
    rss_i="$(column imgseal large "$hash" 7 | max_of)"
    rss_o="$(column openssl large "$hash" 7 | max_of)"
    speed="$(column speed large "$hash" 5 | median | awk '{ printf "%.3f", $1 }')"
    rate="$(awk -v b="$BYTES" -v t="$mi" 'BEGIN { printf "%.3f", b / t / 1e9 }')"
    ratio="$(awk -v a="$mi" -v b="$mo" 'BEGIN { printf "%.3f", a / b }')"
    of_speed="$(awk -v a="$rate" -v b="$speed" 'BEGIN { printf "%.3f", a / b }')"
    # The 0.85 ratio is the issue's bar for SHA-224/256 only: it follows from
    # `openssl dgst -sha256` reaching ~0.83 of one stream's limit. For
    # SHA-384/512 openssl dgst already runs at ~0.94 of it, so 0.85 would need
    # 1.1x the limit of one stream; there the bar is the rate alone.
    openssl_of_speed="$(awk -v b="$BYTES" -v t="$mo" -v s="$speed" 'BEGIN { printf "%.3f", b / t / 1e9 / s }')"
    target="$(awk -v r="$ratio" -v s="$of_speed" -v h="$hash" -v o="$openssl_of_speed" 'BEGIN {
        v = ""
        if (s < 0.95) v = v " rate<0.95xspeed"
        wide = (h == "SHA-384" || h == "SHA-512")
        if (!wide && r > 0.85) v = v " ratio>0.85"
        print (v == "" ? "met" : "missed (" substr(v, 2) ")") (wide ? " (rate only; openssl dgst at " o " of speed)" : "")
    }')"
    rss_mib="$(awk -v k="$rss_i" 'BEGIN { printf "%.1f", k / 1024 }')"
    rss_o_mib="$(awk -v k="$rss_o" 'BEGIN { printf "%.1f", k / 1024 }')"
    verdict="$(awk -v r="$ratio" -v m="$rss_mib" -v rb="$RATIO_BAR" -v mb="$RSS_BAR_MIB" 'BEGIN {
        v = ""
        if (r > rb) v = v " ratio>" rb
        if (m > mb) v = v " RSS>" mb "MiB"
        print (v == "" ? "PASS" : "FAIL (" substr(v, 2) ")")
    }')"
    [[ "$verdict" == PASS ]] || MISSED=1
    LARGE_ROWS+=("$(printf '%-8s  %16.3f  %16.3f  %7s  %20s  %-40s %12s %12s %8s  %s' "$hash" "$mi" "$mo" "$ratio" \
        "$rss_mib" "$verdict" "$rate" "$speed" "$of_speed" "$target")")
    log "$hash: imgseal $mi s, openssl $mo s, ratio $ratio, imgseal RSS $rss_mib MiB (openssl $rss_o_mib MiB)"
done
echo
printf '%-8s  %16s  %16s  %7s  %20s  %-40s %12s %12s %8s  %s\n' hash "imgseal median s" "openssl median s" ratio \
    "imgseal peak RSS MiB" "verdict (ratio <= $RATIO_BAR, RSS <= $RSS_BAR_MIB MiB)" "imgseal GB/s" "speed GB/s" \
    "of speed" "#15 (>= 0.95 of speed, ratio <= 0.85)"
printf '%s\n' "${LARGE_ROWS[@]}"

# ---------------------------------------------------------------------------
echo
echo "== 2. Small image: 1 KiB, $BENCH_SMALL_RUNS alternating rounds (+$SMALL_WARMUP warm-up each)"
SMALL="$BENCH_DIR/small-1KiB.img"
SMALL_DIGEST="$BENCH_DIR/small-1KiB.sha256"
P11_SIG="$BENCH_DIR/small-1KiB.p11.sig"
head -c 1024 /dev/urandom >"$SMALL"
openssl dgst -sha256 -binary -out "$SMALL_DIGEST" "$SMALL"
small_imgseal=("$IMGSEAL_BIN" sign --key "$KEY_URI" --cert-id bench --no-cert-check --hash SHA-256 "$SMALL")
small_p11=(pkcs11-tool --module "$SOFTHSM_MODULE" --token-label imgseal --login
    --pin "$(cat "$IMGSEAL_HOME/user.pin")" --sign "${P11_SIGN[@]}" --id "$KEY_ID"
    -i "$SMALL_DIGEST" -o "$P11_SIG")

# Both must really sign with the token key: check one signature of each.
"${small_p11[@]}" 2>>"$ERRLOG"
p11_verify=(openssl pkeyutl -verify -pubin -inkey "$BENCH_DIR/imgseal-key.pub.pem"
    -in "$SMALL_DIGEST" -sigfile "$P11_SIG" -pkeyopt digest:sha256)
[[ "$BENCH_KEY_TYPE" == rsa-pss-* ]] && p11_verify+=(-pkeyopt rsa_padding_mode:pss -pkeyopt rsa_pss_saltlen:auto)
"${p11_verify[@]}" >>"$ERRLOG" 2>&1 || die "pkcs11-tool's signature does not verify with the token key"
"${small_imgseal[@]}" 2>>"$ERRLOG" | jq -r .img_signature | base64 -d >"$BENCH_DIR/small-1KiB.imgseal.sig"
openssl dgst -sha256 -verify "$BENCH_DIR/imgseal-key.pub.pem" "${OSSL_SIGOPTS[@]/rsa_pss_saltlen:max/rsa_pss_saltlen:auto}" \
    -signature "$BENCH_DIR/small-1KiB.imgseal.sig" "$SMALL" >>"$ERRLOG" 2>&1 \
    || die "imgseal's signature of the small image does not verify"

for ((r = 1; r <= SMALL_WARMUP; r++)); do
    time_us "${small_imgseal[@]}"
    time_us "${small_p11[@]}"
done
for ((r = 1; r <= BENCH_SMALL_RUNS; r++)); do
    if ((r % 2)); then
        measure_plain imgseal small SHA-256 "$r" "${small_imgseal[@]}"
        measure_plain pkcs11-tool small SHA-256 "$r" "${small_p11[@]}"
    else
        measure_plain pkcs11-tool small SHA-256 "$r" "${small_p11[@]}"
        measure_plain imgseal small SHA-256 "$r" "${small_imgseal[@]}"
    fi
done
smi="$(column imgseal small SHA-256 5 | median)"
smp="$(column pkcs11-tool small SHA-256 5 | median)"
sratio="$(awk -v a="$smi" -v b="$smp" 'BEGIN { printf "%.3f", a / b }')"
sverdict="$(awk -v r="$sratio" -v b="$SMALL_RATIO_BAR" 'BEGIN { print (r <= b ? "PASS" : "FAIL (ratio>" b ")") }')"
[[ "$sverdict" == PASS ]] || MISSED=1
echo
printf '%-8s  %18s  %22s  %7s  %s\n' case "imgseal median ms" "pkcs11-tool median ms" ratio "verdict (ratio <= $SMALL_RATIO_BAR)"
printf '%-8s  %18.2f  %22.2f  %7s  %s\n' "1 KiB" "$(awk -v s="$smi" 'BEGIN { print s * 1000 }')" \
    "$(awk -v s="$smp" 'BEGIN { print s * 1000 }')" "$sratio" "$sverdict"

echo
echo "raw measurements: $CSV"
if ((MISSED)); then
    echo "RESULT: imgseal misses at least one bar"
    ((BENCH_STRICT == 1)) && exit 1
else
    echo "RESULT: imgseal meets every bar"
fi
exit 0
