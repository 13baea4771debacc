#!/usr/bin/env bash
# Starts keystone, barbican and glance (or those named) under uWSGI on
# 127.0.0.1 and waits until each answers. PIDs in $OSK/run/<name>.pid.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=scripts/lib/common.sh
source "$HERE/../lib/common.sh"
# shellcheck source=scripts/openstack/env.sh
source "$HERE/env.sh"
services=("$@")
((${#services[@]})) || services=(keystone barbican glance)
# Connection: close, because pooled clients otherwise get resets on the
# second request from uWSGI's single-process workers.
common=(--master --need-app --die-on-term --virtualenv "$OS_VENV"
    --buffer-size 65535 --disable-logging --add-header 'Connection: close')
# One single-threaded process per service: requests are served one at a
# time, as SQLite can take them. Two workers writing one SQLite file at once
# fail with 500 "database is locked" (a read transaction that upgrades to a
# write is refused at once, whatever the busy timeout): seen in Barbican
# (two processes) and Glance (four threads) while tests ran in parallel.
# Barbican also registers its policies on its first requests without a lock
# (concurrent first requests failed with "Policy secrets:post has not been
# registered"). A production cloud runs these on MySQL with many workers.
threads=(--processes 1 --threads 1)
barbican_threads=(--processes 1 --threads 1)

start_one() {
    local name=$1 pidf=$OSK/run/$1.pid
    shift
    if [[ -f "$pidf" ]] && kill -0 "$(cat "$pidf")" 2>/dev/null; then
        return 0
    fi
    nohup "$OS_VENV/bin/uwsgi" "${common[@]}" "$@" >"$OSK/log/$name-uwsgi.log" 2>&1 </dev/null &
    echo $! >"$pidf"
}

wait_http() { # name url expected-code
    local name=$1 url=$2 want=$3 code
    for _ in $(seq 1 240); do
        code=$(curl -s -o /dev/null -m 2 -w '%{http_code}' "$url" || true)
        [[ "$code" == "$want" ]] && return 0
        kill -0 "$(cat "$OSK/run/$name.pid")" 2>/dev/null \
            || die "$name died at start (see $OSK/log/$name-uwsgi.log)"
        sleep 0.25
    done
    die "$name did not answer $url within 60 s"
}

for s in "${services[@]}"; do
    case $s in
    keystone)
        OS_KEYSTONE_CONFIG_DIR=$OSK/etc/keystone start_one keystone "${threads[@]}" \
            --http-socket "127.0.0.1:$KS_PORT" --module keystone.wsgi.api:application
        ;;
    barbican)
        HOME=$OSK/home start_one barbican "${barbican_threads[@]}" \
            --http-socket "127.0.0.1:$BB_PORT" \
            --https-socket "127.0.0.1:$BB_TLS_PORT,$OSK/tls/server.pem,$OSK/tls/server.key" \
            --wsgi-file "$OSK/etc/barbican/wsgi.py"
        ;;
    glance)
        # The HTTP router with raw body and chunked input: streamed uploads work.
        OS_GLANCE_CONFIG_DIR=$OSK/etc/glance start_one glance "${threads[@]}" \
            --http "127.0.0.1:$GL_PORT" --http-raw-body --http-chunked-input --http-auto-chunked \
            --socket-timeout 60 --lazy-apps --module glance.wsgi.api:application
        ;;
    *) die "unknown service $s" ;;
    esac
done
for s in "${services[@]}"; do
    case $s in
    keystone) wait_http keystone "http://127.0.0.1:$KS_PORT/v3" 200 ;;
    barbican) wait_http barbican "http://127.0.0.1:$BB_PORT/v1" 401 ;; # app and authtoken loaded
    glance) wait_http glance "http://127.0.0.1:$GL_PORT/versions" 200 ;;
    esac
done
