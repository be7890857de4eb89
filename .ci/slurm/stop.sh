#!/usr/bin/env bash
# Stops the single-node Slurm started by .ci/slurm/setup.sh (slurmd, slurmctld, then munged).
# `--keep-munge` leaves munged running (setup.sh uses it to restart Slurm after a configuration change).
set -uo pipefail
keep_munge=0
[ "${1:-}" = "--keep-munge" ] && keep_munge=1

stop_pidfile() {
    local name="$1" pidfile="$2" pid
    [ -s "$pidfile" ] || return 0
    pid="$(cat "$pidfile")"
    if kill -0 "$pid" 2>/dev/null; then
        echo "[slurm-stop] stopping $name (pid $pid)" >&2
        kill -TERM "$pid"
        for _ in $(seq 1 30); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.5
        done
        kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"
    fi
    rm -f "$pidfile"
}

stop_pidfile slurmd /run/slurm/slurmd.pid
stop_pidfile slurmctld /run/slurm/slurmctld.pid
[ "$keep_munge" = 1 ] || stop_pidfile munged /run/munge/munged.pid
exit 0
