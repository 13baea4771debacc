# shellcheck shell=bash
# Helpers sourced by scripts/*.sh (not run on its own).
#
#   REPO                 the workspace root (found from this file's location)
#   log MSG…             a line on stderr, prefixed with the script's name
#   die MSG…             log "error: MSG" and exit 1
#   ensure_packages P…   apt-get install the Debian packages not installed yet
#                        (one `apt-get update` first, only when something is missing)
#   build_release        cargo build --release -q for the whole workspace; sets IMGSEAL_BIN
#                        (a preset IMGSEAL_BIN skips the build and is used as is)
#   median               median of the numbers on stdin, one a line
#   quietly LOG CMD…     run CMD with its output appended to LOG; on failure
#                        show the log's last lines
#   SETUP_LOG            where apt's output goes ($REPO/target/setup.log)
#   speed_gbs ALG BYTES  one core's single-stream rate of `openssl speed -evp ALG
#                        -bytes BYTES` (1 s), in GB/s: the limit of one hash stream
#   cpu_summary          the CPU model, family/model and its hashing flags, one line

if [[ -n "${_IMGSEAL_COMMON_SH:-}" ]]; then
    return 0
fi
_IMGSEAL_COMMON_SH=1

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
SCRIPT_NAME="$(basename "$0" .sh)"
_APT_UPDATED=0

log() { printf '%s: %s\n' "$SCRIPT_NAME" "$*" >&2; }
die() { log "error: $*"; exit 1; }

SETUP_LOG="$REPO/target/setup.log"

# Installers print screens of progress; the user wants one line per step,
# and the details only when a step fails.
quietly() {
    local out=$1
    shift
    mkdir -p "$(dirname "$out")"
    printf '\n$ %s\n' "$*" >>"$out"
    if ! "$@" >>"$out" 2>&1; then
        log "failed: $* (last lines of $out below)"
        tail -n 25 "$out" >&2
        return 1
    fi
}

# True if the Debian package is installed (not merely known, nor "config-files").
package_installed() {
    dpkg -s "$1" 2>/dev/null | grep -q '^Status: install ok installed$'
}

ensure_packages() {
    local p missing=()
    for p in "$@"; do
        package_installed "$p" || missing+=("$p")
    done
    ((${#missing[@]} == 0)) && return 0
    command -v apt-get >/dev/null \
        || die "missing packages: ${missing[*]} (no apt-get here: install them by hand)"
    local sudo=()
    if ((EUID != 0)); then
        command -v sudo >/dev/null || die "missing packages: ${missing[*]} (run as root, or install them)"
        sudo=(sudo)
    fi
    log "installing Debian packages: ${missing[*]} (output in $SETUP_LOG)"
    if ((_APT_UPDATED == 0)); then
        quietly "$SETUP_LOG" "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq \
            || die "apt-get update failed"
        _APT_UPDATED=1
    fi
    quietly "$SETUP_LOG" "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -qq --no-install-recommends "${missing[@]}" \
        || die "apt-get install ${missing[*]} failed"
}

# The Debian packages needed to build imgseal (openssl-sys, cryptoki) on top of Rust.
# shellcheck disable=SC2034  # used by the scripts that source this file
BUILD_PACKAGES=(build-essential pkg-config libssl-dev libtss2-dev)

# Rust comes from rustup, not Debian (bookworm's cargo is 1.63): pick up a
# rustup install that is not on PATH yet, and insist on the workspace's
# rust-version.
ensure_rust() {
    if ! command -v cargo >/dev/null && [[ -f "$HOME/.cargo/env" ]]; then
        # shellcheck source=/dev/null
        source "$HOME/.cargo/env"
    fi
    command -v cargo >/dev/null \
        || die "cargo not found: install Rust >= 1.89 (e.g. with rustup) and re-run"
    local version
    version=$(rustc --version | awk '{print $2}')
    [[ "$(printf '%s\n1.89.0\n' "$version" | sort -V | head -n 1)" == "1.89.0" ]] \
        || die "Rust $version is too old: imgseal needs >= 1.89 (rustup update)"
}

build_release() {
    if [[ -n "${IMGSEAL_BIN:-}" ]]; then
        [[ -x "$IMGSEAL_BIN" ]] || die "IMGSEAL_BIN=$IMGSEAL_BIN is not an executable"
        log "using IMGSEAL_BIN=$IMGSEAL_BIN (not building)"
        return 0
    fi
    ensure_rust
    local target="${CARGO_TARGET_DIR:-target}"
    [[ "$target" == /* ]] || target="$REPO/$target"
    log "building imgseal (cargo build --release, whole workspace)…"
    (cd "$REPO" && cargo build --release --locked -q --workspace) || die "cargo build --release failed"
    IMGSEAL_BIN="$target/release/imgseal"
    [[ -x "$IMGSEAL_BIN" ]] || die "build finished but $IMGSEAL_BIN is missing"
}

median() {
    sort -g | awk '{ v[NR] = $1 }
        END {
            if (NR == 0) { exit 1 }
            if (NR % 2) { printf "%.6f\n", v[(NR + 1) / 2] }
            else { printf "%.6f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }
        }'
}

speed_gbs() {
    openssl speed -evp "$1" -bytes "$2" -seconds 1 2>/dev/null \
        | awk -v a="$1" '$1 == a && $2 ~ /k$/ { sub(/k$/, "", $2); printf "%.3f\n", $2 * 1000 / 1e9 }'
}

cpu_summary() {
    awk -F': ' '
        /^model name/ && !m { m = $2 }
        /^cpu family/ && !f { f = $2 }
        /^model\t/ && !n { n = $2 }
        /^flags/ && !fl { fl = $2 }
        END {
            split("sha_ni avx2 avx512f", want, " ")
            for (i = 1; i <= 3; i++) if (index(" " fl " ", " " want[i] " ")) has = has " " want[i]
            printf "%s (family %s, model %s;%s)\n", m, f, n, has
        }' /proc/cpuinfo
}
