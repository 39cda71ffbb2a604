"""Stage II, perception-aware DAPO: `nemo-vtp rl RECIPE [k=v...]` (the loop; the pure pieces are in `nemo_vtp/rl/`).

One rollout step of `train()`:
  prompts -> engine.generate (G per prompt) -> rewards (worker pool) -> dynamic sampling (refill
  until the batch has num_prompts groups with reward variance) -> engine.sleep (vLLM releases its KV
  cache, and its weights at sleep level 2, for training) -> group advantages -> old log-probs
  (Megatron forward) -> mini-batch updates with the DAPO loss (token-mean over the global batch)
  -> refit (wake the engine's weights, stream Megatron's into them, wake the KV cache)
  -> metrics / checkpoint / pre-emption check.

The torch engine runs on the first rank of each model-parallel (TP x PP) group; vLLM engines run on
every rank (external launcher). The first rank's scored groups are broadcast to the other ranks of
its model-parallel group. Each data-parallel rank fills its own share (num_prompts / DP) of the batch.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import torch
import torch.distributed as dist

from nemo_vtp.config import ConfigError, RecipeConfig, write_resolved
from nemo_vtp.data.loader import BatchSampler
from nemo_vtp.parallel import initialize
from nemo_vtp.rl.advantages import group_advantages
from nemo_vtp.rl.batch import TrainSequence, micro_batch_inputs, pack_micro_batch, plan_token_micro_batches
from nemo_vtp.rl.dynamic_sampling import DynamicSampler, ScoredGroup
from nemo_vtp.rl.loss import MAX_METRICS, SUM_METRICS, dapo_loss
from nemo_vtp.rl.rollout_log import group_records, hacking_signals, write_rollouts
from nemo_vtp.training.checkpoint import Checkpointer
from nemo_vtp.training.data import SampleSet, data_paths, load_rl_prompts
from nemo_vtp.training.entry import stage_main
from nemo_vtp.training.logging import MetricsLogger, is_rank_zero
from nemo_vtp.training.policy import Policy, build_policy, current_lr, packed_attention_inputs, train_step_end, zero_grads
from nemo_vtp.training.signals import PreemptionFlag

logger = logging.getLogger("nemo_vtp.rl")


@dataclass
class RLState:
    device: torch.device
    policy: Policy
    engine: object | None  # nemo_vtp.generation Engine on the model-parallel source rank, else None
    prompts: SampleSet
    prompt_sampler: BatchSampler
    dynamic: DynamicSampler
    total_steps: int
    checkpointer: Checkpointer
    metrics: MetricsLogger
    preemption: PreemptionFlag
    world_layout: dict
    dp_rank: int
    dp_size: int
    step: int = 0
    consumed_prompts: int = 0
    last_saved_step: int = -1


# SFT keys the RL stage does not read -> the RL key for the same quantity: a recipe that changes one is
# refused rather than silently ignored.
SFT_ONLY_KEYS = {
    "training.train_steps": "rl.rollout_steps", "training.epochs": "rl.num_epochs",
    "training.global_batch_size": "rl.num_prompts (x generation.sampling.n)",
    "training.micro_batch_size": "rl.micro_batch_size",
    "data.max_seq_length": "generation.sampling.max_new_tokens (and generation.vllm.max_model_len)",
}


def _sft_only_keys_set(cfg: RecipeConfig) -> list[str]:
    """Keys of SFT_ONLY_KEYS whose value differs from the schema default."""
    default = RecipeConfig()
    changed = []
    for key in SFT_ONLY_KEYS:
        section, field = key.split(".")
        if getattr(getattr(cfg, section), field) != getattr(getattr(default, section), field):
            changed.append(key)
    return changed


def _check_recipe(cfg: RecipeConfig, dp_size: int) -> None:
    rl = cfg.rl
    ignored = _sft_only_keys_set(cfg)
    if ignored:
        raise ConfigError("the RL stage does not read " + "; ".join(f"{k} (set {SFT_ONLY_KEYS[k]})" for k in ignored))
    if rl.loss_agg != "token-mean":
        raise ConfigError("rl.loss_agg: the training loop implements DAPO's token-mean only")
    if rl.num_prompts % dp_size:
        raise ConfigError(f"rl.num_prompts ({rl.num_prompts}) must be a multiple of the data-parallel size ({dp_size})")
    sampling = cfg.generation.sampling
    if sampling.n < 2 or sampling.temperature <= 0:
        raise ConfigError(f"generation.sampling: the group size n ({sampling.n}) must be >= 2 and the temperature "
                          f"({sampling.temperature}) > 0 (it also scales the trainer's log-probs)")
    responses = rl.num_prompts * sampling.n
    by_count = rl.micro_batch_tokens is None  # packed micro-batches are formed by tokens instead
    if responses % rl.mini_batch_size or by_count and (rl.mini_batch_size // dp_size) % rl.micro_batch_size \
            or rl.mini_batch_size % dp_size:
        raise ConfigError(f"rl: num_prompts x generation.sampling.n ({responses}) must be a multiple of mini_batch_size "
                          f"({rl.mini_batch_size}), itself a multiple of data-parallel size ({dp_size}) x "
                          f"micro_batch_size ({rl.micro_batch_size})")
    ds = rl.dynamic_sampling
    if dp_size > 1 and ds.enabled and ds.on_exhausted == "partial":
        # Each DP rank fills its share on its own; a short batch on one rank would give it fewer
        # optimizer updates than the others, and their gradient all-reduces would never meet.
        raise ConfigError("rl.dynamic_sampling.on_exhausted=partial needs data-parallel size 1 "
                          f"(here {dp_size}); use pad or error")


def _is_engine_rank() -> bool:
    from megatron.core import parallel_state

    return parallel_state.get_model_parallel_group().rank() == 0 if dist.is_initialized() else True


def build_rollout_engine(cfg: RecipeConfig, policy: Policy, device: torch.device):
    """The engine of this rank, weights filled by a refit. vLLM in external-launcher mode forms its own
    groups inside the trainer's world, so every rank builds (and feeds) its engine; the torch engine
    lives only on the model-parallel source rank."""
    if cfg.generation.engine != "vllm" and not _is_engine_rank():
        return None
    if cfg.generation.engine == "vllm":
        from nemo_vtp.generation.engine import build_engine
        from nemo_vtp.models.qwen25_vl.checkpoint import write_hf_side

        folder = write_hf_side(Path(cfg.run.output_dir) / "engine_model", policy.arch, torch.bfloat16,
                               files_from=policy.tokenizer.name_or_path)
        # The folder holds no weights: the engine starts with random ones and the refit in `setup` fills it.
        generation = cfg.generation.model_copy(
            update={"vllm": cfg.generation.vllm.model_copy(update={"load_format": "dummy"})})
        return build_engine(generation, str(folder), device="cuda", seed=cfg.run.seed)
    from transformers import Qwen2_5_VLForConditionalGeneration

    from nemo_vtp.generation.torch_engine import TorchEngine
    from nemo_vtp.models.qwen25_vl.hf import hf_config

    model = Qwen2_5_VLForConditionalGeneration(hf_config(policy.arch)).to(device=device, dtype=torch.float32).eval()
    return TorchEngine(model, policy.tokenizer, max_batch=cfg.generation.torch_max_batch)


def refit_engine(cfg: RecipeConfig, state: RLState) -> dict[str, float]:
    """Megatron shards -> full HF tensors (collective on every rank) -> the engine's load_weights."""
    from nemo_vtp.generation.refit import refit
    from nemo_vtp.models.qwen25_vl.weight_stream import export_hf_weights

    start = time.perf_counter()
    weights = export_hf_weights(state.policy.chunks)
    if state.engine is None:
        for _ in weights:  # take part in the collectives of the export
            pass
        return {"refit/seconds": time.perf_counter() - start}
    if torch.cuda.is_available():  # hand training's cached blocks back before the engine maps its memory again
        torch.cuda.empty_cache()
    state.engine.wake(["weights"])  # the KV cache stays released while the weights stream in
    woken = time.perf_counter()
    stats = refit(state.engine, weights, bucket_bytes=cfg.generation.refit_bucket_mb * 2**20)
    done = time.perf_counter()
    state.engine.wake(["kv_cache"])
    return {**stats.metrics(), "refit/wake_s": (woken - start) + (time.perf_counter() - done)}


def setup(cfg: RecipeConfig) -> RLState:
    from megatron.core import parallel_state

    device = initialize(cfg.parallel, cfg.run.seed, cfg.run.device)
    dp_rank, dp_size = parallel_state.get_data_parallel_rank(), parallel_state.get_data_parallel_world_size()
    _check_recipe(cfg, dp_size)
    save_dir = Path(cfg.checkpoint.save_dir or Path(cfg.run.output_dir) / "checkpoints")
    checkpointer = Checkpointer(save_dir, cfg.checkpoint.keep_last)
    resume_from = checkpointer.resume_candidates(cfg.checkpoint.resume, cfg.checkpoint.overwrite)
    if not resume_from and not cfg.checkpoint.load:
        raise ConfigError("checkpoint.load must name the Stage I (SFT) checkpoint the RL stage starts from")
    if is_rank_zero():
        write_resolved(cfg, cfg.run.output_dir)
    train_path, _ = data_paths(cfg)
    prompts = load_rl_prompts(cfg, train_path)
    rl = cfg.rl
    total_steps = rl.rollout_steps or math.ceil(rl.num_epochs * len(prompts.samples) / rl.num_prompts)
    policy = build_policy(cfg, device, total_steps=total_steps)
    if parallel_state.get_pipeline_model_parallel_world_size() > 1:
        policy.config.variable_seq_lengths = True
    round_prompts = math.ceil(rl.num_prompts * rl.dynamic_sampling.oversample / dp_size) * dp_size
    prompt_sampler = BatchSampler(len(prompts.samples), round_prompts, round_prompts // dp_size, dp_rank, dp_size,
                                  seed=cfg.run.seed)
    dynamic = DynamicSampler(rl.num_prompts // dp_size, cfg.generation.sampling.n,
                             **rl.dynamic_sampling.model_dump(exclude={"oversample"}))
    state = RLState(device, policy, build_rollout_engine(cfg, policy, device), prompts, prompt_sampler, dynamic,
                    total_steps, checkpointer,
                    MetricsLogger.for_stage(cfg, total_steps, desc="rl"),
                    PreemptionFlag(), {"world_size": dist.get_world_size() if dist.is_initialized() else 1,
                                       "tp": cfg.parallel.tensor_model_parallel_size,
                                       "pp": cfg.parallel.pipeline_model_parallel_size}, dp_rank, dp_size)
    if resume_from:
        resume_from, trainer = checkpointer.resume(resume_from, policy.chunks, policy.optimizer, state.world_layout,
                                                   arch=policy.arch)
        state.step, state.consumed_prompts = trainer["step"], trainer["consumed_prompts"]
        state.last_saved_step = state.step
        policy.scheduler.load_state_dict(trainer["scheduler"])
        dynamic.load_state_dict(trainer["dynamic_sampling"][dp_rank])
        logger.info("resumed from %s at rollout step %d", resume_from, state.step)
    else:
        checkpointer.load(cfg.checkpoint.load, policy.chunks, optimizer=None, arch=policy.arch)
        logger.info("starting from the SFT checkpoint %s", cfg.checkpoint.load)
    refit_engine(cfg, state)
    return state


def _broadcast_in_model_parallel_group(obj):
    from megatron.core import parallel_state

    if not dist.is_initialized() or parallel_state.get_model_parallel_group().size() == 1:
        return obj
    group = parallel_state.get_model_parallel_group()
    holder = [obj]
    dist.broadcast_object_list(holder, src=dist.get_global_rank(group, 0), group=group)
    return holder[0]


def generate_and_score(cfg: RecipeConfig, state: RLState, rl_prompts: list,
                       round_index: int) -> tuple[list[ScoredGroup], dict]:
    """One generation round: G responses per prompt, scored. Returns the groups and round stats."""
    from nemo_vtp.generation.engine import prompt_from_rl
    from nemo_vtp.rewards import score_batch

    result = None
    if state.engine is not None:
        start = time.perf_counter()
        seed = cfg.generation.sampling.seed
        if seed is None:  # reproducible rollouts: resume and parallel layouts see the same samples
            seed = (cfg.run.seed * 1_000_003 + state.step * 10_007 + round_index * 101 + state.dp_rank) % 2**31
        sampling = cfg.generation.sampling.model_copy(update={"seed": seed})
        outputs = state.engine.generate([prompt_from_rl(p) for p in rl_prompts], sampling)
        gen_seconds = time.perf_counter() - start
        flat = [(p, r) for p, rollouts in zip(rl_prompts, outputs) for r in rollouts]
        texts, samples = [r.text for _, r in flat], [p.sample for p, _ in flat]
        scores = score_batch(texts, samples, cfg.rewards, step=state.step,
                             num_tokens=[len(r.token_ids) for _, r in flat], max_tokens=sampling.max_new_tokens)
        score_seconds = time.perf_counter() - start - gen_seconds
        groups, g = [], sampling.n
        for i, prompt in enumerate(rl_prompts):
            rollouts, group_scores = outputs[i], scores[i * g:(i + 1) * g]
            payload = {"prompt_index": i, "rollouts": [(r.token_ids, r.logprobs, r.finish_reason) for r in rollouts],
                       "scores": group_scores, "texts": [r.text for r in rollouts]}
            groups.append(ScoredGroup(prompt.sample.get("id", i), [s["total"] for s in group_scores],
                                      [s["acc"] for s in group_scores], payload))
        tokens = sum(len(r.token_ids) for _, r in flat)
        result = (groups, {"scores": scores, "gen_seconds": gen_seconds, "score_seconds": score_seconds,
                           "gen_tokens": tokens, "texts": texts, "samples": samples})
    groups, stats = _broadcast_in_model_parallel_group(result)
    for group in groups:  # every rank built the same prompts; keep them beside the rollouts
        group.payload["prompt"] = rl_prompts[group.payload["prompt_index"]]
    return groups, stats


def collect_batch(cfg: RecipeConfig, state: RLState):
    """Generation rounds until dynamic sampling has the step's groups. Returns (batch, stats)."""
    all_scores, gen_seconds, score_seconds, gen_tokens, round_index = [], 0.0, 0.0, 0, 0
    texts, samples = [], []  # every scored response of the step, for the hacking signals
    while state.dynamic.need_more():
        (indices,) = state.prompt_sampler.micro_batches(state.consumed_prompts)
        state.consumed_prompts += state.prompt_sampler.global_batch_size
        rl_prompts = [state.policy.processor.rl_prompt(state.prompts.samples[i], state.prompts.base_dir)
                      for i in indices]
        groups, stats = generate_and_score(cfg, state, rl_prompts, round_index)
        round_index += 1
        state.dynamic.add(groups)
        all_scores += stats["scores"]
        texts += stats["texts"]
        samples += stats["samples"]
        gen_seconds += stats["gen_seconds"]
        score_seconds += stats["score_seconds"]
        gen_tokens += stats["gen_tokens"]
    batch = state.dynamic.take()
    if batch.message:
        logger.warning("rollout step %d: %s", state.step, batch.message)
    return batch, {"scores": all_scores, "gen_seconds": gen_seconds, "score_seconds": score_seconds,
                   "gen_tokens": gen_tokens, "texts": texts, "samples": samples}


def build_sequences(cfg: RecipeConfig, batch) -> list[TrainSequence]:
    """Groups -> one TrainSequence per response with its GRPO advantage (0 for padding groups)."""
    seqs = []
    for group, is_pad in zip(batch.groups, batch.is_pad):
        prompt = group.payload["prompt"]
        advantages = group_advantages(torch.tensor(group.rewards), cfg.generation.sampling.n, cfg.rl.advantage_eps)
        for (token_ids, logprobs, finish), adv in zip(group.payload["rollouts"], advantages.tolist()):
            truncated = finish == "length"
            seqs.append(TrainSequence(prompt.prompt_ids, prompt.position_ids, torch.tensor(token_ids, dtype=torch.long),
                                      torch.tensor(logprobs, dtype=torch.float32), prompt.pixel_values,
                                      prompt.image_grid_thw, 0.0 if is_pad else adv,
                                      keep=not is_pad and not (cfg.rl.overlong_filter and truncated)))
    return seqs


def _to_device(batch: dict, device: torch.device) -> dict:
    return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


def _micro_batches(cfg: RecipeConfig, state: RLState, seqs: list[TrainSequence]) -> list[dict]:
    """One mini-batch's micro-batches as model inputs: padded by `rl.micro_batch_size` responses, or
    packed rows of at most `rl.micro_batch_tokens` tokens (attention kept inside each sequence)."""
    from nemo_vtp.models.qwen25_vl.layer_spec import resolve_transformer_impl

    rl, ids = cfg.rl, state.policy.processor.ids
    tokens = (ids["pad_token_id"], ids["image_token_id"], ids["video_token_id"])
    if rl.micro_batch_tokens is None:
        return [{**micro_batch_inputs(seqs[i:i + rl.micro_batch_size], *tokens, share_images=rl.share_prompt_vision),
                 "attention_mask": None, "packed_seq_params": None}
                for i in range(0, len(seqs), rl.micro_batch_size)]
    impl = resolve_transformer_impl(cfg.model.transformer_impl, cfg.model.fp8)
    plan = plan_token_micro_batches([len(s.prompt_ids) + len(s.response_ids) for s in seqs], cfg.generation.sampling.n,
                                    rl.micro_batch_tokens)
    out = []
    for indices in plan:
        packed = pack_micro_batch([seqs[i] for i in indices], *tokens, cfg.data.pad_to_multiple_of,
                                  share_images=rl.share_prompt_vision)
        attention = packed_attention_inputs(packed.pop("cu_seqlens"), impl, state.device)
        out.append({**packed, **attention})
    return out


def make_mini_batches(cfg: RecipeConfig, state: RLState, seqs: list[TrainSequence]) -> list[list[dict]]:
    """This rank's responses -> one list of device micro-batches per optimizer update."""
    per_update = cfg.rl.mini_batch_size // state.dp_size
    return [[_to_device(b, state.device) for b in _micro_batches(cfg, state, seqs[i:i + per_update])]
            for i in range(0, len(seqs), per_update)]


def _logprobs_of(cfg: RecipeConfig, state: RLState, logits: torch.Tensor, targets: torch.Tensor,
                 compute_entropy: bool = True):
    from megatron.core import parallel_state

    from nemo_vtp.parallel.logprobs import vocab_parallel_logprobs

    tp = parallel_state.get_tensor_model_parallel_world_size()
    return vocab_parallel_logprobs(logits, targets, group=parallel_state.get_tensor_model_parallel_group()
                                   if tp > 1 else None, temperature=cfg.generation.sampling.temperature,
                                   vocab_size=state.policy.arch.vocab_size, chunk_size=cfg.rl.logprob_chunk_size,
                                   compute_entropy=compute_entropy)


def _old_logprob_loss(cfg, state, batch, logits):
    logprobs, _ = _logprobs_of(cfg, state, logits, batch["targets"], compute_entropy=False)
    return logprobs.sum() * 0, torch.tensor(1, dtype=torch.int), {"logprobs": logprobs.detach()}


def _dapo_loss(cfg, state, batch, logits):
    """Sum of per-token DAPO losses; Megatron divides by the global response-token count."""
    rl = cfg.rl
    logprobs, entropy = _logprobs_of(cfg, state, logits, batch["targets"])
    mask = batch["loss_mask"]
    loss, metrics = dapo_loss(logprobs, batch["old_logprobs"], batch["advantages"], mask,
                              ratio_clip_low=rl.ratio_clip_low, ratio_clip_high=rl.ratio_clip_high,
                              dual_clip=rl.dual_clip, num_tokens=1, rollout_logprobs=batch["rollout_logprobs"],
                              tis_cap=rl.tis_cap if rl.tis else None)
    metrics["entropy"] = (entropy.detach() * mask).sum()
    metrics["pg_loss"] = loss.detach()
    return loss, mask.sum().to(torch.int), metrics


def _forward_step(loss_fn, data_iterator, model):
    batch = next(data_iterator)
    logits = model(batch["input_ids"], batch["position_ids"], attention_mask=batch["attention_mask"],
                   pixel_values=batch["pixel_values"], image_grid_thw=batch["image_grid_thw"],
                   image_index=batch["image_index"], packed_seq_params=batch["packed_seq_params"])
    return logits, partial(loss_fn, batch)


def _run(cfg, state: RLState, batches: list[dict], loss_fn, forward_only: bool) -> list[dict]:
    from megatron.core.pipeline_parallel import get_forward_backward_func

    return get_forward_backward_func()(
        forward_step_func=partial(_forward_step, partial(loss_fn, cfg, state)), data_iterator=iter(batches),
        model=state.policy.chunks, num_microbatches=len(batches), seq_length=max(b["input_ids"].shape[1]
                                                                                 for b in batches),
        micro_batch_size=batches[0]["input_ids"].shape[0], forward_only=forward_only)


def loss_forward_backward(cfg: RecipeConfig, state: RLState, mini: list[dict]) -> list[dict]:
    """Forward and backward of the DAPO loss over one mini-batch's micro-batches (gradients normalised by
    its global response-token count). Returns the per-micro-batch metrics (last pipeline stage)."""
    return _run(cfg, state, mini, _dapo_loss, forward_only=False)


def compute_old_logprobs(cfg: RecipeConfig, state: RLState, micro: list[dict]) -> None:
    """Forward-only pass: sets each micro-batch's "old_logprobs" (None off the last pipeline stage)."""
    from megatron.core import parallel_state

    with torch.no_grad():
        outputs = _run(cfg, state, micro, _old_logprob_loss, forward_only=True)
    last_stage = parallel_state.is_pipeline_last_stage(ignore_virtual=True)
    for batch, out in zip(micro, outputs if last_stage else [{}] * len(micro)):
        batch["old_logprobs"] = out.get("logprobs")


_TOKEN_SUMS = ("entropy", "pg_loss")  # our per-token sums beside dapo_loss's own SUM_METRICS


def _reduce_update_metrics(outputs: list[dict], device: torch.device) -> dict[str, float]:
    """Sum (or max) the loss metrics over micro-batches and DP ranks; normalise by response tokens."""
    from megatron.core import parallel_state

    if not outputs:  # not the last pipeline stage
        return {}
    keys = [k for k in outputs[0] if k in SUM_METRICS or k in _TOKEN_SUMS]
    sums = torch.stack([torch.stack([o[k].float() for k in keys]) for o in outputs]).sum(0).to(device)
    maxes = torch.stack([torch.stack([o[k].float() for k in MAX_METRICS if k in o]) for o in outputs]).amax(0)
    if dist.is_initialized():
        group = parallel_state.get_data_parallel_group()
        dist.all_reduce(sums, group=group)
        dist.all_reduce(maxes, op=dist.ReduceOp.MAX, group=group)
    return {**dict(zip(keys, sums.tolist())), **dict(zip([k for k in MAX_METRICS if k in outputs[0]], maxes.tolist()))}


def takes_step(mini_batch_tokens: float) -> bool:
    """Whether a mini-batch updates the weights: only when some response token of it, over all DP ranks,
    is in the loss. A mini-batch of padding groups (and filtered responses) alone has zero gradients,
    yet an AdamW step would still move the weights (momentum of earlier steps, weight decay) and
    advance the LR schedule: it takes no step.

    >>> takes_step(0.0), takes_step(12.0)
    (False, True)
    """
    return mini_batch_tokens > 0


def _dp_sum(value: float, device: torch.device) -> float:
    """`value` summed over the data-parallel ranks (all ranks then take the same step decision)."""
    from megatron.core import parallel_state

    total = torch.tensor([value], dtype=torch.float64, device=device)
    if dist.is_initialized():
        dist.all_reduce(total, group=parallel_state.get_data_parallel_group())
    return float(total)


def update_policy(cfg: RecipeConfig, state: RLState, seqs: list[TrainSequence]) -> dict[str, float]:
    """Old log-probs, then the mini-batch updates of one rollout step. Returns loss metrics."""

    t_start = time.perf_counter()
    minis = make_mini_batches(cfg, state, seqs)
    compute_old_logprobs(cfg, state, [b for mini in minis for b in mini])
    if state.device.type == "cuda":  # the phase ends when its kernels do, not when they are queued
        torch.cuda.synchronize()
    old_logprob_seconds = time.perf_counter() - t_start
    totals: dict[str, float] = {"mini_batches_skipped": 0.0}
    tokens = 0.0
    for _ in range(cfg.rl.ppo_epochs):
        for mini in minis:
            mini_tokens = _dp_sum(sum(float(b["loss_mask"].sum()) for b in mini), state.device)
            if not takes_step(mini_tokens):
                totals["mini_batches_skipped"] += 1
                continue
            zero_grads(state.policy)
            outputs = loss_forward_backward(cfg, state, mini)
            _, grad_norm = train_step_end(state.policy)
            reduced = _reduce_update_metrics(outputs, state.device)
            tokens += mini_tokens
            for k, v in reduced.items():
                totals[k] = max(totals.get(k, v), v) if k in MAX_METRICS else totals.get(k, 0.0) + v
            totals["grad_norm"] = grad_norm if grad_norm is not None else float("nan")
    n = max(tokens, 1.0)
    out = {k: (v if k in MAX_METRICS or k in ("grad_norm", "mini_batches_skipped") else v / n)
           for k, v in totals.items()}
    out["old_logprob_s"], out["update_s"] = old_logprob_seconds, time.perf_counter() - t_start - old_logprob_seconds
    out["train_tokens"] = float(sum(len(s.prompt_ids) + len(s.response_ids) for s in seqs))  # one pass, this rank
    return out


def rollout_metrics(cfg: RecipeConfig, stats: dict, batch, seqs: list[TrainSequence]) -> dict[str, float]:
    from nemo_vtp.rewards import batch_metrics

    out = {f"reward/{k}": v for k, v in batch_metrics(stats["scores"]).items()}
    signals = hacking_signals(stats["texts"], stats["samples"], stats["scores"], cfg.rewards.tags)
    out.update({f"hacking/{k}": v for k, v in signals.items()})
    lengths = [len(s.response_ids) for s in seqs]
    out.update({"response_length_mean": sum(lengths) / max(len(lengths), 1),
                "truncation_rate": sum(not s.keep for s in seqs) / max(len(seqs), 1),
                "gen_tokens_per_s": stats["gen_tokens"] / max(stats["gen_seconds"], 1e-9),
                **{f"dynamic_sampling/{k}": v for k, v in batch.metrics.items()}})
    return out


def dump_rollouts(cfg: RecipeConfig, step: int, batch) -> Path:
    """rollouts/step_N.jsonl: the top and bottom response of the first `logging.rollout_groups` real groups."""
    records = []
    # Groups carried over in a checkpoint written before texts were kept have none: skipped.
    real = [g for g, is_pad in zip(batch.groups, batch.is_pad) if not is_pad and "texts" in g.payload]
    real = real[:cfg.logging.rollout_groups]
    for index, group in enumerate(real):
        payload, prompt = group.payload, group.payload["prompt"]
        records += group_records(step, index, prompt.prompt_text, prompt.sample, payload["texts"], payload["scores"],
                                 [len(r[0]) for r in payload["rollouts"]], [r[2] for r in payload["rollouts"]])
    return write_rollouts(cfg.run.output_dir, step, records)


def save(cfg: RecipeConfig, state: RLState) -> Path:
    dyn = [state.dynamic.state_dict()]
    if dist.is_initialized():
        from megatron.core import parallel_state

        dyn = [None] * state.dp_size
        dist.all_gather_object(dyn, state.dynamic.state_dict(), group=parallel_state.get_data_parallel_group())
    trainer = {"consumed_prompts": state.consumed_prompts, "scheduler": state.policy.scheduler.state_dict(),
               "world_layout": state.world_layout, "dynamic_sampling": dyn, "stage": "rl",
               "reward_schedule_step": state.step}
    state.last_saved_step = state.step
    return state.checkpointer.save(state.step, state.policy.chunks, state.policy.optimizer, trainer, state.policy.arch)


def train(cfg: RecipeConfig, state: RLState) -> dict:
    """The DAPO loop (see the module docstring). Returns the last step's metrics."""
    metrics: dict = {}
    steps_this_run = 0
    while state.step < state.total_steps:
        t0 = time.perf_counter()
        batch, stats = collect_batch(cfg, state)
        t_sleep = time.perf_counter()
        if state.engine is not None:  # colocated: give the engine's memory to training until the refit
            state.engine.sleep()
        t1 = time.perf_counter()
        seqs = build_sequences(cfg, batch)
        losses = update_policy(cfg, state, seqs) if seqs else {}
        train_phases = {f"time/{k}": losses.pop(k) for k in ("old_logprob_s", "update_s") if k in losses}
        train_phases["train_tokens"] = losses.pop("train_tokens", 0.0)
        t2 = time.perf_counter()
        refit_stats = refit_engine(cfg, state)
        t3 = time.perf_counter()
        state.step += 1
        steps_this_run += 1
        if cfg.logging.rollout_interval and state.step % cfg.logging.rollout_interval == 0 and is_rank_zero():
            dump_rollouts(cfg, state.step, batch)
        metrics = {**rollout_metrics(cfg, stats, batch, seqs), **{f"loss/{k}": v for k, v in losses.items()},
                   **refit_stats, "lr": current_lr(state.policy), "time/rollout_s": t_sleep - t0,
                   "time/train_s": t2 - t1, "time/refit_s": t3 - t2, "time/step_s": t3 - t0,
                   "time/generate_s": stats["gen_seconds"], "time/score_s": stats["score_seconds"],
                   "time/sleep_s": t1 - t_sleep, "consumed_prompts": state.consumed_prompts,
                   **train_phases}
        if state.step % cfg.logging.log_interval == 0:
            state.metrics.log(state.step, metrics, prefix="rl")
        state.metrics.advance(1, reward=metrics.get("reward/total", float("nan")))
        stop = state.preemption.any_rank(state.device) or steps_this_run == cfg.training.exit_after_steps
        if stop or (cfg.checkpoint.save_interval and state.step % cfg.checkpoint.save_interval == 0):
            save(cfg, state)
        if stop:
            logger.warning("stopping at rollout step %d (pre-emption signal or exit_after_steps); checkpoint saved",
                           state.step)
            return metrics
    if cfg.checkpoint.save_at_end and state.last_saved_step != state.step:
        save(cfg, state)
    return metrics


def _headline(metrics: dict) -> str:
    return f"reward {metrics.get('reward/total', float('nan')):.3f}"


def main(argv: list[str]) -> int:
    return stage_main(argv, "rl", setup, train, _headline)
