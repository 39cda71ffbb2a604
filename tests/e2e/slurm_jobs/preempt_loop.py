"""A training loop in miniature for the Slurm preemption test: it resumes from its "checkpoint"
(the last finished step, in a text file), runs steps, and on USR1 or SIGTERM saves the step it
finished and exits 0, as the real trainers do: the ranks agree on the stop step (an all-reduce of
the stop flag after every step, over gloo), since a signal reaches them at slightly different times.
Rank 0 writes the checkpoint.

    python preempt_loop.py CKPT_FILE TOTAL_STEPS STEP_SECONDS

Prints `resume step=S restart=R`, `step S rank=K`, `saved step=S signal=NAME` and `done steps=N`.
"""

import os
import signal
import sys
import time
from pathlib import Path

import torch
import torch.distributed as dist

stop_signal: list[str] = []


def _on_signal(signum, _frame) -> None:
    stop_signal.append(signal.Signals(signum).name)


def say(line: str) -> None:
    """One write per line: under torchrun the ranks share one unbuffered stdout."""
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def save(path: Path, step: int) -> None:
    """Write-then-rename, so a kill mid-write never leaves a torn checkpoint."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(f"{step}\n")
    tmp.replace(path)


def main(argv: list[str]) -> int:
    ckpt, total, seconds = Path(argv[0]), int(argv[1]), float(argv[2])
    rank = int(os.environ["RANK"])
    signal.signal(signal.SIGUSR1, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)
    start = int(ckpt.read_text()) + 1 if ckpt.exists() else 0
    say(f"resume step={start} restart={os.environ.get('SLURM_RESTART_COUNT', '0')} rank={rank}")
    dist.init_process_group("gloo")  # env:// rendezvous: MASTER_ADDR/PORT, RANK, WORLD_SIZE
    for step in range(start, total):
        time.sleep(seconds)  # the "work" of one step
        say(f"step {step} rank={rank}")
        stop = torch.tensor([float(bool(stop_signal))])
        dist.all_reduce(stop, op=dist.ReduceOp.MAX)
        if stop.item():
            if rank == 0:
                save(ckpt, step)
            say(f"saved step={step} signal={(stop_signal or ['SIGUSR1'])[0]} rank={rank}")
            dist.destroy_process_group()
            return 0
    if rank == 0:
        save(ckpt, total - 1)
    say(f"done steps={total} rank={rank}")
    dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
