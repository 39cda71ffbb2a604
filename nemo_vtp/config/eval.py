"""Benchmark evaluation: which benchmark, where its local files are, which prompt, where results go.

The engine and its sampling settings are the recipe's `generation` section (one place for them).
"""

from typing import Literal

from pydantic import Field

from nemo_vtp.config.base import Section


class EvalConfig(Section):
    benchmark: Literal["mathvista", "mmmu", "emma", "ai2d", "mathverse", "synthetic"] = "synthetic"  # what to evaluate
    data_dir: str = "data/eval/synthetic"  # folder with the benchmark's public files (layouts in docs/eval.md)
    split: str | None = None  # None: the benchmark's standard split (testmini, validation, test)
    subsets: list[str] | None = None  # MMMU subjects, EMMA subjects or MathVerse versions; None: all
    limit: int | None = Field(None, ge=1)  # evaluate only the first N items (smoke tests)
    output_dir: str | None = None  # default: <run.output_dir>/eval/<benchmark>
    prompt: Literal["structured", "plain"] = "structured"  # question + data.instruction, or the benchmark's own prompt
    responses_file: str | None = None  # JSONL of {id, response}: score these instead of generating
    model_path: str | None = None  # what to evaluate: an HF folder, or a Megatron checkpoint (step folder or save_dir)
    convert_wait_s: float = Field(3600.0, gt=0)  # longest Megatron-checkpoint conversion (rank 0) and wait (others), s
    batch_size: int = Field(8, ge=1)  # items per generate call (and per resume checkpoint of the output file)
    prompt_style: Literal["explicit-notes", "structured", "implicit"] | None = None  # Table 1 strategy; None: none
    notes_file: str | None = None  # explicit-notes: JSONL of {id, visual: [...], textual: [...]} perception notes
    note_kinds: Literal["visual", "textual", "both"] = "both"  # explicit-notes: which notes the prompt carries
    mmmu_random_guess: bool = True  # MMMU official rule: unparseable multiple-choice answer -> random option
