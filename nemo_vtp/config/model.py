"""Model choice: a Qwen2.5-VL preset or an HF config.json, precision and memory options."""

from typing import Literal

from nemo_vtp.config.base import Section


class ModelConfig(Section):
    preset: Literal["tiny", "3b", "7b", "32b", "72b"] = "tiny"  # architecture preset (ignored when hf_config is set)
    hf_config: str | None = None  # path to an HF Qwen2.5-VL config.json or a folder holding one
    tokenizer: str | None = None  # folder with tokenizer/processor files; None: the tiny synthetic-world tokenizer
    params_dtype: Literal["auto", "float32", "bfloat16"] = "auto"  # auto: bfloat16 on GPU, float32 on CPU
    transformer_impl: Literal["auto", "transformer_engine", "local"] = "auto"  # auto: TE when it imports
    fp8: Literal["hybrid", "e4m3"] | None = None  # FP8 format; needs Transformer Engine
    fp8_recipe: Literal["delayed", "tensorwise", "blockwise"] = "delayed"  # FP8 scaling recipe
    recompute: Literal["none", "selective", "full"] = "none"  # activation recomputation
    kernel_fusions: bool = False  # GPU with TE only: fused SwiGLU, vocab cross-entropy and rope; fused wgrad accumulation
    freeze_vision: bool = False  # freeze the vision tower (patch embed + blocks)
    freeze_merger: bool = False  # freeze the patch merger (vision -> LLM projector)
    freeze_llm: bool = False  # freeze the language model
