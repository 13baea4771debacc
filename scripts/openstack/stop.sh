#!/usr/bin/env bash
# Stops the services start.sh started, by their recorded PIDs (SIGTERM to each
# uWSGI master, SIGKILL after 15 s).
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=scripts/openstack/env.sh
source "$HERE/env.sh"
declare -A pids
for f in "$OSK"/run/*.pid; do
    [[ -f "$f" ]] || continue
    pid=$(cat "$f")
    name=$(basename "$f" .pid)
    kill -0 "$pid" 2>/dev/null && kill -TERM "$pid" && pids[$name]=$pid
    rm -f "$f"
done
for name in "${!pids[@]}"; do
    pid=${pids[$name]}
    for _ in $(seq 1 60); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.25
    done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"
done
exit 0
