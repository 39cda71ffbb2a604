#!/usr/bin/env bash
# Stop the Slurm that scripts/slurm_up.sh started: cancel its jobs, stop every slurmd and
# slurmctld, and munged when --all is given (other software on the machine may use munge).
#
#   sudo bash scripts/slurm_down.sh [--all]
set -euo pipefail

state=${NEMO_VTP_SLURM_DIR:-/var/lib/nemo-vtp-slurm}
export SLURM_CONF=${SLURM_CONF:-/etc/slurm/slurm.conf}

stop_pidfile() {
    # Stop the daemon whose pid is in $1 and wait (up to 10 s) until it is gone.
    local pidfile=$1 pid
    [ -f "$pidfile" ] || return 0
    pid=$(cat "$pidfile")
    if kill -0 "$pid" 2>/dev/null; then
        echo "[slurm_down] stopping $(basename "$pidfile" .pid) (pid $pid)"
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.2
        done
        if kill -0 "$pid" 2>/dev/null; then kill -9 "$pid" 2>/dev/null || true; fi
    fi
    rm -f "$pidfile"
}

if [ -f "$state/slurmctld.pid" ] && kill -0 "$(cat "$state/slurmctld.pid")" 2>/dev/null; then
    scancel --full --signal=KILL --state=RUNNING "--user=$(id -un)" 2>/dev/null || true
    scancel "--user=$(id -un)" 2>/dev/null || true
fi
for pidfile in "$state"/slurmd*.pid; do  # slurmd-NODE.pid, one per node (slurmd.pid of older versions)
    stop_pidfile "$pidfile"
done
stop_pidfile "$state/slurmctld.pid"
if [ "${1:-}" = "--all" ]; then
    stop_pidfile /run/munge/munged.pid
fi
