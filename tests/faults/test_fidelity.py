"""Bad inputs of the ablation command, the eval perception prompts and the SFT cleaning: each is
one case, handled with a clear error (or a clean drop) and nothing half-written."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from nemo_vtp.ablate import AblationError, RunSpec, run_stage2
from nemo_vtp.data.clean_sft import reasoning_answer_agreement
from nemo_vtp.eval.evaluate import prompt_fn
from nemo_vtp.eval.items import EvalItem
from tests.conftest import ROOT

ITEM = EvalItem("q1", "mmmu", [], "Which?", "Which? Answer with the letter.", "A")


def _ablate(tmp_path, *overrides: str) -> subprocess.CompletedProcess:
    (tmp_path / "world").mkdir(exist_ok=True)
    return subprocess.run([sys.executable, "-m", "nemo_vtp.cli", "ablate", str(ROOT / "recipes" / "tiny" / "rl.yaml"),
                           f"run.output_dir={tmp_path}", f"data.train_path={tmp_path / 'world' / 'train.jsonl'}",
                           *overrides], cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_ablate_array_index_outside_the_plan(tmp_path):
    (tmp_path / "world").mkdir()
    (tmp_path / "world" / "test.jsonl").write_text("")
    proc = _ablate(tmp_path, "ablation.task=25")
    assert proc.returncode == 2 and "ablation.task=25 is outside 0..24 (5 arms x 5 seeds)" in proc.stderr
    assert not (tmp_path / "ablation" / "runs").exists()


def test_ablate_without_a_held_out_split_stops_before_training(tmp_path):
    proc = _ablate(tmp_path, "ablation.seeds=1")
    assert proc.returncode == 2 and "test.jsonl does not exist" in proc.stderr
    assert not (tmp_path / "ablation").exists()


def test_ablate_unknown_arm(tmp_path):
    proc = _ablate(tmp_path, "ablation.arms=[full,no-rep]")
    assert proc.returncode == 2 and "no-rep" in proc.stderr


def test_ablate_failing_stage2_names_its_log_and_writes_no_result(tmp_path):
    spec = RunSpec("no-cons", 0, 1, tmp_path / "run")
    with pytest.raises(AblationError, match=r"Stage II of no-cons seed 0 exited 3; its log .*stage2.log") as err:
        run_stage2([sys.executable, "-c", "import sys; print('boom'); sys.exit(3)"], spec)
    assert "boom" in str(err.value) and not (spec.run_dir / "result.json").exists()


def test_ablate_stage2_stopped_early_is_not_evaluated(tmp_path):
    spec = RunSpec("full", 0, 1, tmp_path / "run")
    stopped = "print('nemo-vtp rl stopped early (resume by running it again): step 1/3, reward 0.1')"
    assert run_stage2([sys.executable, "-c", stopped], spec) is False


def test_explicit_notes_without_notes_names_the_item(tmp_path):
    from nemo_vtp.config import load_config

    cfg = load_config(ROOT / "recipes" / "eval" / "synthetic.yaml", ["eval.prompt_style=explicit-notes"])
    with pytest.raises(ValueError, match="item 'q1': prompt_style 'explicit-notes' needs perception notes"):
        prompt_fn(cfg)(ITEM)


def test_notes_file_row_without_id(tmp_path):
    from nemo_vtp.config import load_config

    bad = tmp_path / "notes.jsonl"
    bad.write_text(json.dumps({"visual": ["a"]}) + "\n")
    cfg = load_config(ROOT / "recipes" / "eval" / "synthetic.yaml",
                      ["eval.prompt_style=explicit-notes", f"eval.notes_file={bad}"])
    with pytest.raises(ValueError, match="line 1: a notes row needs an 'id'"):
        prompt_fn(cfg)


@pytest.mark.parametrize("think", ["", "The bar is red.", "So the answer is"])
def test_clean_sft_reasoning_without_a_conclusion_scores_zero_agreement(think):
    assert reasoning_answer_agreement(think, "7", None) == 0.0
