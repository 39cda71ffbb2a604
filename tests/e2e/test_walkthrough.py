"""The data commands of docs/walkthrough.md, run as written: public-dataset fixtures laid out as `raw/`,
`nemo-vtp` on PATH, and a scripted teacher behind a loopback server as $TEACHER. convert -> mix ->
clean-sft / annotate must leave the files the 7B recipes read (checked through the recipe loader), and the
tiny SFT recipe trains two steps on the Stage I files (RL and evaluation of that run are not part of it)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from nemo_vtp.data.io import read_samples, resolve_images
from nemo_vtp.data.schema import Response
from nemo_vtp.data.scripted_teacher import Noise, ScriptedTeacher, serve
from tests.e2e.stages import ROOT, env

FIXTURES = ROOT / "tests" / "fixtures"
# raw/<download folder> -> the fixture folder in that dataset's schema
RAW = {"LLaVA-CoT-100k": "llava_cot", "Vision-SR1-Cold-9K": "vision_sr1", "MMK12": "mmk12",
       "Vision-R1-rl": "vision_r1", "Mulberry": "mulberry"}
MARK = "<!-- tested: tests/e2e/test_walkthrough.py -->"


def doc_block(doc: Path) -> str:
    """The fenced bash block right after the MARK line."""
    text = doc.read_text(encoding="utf-8")
    match = re.search(re.escape(MARK) + r"\n```bash\n(.*?)\n```", text, re.S)
    assert match, f"{doc}: no bash block after {MARK}"
    return match.group(1)


def _reference_teacher(data: Path) -> ScriptedTeacher:
    """A noiseless scripted teacher that knows every mixed sample (RL rows get their gold answer as reference)."""
    samples = []
    for path in (data / "sft12k" / "train.jsonl", data / "sft12k" / "val.jsonl", data / "rl22k" / "train.jsonl"):
        for s in read_samples(path)[0]:
            s.images = [str(p) for p in resolve_images(s, path.parent)]  # each file's paths are relative to it
            s.response = s.response or Response(f"The image shows what the question asks: {s.question}",
                                                f"So the answer is {s.answer}.", s.answer)
            s.meta = {**s.meta, "caption": s.response.description}
            samples.append(s)
    none = Noise(0, 0, 0, 0, 0, 0, 0)
    return ScriptedTeacher(samples, data / "sft12k", noise=none)


def _shell(script: str, cwd: Path, extra_env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=cwd, env={**env(), **extra_env},
                          capture_output=True, text=True, timeout=300)


@pytest.fixture
def workdir(tmp_path):
    for name, fixture in RAW.items():
        (tmp_path / "raw").mkdir(exist_ok=True)
        (tmp_path / "raw" / name).symlink_to(FIXTURES / fixture)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    shim = bin_dir / "nemo-vtp"
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m nemo_vtp.cli "$@"\n')
    shim.chmod(0o755)
    return tmp_path, {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}


def test_walkthrough_data_commands_run_as_written(workdir):
    cwd, path_env = workdir
    lines = doc_block(ROOT / "docs" / "walkthrough.md").split("\n")
    engine_at = next(i for i, line in enumerate(lines) if "--teacher" in line)
    prepare, engine = "\n".join(lines[:engine_at]), "\n".join(lines[engine_at:])
    proc = _shell(prepare, cwd, path_env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    data = cwd / "data"
    for name in ("sft12k", "rl22k"):
        mixed = json.loads((data / name / "mix.json").read_text())
        rows = read_samples(data / name / "train.jsonl")[0] + read_samples(data / name / "val.jsonl")[0]
        assert len(rows) == mixed["train"] + mixed["val"] == sum(r["taken"] for r in mixed["sources"]) > 0
        assert all(row.meta["mix_origin"].startswith("data/") for row in rows)
        assert len({row.id for row in rows}) == len(rows)
    assert json.loads((data / "sft12k" / "mix.json").read_text())["val"] == 1  # 2% of 5, at least one

    server, url = serve(_reference_teacher(data).reply)
    try:
        proc = _shell(engine, cwd, {**path_env, "TEACHER": url})
    finally:
        server.shutdown()
        server.server_close()
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    for out, name in (("vtp12k", "train"), ("vtp12k", "val"), ("vtp22k-rl", "train")):
        summary = json.loads((data / out / f"{name}.summary.json").read_text())
        assert summary["failed"] == 0 and summary["not_attempted"] == 0
        kept = read_samples(data / out / f"{name}.jsonl")[0]
        assert len(kept) == summary["kept"]
    annotated = read_samples(data / "vtp22k-rl" / "train.jsonl")[0]
    assert annotated and all(s.key_info and s.key_info.visual for s in annotated)

    # The recipes resolve to exactly these files.
    for recipe, key, expected in (("sft/sft-qwen25vl-7b-vtp12k-1n8g-tp2.yaml", "train_path", "vtp12k/train.jsonl"),
                                  ("sft/sft-qwen25vl-7b-vtp12k-1n8g-tp2.yaml", "val_path", "vtp12k/val.jsonl"),
                                  ("rl/rl-qwen25vl-7b-vtp22k-1n8g-tp4.yaml", "train_path", "vtp22k-rl/train.jsonl")):
        from nemo_vtp.config.loader import load_config

        os.environ["NEMO_VTP_DATA"] = str(data)
        try:
            cfg = load_config(ROOT / "recipes" / recipe, [])
        finally:
            del os.environ["NEMO_VTP_DATA"]
        assert Path(getattr(cfg.data, key)) == data / expected
        assert (data / expected).is_file()

    # The fixtures' one validation row is dropped by the cleaning (its CoT does not conclude with its answer:
    # s_a = 0), so the tiny run validates on the mixed, uncleaned split.
    sft = _shell(f'"{sys.executable}" -m nemo_vtp.cli sft recipes/tiny/sft.yaml run.output_dir=runs/sft '
                 "data.train_path=data/vtp12k/train.jsonl data.val_path=data/sft12k/val.jsonl training.train_steps=2 "
                 "training.global_batch_size=2 training.micro_batch_size=1 training.eval_batches=1 "
                 "logging.progress_bar=false", cwd, {})
    assert sft.returncode == 0, sft.stderr[-3000:]
    assert "nemo-vtp sft done: step 2/2" in sft.stdout
