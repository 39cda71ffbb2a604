"""The demo report: reward means of the first and last quarter of the RL steps, and the held-out
accuracy of both checkpoints overall and per category, read from the files the stages write."""

import json

from nemo_vtp.demo import category_table, write_report

TERMS = ("acc", "fmt", "vkey", "tkey", "cons", "rep", "overlong", "total")


def _write_run(out):
    (out / "sft").mkdir(parents=True)
    (out / "rl").mkdir()
    sft = [{"step": s, "train/loss": 6.0 / s, "train/step_time_s": 1.5} for s in range(1, 5)]
    sft.append({"step": 4, "train/loss": 1.5, "train/step_time_s": 2.5})  # step 4 again, after a resume
    rl = [{"step": s, "rl/time/step_s": 2.0, **{f"rl/reward/{t}": 0.1 * s for t in TERMS}}
          for s in range(1, 9)]  # quarters: steps 1-2, 7-8
    for stage, rows in (("sft", sft), ("rl", rl)):
        (out / stage / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    for stage, accs in (("sft", (0.25, 0.5)), ("rl", (0.75, 1.0))):
        groups = {"family": {"shapes": {"n": 4, "accuracy": sum(accs) / 2}},
                  "qtype": {"count": {"n": 2, "accuracy": accs[0]}, "total": {"n": 2, "accuracy": accs[1]}}}
        (out / "eval" / stage).mkdir(parents=True)
        (out / "eval" / stage / "summary.json").write_text(json.dumps({"overall": {}, "groups": groups}))


def test_report_states_reward_quarters_and_accuracy_per_category(tmp_path):
    _write_run(tmp_path)
    evals = {"sft": {"n": 4, "accuracy": 0.375}, "rl": {"n": 4, "accuracy": 0.875}}
    report = write_report(tmp_path, {"sft": 10.0, "rl": 20.0}, evals).read_text()
    assert "| acc | 0.150 | 0.750 |" in report  # mean of steps 1-2 and of steps 7-8
    # training time over every invocation, the last record of a repeated step: 3 x 1.5 + 2.5; 8 x 2.0
    assert "Stage I SFT: 4 steps, 7 s of training steps (10 s wall in this invocation)" in report
    assert "Stage II DAPO: 8 rollout steps, 16 s of rollout steps (20 s wall in this invocation)" in report
    assert "| sft | 4 | 0.375 |" in report and "| rl | 4 | 0.875 |" in report
    assert "| family | shapes | 4 | 0.375 | 0.875 |" in report
    assert "| qtype | count | 2 | 0.250 | 0.750 |" in report and "| qtype | total | 2 | 0.500 | 1.000 |" in report
    assert json.loads((tmp_path / "summary.json").read_text())["seconds"] == {"sft": 10.0, "rl": 20.0}


def test_category_table_is_empty_without_both_summaries(tmp_path):
    assert category_table(tmp_path) == []


def test_report_plots_are_labelled(tmp_path):
    from nemo_vtp.demo import report_figure

    rows = [{"step": 1, "train/loss": 2.0}, {"step": 2, "train/loss": 1.5, "val/loss": 1.7}]
    fig = report_figure(rows, {"train/loss": "train", "val/loss": "validation", "x/missing": "never"}, "SFT",
                        "optimizer step", "cross-entropy (nats / token)")
    (ax,) = fig.axes
    assert (ax.get_xlabel(), ax.get_ylabel(), ax.get_title()) == ("optimizer step", "cross-entropy (nats / token)", "SFT")
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["train", "validation"]
    assert [list(line.get_xdata()) for line in ax.get_lines()] == [[1, 2], [2]]
    assert report_figure(rows, {"x/missing": "never"}, "t", "x", "y") is None
    _write_run(tmp_path)
    write_report(tmp_path, {"sft": 1.0, "rl": 1.0}, {"sft": {"n": 4, "accuracy": 0.5}, "rl": {"n": 4, "accuracy": 0.5}})
    assert all((tmp_path / f"{name}.png").stat().st_size > 0 for name in ("sft_loss", "rl_rewards", "rl_accuracy"))
