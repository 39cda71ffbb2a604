"""Helpers shared by the GPU workers: one-GPU Megatron parallel state, small architectures, RESULT lines.

Each worker runs in its own process (started by a test in `tests/gpu/`), so that Megatron's parallel
state, Transformer Engine's FP8 state and vLLM's engine never meet in one interpreter.
"""

from __future__ import annotations

import json
import os
import socket

import torch


def report(name: str, **figures) -> dict:
    """Print one `RESULT {json}` line (what the tests and RESULTS.md read)."""
    line = {"result": name, **figures}
    print(f"RESULT {json.dumps(line)}", flush=True)
    return line


def single_gpu_parallel(seed: int = 0) -> torch.device:
    """TP=PP=1 Megatron parallel state over NCCL in this process (torchrun's variables if present)."""
    from nemo_vtp.config.parallel import ParallelConfig
    from nemo_vtp.parallel.state import initialize

    if "WORLD_SIZE" not in os.environ:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        os.environ.update(RANK="0", LOCAL_RANK="0", WORLD_SIZE="1", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    return initialize(ParallelConfig(), seed=seed, device="cuda")


def small_arch(hidden: int = 256, layers: int = 4, heads: int = 4, vision_hidden: int = 64, **ids):
    """A small Qwen2.5-VL whose head dims (hidden / heads, vision_hidden / 2) suit fused attention kernels.

    ids: token-id overrides (vocab_size, image_token_id, ...), e.g. from a tokenizer.
    """
    from nemo_vtp.models.qwen25_vl.config import preset

    half = hidden // heads // 2
    temporal = half // 4  # split like the real (16, 24, 24) of a 128-wide head
    mrope = (temporal, (half - temporal) // 2, half - temporal - (half - temporal) // 2)
    return preset("tiny", hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=layers,
                  num_attention_heads=heads, num_key_value_heads=2, mrope_section=mrope,
                  vision={"hidden_size": vision_hidden, "intermediate_size": 2 * vision_hidden,
                          "out_hidden_size": hidden}, **ids)


def write_small_hf_config(path):
    """config.json of a small Qwen2.5-VL that vLLM serves (head dims of 32) with the synthetic world's token
    ids: what the GPU runs of `nemo-vtp sft`/`rl` pass as `model.hf_config`. Returns `path`."""
    from nemo_vtp.data.tokenizer import load_tokenizer, special_token_ids

    arch = small_arch(hidden=128, layers=2, vision_hidden=64, **special_token_ids(load_tokenizer(None)))
    path.write_text(json.dumps(arch.to_hf_dict()))
    return path


# `nemo-vtp rl` overrides of the GPU tests: vLLM rollouts of the small model, eager, beside training.
SMALL_VLLM = ["generation.engine=vllm", "generation.vllm.gpu_memory_utilization=0.3",
              "generation.vllm.enforce_eager=true", "generation.vllm.max_model_len=1024"]


def rel_err(x: torch.Tensor, ref: torch.Tensor) -> float:
    """||x - ref|| / ||ref|| in float64."""
    x, ref = x.double(), ref.double()
    return float((x - ref).norm() / ref.norm().clamp(min=1e-30))
