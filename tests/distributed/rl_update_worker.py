"""One torchrun job of the RL micro-batch layout tests (CPU, gloo, float32, the tiny model, local spec).

Two prompts with an image each (different sizes), three responses per prompt (one with an emitted image
placeholder, one filtered out of the loss). The loop's own functions (`make_mini_batches`,
`compute_old_logprobs`, `loss_forward_backward`, Megatron DDP with per-token loss normalisation) run
the same batch in several layouts:
  per_response   padded micro-batches of 2, the vision tower once per response (the former path)
  shared         padded micro-batches of 2, each prompt's image once per micro-batch
  packed_split   packed rows of at most 160 tokens (a group does not fit: split), shared images
  packed_whole   packed rows of at most 1000 tokens (whole groups), shared images
and rank 0 writes, per layout against per_response: the max old log-prob difference, the DAPO loss
and entropy sums, the max gradient difference (every parameter, vision included, after the TP
all-reduce), the response-token count, and the image rows the vision tower encoded.
"""

from __future__ import annotations

import argparse
import json
from types import SimpleNamespace

import torch

from nemo_vtp.config.parallel import ParallelConfig
from nemo_vtp.parallel import state as parallel

GRIDS = ([1, 8, 8], [1, 12, 16])  # (T, H, W) patches of the two prompts' images
LAYOUTS = {"per_response": ["rl.share_prompt_vision=false"], "shared": [],
           "packed_split": ["rl.micro_batch_tokens=160"], "packed_whole": ["rl.micro_batch_tokens=1000"]}
GROUP = 3


def sequences(arch, hf):
    from nemo_vtp.models.qwen25_vl import parity
    from nemo_vtp.rl.batch import TrainSequence

    gen = torch.Generator().manual_seed(5)
    specials = {arch.eos_token_id, arch.pad_token_id, arch.vision_start_token_id, arch.vision_end_token_id,
                arch.image_token_id, arch.video_token_id}
    allowed = torch.tensor([i for i in range(arch.vocab_size) if i not in specials])
    v = arch.vision
    seqs = []
    for k, grid in enumerate(GRIDS):
        n_image = grid[0] * grid[1] * grid[2] // v.spatial_merge_size**2
        text = allowed[torch.randint(len(allowed), (9 + k,), generator=gen)]
        ids = torch.cat([text[:5], torch.tensor([arch.vision_start_token_id]), torch.full((n_image,), arch.image_token_id),
                         torch.tensor([arch.vision_end_token_id]), text[5:]])
        grid_thw = torch.tensor([grid])
        sample = {"input_ids": ids[None], "mm_token_type_ids": (ids == arch.image_token_id).to(torch.int32)[None],
                  "image_grid_thw": grid_thw}
        positions = parity.hf_position_ids(hf, sample)[:, 0]  # (3, P)
        pixels = torch.randn(grid[0] * grid[1] * grid[2], v.in_channels * v.temporal_patch_size * v.patch_size**2,
                             generator=gen)
        advantages = torch.randn(GROUP, generator=gen)
        for i in range(GROUP):
            response = allowed[torch.randint(len(allowed), (4 + 3 * i + k,), generator=gen)]
            if k == 1 and i == 2:
                response[2] = arch.image_token_id  # an emitted placeholder: out of the loss
            seqs.append(TrainSequence(ids, positions, response, -torch.rand(len(response), generator=gen), pixels,
                                      grid_thw, float(advantages[i]), keep=not (k == 0 and i == 0)))
    return seqs


def run_layout(cfg, rl_state, seqs, grads_of) -> dict:
    from nemo_vtp.dapo import compute_old_logprobs, loss_forward_backward, make_mini_batches
    from nemo_vtp.models.qwen25_vl.model import allreduce_vision_grads

    (mini,) = make_mini_batches(cfg, rl_state, seqs)
    compute_old_logprobs(cfg, rl_state, mini)
    out = {"micro_batches": len(mini), "tokens": sum(float(b["loss_mask"].sum()) for b in mini)}
    if mini[0]["old_logprobs"] is not None:  # last pipeline stage
        # Response tokens keyed by their (distinct, random) rollout log-prob: the layouts order them differently.
        keyed = sorted((float(r), float(o)) for b in mini for r, o, m in
                       zip(b["rollout_logprobs"].flatten(), b["old_logprobs"].flatten(), b["loss_mask"].flatten()) if m)
        out["old_logprobs"] = [o for _, o in keyed]
        for b in mini:  # an off-policy old policy, the same per token in every layout: ratios away from 1
            b["old_logprobs"] = b["old_logprobs"] + 0.1 * torch.sin(13 * b["rollout_logprobs"])
    for chunk in rl_state.policy.chunks:
        chunk.zero_grad_buffer()
    outputs = loss_forward_backward(cfg, rl_state, mini)
    allreduce_vision_grads(rl_state.policy.chunks)
    if outputs:
        out["pg_loss"] = float(sum(o["pg_loss"] for o in outputs))
        out["entropy"] = float(sum(o["entropy"] for o in outputs))
    out["grads"] = grads_of(rl_state.policy.chunks)
    return out


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--tp", type=int, default=1)
    p.add_argument("--pp", type=int, default=1)
    p.add_argument("--out", required=True)
    args = p.parse_args()

    from megatron.core import parallel_state
    from megatron.core.distributed import DistributedDataParallel, DistributedDataParallelConfig, finalize_model_grads

    from nemo_vtp.config import load_config
    from nemo_vtp.models.qwen25_vl.config import preset
    from nemo_vtp.models.qwen25_vl.hf import random_hf_model
    from nemo_vtp.models.qwen25_vl.model import build_model_chunks, transformer_config
    from nemo_vtp.models.qwen25_vl.weight_stream import load_hf_weights

    parallel.initialize(ParallelConfig(tensor_model_parallel_size=args.tp, pipeline_model_parallel_size=args.pp),
                        seed=3)
    arch = preset("tiny", tie_word_embeddings=False)
    hf = random_hf_model(arch, seed=11)
    config = transformer_config(arch, tensor_model_parallel_size=args.tp, pipeline_model_parallel_size=args.pp)
    config.calculate_per_token_loss = True
    config.variable_seq_lengths = True
    chunks = build_model_chunks(arch, config, "local")
    load_hf_weights(chunks, hf.state_dict())
    ddp = DistributedDataParallelConfig(grad_reduce_in_fp32=True, overlap_grad_reduce=False)
    chunks = [DistributedDataParallel(config, ddp, chunk) for chunk in chunks]
    config.finalize_model_grads_func = finalize_model_grads
    config.no_sync_func = chunks[0].no_sync
    encoded = []
    for chunk in chunks:
        if chunk.module.vision_model is not None:
            chunk.module.vision_model.register_forward_pre_hook(lambda _m, a, kw: encoded.append(a[0].shape[0]),
                                                                with_kwargs=True)
    ids = {"pad_token_id": arch.pad_token_id, "image_token_id": arch.image_token_id,
           "video_token_id": arch.video_token_id}
    rl_state = SimpleNamespace(device=torch.device("cpu"), dp_size=1, policy=SimpleNamespace(
        chunks=chunks, arch=arch, processor=SimpleNamespace(ids=ids)))

    def grads_of(model_chunks):
        return {n: p.main_grad.detach().clone() for c in model_chunks for n, p in c.module.named_parameters()}

    seqs = sequences(arch, hf)
    results = {}
    for name, overrides in LAYOUTS.items():
        cfg = load_config("recipes/tiny/rl.yaml", ["generation.sampling.n=3", "rl.num_prompts=2", "rl.mini_batch_size=6",
                                                   "rl.micro_batch_size=2", "generation.sampling.temperature=0.9",
                                                   "rl.logprob_chunk_size=7", *overrides])
        encoded.clear()
        results[name] = run_layout(cfg, rl_state, seqs, grads_of)
        results[name]["patches_encoded"] = sum(encoded)
    report = summarise(results)
    if parallel_state.is_pipeline_last_stage() and parallel_state.get_tensor_model_parallel_rank() == 0:
        with open(args.out, "w") as f:
            json.dump(report, f)
    parallel.teardown()


def _max_over_world(value: float) -> float:
    t = torch.tensor([value])
    torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MAX)
    return t.item()


def _sum_over_pipeline(value: float) -> float:
    from megatron.core import parallel_state

    t = torch.tensor([value])
    torch.distributed.all_reduce(t, group=parallel_state.get_pipeline_model_parallel_group())
    return t.item()


def summarise(results: dict) -> dict:
    """Per layout, its figures and the differences to per_response (collectives: every rank calls it)."""
    ref = results["per_response"]
    report = {}
    for name, r in results.items():
        grad_diff = max((r["grads"][n] - g).abs().max().item() for n, g in ref["grads"].items())
        vision = [g.abs().max().item() for n, g in r["grads"].items() if "vision_model" in n]
        row = {"grad_max_diff": _max_over_world(grad_diff),
               "grad_max_abs": _max_over_world(max(g.abs().max().item() for g in ref["grads"].values())),
               "vision_grad_max_abs": _max_over_world(max(vision, default=0.0)),
               "patches_encoded": _sum_over_pipeline(r["patches_encoded"]),
               "micro_batches": r["micro_batches"], "tokens": r["tokens"]}
        if "old_logprobs" in r:
            row["old_logprob_max_diff"] = max(abs(a - b) for a, b in zip(r["old_logprobs"], ref["old_logprobs"]))
            row["num_logprobs"] = len(r["old_logprobs"])
            row.update({k: r[k] for k in ("pg_loss", "entropy")})
        report[name] = row
    return report


if __name__ == "__main__":
    main()
