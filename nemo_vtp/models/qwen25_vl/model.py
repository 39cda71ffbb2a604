"""Qwen2.5-VL on Megatron-core: the HF vision tower + a Megatron `GPTModel` decoder with mrope.

`Qwen25VLModel.forward(input_ids, position_ids, ...)`:
  input_ids (B, T) int64; position_ids (3, B, T) int64, HF `get_rope_index` rule (temporal, height,
  width), needed on EVERY pipeline stage; pixel_values (N_patches, C*T_p*P*P) and image_grid_thw
  (N_images, 3) on the first stage; image_index (N_used,) optional: images used several times (the
  responses of one prompt) are encoded once, and image_index names the image behind each run of
  `<|image_pad|>` tokens in order; labels (B, T) optional.
  Returns logits (B, T, V / TP) (vocab-parallel unless `parallel_output=False`), or, with labels,
  the per-token loss (B, T) as `GPTModel` does; on a non-last pipeline stage, hidden states (T, B, H).

Layout over ranks:
- first pipeline stage: the vision tower (replicated on every TP rank) and the word embeddings;
  image features replace the `<|image_pad|>` embeddings there.
- the vision tower's gradients are identical on every TP rank in exact arithmetic; the training loop
  calls `allreduce_vision_grads(model_chunks)` after backward, which averages them over TP so that
  replicas can never drift apart (Megatron's DDP only reduces over data parallel).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from megatron.core import parallel_state, tensor_parallel
from megatron.core.transformer.enums import ModelType
from megatron.core.transformer.module import MegatronModule
from megatron.core.transformer.transformer_config import TransformerConfig

from nemo_vtp.models.qwen25_vl.compat import gpt_model
from nemo_vtp.models.qwen25_vl.config import Qwen25VLArch
from nemo_vtp.models.qwen25_vl.hf import build_vision_tower
from nemo_vtp.models.qwen25_vl.layer_spec import (
    decoder_layer_spec,
    resolve_transformer_impl,
)

_RECOMPUTE = {"none": {}, "selective": {"recompute_granularity": "selective"},
              "full": {"recompute_granularity": "full", "recompute_method": "uniform", "recompute_num_layers": 1}}


def transformer_config(arch: Qwen25VLArch, *, tensor_model_parallel_size: int = 1,
                       pipeline_model_parallel_size: int = 1, virtual_pipeline_model_parallel_size: int | None = None,
                       sequence_parallel: bool = False, context_parallel_size: int = 1,
                       params_dtype: torch.dtype = torch.float32, transformer_impl: str = "local",
                       fp8: str | None = None, fp8_recipe: str = "delayed", recompute: str = "none",
                       use_cpu_initialization: bool | None = None, perform_initialization: bool = True,
                       kernel_fusions: bool = False, packed_sequences: bool = False) -> TransformerConfig:
    """Megatron `TransformerConfig` of the Qwen2.5-VL decoder.

    Fusions are off (they need CUDA kernels) unless `kernel_fusions` on a GPU with Transformer Engine:
    then the SwiGLU of the MLP, the vocab-parallel cross-entropy and rope use fused kernels. TE's fused
    rope takes one set of mrope positions per micro-batch (Megatron falls back to the unfused rope when
    a micro-batch holds several samples); with `packed_sequences` (THD) it stays off, since the fused
    THD kernel restarts positions at every sequence while mrope's 3-D positions come with the batch.
    Gradient-accumulation fusion stays off in the config because the output layer would need apex's
    kernel; `fuse_te_wgrad_accumulation` turns it on for TE layers.
    """
    arch.check_parallel(tensor_model_parallel_size, pipeline_model_parallel_size)
    on_gpu = torch.cuda.is_available()
    fused = kernel_fusions and on_gpu and transformer_impl == "transformer_engine"
    return TransformerConfig(
        num_layers=arch.num_hidden_layers, hidden_size=arch.hidden_size, ffn_hidden_size=arch.intermediate_size,
        num_attention_heads=arch.num_attention_heads, num_query_groups=arch.num_key_value_heads,
        kv_channels=arch.head_dim, normalization="RMSNorm", layernorm_epsilon=arch.rms_norm_eps,
        gated_linear_unit=True, activation_func=F.silu, add_bias_linear=False, add_qkv_bias=True,
        hidden_dropout=0.0, attention_dropout=0.0, mrope_section=list(arch.mrope_section),
        init_method_std=0.02, attention_softmax_in_fp32=True,
        bias_activation_fusion=fused, masked_softmax_fusion=False, bias_dropout_fusion=False,
        cross_entropy_loss_fusion=fused, cross_entropy_fusion_impl="native",
        apply_rope_fusion=fused and not packed_sequences, persist_layer_norm=False, gradient_accumulation_fusion=False,
        tensor_model_parallel_size=tensor_model_parallel_size,
        pipeline_model_parallel_size=pipeline_model_parallel_size,
        virtual_pipeline_model_parallel_size=virtual_pipeline_model_parallel_size,
        sequence_parallel=sequence_parallel and tensor_model_parallel_size > 1,
        context_parallel_size=context_parallel_size,
        params_dtype=params_dtype, pipeline_dtype=params_dtype,
        bf16=params_dtype == torch.bfloat16, fp16=params_dtype == torch.float16,
        use_cpu_initialization=(not on_gpu) if use_cpu_initialization is None else use_cpu_initialization,
        perform_initialization=perform_initialization,  # False when weights are loaded right after
        fp8=fp8 if transformer_impl == "transformer_engine" else None,
        fp8_recipe=fp8_recipe, **_RECOMPUTE[recompute],
    )


class Qwen25VLModel(MegatronModule):
    """One pipeline chunk of Qwen2.5-VL. See the module docstring for inputs and outputs."""

    def __init__(self, config: TransformerConfig, arch: Qwen25VLArch, transformer_impl: str = "local",
                 pre_process: bool = True, post_process: bool = True, parallel_output: bool = True,
                 vp_stage: int | None = None):
        super().__init__(config=config)
        self.arch = arch
        self.pre_process = pre_process
        self.post_process = post_process
        self.share_embeddings_and_output_weights = arch.tie_word_embeddings
        self.model_type = ModelType.encoder_or_decoder  # read by Megatron's pipeline schedules
        self.vision_model = build_vision_tower(arch, config.params_dtype) if pre_process else None
        if self.vision_model is not None:
            _sync_over_tensor_parallel(self.vision_model)
        self.language_model = gpt_model(
            config=config, transformer_layer_spec=decoder_layer_spec(transformer_impl),
            vocab_size=arch.vocab_size, max_sequence_length=arch.max_position_embeddings,
            pre_process=pre_process, post_process=post_process, parallel_output=parallel_output,
            share_embeddings_and_output_weights=arch.tie_word_embeddings, position_embedding_type="mrope",
            rotary_base=arch.rope_theta, scatter_embedding_sequence_parallel=False, vp_stage=vp_stage,
        )

    def set_input_tensor(self, input_tensor) -> None:
        """Pipeline parallelism: the activation received from the previous stage."""
        self.language_model.set_input_tensor(input_tensor)

    def shared_embedding_or_output_weight(self) -> torch.Tensor:
        """For Megatron's tied-embedding gradient all-reduce between first and last stage."""
        return self.language_model.shared_embedding_or_output_weight()

    def forward(self, input_ids: torch.Tensor, position_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                labels: torch.Tensor | None = None, loss_mask: torch.Tensor | None = None,
                pixel_values: torch.Tensor | None = None, image_grid_thw: torch.Tensor | None = None,
                packed_seq_params=None, runtime_gather_output: bool | None = None,
                image_index: torch.Tensor | None = None) -> torch.Tensor:
        decoder_input = self.embed(input_ids, pixel_values, image_grid_thw, image_index) if self.pre_process else None
        return self.language_model(
            input_ids=input_ids, position_ids=position_ids, attention_mask=attention_mask,
            decoder_input=decoder_input, labels=labels, loss_mask=loss_mask,
            packed_seq_params=packed_seq_params, runtime_gather_output=runtime_gather_output,
        )

    def embed(self, input_ids: torch.Tensor, pixel_values: torch.Tensor | None,
              image_grid_thw: torch.Tensor | None, image_index: torch.Tensor | None = None) -> torch.Tensor:
        """Token embeddings with image features at the `<|image_pad|>` positions: (T, B, H), SP-scattered."""
        embeds = self.language_model.embedding(input_ids=input_ids, position_ids=None)  # (T, B, H), full T
        if pixel_values is not None:
            features = self.image_features(pixel_values, image_grid_thw)  # (N_image_tokens, H)
            if image_index is not None:  # repeat shared images: autograd sums their gradients
                sizes = (image_grid_thw.prod(-1) // self.arch.vision.spatial_merge_size**2).tolist()
                blocks = features.split(sizes)
                features = torch.cat([blocks[i] for i in image_index.tolist()])
            mask = (input_ids == self.arch.image_token_id).transpose(0, 1).unsqueeze(-1)  # (T, B, 1)
            if int(mask.sum()) != features.shape[0]:
                raise ValueError(f"{int(mask.sum())} <|image_pad|> tokens (id {self.arch.image_token_id}) in "
                                 f"input_ids but the images give {features.shape[0]} features")
            # HF fills the pad tokens in (B, T) order; do the same on the (B, T, H) view.
            embeds = embeds.transpose(0, 1).masked_scatter(mask.transpose(0, 1), features.to(embeds.dtype))
            embeds = embeds.transpose(0, 1).contiguous()
        if self.config.sequence_parallel:
            embeds = tensor_parallel.scatter_to_sequence_parallel_region(embeds)
        return embeds

    def image_features(self, pixel_values: torch.Tensor, image_grid_thw: torch.Tensor) -> torch.Tensor:
        """Vision tower + merger: (N_patches, C*T_p*P*P) -> (N_patches / merge^2, H), images concatenated."""
        pixel_values = pixel_values.to(next(self.vision_model.parameters()).dtype)
        return self.vision_model(pixel_values, grid_thw=image_grid_thw).pooler_output


def _sync_over_tensor_parallel(module: torch.nn.Module) -> None:
    """Make a replicated module identical on every TP rank (broadcast from the first TP rank)."""
    if not torch.distributed.is_initialized() or parallel_state.get_tensor_model_parallel_world_size() == 1:
        return
    src = parallel_state.get_tensor_model_parallel_src_rank()
    group = parallel_state.get_tensor_model_parallel_group()
    # The tower is built on the CPU; NCCL broadcasts only device tensors (gloo takes CPU ones).
    nccl = torch.distributed.get_backend(group) == "nccl"
    with torch.no_grad():
        for tensor in module.parameters():
            buffer = tensor.data.cuda() if nccl and not tensor.is_cuda else tensor.data
            torch.distributed.broadcast(buffer, src, group=group)
            if buffer is not tensor.data:
                tensor.data.copy_(buffer)


def vision_params(model_chunks) -> list[torch.nn.Parameter]:
    """Parameters of the vision tower(s) among `model_chunks` (possibly DDP-wrapped)."""
    out = []
    for chunk in model_chunks:
        module = chunk
        while not isinstance(module, Qwen25VLModel) and hasattr(module, "module"):
            module = module.module
        if isinstance(module, Qwen25VLModel) and module.vision_model is not None:
            out += [p for p in module.vision_model.parameters() if p.requires_grad]
    return out


def allreduce_vision_grads(model_chunks) -> None:
    """Average the vision tower's gradients over the TP group; call after backward, before the step.

    Reads `param.main_grad` (Megatron DDP) when present, else `param.grad`. One flat all-reduce.
    """
    if not torch.distributed.is_initialized() or parallel_state.get_tensor_model_parallel_world_size() == 1:
        return
    grads = [getattr(p, "main_grad", None) if getattr(p, "main_grad", None) is not None else p.grad
             for p in vision_params(model_chunks)]
    grads = [g for g in grads if g is not None]
    if not grads:
        return
    flat = torch._utils._flatten_dense_tensors(grads)
    torch.distributed.all_reduce(flat, group=parallel_state.get_tensor_model_parallel_group())
    flat /= parallel_state.get_tensor_model_parallel_world_size()
    for grad, synced in zip(grads, torch._utils._unflatten_dense_tensors(flat, grads)):
        grad.copy_(synced)


def fuse_te_wgrad_accumulation(chunks) -> int:
    """Let Transformer Engine's GEMMs accumulate weight gradients straight into Megatron DDP's fp32
    `main_grad` (no bf16 `.grad` written and then added). Only for TE modules: Megatron's own output
    layer needs apex for that. Call before wrapping the chunks in DDP. Returns the modules switched."""
    switched = 0
    for chunk in chunks:
        for module in chunk.modules():
            if hasattr(module, "fuse_wgrad_accumulation"):  # TE's modules and Megatron's TE wrappers
                module.fuse_wgrad_accumulation = True
                switched += 1
    return switched


def build_model_chunks(arch: Qwen25VLArch, config: TransformerConfig, transformer_impl: str = "auto",
                       fp8: str | None = None, parallel_output: bool = True,
                       device: torch.device | None = None) -> list[Qwen25VLModel]:
    """This rank's model chunks (one, or one per virtual pipeline stage) on `device` (default: the GPU if any).

    Needs `parallel_state` initialized with the TP/PP sizes of `config`.
    """
    impl = resolve_transformer_impl(transformer_impl, fp8)
    vp_size = config.virtual_pipeline_model_parallel_size
    chunks = []
    for vp_stage in range(vp_size or 1):
        stage = vp_stage if vp_size else None
        chunks.append(Qwen25VLModel(
            config, arch, impl,
            pre_process=parallel_state.is_pipeline_first_stage(ignore_virtual=vp_size is None, vp_stage=stage),
            post_process=parallel_state.is_pipeline_last_stage(ignore_virtual=vp_size is None, vp_stage=stage),
            parallel_output=parallel_output, vp_stage=stage,
        ))
    for chunk in chunks:
        # The local spec's torch norms ignore params_dtype and stay float32. Megatron's mixed-precision
        # optimizers index their state by the bf16 parameters only, so one float32 parameter among them
        # shifts every later state onto the wrong tensor when the checkpoint is written.
        for param in chunk.parameters():
            if param.is_floating_point() and param.dtype != config.params_dtype:
                param.data = param.data.to(config.params_dtype)
    if device is None:
        device = torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() else torch.device("cpu")
    return [chunk.to(device) for chunk in chunks]
