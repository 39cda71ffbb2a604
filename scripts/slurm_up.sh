#!/usr/bin/env bash
# Bring up a real Slurm on this machine: Debian's slurm-wlm and munge, loopback only, one partition
# of CPU nodes: by default two nodes, each its own slurmd on its own port (Slurm's several-slurmd-per-host
# mode, `slurmd -N NAME`), so that multi-node jobs (torchrun rendezvous, srun across nodes) really run. Used by the Slurm tests and by anyone who wants to try the sbatch
# files without a cluster. Idempotent: a second call finds the daemons up and returns at once.
#
#   sudo bash scripts/slurm_up.sh        # then: sinfo; sbatch slurm/sft.sbatch recipes/tiny/sft.yaml
#   sudo bash scripts/slurm_down.sh      # stop the daemons again
#
# Needs root (apt-get, daemons). Exit codes: 0 up, 3 the packages are missing and apt cannot
# install them (no registry), 1 anything else (the daemon logs are printed).
# Environment:
#   NEMO_VTP_SLURM_DIR   state, spool, pid and log files   (default /var/lib/nemo-vtp-slurm)
#   NEMO_VTP_SLURM_CPUS  CPUs each node advertises        (default: this machine's, at least 2)
#   NEMO_VTP_SLURM_NODES nodes (slurmds) to run           (default 2; 1: one node named after the host)
#   NEMO_VTP_SLURM_PORT  slurmctld's port; the slurmds take the next ones (default 6817: 6818, 6819)
#   SLURM_CONF           the slurm.conf to write            (default /etc/slurm/slurm.conf)
set -euo pipefail

state=${NEMO_VTP_SLURM_DIR:-/var/lib/nemo-vtp-slurm}
conf=${SLURM_CONF:-/etc/slurm/slurm.conf}
marker="# written by nemo_vtp scripts/slurm_up.sh"
host=$(hostname -s)
num_nodes=${NEMO_VTP_SLURM_NODES:-2}
port=${NEMO_VTP_SLURM_PORT:-6817}
nodes=("$host")  # one node: the host itself, found by its hostname; several: HOST-1, HOST-2, ...
if [ "$num_nodes" -gt 1 ]; then
    nodes=()
    for i in $(seq "$num_nodes"); do nodes+=("$host-$i"); done
fi
cpus=${NEMO_VTP_SLURM_CPUS:-$(nproc)}
# A 2-task job must fit on a 2-core CI machine; slurmd accepts the configured count (config_overrides).
if [ "$cpus" -lt 2 ]; then cpus=2; fi

log() { echo "[slurm_up] $*"; }

if [ "$(id -u)" -ne 0 ]; then
    # Nothing to do without root when the cluster already runs; anything else needs root.
    if grep -qxF "$marker" "$conf" 2>/dev/null \
        && [ "$(sinfo -h -N -o '%N %T' 2>/dev/null | grep -cE ' (idle|mixed|allocated)$')" -eq "$num_nodes" ]; then
        log "already up (${nodes[*]})"
        exit 0
    fi
    echo "[slurm_up] error: must run as root (apt-get and the Slurm daemons); try: sudo bash $0" >&2
    exit 1
fi

install_packages() {
    local missing=()
    command -v slurmctld >/dev/null 2>&1 || missing+=(slurmctld)
    command -v slurmd >/dev/null 2>&1 || missing+=(slurmd)
    command -v sbatch >/dev/null 2>&1 || missing+=(slurm-client)
    command -v munged >/dev/null 2>&1 || missing+=(munge)
    command -v shellcheck >/dev/null 2>&1 || missing+=(shellcheck)
    [ ${#missing[@]} -eq 0 ] && return 0
    log "installing ${missing[*]} with apt-get"
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get update -q >/dev/null 2>&1; then
        echo "[slurm_up] error: apt-get update failed: the package registry is unreachable" >&2
        exit 3
    fi
    # Debian's policy-rc.d may stop the packages from starting their own services; we start them below.
    if ! apt-get install -y -q --no-install-recommends slurm-wlm munge shellcheck >/dev/null; then
        echo "[slurm_up] error: apt-get install slurm-wlm munge shellcheck failed" >&2
        exit 3
    fi
}

node_lines() {
    # One line per node; several slurmds on one host need a port each (6818, 6819, ...).
    local i
    if [ "${#nodes[@]}" -eq 1 ]; then
        echo "NodeName=$host NodeAddr=127.0.0.1 NodeHostname=$host Port=$((port + 1)) CPUs=$cpus State=UNKNOWN"
        return
    fi
    for i in "${!nodes[@]}"; do
        echo "NodeName=${nodes[$i]} NodeAddr=127.0.0.1 NodeHostname=$host Port=$((port + 1 + i)) CPUs=$cpus" \
            "State=UNKNOWN"
    done
}

write_conf() {
    # Prints "changed" when the file was (re)written.
    local tmp
    tmp=$(mktemp)
    cat >"$tmp" <<EOF
$marker
# A loopback-only Slurm for tests and trials, its ${#nodes[@]} node(s) on this one host. Not for production.
ClusterName=nemovtp
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$port
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
# A requeued job waits cred_expire seconds before it may start again (default 120 s).
AuthInfo=cred_expire=10
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SchedulerType=sched/backfill
# Quick scheduling passes: a requeued job starts seconds after its cred_expire wait, not a minute.
SchedulerParameters=bf_interval=1,sched_interval=2
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SlurmdParameters=config_overrides
ReturnToService=2
JobRequeue=1
KillWait=15
MinJobAge=600
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
StateSaveLocation=$state/ctld
# %n: the node's name, so that the slurmds sharing this host keep apart.
SlurmdSpoolDir=$state/d/%n
SlurmctldPidFile=$state/slurmctld.pid
SlurmdPidFile=$state/slurmd-%n.pid
SlurmctldLogFile=$state/slurmctld.log
SlurmdLogFile=$state/slurmd-%n.log
$(node_lines)
PartitionName=cpu Nodes=ALL Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE:4
EOF
    if [ -f "$conf" ] && ! grep -qxF "$marker" "$conf"; then
        rm -f "$tmp"
        echo "[slurm_up] error: $conf exists and was not written by this script; not overwriting it" >&2
        exit 1
    fi
    if [ -f "$conf" ] && cmp -s "$tmp" "$conf"; then
        rm -f "$tmp"
        return 0
    fi
    mkdir -p "$(dirname "$conf")"
    install -m 0644 "$tmp" "$conf"
    rm -f "$tmp"
    echo changed
}

pid_alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

start_munge() {
    if munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then return 0; fi
    if [ ! -s /etc/munge/munge.key ]; then
        log "creating the munge key"
        mkdir -p /etc/munge
        dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 status=none
    fi
    chown munge:munge /etc/munge/munge.key
    chmod 0400 /etc/munge/munge.key
    mkdir -p /run/munge /var/log/munge /var/lib/munge
    chown munge:munge /run/munge /var/log/munge /var/lib/munge
    log "starting munged"
    runuser -u munge -- /usr/sbin/munged </dev/null >/dev/null 2>&1
    for _ in $(seq 50); do
        if munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then return 0; fi
        sleep 0.2
    done
    echo "[slurm_up] error: munged did not start" >&2
    tail -n 20 /var/log/munge/munged.log >&2 || true
    exit 1
}

any_alive() {
    local pidfile
    for pidfile in "$@"; do
        if pid_alive "$pidfile"; then return 0; fi
    done
    return 1
}

stop_slurm_daemons() {
    # Every slurmd of an earlier configuration (slurmd-NAME.pid; slurmd.pid of older versions) too.
    local pidfile pidfiles=("$state"/slurmd*.pid "$state/slurmctld.pid")
    for pidfile in "${pidfiles[@]}"; do
        if pid_alive "$pidfile"; then kill "$(cat "$pidfile")" 2>/dev/null || true; fi
    done
    for _ in $(seq 50); do
        any_alive "${pidfiles[@]}" || return 0
        sleep 0.2
    done
}

start_slurm() {
    local node
    mkdir -p "$state/ctld"
    if ! pid_alive "$state/slurmctld.pid"; then
        log "starting slurmctld"
        # -c: a fresh controller state; this throwaway cluster keeps no jobs across restarts.
        setsid slurmctld -c -f "$conf" </dev/null >>"$state/slurmctld.stdout" 2>&1
    fi
    for node in "${nodes[@]}"; do
        mkdir -p "$state/d/$node"
        if ! pid_alive "$state/slurmd-$node.pid"; then
            log "starting slurmd for node $node"
            setsid slurmd -f "$conf" -N "$node" </dev/null >>"$state/slurmd-$node.stdout" 2>&1
        fi
    done
}

node_state() { sinfo -h -N -n "$1" -o '%T' 2>/dev/null | head -n 1; }

wait_idle() {
    # Every node idle (or already running jobs), within 30 s.
    local node state_now="" waiting
    for _ in $(seq 150); do
        waiting=()
        for node in "${nodes[@]}"; do
            state_now=$(node_state "$node")
            case "$state_now" in
                idle | mixed | allocated) ;;
                down* | drain*) scontrol update nodename="$node" state=resume >/dev/null 2>&1 || true
                    waiting+=("$node=$state_now") ;;
                *) waiting+=("$node=${state_now:-unknown}") ;;
            esac
        done
        if [ "${#waiting[@]}" -eq 0 ]; then
            log "nodes ${nodes[*]} are up ($cpus CPUs each); partition cpu"
            return 0
        fi
        sleep 0.2
    done
    echo "[slurm_up] error: not idle after 30 s: ${waiting[*]}" >&2
    tail -n 30 "$state/slurmctld.log" "$state"/slurmd-*.log >&2 || true
    exit 1
}

install_packages
changed=$(write_conf)
export SLURM_CONF=$conf
start_munge
if [ "$changed" = changed ]; then
    log "wrote $conf"
    stop_slurm_daemons
fi
start_slurm
wait_idle
