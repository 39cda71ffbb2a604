"""The trainable model of both stages: tokenizer, processor, Qwen2.5-VL on Megatron (DDP-wrapped),
optimizer and LR schedule, built from a recipe. SFT and RL share this; their loops differ."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from nemo_vtp.config.schema import RecipeConfig


@dataclass
class Policy:
    arch: object  # Qwen25VLArch
    config: object  # megatron TransformerConfig
    chunks: list  # this rank's model chunks, wrapped in Megatron DDP when trainable
    optimizer: object | None  # MegatronOptimizer
    scheduler: object | None  # OptimizerParamScheduler
    tokenizer: object
    processor: object  # nemo_vtp.data.processor.Processor


def params_dtype(cfg: RecipeConfig, device: torch.device) -> torch.dtype:
    choice = cfg.model.params_dtype
    if choice == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    return {"float32": torch.float32, "bfloat16": torch.bfloat16}[choice]


def build_arch(cfg: RecipeConfig, tokenizer):
    """The architecture: an HF config.json when given, else the preset (the tiny preset takes its
    vocabulary and special-token ids from the tokenizer)."""
    from nemo_vtp.data.tokenizer import special_token_ids
    from nemo_vtp.models.qwen25_vl.config import from_hf_config, preset

    if cfg.model.hf_config:
        return from_hf_config(cfg.model.hf_config)
    overrides = special_token_ids(tokenizer) if cfg.model.preset == "tiny" else {}
    return preset(cfg.model.preset, **overrides)


def _freeze(chunks, cfg: RecipeConfig) -> None:
    for chunk in chunks:
        if chunk.vision_model is not None:
            for name, p in chunk.vision_model.named_parameters():
                is_merger = name.startswith("merger.")
                if (cfg.model.freeze_merger and is_merger) or (cfg.model.freeze_vision and not is_merger):
                    p.requires_grad_(False)
        if cfg.model.freeze_llm:
            for p in chunk.language_model.parameters():
                p.requires_grad_(False)


def build_policy(cfg: RecipeConfig, device: torch.device, total_steps: int, trainable: bool = True) -> Policy:
    """Everything but the data: call after `nemo_vtp.parallel.initialize`."""
    from megatron.core.distributed import DistributedDataParallel, DistributedDataParallelConfig, finalize_model_grads
    from megatron.core.optimizer import OptimizerConfig, get_megatron_optimizer
    from megatron.core.optimizer_param_scheduler import OptimizerParamScheduler

    from nemo_vtp.data.processor import processor_from_config
    from nemo_vtp.data.tokenizer import load_tokenizer
    from nemo_vtp.models.qwen25_vl.layer_spec import resolve_transformer_impl
    from nemo_vtp.models.qwen25_vl.model import build_model_chunks, fuse_te_wgrad_accumulation, transformer_config

    tokenizer = load_tokenizer(cfg.model.tokenizer)
    arch = build_arch(cfg, tokenizer)
    dtype = params_dtype(cfg, device)
    # Resolve "auto" before building the config: TransformerConfig only enables FP8 (and fusions) for
    # "transformer_engine", so an unresolved "auto" would silently train in bf16 with model.fp8 set.
    impl = resolve_transformer_impl(cfg.model.transformer_impl, cfg.model.fp8)
    par = cfg.parallel
    config = transformer_config(
        arch, tensor_model_parallel_size=par.tensor_model_parallel_size,
        pipeline_model_parallel_size=par.pipeline_model_parallel_size,
        virtual_pipeline_model_parallel_size=par.virtual_pipeline_model_parallel_size,
        sequence_parallel=par.sequence_parallel, context_parallel_size=par.context_parallel_size,
        params_dtype=dtype, transformer_impl=impl, fp8=cfg.model.fp8,
        fp8_recipe=cfg.model.fp8_recipe, recompute=cfg.model.recompute, kernel_fusions=cfg.model.kernel_fusions,
        packed_sequences=cfg.data.pack_sequences or cfg.rl.micro_batch_tokens is not None)  # THD rows: rope unfused
    config.calculate_per_token_loss = True  # loss = sum over response tokens / tokens in the global batch
    chunks = build_model_chunks(arch, config, impl, cfg.model.fp8, device=device)
    policy = Policy(arch, config, chunks, None, None, tokenizer, processor_from_config(cfg.data, tokenizer))
    if not trainable:
        return policy
    _freeze(chunks, cfg)
    if config.bias_activation_fusion:  # kernel_fusions took effect (a GPU with the TE layer spec)
        fuse_te_wgrad_accumulation(chunks)
    distributed_optimizer = par.use_distributed_optimizer and device.type == "cuda"
    ddp_config = DistributedDataParallelConfig(grad_reduce_in_fp32=True, overlap_grad_reduce=False,
                                               use_distributed_optimizer=distributed_optimizer)
    policy.chunks = [DistributedDataParallel(config, ddp_config, chunk) for chunk in chunks]
    config.finalize_model_grads_func = finalize_model_grads
    config.no_sync_func = [c.no_sync for c in policy.chunks] if len(chunks) > 1 else policy.chunks[0].no_sync
    opt = cfg.optimizer
    policy.optimizer = get_megatron_optimizer(OptimizerConfig(
        optimizer="adam", lr=opt.lr, min_lr=opt.min_lr, weight_decay=opt.weight_decay, adam_beta1=opt.adam_beta1,
        adam_beta2=opt.adam_beta2, adam_eps=opt.adam_eps, clip_grad=opt.clip_grad, bf16=dtype == torch.bfloat16,
        params_dtype=dtype, use_distributed_optimizer=distributed_optimizer), policy.chunks)
    policy.scheduler = OptimizerParamScheduler(
        policy.optimizer, init_lr=0.0 if opt.lr_warmup_steps else opt.lr, max_lr=opt.lr, min_lr=opt.min_lr,
        lr_warmup_steps=opt.lr_warmup_steps, lr_decay_steps=max(total_steps, opt.lr_warmup_steps + 1),
        lr_decay_style=opt.lr_schedule, start_wd=opt.weight_decay, end_wd=opt.weight_decay,
        wd_incr_steps=max(total_steps, 1), wd_incr_style="constant")
    return policy


def train_step_end(policy: Policy) -> tuple[bool, float | None]:
    """After forward/backward over all micro-batches: sync replicated vision grads over TP, step the
    optimizer and the schedule. Returns (update applied, grad norm)."""
    from nemo_vtp.models.qwen25_vl.model import allreduce_vision_grads

    allreduce_vision_grads(policy.chunks)
    ok, grad_norm, _ = policy.optimizer.step()
    if ok:
        policy.scheduler.step(increment=1)
    return ok, grad_norm


def zero_grads(policy: Policy) -> None:
    for chunk in policy.chunks:
        chunk.zero_grad_buffer()
    policy.optimizer.zero_grad()


def current_lr(policy: Policy) -> float:
    return policy.optimizer.param_groups[0]["lr"]


def packed_attention_inputs(cu_seqlens: torch.Tensor, transformer_impl: str, device: torch.device) -> dict:
    """Model inputs that keep the segments of a packed row apart: TE attention takes THD
    `packed_seq_params` (cu_seqlens); the local spec takes a block-diagonal causal `attention_mask`."""
    from nemo_vtp.data.packing import block_causal_mask

    if transformer_impl == "transformer_engine":
        from megatron.core.packed_seq_params import PackedSeqParams

        cu = cu_seqlens.to(device)
        longest = int((cu_seqlens[1:] - cu_seqlens[:-1]).max())
        return {"attention_mask": None,
                "packed_seq_params": PackedSeqParams(qkv_format="thd", cu_seqlens_q=cu, cu_seqlens_kv=cu,
                                                     max_seqlen_q=longest, max_seqlen_kv=longest)}
    return {"attention_mask": block_causal_mask(cu_seqlens).to(device), "packed_seq_params": None}
