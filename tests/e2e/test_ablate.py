"""`nemo-vtp ablate` end to end on the tiny recipes: two arms, one seed, one Stage II step each,
evaluated on a few held-out samples; report, plots and result rows are written; a rerun resumes."""

from __future__ import annotations

import json

from tests.e2e.stages import TINY_RL, run
from tests.e2e.test_rl import FAST_RL


def test_two_arms_one_seed_report_and_resume(tmp_path, tiny_world, tiny_sft):
    args = [f"run.output_dir={tmp_path}", f"data.train_path={tiny_world / 'train.jsonl'}",
            f"checkpoint.load={tiny_sft}", *FAST_RL, "rl.rollout_steps=1", "rl.dynamic_sampling.enabled=false",
            "ablation.arms=[full,acc-fmt]", "ablation.seeds=1", "ablation.eval_limit=6",
            "ablation.eval_max_new_tokens=96"]
    proc = run("ablate", TINY_RL, args)
    out = tmp_path / "ablation"
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert [(r["arm"], r["seed_index"]) for r in rows] == [("full", 0), ("acc-fmt", 0)]
    for r in rows:
        m = r["metrics"]
        assert m["n"] == 6 and all(0.0 <= m[k] <= 1.0 for k in ("accuracy", "format", "coverage", "consistency"))
        assert m["hallucinated"] >= 0.0
    # The arm's switches reached its Stage II run.
    resolved = (out / "runs" / "acc-fmt" / "seed0" / "config.resolved.yaml").read_text()
    assert "vkey: false" in resolved and "cons: false" in resolved
    report = (out / "report.md").read_text()
    assert "2 of 2 runs done" in report and "| Full (all rewards) | 1 |" in report
    assert "| accuracy + format only | 1 |" in report and "Paired difference" in report
    assert {p.name for p in (out / "plots").glob("*.png")} == {f"{m}.png" for m in (
        "accuracy", "format", "coverage", "hallucinated", "consistency")}
    assert "acc-fmt seed 0 finished" in proc.stderr
    # A rerun finds every run done: no training, the same rows.
    again = run("ablate", TINY_RL, args)
    assert "0 to run here" in again.stderr and "2/2 runs done" in again.stdout
    assert [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()] == rows
