"""Session fixtures of the stage tests: one synthetic world and one initial checkpoint, converted from
a random HF Qwen2.5-VL with the real `nemo-vtp convert hf-to-megatron`, shared by every run."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.e2e.stages import ROOT, env


@pytest.fixture(scope="session")
def tiny_world(tmp_path_factory):
    from nemo_vtp.data.synth import WorldSpec, generate

    out = tmp_path_factory.mktemp("world")
    generate(WorldSpec(num=300, seed=0), out)
    return out


@pytest.fixture(scope="session")
def tiny_init(tmp_path_factory):
    """A Megatron checkpoint of a random tiny Qwen2.5-VL (the same initial weights for every layout)."""
    from nemo_vtp.data.tokenizer import load_tokenizer, special_token_ids
    from nemo_vtp.models.qwen25_vl.config import preset
    from nemo_vtp.models.qwen25_vl.hf import random_hf_model

    root = tmp_path_factory.mktemp("init")
    tokenizer = load_tokenizer()
    model = random_hf_model(preset("tiny", **special_token_ids(tokenizer)), seed=3)
    model.save_pretrained(root / "hf")
    tokenizer.save_pretrained(root / "hf")
    proc = subprocess.run([sys.executable, "-m", "nemo_vtp.cli", "convert", "hf-to-megatron", "--hf-dir",
                           str(root / "hf"), "--out", str(root / "mcore")], env=env(), cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return root / "mcore"


@pytest.fixture(scope="session")
def tiny_sft(tmp_path_factory, tiny_world, tiny_init):
    """The initial checkpoint after 40 SFT steps: it writes the three-tag format often enough that
    rollout rewards vary within a group (random weights give every response the same reward)."""
    from tests.e2e.stages import FAST_SFT, TINY_SFT, run

    out = tmp_path_factory.mktemp("sft")
    run("sft", TINY_SFT, [f"run.output_dir={out}", f"data.train_path={tiny_world / 'train.jsonl'}",
                          f"data.val_path={tiny_world / 'val.jsonl'}", f"checkpoint.load={tiny_init}",
                          *FAST_SFT, "training.train_steps=40", "training.eval_interval=0"])
    return out / "checkpoints" / "iter_0000040"
