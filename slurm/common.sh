# shellcheck shell=bash
# Shared by the sbatch files: finds the checkout and its python, sets the rendezvous, NCCL and
# threading environment, launches one command on every rank with srun, and requeues the job when
# it was told to stop early (USR1). Holds no hyperparameters: those live in recipes.
#
# Sourced, never run. The sbatch files end with `nemo_vtp_run SUBCOMMAND "$@"`.
#
# Environment read here (all optional):
#   NEMO_VTP_ROOT             the checkout to run (default: the directory sbatch was called from)
#   NEMO_VTP_PYTHON           python that has nemo_vtp's dependencies (default: $ROOT/.venv/bin/python,
#                             else the python beside `nemo-vtp` on PATH, else python3); it runs -m nemo_vtp.cli
#   NEMO_VTP_LAUNCH           srun: one task per GPU (or per CPU rank), the default
#                             torchrun: one task per node running torchrun with rendezvous on the head node
#   NEMO_VTP_CONTAINER_IMAGE  run the tasks in this container (pyxis: srun --container-image)
#   NEMO_VTP_CONTAINER_MOUNTS pyxis --container-mounts (the checkout is always mounted at its own path)
#   MASTER_ADDR, MASTER_PORT  the rendezvous (default: the first node of the job, a port from the job id)
#   NEMO_VTP_JUDGE_*          the reward judge server of `nemo_vtp_start_judge` (see there)

nemo_vtp_log() { echo "[nemo_vtp/slurm $(date +%H:%M:%S)] $*"; }

nemo_vtp_die() {
    echo "[nemo_vtp/slurm] error: $*" >&2
    exit 2
}

# The checkout: sbatch copies the batch script to a spool folder, so the script's own path is no help.
nemo_vtp_root() {
    local root=${NEMO_VTP_ROOT:-${SLURM_SUBMIT_DIR:-$PWD}}
    [ -f "$root/slurm/common.sh" ] || nemo_vtp_die "$root is not a nemo_vtp checkout (no slurm/common.sh): \
submit from the checkout's root or set NEMO_VTP_ROOT"
    echo "$root"
}

# The python that runs nemo_vtp: explicit, the checkout's venv, the one behind `nemo-vtp`, python3.
nemo_vtp_python() {
    local root=$1 entry
    if [ -n "${NEMO_VTP_PYTHON:-}" ]; then
        echo "$NEMO_VTP_PYTHON"
    elif [ -n "${NEMO_VTP_CONTAINER_IMAGE:-}" ]; then
        echo python  # the container's own interpreter
    elif [ -x "$root/.venv/bin/python" ]; then
        echo "$root/.venv/bin/python"
    elif entry=$(command -v nemo-vtp) && entry=$(readlink -f "$entry") && [ -x "${entry%/*}/python" ]; then
        echo "${entry%/*}/python"  # the venv's python beside it; the entry's shebang is `/bin/sh` on long paths
    else
        echo python3
    fi
}

# The address other nodes reach node $1 at: its NodeAddr (on most clusters the name itself; several
# nodes on one host, as scripts/slurm_up.sh runs them, share one address under different names).
nemo_vtp_node_addr() {
    local addr
    addr=$(scontrol show node -o "$1" 2>/dev/null | sed -n 's/.* NodeAddr=\([^ ]*\).*/\1/p')
    echo "${addr:-$1}"
}

# Head node and port of the rendezvous; nodes of the job in Slurm's compressed form, e.g. gpu[01-04].
nemo_vtp_rendezvous() {
    if [ -z "${MASTER_ADDR:-}" ]; then
        MASTER_ADDR=$(nemo_vtp_node_addr "$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)")
    fi
    # One port per job so that jobs sharing a node do not collide; a requeued job keeps its id and port.
    MASTER_PORT=${MASTER_PORT:-$((20000 + SLURM_JOB_ID % 20000))}
    export MASTER_ADDR MASTER_PORT
}

# GPUs on this node for this job (0 in CPU mode: gloo, no CUDA).
nemo_vtp_gpus_per_node() {
    local gpus=${SLURM_GPUS_ON_NODE:-${SLURM_GPUS_PER_NODE:-0}}
    gpus=${gpus##*:}  # "gpu:h100:8" -> "8"
    echo "${gpus:-0}"
}

nemo_vtp_env() {
    # Site settings win: every default below yields to a value already in the environment.
    export PYTHONUNBUFFERED=1
    export OMP_NUM_THREADS=${OMP_NUM_THREADS:-${SLURM_CPUS_PER_TASK:-1}}
    export TOKENIZERS_PARALLELISM=${TOKENIZERS_PARALLELISM:-false}
    if [ "$(nemo_vtp_gpus_per_node)" -gt 0 ]; then
        # Megatron's TP communication overlap needs kernels queued in issue order.
        export CUDA_DEVICE_MAX_CONNECTIONS=${CUDA_DEVICE_MAX_CONNECTIONS:-1}
        export TORCH_NCCL_ASYNC_ERROR_HANDLING=${TORCH_NCCL_ASYNC_ERROR_HANDLING:-1}
        export NCCL_DEBUG=${NCCL_DEBUG:-WARN}
    fi
}

# srun options shared by both launch modes.
nemo_vtp_srun_opts() {
    local root=$1
    local opts=(--kill-on-bad-exit=1 --export=ALL)
    if [ -n "${NEMO_VTP_CONTAINER_IMAGE:-}" ]; then
        local mounts="$root:$root"
        [ -n "${NEMO_VTP_CONTAINER_MOUNTS:-}" ] && mounts="$mounts,$NEMO_VTP_CONTAINER_MOUNTS"
        opts+=("--container-image=$NEMO_VTP_CONTAINER_IMAGE" "--container-mounts=$mounts" "--container-workdir=$root")
    fi
    printf '%s\n' "${opts[@]}"
}

# Run `python ARGS...` on every rank of the job, e.g. `nemo_vtp_launch -m nemo_vtp.cli sft recipe.yaml`.
# Returns the exit status of srun; requeues the job when a rank recorded a USR1 (see slurm/task.sh).
nemo_vtp_launch() {
    local root python mode gpus nnodes rc
    root=$(nemo_vtp_root)
    python=$(nemo_vtp_python "$root")
    mode=${NEMO_VTP_LAUNCH:-srun}
    gpus=$(nemo_vtp_gpus_per_node)
    nnodes=${SLURM_JOB_NUM_NODES:-1}
    nemo_vtp_rendezvous
    nemo_vtp_env
    if [ -n "${NEMO_VTP_TRAIN_EXCLUDE:-}" ]; then  # the judge has a node of its own: the ranks use the others
        nnodes=$((nnodes - 1))
    fi
    export NEMO_VTP_LAUNCH=$mode
    export PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}"
    # Rank 0 runs on the batch host, so a node-local flag is visible to this shell.
    export NEMO_VTP_REQUEUE_FLAG=${NEMO_VTP_REQUEUE_FLAG:-${TMPDIR:-/tmp}/nemo-vtp-requeue-$SLURM_JOB_ID}
    rm -f "$NEMO_VTP_REQUEUE_FLAG"
    # `scancel --full --signal=USR1` also reaches this shell; the ranks handle it, the shell must live on.
    trap ':' USR1

    local srun_opts=()
    mapfile -t srun_opts < <(nemo_vtp_srun_opts "$root")
    if [ -n "${NEMO_VTP_TRAIN_EXCLUDE:-}" ]; then
        srun_opts+=("--exclude=$NEMO_VTP_TRAIN_EXCLUDE" "--nodes=$nnodes"
            "--ntasks=$((nnodes * ${SLURM_NTASKS_PER_NODE:-1}))")
    fi
    # Each rank names itself and its node (slurm/rank.sh), then execs the command.
    local cmd=(bash "$root/slurm/rank.sh" "$python" "$@")
    case "$mode" in
        srun) ;;
        torchrun)
            local nproc=$gpus
            [ "$nproc" -gt 0 ] || nproc=${SLURM_NTASKS_PER_NODE:-1}
            srun_opts+=("--ntasks=$nnodes" --ntasks-per-node=1 "--cpus-per-task=${SLURM_CPUS_ON_NODE:-1}")
            # torchrun's agent has no USR1 handler (the default action kills it and orphans its
            # workers); it ignores USR1, the workers install their own handler.
            cmd=(env --ignore-signal=USR1 "$python" -m torch.distributed.run "--nnodes=$nnodes"
                "--nproc-per-node=$nproc" --rdzv-backend=c10d "--rdzv-endpoint=$MASTER_ADDR:$MASTER_PORT"
                "--rdzv-id=$SLURM_JOB_ID" --no-python bash "$root/slurm/rank.sh" "$python" "$@")
            ;;
        *) nemo_vtp_die "NEMO_VTP_LAUNCH=$mode: expected srun or torchrun" ;;
    esac

    nemo_vtp_log "job $SLURM_JOB_ID restart ${SLURM_RESTART_COUNT:-0}: $nnodes node(s) ($SLURM_JOB_NODELIST)," \
        "${SLURM_NTASKS:-1} task(s), $gpus GPU(s)/node, launch=$mode, rendezvous $MASTER_ADDR:$MASTER_PORT"
    nemo_vtp_log "command: ${cmd[*]}"
    rc=0
    srun "${srun_opts[@]}" bash "$root/slurm/task.sh" "${cmd[@]}" || rc=$?
    nemo_vtp_log "ranks finished with exit status $rc"
    if [ -e "$NEMO_VTP_REQUEUE_FLAG" ]; then
        rm -f "$NEMO_VTP_REQUEUE_FLAG"
        nemo_vtp_log "stopped early by USR1: requeueing job $SLURM_JOB_ID; it resumes from its checkpoint"
        scontrol requeue "$SLURM_JOB_ID" || nemo_vtp_log "requeue refused: resubmit the same command to resume"
    fi
    return "$rc"
}

# Run `nemo-vtp SUBCOMMAND ARGS...` on every rank: the same command a laptop runs.
nemo_vtp_run() {
    [ $# -ge 2 ] || nemo_vtp_die "usage: sbatch slurm/$1.sbatch ARGS... (see the header of that file)"
    nemo_vtp_launch -m nemo_vtp.cli "$@"
}

# The reward model's judge server (an OpenAI-compatible endpoint) as its own job step, as the paper's
# reward node: on the last node of the allocation when the job has several (the trainers then run on
# the others), else beside the trainers (`--overlap`). Waits for GET /health, then exports
# NEMO_VTP_JUDGE_URL, which the RL recipes read for `rewards.judge.base_url`. The step ends with the job;
# if it dies earlier, reward requests fall back to the rule matcher and are counted (reward/judge_*).
#   NEMO_VTP_JUDGE_MODEL          model folder or name to serve (required)
#   NEMO_VTP_JUDGE_SERVER         vllm (default: `python -m vllm.entrypoints.openai.api_server`) or
#                                 nemo-vtp (`nemo-vtp serve`, the torch engine: CPU tests, small judges)
#   NEMO_VTP_JUDGE_NAME           served model name, the recipe's `rewards.judge.model` (default: judge)
#   NEMO_VTP_JUDGE_PORT           TCP port (default: 30000 + job id mod 20000)
#   NEMO_VTP_JUDGE_TP             vLLM tensor parallel size (default: the GPUs of a node)
#   NEMO_VTP_JUDGE_ARGS           extra server arguments, split on spaces (e.g. "--max-model-len 8192")
#   NEMO_VTP_JUDGE_START_TIMEOUT  seconds to wait for /health (default 1200)
nemo_vtp_start_judge() {
    local root python server node host port name gpus nodes=() cmd=() extra=() step_opts=()
    [ -n "${NEMO_VTP_JUDGE_MODEL:-}" ] || nemo_vtp_die "NEMO_VTP_JUDGE_MODEL is not set: the judge has no model"
    root=$(nemo_vtp_root)
    python=$(nemo_vtp_python "$root")
    server=${NEMO_VTP_JUDGE_SERVER:-vllm}
    name=${NEMO_VTP_JUDGE_NAME:-judge}
    port=${NEMO_VTP_JUDGE_PORT:-$((30000 + SLURM_JOB_ID % 20000))}
    gpus=$(nemo_vtp_gpus_per_node)
    mapfile -t nodes < <(scontrol show hostnames "$SLURM_JOB_NODELIST")
    node=${nodes[${#nodes[@]} - 1]}
    if [ "${#nodes[@]}" -gt 1 ]; then
        host=0.0.0.0  # the trainers call it from the other nodes
        export NEMO_VTP_TRAIN_EXCLUDE=$node
        step_opts=(--exclusive "--cpus-per-task=${SLURM_CPUS_ON_NODE:-1}" --mem=0)  # the whole node
    else
        host=127.0.0.1
        step_opts=(--overlap)  # shares the node with the trainers' step
    fi
    read -r -a extra <<<"${NEMO_VTP_JUDGE_ARGS:-}"
    case "$server" in
        vllm) cmd=("$python" -m vllm.entrypoints.openai.api_server --model "$NEMO_VTP_JUDGE_MODEL"
                --served-model-name "$name" --host "$host" --port "$port"
                --tensor-parallel-size "${NEMO_VTP_JUDGE_TP:-$((gpus > 0 ? gpus : 1))}") ;;
        nemo-vtp) cmd=("$python" -m nemo_vtp.cli serve --model "$NEMO_VTP_JUDGE_MODEL" --served-model-name "$name"
                --host "$host" --port "$port" --device "$([ "$gpus" -gt 0 ] && echo cuda || echo cpu)") ;;
        *) nemo_vtp_die "NEMO_VTP_JUDGE_SERVER=$server: expected vllm or nemo-vtp" ;;
    esac
    export PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}"
    nemo_vtp_log "judge: ${cmd[*]} ${extra[*]} on $node"
    srun --nodes=1 --ntasks=1 "--nodelist=$node" --job-name=nemo-vtp-judge --input=none --export=ALL \
        "${step_opts[@]}" "${cmd[@]}" "${extra[@]}" &
    NEMO_VTP_JUDGE_PID=$!
    NEMO_VTP_JUDGE_URL="http://$(nemo_vtp_node_addr "$node"):$port"
    [ "$host" = 127.0.0.1 ] && NEMO_VTP_JUDGE_URL="http://127.0.0.1:$port"
    export NEMO_VTP_JUDGE_URL NEMO_VTP_JUDGE_PID
    local deadline=$((SECONDS + ${NEMO_VTP_JUDGE_START_TIMEOUT:-1200}))
    until "$python" -c "import sys, urllib.request as u; u.build_opener(u.ProxyHandler({})).open(sys.argv[1], timeout=5)" \
        "$NEMO_VTP_JUDGE_URL/health" 2>/dev/null; do
        kill -0 "$NEMO_VTP_JUDGE_PID" 2>/dev/null || nemo_vtp_die "the judge server exited before it was healthy"
        [ "$SECONDS" -lt "$deadline" ] || nemo_vtp_die "the judge server was not healthy within the start timeout"
        sleep 1
    done
    nemo_vtp_log "judge: healthy at $NEMO_VTP_JUDGE_URL (served as '$name')"
}

# End the judge step started by nemo_vtp_start_judge (a no-op without one).
nemo_vtp_stop_judge() {
    if [ -n "${NEMO_VTP_JUDGE_PID:-}" ] && kill -0 "$NEMO_VTP_JUDGE_PID" 2>/dev/null; then
        kill "$NEMO_VTP_JUDGE_PID" 2>/dev/null || true
        wait "$NEMO_VTP_JUDGE_PID" 2>/dev/null || true
    fi
}
