"""Benchmark evaluation: loaders for the public files of MathVista, MMMU, EMMA, AI2D, MathVerse and the
synthetic world, scorers that follow each benchmark's official rules, and a sharded, resumable runner.

Public API:
    get_benchmark(name) -> Benchmark(load, score, default_split, layout)
    EvalItem, Scored                          the data between loader, scorer and runner
    build_prompt(item, mode, instruction, style, notes)  structured or the benchmark's own prompt, plus a
                                              Table 1 perception strategy
    run_shard(items, generate, score, out_dir, rank=, world_size=, batch_size=, progress=)
    finalize(out_dir, world_size, expected, title) -> summary dict (writes summary.json / summary.md)
    responses_from_file(path) -> GenerateFn   score responses produced elsewhere
    evaluate(cfg, rank=None, world_size=None) -> summary dict or None (what `nemo-vtp eval` runs)
    evaluate_checkpoint(cfg, ckpt_path, out_dir) -> overall row    one checkpoint, in this process
"""

from nemo_vtp.eval.benchmarks import Benchmark, ScoringOptions, get_benchmark
from nemo_vtp.eval.checkpoints import evaluate_checkpoint
from nemo_vtp.eval.evaluate import evaluate
from nemo_vtp.eval.items import EvalItem, Scored
from nemo_vtp.eval.prompts import build_prompt
from nemo_vtp.eval.runner import GenerateFn, rank_and_world, run_shard
from nemo_vtp.eval.sources import responses_from_file
from nemo_vtp.eval.summary import finalize, summarize

__all__ = [
    "Benchmark", "EvalItem", "GenerateFn", "Scored", "ScoringOptions", "build_prompt", "evaluate",
    "evaluate_checkpoint", "finalize", "get_benchmark", "rank_and_world", "responses_from_file", "run_shard",
    "summarize",
]
