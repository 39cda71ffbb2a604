"""TorchEngine: the Engine protocol over transformers' Qwen2_5_VLForConditionalGeneration.

Used by the tests, the CPU demo and `nemo-vtp serve`. Our own decode loop (not `model.generate`), so
that position ids, log-probs and stopping are explicit:
- prompts are left-padded into one batch; 3-D mrope position ids come from the model's own
  `get_rope_index` (padding-aware); every new token takes position max(prompt positions) + 1 + step;
- the prompt (with its images) is encoded once, then the logits and KV cache are repeated `n` times;
- finished rows are dropped from the batch (and the KV cache) as they finish;
- log-probs are raw (temperature 1, untruncated), see `nemo_vtp.generation.engine`.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import torch

from nemo_vtp.config.generation import SamplingConfig
from nemo_vtp.generation.engine import Prompt, Rollout
from nemo_vtp.models.qwen25_vl.weight_map import hf_module_name


@dataclass
class _Sequence:
    """The growing state of one sample."""

    token_ids: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    top_logprobs: list[dict[int, float]] = field(default_factory=list)
    finish_reason: str | None = None
    stop_reason: str | int | None = None


def filter_top_k_top_p(logits: torch.Tensor, top_k: int, top_p: float) -> torch.Tensor:
    """(R, V) logits with tokens outside the top-k / nucleus set to -inf (the most likely always stays)."""
    if top_k > 0 and top_k < logits.shape[-1]:
        kth = logits.topk(top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1.0:
        sorted_logits, order = logits.sort(dim=-1, descending=True)
        cum = sorted_logits.softmax(-1).cumsum(-1)
        drop_sorted = (cum - sorted_logits.softmax(-1)) >= top_p  # mass before this token already >= p
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    return logits


def sample_tokens(
    logits: torch.Tensor, sampling: SamplingConfig, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample one token per row. logits: (R, V) float32. Returns (tokens (R,), raw log-probs (R,))."""
    raw = logits.log_softmax(-1)
    if sampling.temperature == 0.0:
        tokens = logits.argmax(-1)
    else:
        scaled = filter_top_k_top_p(logits / sampling.temperature, sampling.top_k, sampling.top_p)
        tokens = torch.multinomial(scaled.softmax(-1), 1, generator=generator).squeeze(1)
    return tokens, raw.gather(1, tokens[:, None]).squeeze(1)


def cache_keyword(model: torch.nn.Module) -> str:
    """The name of the KV cache in the model's forward arguments and outputs: `cache` in transformers releases
    that deprecate `past_key_values` (removed in 5.40), `past_key_values` in older ones."""
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


class TorchEngine:
    """Batched sampling with a KV cache over an HF Qwen2.5-VL module (any device, any dtype)."""

    def __init__(self, model: torch.nn.Module, tokenizer, *, max_batch: int = 64):
        self.model = model.eval()
        self.cache_keyword = cache_keyword(model)
        self.tokenizer = tokenizer
        self.max_batch = max_batch
        cfg = model.config
        self.image_token_id = cfg.image_token_id
        self.merge_size = cfg.vision_config.spatial_merge_size
        eos = model.generation_config.eos_token_id
        eos = [eos] if isinstance(eos, int) else list(eos or [])
        if tokenizer.eos_token_id is not None:
            eos.append(tokenizer.eos_token_id)
        if not eos:
            raise ValueError("TorchEngine: neither the generation config nor the tokenizer names an EOS token")
        self.eos_token_ids = set(eos)
        pad = tokenizer.pad_token_id
        self.pad_token_id = eos[0] if pad is None else pad
        # name -> live tensor; tied weights appear under both names, so either name loads them.
        self._targets = model.state_dict(keep_vars=True)

    @classmethod
    def from_pretrained(cls, path: str, *, dtype: str = "auto", device: str = "cpu", max_batch: int = 64):
        """Load an HF Qwen2.5-VL folder (weights + tokenizer) onto `device`."""
        from transformers import AutoTokenizer, Qwen2_5_VLForConditionalGeneration

        torch_dtype = _resolve_dtype(dtype, device)
        model = Qwen2_5_VLForConditionalGeneration.from_pretrained(path, dtype=torch_dtype).to(device)
        return cls(model, AutoTokenizer.from_pretrained(path), max_batch=max_batch)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    # ------------------------------------------------------------------ Engine protocol
    @torch.no_grad()
    def generate(self, prompts: Sequence[Prompt], sampling: SamplingConfig) -> list[list[Rollout]]:
        for i, prompt in enumerate(prompts):
            self._check_prompt(i, prompt)
        generator = torch.Generator(device=self.device)
        if sampling.seed is None:
            generator.seed()
        else:
            generator.manual_seed(sampling.seed)
        per_chunk = max(1, self.max_batch // sampling.n)
        out: list[list[Rollout]] = []
        for start in range(0, len(prompts), per_chunk):
            out.extend(self._generate_chunk(prompts[start:start + per_chunk], sampling, generator))
        return out

    def load_weights(self, weights: Iterable[tuple[str, torch.Tensor]]) -> int:
        loaded = 0
        with torch.no_grad():
            for name, tensor in weights:
                target = self._targets.get(hf_module_name(name))
                if target is None:
                    raise KeyError(f"load_weights: {name!r} is not a Qwen2.5-VL parameter of this model "
                                   "(expected HF names such as 'model.language_model.layers.0.mlp.up_proj.weight')")
                if tuple(target.shape) != tuple(tensor.shape):
                    raise ValueError(f"load_weights: {name!r} has shape {tuple(tensor.shape)}, "
                                     f"the model expects {tuple(target.shape)}")
                target.copy_(tensor.to(device=target.device, dtype=target.dtype))
                loaded += 1
        return loaded

    def sleep(self) -> None:
        """Nothing to release: the KV cache lives only inside `generate`, weights stay in place."""

    def wake(self, tags: Sequence[str] | None = None) -> None:
        """Nothing to restore (see `sleep`)."""

    def reset_caches(self) -> None:
        self.model.model.rope_deltas = None  # HF caches mrope deltas across calls; we pass positions explicitly

    # ------------------------------------------------------------------ internals
    def _check_prompt(self, index: int, prompt: Prompt) -> None:
        if not prompt.token_ids:
            raise ValueError(f"prompt {index}: empty token_ids")
        pads = sum(1 for t in prompt.token_ids if t == self.image_token_id)
        grid = prompt.image_grid_thw
        expected = 0 if grid is None else int(grid.prod(-1).sum()) // self.merge_size**2
        if pads != expected or (pads > 0) != (prompt.pixel_values is not None):
            raise ValueError(f"prompt {index}: {pads} <|image_pad|> tokens but the image grids "
                             f"{None if grid is None else grid.tolist()} give {expected} "
                             "(token_ids must be expanded, one pad per merged patch, with pixel_values)")

    def _prefill(self, prompts: Sequence[Prompt]):
        """Encode the left-padded prompts. Returns (last logits (B, V) fp32, cache, mask (B, T), next pos (B,))."""
        device = self.device
        width = max(len(p.token_ids) for p in prompts)
        input_ids = torch.full((len(prompts), width), self.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(prompts), width), dtype=torch.long)
        for b, prompt in enumerate(prompts):
            input_ids[b, width - len(prompt.token_ids):] = torch.tensor(prompt.token_ids)
            mask[b, width - len(prompt.token_ids):] = 1
        input_ids, mask = input_ids.to(device), mask.to(device)
        with_images = [p for p in prompts if p.pixel_values is not None]
        pixel_values = torch.cat([p.pixel_values for p in with_images]).to(device) if with_images else None
        grid = torch.cat([p.image_grid_thw for p in with_images]).to(device) if with_images else None
        mm_token_type_ids = (input_ids == self.image_token_id).int() * mask.int()
        positions, _ = self.model.model.get_rope_index(input_ids, mm_token_type_ids, image_grid_thw=grid,
                                                       attention_mask=mask)  # (3, B, T)
        out = self.model(input_ids=input_ids, attention_mask=mask, position_ids=positions, pixel_values=pixel_values,
                         image_grid_thw=grid, use_cache=True, logits_to_keep=1)
        next_pos = positions.amax(dim=(0, 2)) + 1
        return out.logits[:, -1].float(), out[self.cache_keyword], mask, next_pos

    def _generate_chunk(self, prompts: Sequence[Prompt], sampling: SamplingConfig, generator) -> list[list[Rollout]]:
        n = sampling.n
        logits, cache, mask, next_pos = self._prefill(prompts)
        logits, mask, next_pos = (t.repeat_interleave(n, 0) for t in (logits, mask, next_pos))
        cache.batch_repeat_interleave(n)
        seqs = [_Sequence() for _ in range(len(prompts) * n)]
        active = torch.arange(len(seqs), device=self.device)  # batch row -> sequence index
        for step in range(sampling.max_new_tokens):
            tokens, logprobs = sample_tokens(logits, sampling, generator)
            top = logits.log_softmax(-1).topk(sampling.top_logprobs, -1) if sampling.top_logprobs else None
            keep = []
            for row, seq_index in enumerate(active.tolist()):
                seq = seqs[seq_index]
                seq.token_ids.append(int(tokens[row]))
                seq.logprobs.append(float(logprobs[row]))
                if top is not None:
                    seq.top_logprobs.append(dict(zip(top.indices[row].tolist(), top.values[row].tolist())))
                self._check_stop(seq, sampling)
                if seq.finish_reason is None:
                    keep.append(row)
            if not keep or step == sampling.max_new_tokens - 1:
                break
            if len(keep) < len(active):
                rows = torch.tensor(keep, device=self.device)
                cache.batch_select_indices(rows)
                active, mask, next_pos, tokens = active[rows], mask[rows], next_pos[rows], tokens[rows]
            mask = torch.cat([mask, mask.new_ones((len(active), 1))], dim=1)
            positions = next_pos.view(1, -1, 1).expand(3, -1, 1)
            out = self.model(input_ids=tokens[:, None], attention_mask=mask, position_ids=positions,
                             use_cache=True, **{self.cache_keyword: cache})
            logits, cache, next_pos = out.logits[:, -1].float(), out[self.cache_keyword], next_pos + 1
        rollouts = [self._to_rollout(seq, sampling) for seq in seqs]
        return [rollouts[i * n:(i + 1) * n] for i in range(len(prompts))]

    def _check_stop(self, seq: _Sequence, sampling: SamplingConfig) -> None:
        """Set the finish reason when the newest token ends the sequence (EOS, stop token, stop string)."""
        last = seq.token_ids[-1]
        if last in self.eos_token_ids:
            seq.finish_reason = "stop"
        elif last in sampling.stop_token_ids:
            seq.finish_reason, seq.stop_reason = "stop", last
        elif sampling.stop:
            # A stop string of k characters ends within the last k tokens (each token is >= 1 character).
            window = max(len(s) for s in sampling.stop) + 1
            tail = self.tokenizer.decode(seq.token_ids[-window:], skip_special_tokens=True)
            hit = next((s for s in sampling.stop if s in tail), None)
            if hit is not None:
                seq.finish_reason, seq.stop_reason = "stop", hit

    def _to_rollout(self, seq: _Sequence, sampling: SamplingConfig) -> Rollout:
        text = self.tokenizer.decode(seq.token_ids, skip_special_tokens=True)
        if isinstance(seq.stop_reason, str):
            text = text[:text.find(seq.stop_reason)] if seq.stop_reason in text else text
        return Rollout(token_ids=seq.token_ids, logprobs=seq.logprobs, text=text,
                       finish_reason=seq.finish_reason or "length",
                       top_logprobs=seq.top_logprobs if sampling.top_logprobs else None,
                       stop_reason=seq.stop_reason)


def _resolve_dtype(dtype: str, device: str) -> torch.dtype:
    if dtype == "auto":
        return torch.bfloat16 if str(device).startswith("cuda") else torch.float32
    return {"float32": torch.float32, "bfloat16": torch.bfloat16}[dtype]
