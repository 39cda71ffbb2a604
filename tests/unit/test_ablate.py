"""`nemo-vtp ablate` without training: the array-index mapping, each arm's switches, the exact
perception measures, the interval arithmetic and the Table 3 report."""

import json
import math

import pytest

from nemo_vtp.ablate import ARM_OFF, RunSpec, finished_results, plan, rl_command, task_to_run
from nemo_vtp.ablate_metrics import (
    coverage,
    hallucinated,
    mean_interval,
    paired_difference,
    response_metrics,
    scene_facts,
    stated_clauses,
    t975,
)
from nemo_vtp.ablate_report import table, write_report
from nemo_vtp.config import load_config
from nemo_vtp.config.ablation import ARMS
from nemo_vtp.data.synth.world import WorldSpec, make_sample
from tests.conftest import ROOT

ARMS5 = list(ARMS)


def test_array_index_maps_to_every_arm_and_seed_once():
    pairs = [task_to_run(i, ARMS5, 5) for i in range(25)]
    assert len(set(pairs)) == 25 and pairs[0] == ("full", 0) and pairs[4] == ("full", 4)
    assert pairs[5] == ("no-vkey", 0) and pairs[24] == ("acc-fmt", 4)
    for bad in (-1, 25):
        with pytest.raises(ValueError, match="outside 0..24"):
            task_to_run(bad, ARMS5, 5)


def test_plan_and_arm_switches(tmp_path):
    cfg = load_config(ROOT / "recipes" / "tiny" / "rl.yaml", [f"run.output_dir={tmp_path}", "run.seed=7",
                                                              "ablation.seeds=2"])
    specs = plan(cfg)
    assert [(s.arm, s.seed) for s in specs[:3]] == [("full", 7), ("full", 8), ("no-vkey", 7)] and len(specs) == 10
    assert specs[3].run_dir == tmp_path / "ablation" / "runs" / "no-vkey" / "seed1"
    for arm, off in ARM_OFF.items():
        cmd = rl_command("r.yaml", ["x=1"], RunSpec(arm, 0, 7, tmp_path), nproc=1)
        switched = {a.split("=")[0].split(".")[-1] for a in cmd if a.startswith("rewards.enabled.")}
        assert switched == set(off) and cmd[cmd.index("r.yaml") + 1] == "x=1"
        # The run's own keys come after the user's, so they win; the child is never an array task.
        assert cmd.index("x=1") < cmd.index(f"run.output_dir={tmp_path}") and "ablation.task=null" in cmd
        assert f"checkpoint.save_dir={tmp_path / 'checkpoints'}" in cmd  # never a save_dir the recipe shares
    assert set(ARM_OFF["acc-fmt"]) == {"vkey", "tkey", "cons", "rep"} and ARM_OFF["full"] == ()
    torchrun = rl_command("r.yaml", [], RunSpec("full", 0, 7, tmp_path), nproc=8)
    assert "torch.distributed.run" in torchrun and "--nproc-per-node=8" in torchrun


def test_exact_coverage_is_not_the_reward_matcher():
    facts = ["3 red circles"]
    clauses = stated_clauses("The image shows 9 shapes: 13 red circles, 2 blue squares.")
    assert coverage(clauses, facts) == 0.0  # "13 red circles" does not state "3 red circles"
    assert coverage(stated_clauses("The image shows 9 shapes: 3 Red  circles."), facts) == 1.0
    assert coverage(clauses, []) is None
    # Exact: a paraphrase a fuzzy matcher might credit is not a stated fact here.
    assert coverage(["three red circles"], facts) == 0.0 and coverage(["3 red circles in a row"], facts) == 0.0


def test_hallucinated_counts_false_world_facts_only():
    sample, scene = make_sample(WorldSpec(num=50), 3)  # a bar chart
    truth = scene_facts(scene)
    true_bar = sorted(f for f in truth)[0]
    color = true_bar.split()[1]
    value = int(true_bar.split()[-1])
    clauses = [true_bar, f"the {color} bar is {value + 1}", "the sky is blue", "the purple bar is 99"]
    assert hallucinated(clauses, truth) == 2  # the wrong value and a bar that is not there (99)
    row = response_metrics(f"<description>A bar chart: {true_bar}, the {color} bar is {value + 1}.</description>"
                           f"<think>So the answer is {sample.answer}.</think><answer>{sample.answer}</answer>",
                           sample.to_dict(), True, 1.0)
    assert row["hallucinated"] == 1.0 and row["accuracy"] == 1.0 and 0 <= row["consistency"] <= 1
    no_scene = {**sample.to_dict(), "meta": {}}
    assert response_metrics("<description>x</description>", no_scene, False, 0.0)["hallucinated"] is None


def test_every_reference_response_is_fully_covered_and_true():
    for i in range(60):
        sample, _ = make_sample(WorldSpec(num=60), i)
        r = sample.response
        row = response_metrics(f"<description>{r.description}</description><think>{r.think}</think>"
                               f"<answer>{r.answer}</answer>", sample.to_dict(), True, 1.0)
        assert row["coverage"] == 1.0 and row["hallucinated"] == 0.0, sample.id


def test_intervals():
    assert t975(4) == 2.776 and t975(100) == pytest.approx(1.984, abs=1e-3)
    mean, low, high = mean_interval([0.5, 0.6, 0.7, 0.8, 0.9])
    half = 2.776 * math.sqrt(0.025) / math.sqrt(5)
    assert mean == pytest.approx(0.7) and (low, high) == pytest.approx((0.7 - half, 0.7 + half))
    assert math.isnan(mean_interval([0.4])[1])
    diff = paired_difference({0: 0.5, 1: 0.7, 2: 0.6}, {0: 0.6, 1: 0.8, 2: 0.7, 3: 0.1})
    assert diff[0] == pytest.approx(-0.1) and diff[2] - diff[1] == pytest.approx(0.0, abs=1e-9)  # constant shift
    assert paired_difference({0: 1.0}, {1: 1.0}) is None


def _results():
    rows = []
    for arm, base in (("full", 0.60), ("no-cons", 0.55)):
        for k in range(3):
            rows.append({"arm": arm, "seed_index": k, "seed": k, "metrics": {
                "n": 10.0, "accuracy": base + 0.01 * k, "format": 1.0, "coverage": 0.8, "hallucinated": 0.2 * k,
                "consistency": 0.9}})
    return rows


def test_report_table_layout_and_files(tmp_path):
    rows = _results()
    means = table(rows, ["full", "no-cons"], paired=False)
    assert means[0].startswith("| arm | seeds | accuracy (%)") and len(means) == 4
    assert means[2].startswith("| Full (all rewards) | 3 | 61.0 [") and "| w/o consistency (R_cons) | 3 | 56.0 [" in means[3]
    diffs = table(rows, ["full", "no-cons"], paired=True)
    assert len(diffs) == 3 and "| -5.0 [-5.0, -5.0] |" in diffs[2]  # every seed 5 points lower
    path = write_report(tmp_path, rows, ["full", "no-cons"], 3)
    text = path.read_text()
    assert "6 of 6 runs done" in text and "Paired difference" in text and "![accuracy](plots/accuracy.png)" in text
    assert {p.name for p in (tmp_path / "plots").iterdir()} == {
        "accuracy.png", "format.png", "coverage.png", "hallucinated.png", "consistency.png"}
    assert (tmp_path / "plots" / "accuracy.png").read_bytes()[:4] == b"\x89PNG"


def test_finished_results_reads_result_files_in_plan_order(tmp_path):
    specs = [RunSpec("full", k, k, tmp_path / f"r{k}") for k in range(3)]
    for k in (2, 0):
        specs[k].run_dir.mkdir()
        (specs[k].run_dir / "result.json").write_text(json.dumps({"arm": "full", "seed_index": k}))
    assert [r["seed_index"] for r in finished_results(specs)] == [0, 2]


@pytest.mark.parametrize("module", ["nemo_vtp.ablate", "nemo_vtp.ablate_metrics", "nemo_vtp.eval.prompts",
                                    "nemo_vtp.data.instruction", "nemo_vtp.data.clean_sft",
                                    "nemo_vtp.data.scripted_teacher", "nemo_vtp.eval.benchmarks.mmmu",
                                    "nemo_vtp.dapo"])
def test_docstring_examples(module):
    import doctest
    import importlib

    failures, tried = doctest.testmod(importlib.import_module(module), verbose=False)
    assert tried > 0 and failures == 0
