"""Checkpoint writing and resume choice without a model: step order, RNG files as tensors, the flush
order of a save, the fall-back loop of resume."""

from __future__ import annotations

import logging
import os
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from nemo_vtp.training import checkpoint as ck
from nemo_vtp.training import checkpoint_files as ckfiles


def _draws() -> tuple:
    return random.random(), float(np.random.rand()), float(torch.rand(1))


def test_step_folders_are_ordered_by_number_not_name(tmp_path):
    for name in ("iter_9", "iter_0000010", "step_0000011", "iter_0000002", ".tmp-iter_0000012", "iter_x", "latest"):
        (tmp_path / name).mkdir()
    assert [p.name for p in ckfiles.step_folders(tmp_path)] == ["step_0000011", "iter_0000010", "iter_9",
                                                                "iter_0000002"]


def test_step_names_are_megatron_lms():
    assert ckfiles.step_name(40) == "iter_0000040" and ckfiles.step_name(12345678) == "iter_12345678"
    assert ckfiles.TRACKER == "latest_checkpointed_iteration.txt"


def test_tracker_names_the_folder_of_its_iteration(tmp_path):
    assert ckfiles.tracked_step(tmp_path) is None
    (tmp_path / ckfiles.OLD_LATEST).write_text("step_0000004\n")  # a run saved before the rename
    assert ckfiles.tracked_step(tmp_path) == tmp_path / "step_0000004"
    ckfiles.write_tracker(tmp_path, 40)
    assert (tmp_path / ckfiles.TRACKER).read_text() == "40"  # Megatron-LM reads int() of the text
    assert not (tmp_path / ckfiles.OLD_LATEST).exists()  # the older pointer would name an older folder
    assert ckfiles.tracked_step(tmp_path) == tmp_path / "iter_0000040"


def test_rng_file_round_trip_restores_every_generator(tmp_path):
    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    random.gauss(0, 1)  # python keeps a cached gaussian: part of the state
    path = tmp_path / "rank_00000.pt"
    torch.save(ck._rng_state(), path)
    expected = _draws()
    ck._set_rng_state(ckfiles.load_rng_file(path))
    assert _draws() == expected
    assert torch.serialization.get_unsafe_globals_in_checkpoint(path) == []  # plain tensors and numbers


def test_first_format_rng_file_still_loads_without_pickle_code(tmp_path):
    """Checkpoints written before the tensor format stored the states as python tuples and a numpy array."""
    np.random.seed(5), torch.manual_seed(6)
    path = tmp_path / "rank_00000.pt"
    torch.save({"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state(),
                "cuda": None, "tracker": {}}, path)
    expected = _draws()
    ck._set_rng_state(ckfiles.load_rng_file(path))
    assert _draws() == expected


def test_rng_file_of_the_wrong_shape_is_named(tmp_path):
    path = tmp_path / "rank_00000.pt"
    torch.save({"format": 2, "python": {"version": 3}}, path)
    with pytest.raises(ckfiles.CheckpointError, match=f"{path} is not an RNG state file"):
        ckfiles.load_rng_file(path)


def _fake_dist_save(state, folder):
    """Stands in for Megatron's dist_checkpointing.save: a shard file and the index, as it writes them."""
    (Path(folder) / "__0_0.distcp").write_bytes(b"shard")
    (Path(folder) / ".metadata").write_bytes(b"index")
    (Path(folder) / ckfiles.META_FILE).write_text("{}")


def test_save_flushes_every_file_and_folder_before_each_rename(tmp_path, monkeypatch):
    from megatron.core import dist_checkpointing

    events = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(dist_checkpointing, "save", _fake_dist_save)
    monkeypatch.setattr(ck, "_sharded_state", lambda *args, **kwargs: {})
    monkeypatch.setattr(os, "fsync", lambda fd: (events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}"))),
                                                 real_fsync(fd)))
    monkeypatch.setattr(os, "replace", lambda src, dst: (events.append(("replace", str(src), str(dst))),
                                                         real_replace(src, dst)))
    save_dir = tmp_path / "ckpt"
    final = ck.Checkpointer(save_dir).save(7, [], None, {"consumed_samples": 56})

    renames = [i for i, e in enumerate(events) if e[0] == "replace"]
    assert final == save_dir / "iter_0000007"
    assert [events[i][2] for i in renames] == [str(final), str(save_dir / ckfiles.TRACKER)]
    tmp = str(save_dir / ".tmp-iter_0000007")
    flushed_first = {e[1] for e in events[:renames[0]]}
    written = {str(p).replace(str(final), tmp) for p in final.rglob("*")} | {tmp}
    assert written <= flushed_first, written - flushed_first  # every file and folder, before the rename
    assert events[renames[0] + 1] == ("fsync", str(save_dir))  # the rename itself made durable
    assert ("fsync", str(save_dir / f".{ckfiles.TRACKER}.tmp")) in events[renames[0]:renames[1]]
    assert events[renames[1] + 1] == ("fsync", str(save_dir))
    assert (save_dir / ckfiles.TRACKER).read_text() == "7"
    assert ckfiles.read_trainer_state(final) == {"consumed_samples": 56, "step": 7}


def test_save_prunes_old_steps_and_leftovers_of_killed_saves(tmp_path, monkeypatch):
    from megatron.core import dist_checkpointing

    monkeypatch.setattr(dist_checkpointing, "save", _fake_dist_save)
    monkeypatch.setattr(ck, "_sharded_state", lambda *args, **kwargs: {})
    save_dir = tmp_path / "ckpt"
    (save_dir / ".tmp-iter_0000004").mkdir(parents=True)  # a save killed before its rename
    (save_dir / ".tmp-step_0000006").mkdir()  # the same, from before the Megatron-LM names
    checkpointer = ck.Checkpointer(save_dir, keep_last=2)
    for step in (2, 3, 5):
        checkpointer.save(step, [], None, {})
    assert sorted(p.name for p in save_dir.iterdir()) == ["iter_0000003", "iter_0000005", ckfiles.TRACKER]


def test_save_over_a_run_with_old_step_names_prunes_both_names(tmp_path, monkeypatch):
    """A run saved before the rename (step_ folders, `latest`) resumed and saving on: keep_last counts both
    names, a step saved again replaces its old-named folder, and `latest` goes."""
    from megatron.core import dist_checkpointing

    monkeypatch.setattr(dist_checkpointing, "save", _fake_dist_save)
    monkeypatch.setattr(ck, "_sharded_state", lambda *args, **kwargs: {})
    save_dir = tmp_path / "ckpt"
    for step in (2, 4):
        (save_dir / f"step_{step:07d}").mkdir(parents=True)
    (save_dir / ckfiles.OLD_LATEST).write_text("step_0000004")
    checkpointer = ck.Checkpointer(save_dir, keep_last=2)
    checkpointer.save(4, [], None, {})  # resumed from step 2 (step 4 was torn), saved step 4 again
    assert sorted(p.name for p in save_dir.iterdir()) == ["iter_0000004", ckfiles.TRACKER, "step_0000002"]
    checkpointer.save(6, [], None, {})
    assert sorted(p.name for p in save_dir.iterdir()) == ["iter_0000004", "iter_0000006", ckfiles.TRACKER]


def test_resume_falls_back_past_a_step_that_fails_to_load(tmp_path, monkeypatch, caplog):
    newest, older = tmp_path / "iter_0000006", tmp_path / "iter_0000003"

    def load(self, path, *args):
        if path == newest:
            raise ckfiles.CheckpointError(f"{newest}/common.pt: unreadable")
        return {"step": 3}

    monkeypatch.setattr(ck.Checkpointer, "load", load)
    with caplog.at_level(logging.WARNING, logger="nemo_vtp.checkpoint"):
        assert ck.Checkpointer(tmp_path).resume([newest, older], [], None) == (older, {"step": 3})
    assert f"cannot resume from {newest} ({newest}/common.pt: unreadable); falling back" in caplog.text


def test_resume_stops_naming_every_step_when_none_loads(tmp_path, monkeypatch):
    def load(self, path, *args):
        raise ckfiles.CheckpointError(f"{path}/common.pt: unreadable")

    monkeypatch.setattr(ck.Checkpointer, "load", load)
    steps = [tmp_path / "iter_0000006", tmp_path / "iter_0000003"]
    with pytest.raises(ckfiles.CheckpointError, match="no step folder under") as err:
        ck.Checkpointer(tmp_path).resume(steps, [], None)
    assert all(f"{step}/common.pt" in str(err.value) for step in steps)


def test_fsync_of_a_folder_tolerates_a_file_system_that_cannot(tmp_path, monkeypatch):
    import errno

    def fsync(fd):
        raise OSError(errno.EINVAL, "Invalid argument")

    (tmp_path / "f").write_text("x")
    monkeypatch.setattr(os, "fsync", fsync)
    ckfiles.fsync_path(tmp_path)  # a folder: accepted
    with pytest.raises(OSError):
        ckfiles.fsync_path(tmp_path / "f")  # a file that cannot be flushed is an error
