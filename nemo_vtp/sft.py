"""Stage I, perception SFT: `nemo-vtp sft RECIPE [k=v...]`.

`setup(cfg)` builds everything and returns an `SFTState`; `train(cfg, state)` is the whole loop:
micro-batches -> Megatron forward/backward (per-token loss on response tokens, normalised over the
global batch) -> optimizer step -> metrics -> eval / checkpoint / pre-emption check.
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

from nemo_vtp.config import RecipeConfig, write_resolved
from nemo_vtp.data.loader import BatchSampler, check_batch_sizes
from nemo_vtp.data.packing import collate_sft, pack_sft, plan_packs, shift_labels
from nemo_vtp.models.qwen25_vl.layer_spec import resolve_transformer_impl
from nemo_vtp.parallel import initialize
from nemo_vtp.training.checkpoint import Checkpointer
from nemo_vtp.training.data import SampleSet, data_paths, filter_for_sft, load_sample_set
from nemo_vtp.training.entry import stage_main
from nemo_vtp.training.flops import decoder_flops_per_token, device_peak_flops, mfu
from nemo_vtp.training.logging import MetricsLogger, is_rank_zero
from nemo_vtp.training.policy import Policy, build_policy, current_lr, packed_attention_inputs, train_step_end, zero_grads
from nemo_vtp.training.signals import PreemptionFlag

logger = logging.getLogger("nemo_vtp.sft")


@dataclass
class SFTState:
    device: torch.device
    policy: Policy
    train_set: SampleSet
    val_set: SampleSet | None
    sampler: BatchSampler
    total_steps: int
    checkpointer: Checkpointer
    metrics: MetricsLogger
    preemption: PreemptionFlag
    world_layout: dict
    transformer_impl: str  # "transformer_engine" or "local": how packed rows keep conversations apart
    step: int = 0
    consumed_samples: int = 0
    last_saved_step: int = -1


def _world_layout(cfg: RecipeConfig) -> dict:
    return {"world_size": dist.get_world_size() if dist.is_initialized() else 1,
            "tp": cfg.parallel.tensor_model_parallel_size, "pp": cfg.parallel.pipeline_model_parallel_size}


def setup(cfg: RecipeConfig) -> SFTState:
    from megatron.core import parallel_state

    device = initialize(cfg.parallel, cfg.run.seed, cfg.run.device)
    if is_rank_zero():
        write_resolved(cfg, cfg.run.output_dir)
    train_path, val_path = data_paths(cfg)
    save_dir = Path(cfg.checkpoint.save_dir or Path(cfg.run.output_dir) / "checkpoints")
    checkpointer = Checkpointer(save_dir, cfg.checkpoint.keep_last)
    resume_from = checkpointer.resume_candidates(cfg.checkpoint.resume, cfg.checkpoint.overwrite)
    if cfg.checkpoint.load and not resume_from and not Path(cfg.checkpoint.load).exists():
        raise FileNotFoundError(f"checkpoint.load={cfg.checkpoint.load}: no such checkpoint")
    dp_rank, dp_size = parallel_state.get_data_parallel_rank(), parallel_state.get_data_parallel_world_size()
    t = cfg.training
    check_batch_sizes(t.global_batch_size, t.micro_batch_size, dp_size)
    policy_probe_steps = t.train_steps or 1  # the schedule length is fixed below once the data is known
    policy = build_policy(cfg, device, total_steps=policy_probe_steps)
    train_set = filter_for_sft(load_sample_set(cfg, train_path), policy.processor, cfg.data.max_seq_length)
    val_set = (filter_for_sft(load_sample_set(cfg, val_path), policy.processor, cfg.data.max_seq_length)
               if val_path and val_path.is_file() else None)
    sampler = BatchSampler(len(train_set.samples), t.global_batch_size, t.micro_batch_size, dp_rank, dp_size,
                           seed=cfg.run.seed)
    total_steps = t.train_steps or math.ceil(t.epochs * len(train_set.samples) / t.global_batch_size)
    policy.scheduler.lr_decay_steps = max(total_steps, cfg.optimizer.lr_warmup_steps + 1)
    policy.scheduler.wd_incr_steps = total_steps
    if parallel_state.get_pipeline_model_parallel_world_size() > 1:
        policy.config.variable_seq_lengths = True  # micro-batches are padded to their own longest row
    state = SFTState(device, policy, train_set, val_set, sampler, total_steps, checkpointer,
                     MetricsLogger.for_stage(cfg, total_steps, desc="sft"),
                     PreemptionFlag(), _world_layout(cfg),
                     resolve_transformer_impl(cfg.model.transformer_impl, cfg.model.fp8))
    _restore(cfg, state, resume_from)
    return state


def _restore(cfg: RecipeConfig, state: SFTState, resume_from: list[Path]) -> None:
    policy = state.policy
    if resume_from:
        resume_from, trainer = state.checkpointer.resume(resume_from, policy.chunks, policy.optimizer,
                                                         state.world_layout, arch=policy.arch)
        state.step, state.consumed_samples = trainer["step"], trainer["consumed_samples"]
        state.last_saved_step = state.step
        policy.scheduler.load_state_dict(trainer["scheduler"])
        logger.info("resumed from %s at step %d", resume_from, state.step)
    elif cfg.checkpoint.load:
        state.checkpointer.load(cfg.checkpoint.load, policy.chunks, optimizer=None, arch=policy.arch)
        logger.info("initialised weights from %s", cfg.checkpoint.load)


def make_batches(cfg: RecipeConfig, state: SFTState, sample_set: SampleSet, micro: list[list[int]]) -> list[dict]:
    """This rank's micro-batches of one global batch, as model inputs on the device.

    Padded: one micro-batch per `micro` entry, (B, T) right-padded. Packed (`data.pack_sequences`): the
    rank's conversations in data order, packed greedily into rows of at most `data.max_seq_length`
    tokens, one row per micro-batch; attention stays inside each conversation (TE: THD with
    cu_seqlens; local attention: a block-diagonal causal mask) and targets never cross a boundary.
    """
    processor, pad = state.policy.processor, state.policy.processor.ids["pad_token_id"]
    if not cfg.data.pack_sequences:
        return [_device_batch(state, collate_sft([processor.sft_example(sample_set.samples[i], sample_set.base_dir)
                                                  for i in idx], pad, cfg.data.pad_to_multiple_of), None)
                for idx in micro]
    examples = [processor.sft_example(sample_set.samples[i], sample_set.base_dir) for idx in micro for i in idx]
    packs, _ = plan_packs([len(e.input_ids) for e in examples], cfg.data.max_seq_length)  # lengths pre-filtered
    return [_device_batch(state, packed, packed.cu_seqlens)
            for packed in (pack_sft([examples[i] for i in pack], pad, cfg.data.pad_to_multiple_of) for pack in packs)]


def _device_batch(state: SFTState, batch, cu_seqlens: torch.Tensor | None) -> dict:
    """(B, T) ids, (3, B, T) positions, shifted targets and loss mask; packing metadata when packed."""
    targets, loss_mask = shift_labels(batch.labels, cu_seqlens)
    dev = state.device
    out = {"input_ids": batch.input_ids.to(dev), "position_ids": batch.position_ids.to(dev),
           "labels": targets.clamp(min=0).to(dev), "loss_mask": loss_mask.to(dev),
           "pixel_values": batch.pixel_values.to(dev) if batch.pixel_values.numel() else None,
           "image_grid_thw": batch.image_grid_thw.to(dev) if batch.image_grid_thw.numel() else None,
           "attention_mask": None, "packed_seq_params": None}
    if cu_seqlens is not None:
        out.update(packed_attention_inputs(cu_seqlens, state.transformer_impl, state.device))
    return out


def _loss_func(loss_mask: torch.Tensor, per_token_loss: torch.Tensor):
    """(sum of response-token losses, response tokens, report): Megatron divides by the global count."""
    total = (per_token_loss.float() * loss_mask).sum()
    count = loss_mask.sum().to(torch.int)
    return total, count, {"lm loss": torch.stack([total.detach(), count.detach().float()])}


def _forward_step(data_iterator, model):
    batch = next(data_iterator)
    output = model(batch["input_ids"], batch["position_ids"], attention_mask=batch["attention_mask"],
                   labels=batch["labels"], pixel_values=batch["pixel_values"], image_grid_thw=batch["image_grid_thw"],
                   packed_seq_params=batch["packed_seq_params"])
    return output, partial(_loss_func, batch["loss_mask"])


def _run_micro_batches(state: SFTState, batches: list[dict], forward_only: bool) -> tuple[float, float]:
    """Forward (and backward) over this rank's micro-batches -> (global loss per token, global tokens)."""
    from megatron.core import parallel_state
    from megatron.core.pipeline_parallel import get_forward_backward_func

    seq_length = max(b["input_ids"].shape[1] for b in batches)
    outputs = get_forward_backward_func()(
        forward_step_func=_forward_step, data_iterator=iter(batches), model=state.policy.chunks,
        num_microbatches=len(batches), seq_length=seq_length, micro_batch_size=batches[0]["input_ids"].shape[0],
        forward_only=forward_only)
    summed = torch.zeros(2, device=state.device)
    if parallel_state.is_pipeline_last_stage(ignore_virtual=True):
        summed = torch.stack([o["lm loss"] for o in outputs]).sum(0)
    if dist.is_initialized():
        dist.all_reduce(summed)  # over all ranks: only one TP rank per DP replica should count
        summed /= parallel_state.get_tensor_model_parallel_world_size()
    return (summed[0] / summed[1].clamp(min=1)).item(), summed[1].item()


def evaluate(cfg: RecipeConfig, state: SFTState) -> float | None:
    """Mean per-token validation loss over `training.eval_batches` global batches."""
    if state.val_set is None:
        return None
    t = cfg.training
    sampler = BatchSampler(len(state.val_set.samples), t.global_batch_size, t.micro_batch_size,
                           state.sampler.dp_rank, state.sampler.dp_size, shuffle=False)
    for chunk in state.policy.chunks:
        chunk.eval()
    loss_sum = tokens_sum = 0.0
    with torch.no_grad():
        for i in range(t.eval_batches):
            batches = make_batches(cfg, state, state.val_set, sampler.micro_batches(i * t.global_batch_size))
            loss, tokens = _run_micro_batches(state, batches, forward_only=True)
            loss_sum, tokens_sum = loss_sum + loss * tokens, tokens_sum + tokens
    for chunk in state.policy.chunks:
        chunk.train()
    return loss_sum / max(tokens_sum, 1.0)


def save(cfg: RecipeConfig, state: SFTState) -> Path:
    trainer = {"consumed_samples": state.consumed_samples, "scheduler": state.policy.scheduler.state_dict(),
               "world_layout": state.world_layout, "stage": "sft"}
    state.last_saved_step = state.step
    return state.checkpointer.save(state.step, state.policy.chunks, state.policy.optimizer, trainer, state.policy.arch)


def train(cfg: RecipeConfig, state: SFTState) -> dict:
    """The SFT loop. Returns the last step's metrics."""
    t, policy = cfg.training, state.policy
    flops_per_token = decoder_flops_per_token(policy.arch, cfg.data.max_seq_length)
    peak, world = device_peak_flops(state.device), dist.get_world_size() if dist.is_initialized() else 1
    metrics: dict = {}
    steps_this_run = 0
    while state.step < state.total_steps:
        start = time.perf_counter()
        batches = make_batches(cfg, state, state.train_set, state.sampler.micro_batches(state.consumed_samples))
        zero_grads(policy)
        loss, response_tokens = _run_micro_batches(state, batches, forward_only=False)
        updated, grad_norm = train_step_end(policy)
        state.step += 1
        state.consumed_samples += t.global_batch_size
        steps_this_run += 1
        elapsed = time.perf_counter() - start
        tokens = sum(b["input_ids"].numel() for b in batches) * state.sampler.dp_size
        metrics = {"loss": loss, "grad_norm": grad_norm, "lr": current_lr(policy), "update_skipped": not updated,
                   "response_tokens": response_tokens, "micro_batches": len(batches), "tokens_per_s": tokens / elapsed,
                   "step_time_s": elapsed, "consumed_samples": state.consumed_samples,
                   "mfu": mfu(tokens / elapsed, flops_per_token, world, peak), "epoch": state.consumed_samples /
                   len(state.train_set.samples)}
        if state.step % cfg.logging.log_interval == 0:
            state.metrics.log(state.step, metrics)
        state.metrics.advance(1, loss=loss)
        if t.eval_interval and state.step % t.eval_interval == 0:
            state.metrics.log(state.step, {"loss": evaluate(cfg, state)}, prefix="val")
        stop = state.preemption.any_rank(state.device) or steps_this_run == t.exit_after_steps
        if stop or (cfg.checkpoint.save_interval and state.step % cfg.checkpoint.save_interval == 0):
            save(cfg, state)
        if stop:
            logger.warning("stopping at step %d (pre-emption signal or exit_after_steps); checkpoint saved", state.step)
            return metrics
    if cfg.checkpoint.save_at_end and state.last_saved_step != state.step:
        save(cfg, state)
    evaluated_now = t.eval_interval and state.step % t.eval_interval == 0
    val = None if evaluated_now else evaluate(cfg, state)
    if val is not None:
        state.metrics.log(state.step, {"loss": val}, prefix="val")
    return metrics


def _headline(metrics: dict) -> str:
    return f"loss {metrics.get('loss', float('nan')):.4f}"


def main(argv: list[str]) -> int:
    return stage_main(argv, "sft", setup, train, _headline)
