"""`evaluate_checkpoint`: one checkpoint on the eval recipe's benchmark, in this process, for code that
compares checkpoints (`nemo-vtp demo`: the SFT and the RL checkpoint on the synthetic held-out split)."""

from __future__ import annotations

from pathlib import Path

from nemo_vtp.eval.evaluate import evaluate


def evaluate_checkpoint(cfg, ckpt_path: str | Path, out_dir: str | Path) -> dict[str, float]:
    """Evaluate one checkpoint (an HF folder, a Megatron step folder, or a save_dir with its tracker file) on
    `cfg.eval`'s benchmark and split, with `cfg.generation`, as rank 0 of 1, into `out_dir`.

    Returns the overall row of the summary: {"n": items scored, "accuracy": ..., and on the synthetic
    world "format", "tkey_coverage", "vkey_coverage"}, means in [0, 1]; the per-category tables and
    counts are in `out_dir/summary.json`. Resumes a partial run in `out_dir` (a finished one loads no
    model); refuses an `out_dir` holding another checkpoint's results.
    """
    ev = cfg.eval.model_copy(update={"model_path": str(ckpt_path), "output_dir": str(out_dir), "responses_file": None})
    summary = evaluate(cfg.model_copy(update={"eval": ev}), rank=0, world_size=1)
    if summary is None:  # cannot happen with one rank: it is always the last to finish
        raise RuntimeError(f"evaluation of {ckpt_path} in {out_dir} did not finish")
    return summary["overall"]
