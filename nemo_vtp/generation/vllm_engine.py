"""VLLMEngine: the Engine protocol over vLLM, colocated in the training process (GPU only).

The engine runs in-process (`VLLM_ENABLE_V1_MULTIPROCESSING=0`), so `load_weights` hands the HF-named
tensors of a refit straight to the worker's model (`model.load_weights`, whose weight loaders narrow
full tensors to this rank's TP shard) without serialising them. Two launch modes:
- `external_launcher` (default): under `torchrun`/`srun`, every rank holds one vLLM worker; vLLM's
  TP groups are formed inside the trainer's world, data_parallel_size = world / vLLM TP;
- `uni`: one single-GPU engine in a plain process (tests, a model that fits one GPU).

Prompts go to vLLM as token ids with one `<|image_pad|>` per image plus the raw images: vLLM's own
processor expands each pad to the image's token count. The expanded ids vLLM reports are checked
against ours, so a processor mismatch (e.g. different min/max pixels) fails loudly instead of
silently shifting log-probs. Log-probs are raw (vLLM's default `raw_logprobs`), see `engine.py`.

vLLM is imported lazily: this module imports on a CPU machine without vLLM.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterable, Sequence

import torch

from nemo_vtp.config.generation import GenerationConfig, SamplingConfig
from nemo_vtp.generation.engine import Prompt, Rollout, collapse_image_pads


def configure_vllm_env() -> None:
    """Environment vLLM must see before it is imported (checked with vLLM 0.26 on H100/H200)."""
    if os.environ.get("VLLM_ENABLE_V1_MULTIPROCESSING", "0") != "0":
        raise RuntimeError("VLLMEngine runs vLLM in-process for the refit: unset VLLM_ENABLE_V1_MULTIPROCESSING")
    os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
    os.environ.setdefault("VLLM_NO_USAGE_STATS", "1")
    if importlib.util.find_spec("flashinfer") is None:
        # Without flashinfer installed, vLLM's sampler would still try to import it and the engine dies at start.
        os.environ.setdefault("VLLM_USE_FLASHINFER_SAMPLER", "0")


def _load_into_worker(worker, weights) -> int:
    """Runs inside the vLLM worker (same process): stream HF-named tensors into the live model."""
    worker.model_runner.get_model().load_weights(weights)
    return 0


class _Counted:
    """An iterator wrapper that counts the (name, tensor) pairs vLLM consumed."""

    def __init__(self, weights: Iterable[tuple[str, torch.Tensor]]):
        self._it, self.count = iter(weights), 0

    def __iter__(self):
        return self

    def __next__(self):
        item = next(self._it)
        self.count += 1
        return item


class VLLMEngine:
    """One vLLM `LLM` per process, sleeping while Megatron trains and refit in place."""

    def __init__(self, model_path: str, cfg: GenerationConfig, *, seed: int = 0):
        configure_vllm_env()
        from vllm import LLM

        v = cfg.vllm
        self.dtype = torch.float32 if cfg.dtype == "float32" else torch.bfloat16
        kwargs = {
            "model": model_path, "dtype": str(self.dtype).removeprefix("torch."), "seed": seed,
            "tensor_parallel_size": v.tensor_parallel_size, "gpu_memory_utilization": v.gpu_memory_utilization,
            "enforce_eager": v.enforce_eager, "max_model_len": v.max_model_len, "max_num_seqs": v.max_num_seqs,
            "enable_prefix_caching": v.enable_prefix_caching, "enable_sleep_mode": v.enable_sleep_mode,
            "limit_mm_per_prompt": {"image": v.limit_images_per_prompt},
            "distributed_executor_backend": v.distributed_executor_backend,
            "load_format": v.load_format,
        }
        if v.distributed_executor_backend == "external_launcher":
            if "WORLD_SIZE" not in os.environ:
                raise RuntimeError("generation.vllm.distributed_executor_backend=external_launcher needs torchrun/srun "
                                   "(WORLD_SIZE unset); use distributed_executor_backend=uni for a single process")
            world = int(os.environ["WORLD_SIZE"])
            if world % v.tensor_parallel_size:
                raise ValueError(f"world size {world} is not a multiple of generation.vllm.tensor_parallel_size "
                                 f"{v.tensor_parallel_size}")
            kwargs["data_parallel_size"] = world // v.tensor_parallel_size
        self.llm = LLM(**kwargs)
        self.image_token_id = self.llm.llm_engine.vllm_config.model_config.hf_config.image_token_id
        self.sleep_level = v.sleep_level
        self.sleep_enabled = v.enable_sleep_mode
        self._weights_discarded = v.load_format == "dummy"  # random or discarded weights, until load_weights
        self._asleep: set[str] = set()  # the parts ("weights", "kv_cache") released by `sleep`, not yet woken

    # ------------------------------------------------------------------ Engine protocol
    def generate(self, prompts: Sequence[Prompt], sampling: SamplingConfig) -> list[list[Rollout]]:
        from vllm import SamplingParams

        if self._weights_discarded:
            raise RuntimeError("VLLMEngine: no trained weights yet (load_format=dummy or a level-2 sleep): "
                               "refit before generate")
        params = SamplingParams(  # top_k -1 means off in every vLLM version (0 is refused by older ones)
            n=sampling.n, temperature=sampling.temperature, top_p=sampling.top_p, top_k=sampling.top_k or -1,
            max_tokens=sampling.max_new_tokens, stop=list(sampling.stop) or None,
            stop_token_ids=list(sampling.stop_token_ids) or None, logprobs=sampling.top_logprobs,
            seed=sampling.seed, skip_special_tokens=True,
        )
        requests = [self._request(i, p) for i, p in enumerate(prompts)]
        outputs = self.llm.generate(requests, params, use_tqdm=False)
        groups = []
        for i, (prompt, output) in enumerate(zip(prompts, outputs)):
            if list(output.prompt_token_ids) != list(prompt.token_ids):
                raise RuntimeError(
                    f"prompt {i}: vLLM expanded it to {len(output.prompt_token_ids)} tokens, ours has "
                    f"{len(prompt.token_ids)}: the image processors disagree (check min_pixels/max_pixels "
                    "in the model folder's preprocessor_config.json against the data processor)")
            groups.append([_to_rollout(c, sampling) for c in output.outputs])
        return groups

    def load_weights(self, weights: Iterable[tuple[str, torch.Tensor]]) -> int:
        counted = _Counted(weights)
        self.llm.collective_rpc(_load_into_worker, args=(counted,))
        self._weights_discarded = False
        return counted.count

    def sleep(self) -> None:
        if not self.sleep_enabled or self._asleep:
            return
        self.reset_caches()
        self.llm.sleep(level=self.sleep_level)
        self._asleep = {"weights", "kv_cache"}
        self._weights_discarded = self.sleep_level == 2

    def wake(self, tags: Sequence[str] | None = None) -> None:
        # Only what sleeps: vLLM's allocator would map an awake part a second time.
        parts = sorted(set(tags or ("weights", "kv_cache")) & self._asleep)
        if parts:
            self.llm.wake_up(tags=parts)
            self._asleep -= set(parts)

    def reset_caches(self) -> None:
        # Both are needed after a weight update: vLLM would otherwise reuse image embeddings and KV blocks
        # computed with the old weights. The encoder cache must be reset through the engine, not the worker.
        self.llm.llm_engine.reset_encoder_cache()
        self.llm.reset_prefix_cache()

    # ------------------------------------------------------------------ internals
    def _request(self, index: int, prompt: Prompt) -> dict:
        pads = sum(1 for t in prompt.token_ids if t == self.image_token_id)
        if not pads:
            return {"prompt_token_ids": list(prompt.token_ids)}
        if not prompt.images:
            raise ValueError(f"prompt {index}: has <|image_pad|> tokens but no `images` (vLLM needs the raw images)")
        ids = collapse_image_pads(prompt.token_ids, self.image_token_id)
        if ids.count(self.image_token_id) != len(prompt.images):
            raise ValueError(f"prompt {index}: {ids.count(self.image_token_id)} image placeholders, "
                             f"{len(prompt.images)} images")
        return {"prompt_token_ids": ids, "multi_modal_data": {"image": list(prompt.images)}}


def _to_rollout(completion, sampling: SamplingConfig) -> Rollout:
    """A vLLM CompletionOutput -> Rollout (sampled-token log-probs, optional top log-probs)."""
    token_ids = list(completion.token_ids)
    steps = completion.logprobs or []
    if len(steps) != len(token_ids):
        raise RuntimeError(f"vLLM returned {len(steps)} log-prob steps for {len(token_ids)} tokens")
    logprobs = [float(step[token].logprob) for token, step in zip(token_ids, steps)]
    top = None
    if sampling.top_logprobs:
        k = sampling.top_logprobs
        top = [{t: float(lp.logprob) for t, lp in step.items() if lp.rank is not None and lp.rank <= k}
               for step in steps]
    if completion.finish_reason not in ("stop", "length"):
        raise RuntimeError(f"vLLM finished a sample with reason {completion.finish_reason!r}")
    return Rollout(token_ids=token_ids, logprobs=logprobs, text=completion.text, finish_reason=completion.finish_reason,
                   top_logprobs=top, stop_reason=completion.stop_reason)
