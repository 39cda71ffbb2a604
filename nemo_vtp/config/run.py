"""Run-level settings: where outputs go, seeds, device, logging and checkpoints."""

from typing import Literal

from pydantic import Field

from nemo_vtp.config.base import Section


class RunConfig(Section):
    name: str = "run"  # run name, used in log lines and as the default output sub-folder
    output_dir: str = "runs/run"  # folder for config.resolved.yaml, logs, checkpoints, reports
    seed: int = 1234  # global seed (python, numpy, torch, megatron RNG tracker)
    device: Literal["auto", "cpu", "cuda"] = "auto"  # auto: cuda when available, else cpu


class WandbConfig(Section):
    """Weights & Biases (optional: pip install 'nemo_vtp[wandb]'); files go under <output_dir>/wandb."""

    enabled: bool = False  # log every metric record to W&B too
    project: str = "nemo-vtp"  # W&B project
    name: str | None = None  # W&B run name; None lets W&B pick one
    mode: Literal["online", "offline", "disabled"] = "online"  # offline: write files only, `wandb sync` later


class MlflowConfig(Section):
    """MLflow (optional: pip install 'nemo_vtp[mlflow]'); the run is named after the output folder."""

    enabled: bool = False  # log every metric record (and the resolved recipe as parameters) to MLflow too
    tracking_uri: str | None = None  # e.g. http://mlflow:5000 or file:/path/mlruns; None: MLflow's default/env
    experiment: str = "nemo-vtp"  # MLflow experiment name, created when missing


class LoggingConfig(Section):
    tensorboard: bool = True  # write TensorBoard event files to <output_dir>/tb
    jsonl: bool = True  # write one JSON line of metrics per step to <output_dir>/metrics.jsonl
    progress_bar: bool = True  # tqdm bar on rank 0 when stderr is a terminal (NEMO_VTP_PROGRESS=1 forces it)
    log_interval: int = Field(1, ge=1)  # steps between metric records and console lines (when no bar shows)
    rollout_interval: int = Field(10, ge=0)  # RL steps between <output_dir>/rollouts/step_N.jsonl dumps; 0 off
    rollout_groups: int = Field(4, ge=1)  # groups per rollout dump, each its top and bottom response
    wandb: WandbConfig = Field(default_factory=WandbConfig)
    mlflow: MlflowConfig = Field(default_factory=MlflowConfig)


class CheckpointConfig(Section):
    save_dir: str | None = None  # default: <output_dir>/checkpoints
    save_interval: int = Field(0, ge=0)  # steps between saves; 0 saves only at the end
    save_at_end: bool = True  # save when the run ends (false: benchmarks and dry runs that keep nothing)
    keep_last: int = Field(2, ge=1)  # number of most recent checkpoints kept on disk
    load: str | None = None  # checkpoint to start from (a step folder, or a save_dir: its newest intact one)
    resume: bool = True  # resume automatically from the newest usable step folder of save_dir
    overwrite: bool = False  # with resume=false: delete the step folders already in save_dir (else refuse to start)
    load_optimizer: bool = True  # restore optimizer state when resuming (not when starting from `load`)
