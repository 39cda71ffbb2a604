"""DAPO dynamic sampling: keep only prompt groups whose responses disagree, refill from further
generation rounds until the step's batch of `num_prompts` groups is full, within `max_rounds`.

A group whose G responses are all correct (or all wrong) has zero reward variance, hence zero GRPO
advantage for every token: it adds nothing to the gradient but still counts in the token
normaliser. DAPO drops such groups and samples more prompts instead.

The loop that drives it (one training step):

    while sampler.need_more():
        sampler.add(generate_and_score(next_prompts()))   # one generation round
    batch = sampler.take()                                # raises DynamicSamplingExhausted on `error`

Groups beyond `num_prompts` in the last round are discarded and counted (`groups_surplus`): they
came from the current policy, and keeping them for the next step would make them off-policy.
When the rounds run out before the batch is full, `on_exhausted` decides:
  error:   raise DynamicSamplingExhausted with the counts and the settings to change;
  partial: train on the groups kept so far (possibly none: the caller then skips the step);
  pad:     fill up with zero-advantage groups (dropped groups first, then copies of kept ones),
           flagged in `SampledBatch.is_pad`; the caller must give them zero advantage and mask their
           tokens out of the loss: they do not count in the token normaliser, and a mini-batch made
           of padding groups alone takes no optimizer step (nemo_vtp.dapo.takes_step).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Criterion = Literal["accuracy", "reward"]
OnExhausted = Literal["error", "partial", "pad"]


class DynamicSamplingExhausted(RuntimeError):
    """The generation rounds ran out before the batch was full (policy `error`)."""


@dataclass
class ScoredGroup:
    """The G scored responses of one prompt."""

    prompt_id: str | int  # for messages and logs
    rewards: list[float]  # (G,) total reward per response
    accuracies: list[float]  # (G,) R_acc per response, 0 or 1
    payload: Any = None  # the rollouts (token ids, log-probs...); opaque here; plain data so checkpoints load


@dataclass
class SampledBatch:
    """What one training step trains on."""

    groups: list[ScoredGroup]  # num_prompts groups (fewer under `partial`)
    is_pad: list[bool]  # per group; True: a padding group that must get zero advantage
    metrics: dict[str, float] = field(default_factory=dict)
    message: str | None = None  # why the batch is short or padded; None when it filled normally


def _as_dict(group: ScoredGroup) -> dict[str, Any]:
    # not dataclasses.asdict: that deep-copies the payload (rollout tensors) for nothing
    return {"prompt_id": group.prompt_id, "rewards": list(group.rewards), "accuracies": list(group.accuracies),
            "payload": group.payload}


class DynamicSampler:
    """Collects scored groups over generation rounds into one batch per step; checkpointable.

    Args:
        num_prompts: groups per training batch.
        group_size: G, responses per group (checked on every group).
        max_rounds: generation rounds allowed per step (>= 1).
        criterion: "accuracy" drops groups whose accuracies are all equal (all 0 or all 1, as in
            DAPO); "reward" drops groups whose total rewards are all equal (zero advantage).
        on_exhausted: "error", "partial" or "pad" (see the module docstring).
        enabled: False keeps every group (plain GRPO); rounds and counts are still reported.
    """

    def __init__(self, num_prompts: int, group_size: int, max_rounds: int, criterion: Criterion = "accuracy",
                 on_exhausted: OnExhausted = "error", enabled: bool = True):
        if num_prompts < 1 or group_size < 1 or max_rounds < 1:
            raise ValueError(f"num_prompts, group_size and max_rounds must be >= 1, got {num_prompts}, "
                             f"{group_size}, {max_rounds}")
        if criterion not in ("accuracy", "reward"):
            raise ValueError(f"criterion must be 'accuracy' or 'reward', got {criterion!r}")
        if on_exhausted not in ("error", "partial", "pad"):
            raise ValueError(f"on_exhausted must be 'error', 'partial' or 'pad', got {on_exhausted!r}")
        self.num_prompts, self.group_size, self.max_rounds = num_prompts, group_size, max_rounds
        self.criterion, self.on_exhausted, self.enabled = criterion, on_exhausted, enabled
        self._kept: list[ScoredGroup] = []
        self._dropped: list[ScoredGroup] = []  # the latest zero-variance groups, kept only to pad with
        self._rounds = 0
        self._seen = 0
        self._totals = {"rounds": 0, "groups_seen": 0, "groups_kept": 0, "exhausted_steps": 0}

    def _has_variance(self, group: ScoredGroup) -> bool:
        values = group.accuracies if self.criterion == "accuracy" else group.rewards
        return max(values) != min(values)

    def need_more(self) -> bool:
        """True while the batch is not full and another generation round is allowed."""
        return len(self._kept) < self.num_prompts and self._rounds < self.max_rounds

    def add(self, groups: list[ScoredGroup]) -> None:
        """Take in the scored groups of one generation round."""
        if self._rounds >= self.max_rounds:
            raise RuntimeError(f"add() called after max_rounds={self.max_rounds} rounds; call take() first")
        for group in groups:
            if len(group.rewards) != self.group_size or len(group.accuracies) != self.group_size:
                raise ValueError(f"prompt {group.prompt_id!r}: {len(group.rewards)} rewards and "
                                 f"{len(group.accuracies)} accuracies, expected group_size={self.group_size}")
        self._rounds += 1
        self._seen += len(groups)
        for group in groups:
            if not self.enabled or self._has_variance(group):
                self._kept.append(group)
            else:
                self._dropped.append(group)
        self._dropped = self._dropped[-self.num_prompts:]  # bounded: only ever needed to pad one batch

    def take(self) -> SampledBatch:
        """The step's batch; resets the per-step state. Applies `on_exhausted` when short."""
        if self.need_more():
            raise RuntimeError(f"take() with {len(self._kept)} of {self.num_prompts} groups while generation "
                               f"rounds remain ({self._rounds} of {self.max_rounds} used): call add() first")
        kept = len(self._kept)
        groups = self._kept[: self.num_prompts]
        is_pad = [False] * len(groups)
        message = None
        if kept < self.num_prompts:
            message = self._exhausted_message(kept)
            if self.on_exhausted == "error":
                raise DynamicSamplingExhausted(message)
            if self.on_exhausted == "pad":
                pads = self._padding(self.num_prompts - kept)
                groups, is_pad = groups + pads, is_pad + [True] * len(pads)
        metrics = self._step_metrics(kept, len(groups), sum(is_pad), message is not None)
        self._kept, self._dropped, self._rounds, self._seen = [], [], 0, 0
        return SampledBatch(groups=groups, is_pad=is_pad, metrics=metrics, message=message)

    def _padding(self, count: int) -> list[ScoredGroup]:
        pool = self._dropped + self._kept
        if not pool:
            raise DynamicSamplingExhausted(self._exhausted_message(0) + " Nothing was generated to pad with.")
        return [pool[i % len(pool)] for i in range(count)]

    def _exhausted_message(self, kept: int) -> str:
        head = (f"dynamic sampling ran out of generation rounds: {self._rounds} rounds (max_rounds="
                f"{self.max_rounds}) saw {self._seen} groups and kept {kept} with non-zero {self.criterion} "
                f"variance; the batch needs num_prompts={self.num_prompts}.")
        fill = "rl.dynamic_sampling.max_rounds or rl.dynamic_sampling.oversample"
        if self.on_exhausted == "error":
            return f"{head} Raise {fill}, or set rl.dynamic_sampling.on_exhausted to 'partial' or 'pad'."
        if self.on_exhausted == "partial":
            action = f"Training on the {kept} kept groups" + (" (none: skip this step)" if kept == 0 else "")
        else:
            action = f"Padding with {self.num_prompts - kept} zero-advantage groups"
        return f"{head} {action} (on_exhausted={self.on_exhausted!r}); to fill the batch, raise {fill}."

    def _step_metrics(self, kept: int, in_batch: int, padded: int, exhausted: bool) -> dict[str, float]:
        self._totals["rounds"] += self._rounds
        self._totals["groups_seen"] += self._seen
        self._totals["groups_kept"] += kept
        self._totals["exhausted_steps"] += int(exhausted)
        return {
            "rounds": float(self._rounds),
            "groups_seen": float(self._seen),
            "groups_kept": float(kept),
            "kept_fraction": kept / self._seen if self._seen else 0.0,
            "groups_surplus": float(max(kept - self.num_prompts, 0)),
            "groups_padded": float(padded),
            "groups_in_batch": float(in_batch),
            "exhausted": float(exhausted),
            **{f"total_{k}": float(v) for k, v in self._totals.items()},
        }

    def state_dict(self) -> dict[str, Any]:
        """Plain data (lists, dicts, numbers and whatever the payloads hold) for the trainer state."""
        return {
            "group_size": self.group_size,
            "kept": [_as_dict(g) for g in self._kept],
            "dropped": [_as_dict(g) for g in self._dropped],
            "rounds": self._rounds,
            "seen": self._seen,
            "totals": dict(self._totals),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state["group_size"] != self.group_size:
            raise ValueError(f"dynamic-sampling state was saved with group_size={state['group_size']}, "
                             f"this run has group_size={self.group_size}: its buffered groups cannot be used")
        self._kept = [ScoredGroup(**g) for g in state["kept"]]
        self._dropped = [ScoredGroup(**g) for g in state["dropped"]]
        self._rounds, self._seen = int(state["rounds"]), int(state["seen"])
        self._totals = {k: int(v) for k, v in state["totals"].items()}
