"""Stage II (perception-aware DAPO) settings: batch shape, the loss, dynamic sampling, overlong
filtering and TIS. Defaults are DAPO's (arXiv 2503.14476) where it gives them; ours are marked.

How the rollouts sample is `generation.sampling`, one place for every rollout knob: its `n` is the
group size G, its `temperature` also scales the trainer's log-probs, its `max_new_tokens` is L_max
of R_overlong."""

from typing import Literal

from pydantic import Field

from nemo_vtp.config.base import Section


class DynamicSamplingConfig(Section):
    enabled: bool = True  # drop groups whose `criterion` has zero variance and refill (DAPO); False: plain GRPO
    # accuracy: drop all-correct/all-wrong groups (DAPO); reward: drop groups with equal totals
    criterion: Literal["accuracy", "reward"] = "accuracy"
    max_rounds: int = Field(10, ge=1)  # generation rounds per step before on_exhausted applies (DAPO's reference code: 10)
    oversample: float = Field(1.0, ge=1.0)  # prompts generated per round, as a multiple of num_prompts (DAPO's code: 3)
    on_exhausted: Literal["error", "partial", "pad"] = "partial"  # ours: a short step is logged, not a crashed run


class RLConfig(Section):
    num_prompts: int = Field(512, ge=1)  # prompt groups per rollout step, after dynamic sampling
    mini_batch_size: int = Field(512, ge=1)  # responses per optimizer update (DAPO: 512 -> 16 updates per step)
    micro_batch_size: int = Field(4, ge=1)  # responses per forward/backward pass on one DP rank (memory only)
    # tokens per packed micro-batch (one row, sequences kept apart by cu_seqlens / a block mask; whole
    # groups together when they fit); None: padded micro-batches of micro_batch_size responses
    micro_batch_tokens: int | None = Field(None, ge=16)
    share_prompt_vision: bool = True  # encode a prompt's images once per micro-batch for all its responses
    ppo_epochs: int = Field(1, ge=1)  # passes over each rollout batch
    num_epochs: int = Field(2, ge=1)  # passes over the RL prompt set (VTPerception-R1: 2)
    rollout_steps: int | None = Field(None, ge=1)  # rollout steps to run; None: num_epochs over the prompt set
    # longest prompt, tokens (images expanded; longer ones skipped, counted); None: engine context - max_new_tokens
    max_prompt_tokens: int | None = Field(None, ge=1)
    ratio_clip_low: float = Field(0.2, ge=0, lt=1)  # eps_low: ratio floor 1 - eps_low for negative advantages
    ratio_clip_high: float = Field(0.28, ge=0)  # eps_high: ratio ceiling 1 + eps_high for positive advantages
    dual_clip: float | None = Field(None, gt=1)  # c: negative-advantage loss bounded by -c*A; None: off (as DAPO)
    loss_agg: Literal["token-mean", "seq-mean-token-mean"] = "token-mean"  # token-mean: DAPO's global token mean
    advantage_eps: float = Field(1e-6, gt=0)  # added to the group reward std
    dynamic_sampling: DynamicSamplingConfig = Field(default_factory=DynamicSamplingConfig)
    overlong_filter: bool = True  # mask responses truncated at the length limit out of the loss
    tis: bool = False  # truncated importance sampling weight min(pi_train/pi_rollout, tis_cap) per token
    tis_cap: float = Field(2.0, gt=0)  # C of TIS (ours: 2); the mismatch is logged whether or not tis is on
    logprob_chunk_size: int = Field(1024, ge=1)  # tokens per chunk of the vocab-parallel log-prob (fp32 memory)
