"""`nemo-vtp ablate`: which reward arms to train from one Stage I checkpoint, how many seeds, and how
every run is evaluated on the held-out split (docs/rl.md, "Reward ablation")."""

from typing import Literal

from pydantic import Field, field_validator

from nemo_vtp.config.base import Section

Arm = Literal["full", "no-vkey", "no-tkey", "no-cons", "acc-fmt"]
ARMS: tuple[str, ...] = ("full", "no-vkey", "no-tkey", "no-cons", "acc-fmt")  # the paper's Table 3 order, plus ours


class AblationConfig(Section):
    arms: list[Arm] = Field(default_factory=lambda: list(ARMS), min_length=1)  # arms to run; "full" is the reference
    seeds: int = Field(5, ge=1)  # S: Stage II runs per arm, with run.seed + 0 .. S-1
    output_dir: str | None = None  # default: <run.output_dir>/ablation
    task: int | None = Field(None, ge=0)  # run only the (arm, seed) of this index (Slurm array task); None: all
    nproc_per_node: int = Field(1, ge=1)  # processes per Stage II run (torchrun when > 1; one per GPU)
    eval_data_dir: str | None = None  # held-out samples' folder; default: the folder of data.train_path
    eval_split: str = "test"  # held-out split file <eval_data_dir>/<split>.jsonl
    eval_limit: int | None = Field(None, ge=1)  # evaluate only the first N held-out samples (smoke tests)
    eval_max_new_tokens: int | None = Field(None, ge=1)  # greedy eval length cap, tokens; default: the rollouts'
    eval_batch_size: int = Field(16, ge=1)  # held-out samples per generate call

    @field_validator("arms")
    @classmethod
    def _unique(cls, arms: list[str]) -> list[str]:
        if len(set(arms)) != len(arms):
            raise ValueError(f"arms repeat: {arms}")
        return arms
