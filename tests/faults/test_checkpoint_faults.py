"""Checkpoint faults: a save_dir damaged the ways a crash, a full disk or a hostile file leaves it.

Each case starts from two intact step folders in the trainer's layout (a real torch.distributed.checkpoint
shard index and shard file, metadata.json, trainer_state.json, an RNG file), damages them one way, and
asserts what resume takes: the newest intact step (the fall-back named in the log), or an error naming
the files, never a silent fresh start, and never code run from a checkpoint file.
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import random
import shutil

import numpy as np
import pytest
import torch

from nemo_vtp.training import checkpoint_files as ckfiles
from nemo_vtp.training.checkpoint import Checkpointer, find_checkpoint

STEPS = (3, 6)


def _write_step(save_dir, step):
    import torch.distributed.checkpoint as dcp

    folder = save_dir / ckfiles.step_name(step)
    dcp.save({"weight": torch.full((64, 64), float(step)), "bias": torch.zeros(64)}, checkpoint_id=str(folder))
    (folder / ckfiles.META_FILE).write_text(json.dumps({"sharded_backend": "torch_dist"}))
    torch.save({"content_metadata": {"step": step}}, folder / ckfiles.COMMON_FILE)
    (folder / ckfiles.STATE_FILE).write_text(json.dumps({"step": step, "consumed_samples": 8 * step}))
    rng = ckfiles.rng_file(folder, 0)
    rng.parent.mkdir()
    torch.save(ckfiles.rng_to_tensors(random.getstate(), np.random.get_state(), torch.get_rng_state(), None, {}), rng)
    return folder


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    save_dir = tmp_path_factory.mktemp("ckpt") / "checkpoints"
    for step in STEPS:
        _write_step(save_dir, step)
    (save_dir / ckfiles.TRACKER).write_text("6")
    return save_dir


@pytest.fixture
def save_dir(template, tmp_path):
    return shutil.copytree(template, tmp_path / "checkpoints")


class _Planted:
    """A pickle that, when unpickled by an unrestricted loader, creates the file `marker`."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _plant(path, marker):
    path.write_bytes(pickle.dumps(_Planted(marker)))


def _newest_shard(save_dir):
    return sorted((save_dir / "iter_0000006").glob("*.distcp"))[0]


def test_empty_tracker_still_resumes_the_newest_step(save_dir):
    (save_dir / ckfiles.TRACKER).write_text("")
    assert Checkpointer(save_dir).latest() == save_dir / "iter_0000006"


def test_dangling_tracker_still_resumes_the_newest_step(save_dir):
    (save_dir / ckfiles.TRACKER).write_text("9")
    assert Checkpointer(save_dir).latest() == save_dir / "iter_0000006"


def test_missing_tracker_still_resumes_the_newest_step(save_dir):
    (save_dir / ckfiles.TRACKER).unlink()
    assert Checkpointer(save_dir).resume_candidates(resume=True, overwrite=False) == [
        save_dir / "iter_0000006", save_dir / "iter_0000003"]


def test_tracker_that_is_not_a_number_still_resumes_the_newest_step(save_dir):
    (save_dir / ckfiles.TRACKER).write_text("release")  # Megatron-LM's word for a release checkpoint
    assert ckfiles.tracked_step(save_dir) is None
    assert Checkpointer(save_dir).latest() == save_dir / "iter_0000006"


def _rename_to_old_layout(save_dir):
    """The save_dir as runs saved before the Megatron-LM names left it: step_<N> folders and `latest`."""
    for step in STEPS:
        (save_dir / ckfiles.step_name(step)).rename(save_dir / f"step_{step:07d}")
    (save_dir / ckfiles.TRACKER).unlink()
    (save_dir / ckfiles.OLD_LATEST).write_text("step_0000006")


def test_run_saved_with_old_step_names_resumes_its_newest_step(save_dir):
    _rename_to_old_layout(save_dir)
    assert Checkpointer(save_dir).latest() == save_dir / "step_0000006"
    assert ckfiles.tracked_step(save_dir) == save_dir / "step_0000006"  # what eval's lookup reads
    assert find_checkpoint(save_dir) == save_dir / "step_0000006"


def test_run_saved_with_old_step_names_falls_back_past_a_torn_one(save_dir, caplog):
    _rename_to_old_layout(save_dir)
    shard = sorted((save_dir / "step_0000006").glob("*.distcp"))[0]
    shard.write_bytes(b"\0")
    with caplog.at_level(logging.WARNING, logger="nemo_vtp.checkpoint"):
        assert Checkpointer(save_dir).latest() == save_dir / "step_0000003"
    assert "falling back to the previous intact step step_0000003" in caplog.text


def test_old_and_new_names_in_one_save_dir_order_by_step(save_dir):
    """A run saved before the rename and resumed after holds both names; the newest step wins either way."""
    (save_dir / "iter_0000003").rename(save_dir / "step_0000003")
    shutil.copytree(save_dir / "iter_0000006", save_dir / "step_0000006")  # same step under both names
    assert Checkpointer(save_dir).resume_candidates(resume=True, overwrite=False) == [
        save_dir / "iter_0000006", save_dir / "step_0000006", save_dir / "step_0000003"]


def test_torn_shard_falls_back_to_the_previous_step_naming_the_file(save_dir, caplog):
    shard = _newest_shard(save_dir)
    with open(shard, "r+b") as f:
        f.truncate(shard.stat().st_size // 2)
    with caplog.at_level(logging.WARNING, logger="nemo_vtp.checkpoint"):
        assert Checkpointer(save_dir).latest() == save_dir / "iter_0000003"
    assert f"{shard} is truncated" in caplog.text
    assert "falling back to the previous intact step iter_0000003" in caplog.text


def test_missing_shard_falls_back_naming_the_file(save_dir, caplog):
    shard = _newest_shard(save_dir)
    shard.unlink()
    with caplog.at_level(logging.WARNING, logger="nemo_vtp.checkpoint"):
        assert Checkpointer(save_dir).latest() == save_dir / "iter_0000003"
    assert f"{shard} is missing" in caplog.text


def test_torn_trainer_state_falls_back_naming_the_file(save_dir, caplog):
    state = save_dir / "iter_0000006" / ckfiles.STATE_FILE
    state.write_text(state.read_text()[:10])
    with caplog.at_level(logging.WARNING, logger="nemo_vtp.checkpoint"):
        assert Checkpointer(save_dir).latest() == save_dir / "iter_0000003"
    assert f"{state} is not readable JSON" in caplog.text


def test_missing_trainer_state_falls_back(save_dir):
    (save_dir / "iter_0000006" / ckfiles.STATE_FILE).unlink()
    assert Checkpointer(save_dir).latest() == save_dir / "iter_0000003"


def test_unfinished_save_folder_is_not_a_step(save_dir):
    shutil.copytree(save_dir / "iter_0000006", save_dir / ".tmp-iter_0000009")
    (save_dir / ".tmp-iter_0000009" / ckfiles.STATE_FILE).unlink()
    assert Checkpointer(save_dir).latest() == save_dir / "iter_0000006"


def test_planted_pickle_in_rng_file_does_not_run_and_is_named(save_dir, tmp_path, caplog):
    marker, rng = tmp_path / "ran", ckfiles.rng_file(save_dir / "iter_0000006", 0)
    _plant(rng, marker)
    with caplog.at_level(logging.WARNING, logger="nemo_vtp.checkpoint"):
        assert Checkpointer(save_dir).latest() == save_dir / "iter_0000003"
    assert not marker.exists()
    assert f"{rng} is not an RNG state file" in caplog.text
    pickle.loads(rng.read_bytes())  # the plant is live: an unrestricted loader runs it
    assert marker.exists()


def test_planted_pickle_in_the_only_rng_file_stops_with_its_name(save_dir, tmp_path):
    shutil.rmtree(save_dir / "iter_0000003")
    marker, rng = tmp_path / "ran", ckfiles.rng_file(save_dir / "iter_0000006", 0)
    _plant(rng, marker)
    with pytest.raises(ckfiles.CheckpointError, match="none can be resumed") as err:
        Checkpointer(save_dir).resume_candidates(resume=True, overwrite=False)
    assert str(rng) in str(err.value) and not marker.exists()


def test_planted_pickle_as_trainer_state_does_not_run(save_dir, tmp_path, caplog):
    marker, state = tmp_path / "ran", save_dir / "iter_0000006" / ckfiles.STATE_FILE
    _plant(state, marker)
    with caplog.at_level(logging.WARNING, logger="nemo_vtp.checkpoint"):
        assert Checkpointer(save_dir).latest() == save_dir / "iter_0000003"
    assert not marker.exists() and f"{state} is not readable JSON" in caplog.text


def test_planted_pickle_as_shard_index_does_not_run(save_dir, tmp_path, caplog):
    """torch unpickles `.metadata` with no restriction; the allowlist check before it refuses the plant."""
    marker, index = tmp_path / "ran", save_dir / "iter_0000006" / ckfiles.DCP_INDEX
    _plant(index, marker)
    with caplog.at_level(logging.WARNING, logger="nemo_vtp.checkpoint"):
        assert Checkpointer(save_dir).latest() == save_dir / "iter_0000003"
    assert not marker.exists()
    assert f"{index} is not a shard index (UnpicklingError: refused global posix.system)" in caplog.text


def test_garbage_common_state_falls_back_naming_the_file(save_dir, caplog):
    common = save_dir / "iter_0000006" / ckfiles.COMMON_FILE
    common.write_bytes(b"garbage")
    with caplog.at_level(logging.WARNING, logger="nemo_vtp.checkpoint"):
        assert Checkpointer(save_dir).latest() == save_dir / "iter_0000003"
    assert f"{common} is not readable" in caplog.text


def test_planted_pickle_as_common_state_does_not_run(save_dir, tmp_path):
    marker = tmp_path / "ran"
    _plant(save_dir / "iter_0000006" / ckfiles.COMMON_FILE, marker)
    assert Checkpointer(save_dir).latest() == save_dir / "iter_0000003"
    assert not marker.exists()


def test_shard_index_with_a_malformed_entry_is_named(save_dir, caplog):
    from torch.distributed.checkpoint.metadata import Metadata

    index = save_dir / "iter_0000006" / ckfiles.DCP_INDEX
    index.write_bytes(pickle.dumps(Metadata(state_dict_metadata={}, storage_data={"weight": 5})))
    with caplog.at_level(logging.WARNING, logger="nemo_vtp.checkpoint"):
        assert Checkpointer(save_dir).latest() == save_dir / "iter_0000003"
    assert f"{index} holds a malformed shard entry: 5" in caplog.text


def test_every_step_unusable_stops_naming_them(save_dir):
    for step in STEPS:
        shard = sorted((save_dir / ckfiles.step_name(step)).glob("*.distcp"))[0]
        shard.write_bytes(b"")
    with pytest.raises(ckfiles.CheckpointError, match="none can be resumed") as err:
        Checkpointer(save_dir).resume_candidates(resume=True, overwrite=False)
    assert "iter_0000003" in str(err.value) and "iter_0000006" in str(err.value)
    assert "truncated" in str(err.value)


def test_fresh_start_over_step_folders_is_refused(save_dir):
    with pytest.raises(ckfiles.CheckpointError, match="checkpoint.overwrite=true"):
        Checkpointer(save_dir).resume_candidates(resume=False, overwrite=False)
    assert ckfiles.step_folders(save_dir) == [save_dir / "iter_0000006", save_dir / "iter_0000003"]


def test_fresh_start_with_overwrite_removes_the_old_steps(save_dir):
    assert Checkpointer(save_dir).resume_candidates(resume=False, overwrite=True) == []
    assert ckfiles.step_folders(save_dir) == []


def test_weights_only_lookup_skips_a_torn_newest_step(save_dir):
    """`checkpoint.load=<save_dir>` and the demo's lookup take the newest step with intact weights."""
    _newest_shard(save_dir).write_bytes(b"\0")
    (save_dir / "iter_0000003" / ckfiles.STATE_FILE).unlink()  # weights alone are enough here
    assert find_checkpoint(save_dir) == save_dir / "iter_0000003"
