"""Rollout generation: which engine, how it samples, vLLM memory and sleep settings, refit buckets."""

from typing import Literal

from pydantic import Field

from nemo_vtp.config.base import Section


class SamplingConfig(Section):
    """How one `Engine.generate` call samples. Log-probs are always returned for the sampled tokens."""

    n: int = Field(1, ge=1)  # samples per prompt; in RL the GRPO/DAPO group size G (>= 2)
    temperature: float = Field(1.0, ge=0.0)  # softmax temperature; 0 means greedy; RL: also scales the log-probs
    top_p: float = Field(1.0, gt=0.0, le=1.0)  # nucleus sampling mass; 1.0 disables it
    top_k: int = Field(0, ge=0)  # keep the k most likely tokens; 0 disables it
    max_new_tokens: int = Field(256, ge=1)  # response length cap, tokens (finish `length`); RL: also L_max of R_overlong
    stop: list[str] = Field(default_factory=list)  # stop strings; the text is cut before the match
    stop_token_ids: list[int] = Field(default_factory=list)  # extra stop token ids (EOS always stops)
    top_logprobs: int = Field(0, ge=0, le=20)  # also return this many most likely tokens per step
    seed: int | None = None  # sampling seed; None draws fresh randomness every call


class VLLMConfig(Section):
    """vLLM engine settings (GPU only); the engine runs inside the training process."""

    gpu_memory_utilization: float = Field(0.5, gt=0.0, le=1.0)  # fraction of GPU memory vLLM may take
    enforce_eager: bool = False  # skip CUDA graph capture (faster start, slower decode)
    max_model_len: int = Field(4096, ge=64)  # prompt + response tokens per sequence
    max_num_seqs: int = Field(256, ge=1)  # sequences decoded concurrently
    tensor_parallel_size: int = Field(1, ge=1)  # vLLM TP degree (ranks of one engine)
    enable_prefix_caching: bool = True  # reuse KV blocks of shared prompt prefixes (the n samples of a prompt)
    enable_sleep_mode: bool = True  # allow sleep()/wake() to free GPU memory while Megatron trains
    sleep_level: Literal[1, 2] = 1  # 1: weights backed up to pinned host memory; 2: weights discarded
    limit_images_per_prompt: int = Field(1, ge=0)  # images per prompt vLLM reserves encoder memory for
    distributed_executor_backend: Literal["external_launcher", "uni"] = "external_launcher"  # in-process either way
    load_format: Literal["auto", "dummy"] = "auto"  # dummy: random weights, no disk read (a refit fills them)


class GenerationConfig(Section):
    engine: Literal["torch", "vllm"] = "torch"  # torch: transformers on CPU/GPU (tests, CPU demo); vllm: GPU rollouts
    dtype: Literal["auto", "float32", "bfloat16"] = "auto"  # engine weights; auto: bfloat16 on GPU, float32 on CPU
    sampling: SamplingConfig = Field(default_factory=SamplingConfig)  # rollout sampling
    torch_max_batch: int = Field(64, ge=1)  # torch engine: sequences per forward (prompts x n)
    vllm: VLLMConfig = Field(default_factory=VLLMConfig)  # vLLM settings (used when engine=vllm)
    refit_bucket_mb: int = Field(512, ge=1)  # refit: MB of weights per `load_weights` call

