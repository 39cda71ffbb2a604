"""One evaluation from a recipe: load the benchmark, pick where responses come from (an engine over
`eval.model_path`, or `eval.responses_file`), score this rank's shard, write the summary when all
ranks are done. `nemo_vtp.eval.checkpoints.evaluate_checkpoint` wraps it for code that compares checkpoints.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from nemo_vtp.config import write_resolved
from nemo_vtp.eval.benchmarks import ScoringOptions, get_benchmark
from nemo_vtp.eval.model_source import megatron_step
from nemo_vtp.eval.prompts import build_prompt, item_notes, load_notes
from nemo_vtp.eval.runner import rank_and_world, read_records, run_shard
from nemo_vtp.eval.sources import responses_from_file
from nemo_vtp.eval.summary import finalize

logger = logging.getLogger("nemo_vtp.eval")

RUN_FILE = "eval_source.json"  # in the output folder: what produced its responses (guards resume)
MODEL_CACHE = "model_hf"  # under the output folder: HF conversions of Megatron checkpoints


def output_dir(cfg) -> Path:
    return Path(cfg.eval.output_dir or Path(cfg.run.output_dir) / "eval" / cfg.eval.benchmark)


def response_source(cfg) -> dict[str, str]:
    """What produces the responses: the saved-responses file, or the model (absolute path; for a Megatron
    save_dir, the step folder its tracker names now, so a later step is not resumed into this step's results)."""
    ev = cfg.eval
    # A perception strategy changes the responses: its results are not resumed into another's folder.
    style = {"prompt_style": ev.prompt_style, "note_kinds": ev.note_kinds} if ev.prompt_style else {}
    if ev.responses_file:
        return {"responses_file": str(Path(ev.responses_file).resolve()), **style}
    if not ev.model_path:
        return {"model_path": "", **style}
    path = Path(ev.model_path)
    return {"model_path": str((megatron_step(path) or path).resolve()), **style}


def claim_output_dir(out_dir: Path, source: dict[str, str], rank: int) -> None:
    """Resume only results of the same model: an output folder holding another model's records is an error
    (their ids would be skipped and mixed into this model's summary)."""
    path = out_dir / RUN_FILE
    if path.is_file():
        previous = json.loads(path.read_text())
        if previous != source:
            raise ValueError(f"{out_dir} holds the results of {previous}, not of {source}: "
                             "choose another eval.output_dir (or delete that folder to start over)")
    elif rank == 0:
        out_dir.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(source, indent=1) + "\n")


def _generate_fn(cfg, items, out_dir: Path, rank: int, world: int):
    if cfg.eval.responses_file:
        return responses_from_file(cfg.eval.responses_file)
    from nemo_vtp.eval.engine_adapter import engine_generate, resolve_eval_model

    if rank == 0 and world > 1 and _any_pending(items, out_dir):
        # Rank 0 converts a Megatron checkpoint for every rank, also when its own shard is already done.
        resolve_eval_model(cfg, out_dir / MODEL_CACHE, rank, world)
    return engine_generate(cfg, prompt_fn(cfg), out_dir / MODEL_CACHE, rank, world)


def prompt_fn(cfg):
    """item -> user-turn text: `eval.prompt` with `data.instruction` (as in training), plus `eval.prompt_style`."""
    ev = cfg.eval
    notes = load_notes(ev.notes_file) if ev.notes_file else {}
    return lambda item: build_prompt(item, ev.prompt, cfg.data.instruction, ev.prompt_style,
                                     item_notes(item, notes), ev.note_kinds)


def _any_pending(items, out_dir: Path) -> bool:
    done = {record["id"] for record in read_records(out_dir)} if out_dir.is_dir() else set()
    return any(item.id not in done for item in items)


def evaluate(cfg, rank: int | None = None, world_size: int | None = None) -> dict[str, Any] | None:
    """Score this rank's shard of `cfg.eval.benchmark` into the output folder (resuming); returns the
    summary (see `nemo_vtp.eval.summary.summarize`) when this rank finished last, else None.

    rank, world_size: default to the launcher's (torchrun or srun), (0, 1) for a plain process.
    """
    ev = cfg.eval
    bench = get_benchmark(ev.benchmark)
    items = bench.load(Path(ev.data_dir), ev.split or bench.default_split, ev.subsets)
    items = items[: ev.limit] if ev.limit else items
    if rank is None or world_size is None:
        rank, world_size = rank_and_world()
    out_dir = output_dir(cfg)
    claim_output_dir(out_dir, response_source(cfg), rank)
    if rank == 0:
        write_resolved(cfg, out_dir)
    options = ScoringOptions(seed=cfg.run.seed, mmmu_random_guess=ev.mmmu_random_guess, rewards=cfg.rewards)
    result = run_shard(items, _generate_fn(cfg, items, out_dir, rank, world_size),
                       lambda item, response: bench.score(item, response, options), out_dir,
                       rank=rank, world_size=world_size, batch_size=ev.batch_size, progress=cfg.logging.progress_bar)
    logger.info("eval rank %d/%d: %d items, %d already scored, %d scored now, %d scorer errors, %d torn lines cut",
                rank, world_size, result.assigned, result.skipped, result.scored, result.score_errors,
                result.torn_lines)
    style = f", {ev.prompt_style} perception" if ev.prompt_style else ""
    return finalize(out_dir, world_size, len(items), f"{ev.benchmark} ({ev.prompt} prompt{style})")
