"""`nemo-vtp` that SIGKILLs itself at a chosen point of saving one checkpoint, as a crash or a scheduler would.

    python tests/e2e/kill_during_save.py POINT STEP_FOLDER COMMAND [args...]

POINT: `shards` (the shards of `.tmp-STEP_FOLDER` written, nothing else), `before_rename` (the folder
complete and flushed, not renamed), `before_tracker` (renamed into place, the tracker
`latest_checkpointed_iteration.txt` not yet replaced). STEP_FOLDER: e.g. `iter_0000004`.
Start it in a new session: the kill then takes its helper processes too.
"""

from __future__ import annotations

import os
import signal
import sys


def _die() -> None:
    """SIGKILL the whole job (helper processes too, as a scheduler does) when this process leads its own
    process group (start it with start_new_session=True); otherwise this process alone."""
    if os.getpgid(0) == os.getpid():
        os.killpg(0, signal.SIGKILL)
    os.kill(os.getpid(), signal.SIGKILL)


def install(point: str, step_folder: str) -> None:
    from megatron.core import dist_checkpointing

    from nemo_vtp.training import checkpoint_files

    real_save, real_replace = dist_checkpointing.save, checkpoint_files.replace_durably
    iteration = str(int(step_folder.removeprefix("iter_")))  # what the tracker will hold

    def save(state, folder, *args, **kwargs):
        result = real_save(state, folder, *args, **kwargs)
        if point == "shards" and folder.endswith(f".tmp-{step_folder}"):
            _die()
        return result

    def replace(src, dst):
        if point == "before_rename" and src.name == f".tmp-{step_folder}":
            _die()
        if point == "before_tracker" and dst.name == checkpoint_files.TRACKER and src.read_text() == iteration:
            _die()
        real_replace(src, dst)

    dist_checkpointing.save = save
    checkpoint_files.replace_durably = replace


if __name__ == "__main__":
    install(sys.argv[1], sys.argv[2])
    from nemo_vtp.cli import main

    sys.exit(main(sys.argv[3:]))
