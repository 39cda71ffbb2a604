#!/usr/bin/env bash
# The process of one rank (run by task.sh under srun, by torchrun's agent under torchrun): logs
# which rank runs on which Slurm node, then becomes the command (exec: same process, same signals).
#
#   bash slurm/rank.sh COMMAND [ARGS...]
echo "[nemo_vtp/slurm $(date +%H:%M:%S)] rank ${RANK:-0}/${WORLD_SIZE:-1} (local rank ${LOCAL_RANK:-0})" \
    "on node ${SLURMD_NODENAME:-$(hostname -s)}"
exec "$@"
