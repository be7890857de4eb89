#!/usr/bin/env bash
# A single-node Slurm cluster on this machine, for curate's Slurm tests and CI: installs Debian's
# slurm-wlm and munge, writes /etc/slurm/slurm.conf for this host (from slurm.conf.in beside this
# script), and starts munged, slurmctld and slurmd as plain daemons (containers here have no systemd).
# Runs as root. Idempotent: when the node already answers `sinfo` as usable and the configuration is
# unchanged, it does nothing. `.ci/slurm/stop.sh` stops the daemons.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
CONF_DIR=/etc/slurm
CONF="$CONF_DIR/slurm.conf"
WAIT_S="${SLURM_SETUP_WAIT_S:-60}"

log() { echo "[slurm-setup] $*" >&2; }

if [ "$(id -u)" != 0 ]; then
    log "must run as root (it installs packages and starts system daemons)"
    exit 1
fi

install_packages() {
    if command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v munged >/dev/null \
        && command -v sbatch >/dev/null; then
        return
    fi
    log "installing slurm-wlm and munge with apt-get"
    export DEBIAN_FRONTEND=noninteractive
    # package scripts must not try to start services through an init system that is not there
    local policy=/usr/sbin/policy-rc.d created_policy=0
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy" && created_policy=1
    fi
    # another apt-get may hold the lock for a while on a shared machine: wait for it
    local apt=(apt-get -o DPkg::Lock::Timeout=600 install -y --no-install-recommends slurm-wlm munge)
    "${apt[@]}" || { apt-get -o DPkg::Lock::Timeout=600 update && "${apt[@]}"; }
    if [ "$created_policy" = 1 ]; then rm -f "$policy"; fi
}

render_config() {
    local host cpus mem_kb mem_mb
    host="$(hostname -s)"
    cpus="$(nproc)"
    mem_kb="$(awk '/^MemTotal:/ {print $2}' /proc/meminfo)"
    # slurmd drains a node that reports less memory than configured; leave 5% slack
    mem_mb=$((mem_kb * 95 / 100 / 1024))
    sed -e "s/@HOST@/$host/g" -e "s/@CPUS@/$cpus/g" -e "s/@MEMORY_MB@/$mem_mb/g" "$HERE/slurm.conf.in"
}

node_usable() {
    # the node answers and is in a state that runs jobs (idle, mixed or allocated; not down/drained)
    local state
    state="$(sinfo -h -N -n "$(hostname -s)" -o '%T' 2>/dev/null | head -n1)" || return 1
    case "$state" in
        idle | mixed | allocated | completing) return 0 ;;
        *) return 1 ;;
    esac
}

pid_alive() { [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

start_munge() {
    if [ ! -s /etc/munge/munge.key ]; then
        log "creating the munge key"
        mkdir -p /etc/munge
        dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 status=none
    fi
    chown munge:munge /etc/munge /etc/munge/munge.key
    chmod 700 /etc/munge
    chmod 400 /etc/munge/munge.key
    mkdir -p /run/munge /var/lib/munge /var/log/munge
    chown munge:munge /run/munge /var/lib/munge /var/log/munge
    chmod 755 /run/munge
    if ! pid_alive /run/munge/munged.pid; then
        log "starting munged"
        runuser -u munge -- /usr/sbin/munged
    fi
    munge -n | unmunge >/dev/null
}

start_slurm() {
    mkdir -p /var/spool/slurmctld /var/spool/slurmd /var/log/slurm /run/slurm
    chown slurm:slurm /var/spool/slurmctld /var/log/slurm /run/slurm
    chmod 755 /var/spool/slurmctld /var/spool/slurmd /var/log/slurm /run/slurm
    touch /var/log/slurm/slurmd.log && chown slurm:slurm /var/log/slurm/slurmd.log
    if ! pid_alive /run/slurm/slurmctld.pid; then
        log "starting slurmctld"
        runuser -u slurm -- /usr/sbin/slurmctld
    fi
    if ! pid_alive /run/slurm/slurmd.pid; then
        log "starting slurmd"
        /usr/sbin/slurmd
    fi
}

install_packages
mkdir -p "$CONF_DIR"
new_conf="$(render_config)"
changed=0
if [ ! -f "$CONF" ] || [ "$(cat "$CONF")" != "$new_conf" ]; then
    printf '%s\n' "$new_conf" >"$CONF"
    changed=1
fi

if [ "$changed" = 0 ] && pid_alive /run/munge/munged.pid && pid_alive /run/slurm/slurmctld.pid \
    && pid_alive /run/slurm/slurmd.pid && node_usable; then
    log "already up: $(sinfo -h -N -o '%N %T %c CPUs %m MB')"
    exit 0
fi
if [ "$changed" = 1 ] && { pid_alive /run/slurm/slurmctld.pid || pid_alive /run/slurm/slurmd.pid; }; then
    log "configuration changed: restarting slurmctld and slurmd"
    "$HERE/stop.sh" --keep-munge
fi

start_munge
start_slurm

log "waiting up to ${WAIT_S}s for the node to be idle"
for _ in $(seq 1 "$WAIT_S"); do
    if node_usable; then
        log "up: $(sinfo -h -N -o '%N %T %c CPUs %m MB')"
        exit 0
    fi
    # a node left down by an earlier failed start comes back once its slurmd registers again
    state="$(sinfo -h -N -o '%T' 2>/dev/null | head -n1 || true)"
    case "$state" in
        down* | drain* | *drain) scontrol update nodename="$(hostname -s)" state=resume 2>/dev/null || true ;;
    esac
    sleep 1
done
log "the node did not become idle; sinfo says:"
sinfo -N -l >&2 || true
log "last lines of the daemons' logs:"
tail -n 20 /var/log/slurm/slurmctld.log /var/log/slurm/slurmd.log >&2 || true
exit 1
