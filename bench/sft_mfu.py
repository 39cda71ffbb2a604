"""SFT throughput and MFU of the Qwen2.5-VL-7B language model: reduced depth on one GPU, or full depth
over several GPUs of one node.

    PYTHONPATH=. python bench/sft_mfu.py [--layers 6] [--seq 4096] [--grad-accum 8] [--steps 6]
        [--precision bf16|fp8-delayed|fp8-tensorwise] [--set k=v ...] [--json out.jsonl]
    PYTHONPATH=. torchrun --nproc-per-node 4 bench/sft_mfu.py --layers 28 \
        --set parallel.tensor_model_parallel_size=2 --set parallel.sequence_parallel=true

With several GPUs, each data-parallel rank runs `--grad-accum` micro-batches per step (tokens per step
count all DP ranks) and MFU is per GPU: model FLOP/s / (GPUs x peak).

The model is built by the training code itself (`build_policy`: TE layer spec, Megatron DDP, the
distributed optimizer, bf16 params) from the 7B config with `--layers` decoder layers; the vision
tower is frozen and text-only batches are used, so the figure is the language model's. One step is
`--grad-accum` micro-batches of `--micro-batch` x `--seq` tokens through `sft._run_micro_batches`
(Megatron's schedule, per-token loss), then the optimizer step.

Data: a learnable synthetic language (each token follows a fixed random successor 90% of the time),
identical for every precision, so the per-step losses of bf16 and FP8 runs can be compared.

MFU counts 6 x dense parameters + 12 x L x T x H_attn FLOPs per token (no causal halving), over the
vendor's dense bf16 peak (989 TFLOP/s for H100/H200 SXM) also for FP8 runs: FP8 shows as a higher MFU.
Prints `RESULT {json}` lines: the device, the step times (forward+backward, optimizer) and the losses.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import torch

PRECISIONS = {"bf16": [], "fp8-delayed": ["model.fp8=hybrid", "model.fp8_recipe=delayed"],
              "fp8-tensorwise": ["model.fp8=hybrid", "model.fp8_recipe=tensorwise"]}


def report(name: str, **figures) -> dict:
    line = {"bench": name, **figures}
    if not torch.distributed.is_initialized() or torch.distributed.get_rank() == 0:
        print(f"RESULT {json.dumps(line)}", flush=True)
    return line


def synthetic_batches(n: int, micro_batch: int, seq: int, vocab: int, seed: int, device) -> list[dict]:
    """`n` micro-batches of the learnable language: (B, T) ids, (3, B, T) positions, targets, mask."""
    gen = torch.Generator().manual_seed(seed)
    successor = torch.randperm(vocab, generator=gen)
    out = []
    for _ in range(n):
        tokens = torch.empty(micro_batch, seq + 1, dtype=torch.long)
        tokens[:, 0] = torch.randint(vocab, (micro_batch,), generator=gen)
        noise = torch.rand(micro_batch, seq, generator=gen) < 0.1
        random_next = torch.randint(vocab, (micro_batch, seq), generator=gen)
        for t in range(seq):
            tokens[:, t + 1] = torch.where(noise[:, t], random_next[:, t], successor[tokens[:, t]])
        positions = torch.arange(seq).expand(3, micro_batch, seq).contiguous()
        out.append({"input_ids": tokens[:, :-1].to(device), "position_ids": positions.to(device),
                    "labels": tokens[:, 1:].to(device), "loss_mask": torch.ones(micro_batch, seq, device=device),
                    "pixel_values": None, "image_grid_thw": None, "attention_mask": None,
                    "packed_seq_params": None})
    return out


def _single_process_env() -> None:
    if "WORLD_SIZE" not in os.environ:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        os.environ.update(RANK="0", LOCAL_RANK="0", WORLD_SIZE="1", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=6)
    parser.add_argument("--seq", type=int, default=4096)
    parser.add_argument("--micro-batch", type=int, default=1)
    parser.add_argument("--grad-accum", type=int, default=8)
    parser.add_argument("--steps", type=int, default=6, help="timed steps (after --warmup)")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--precision", choices=sorted(PRECISIONS), default="bf16")
    parser.add_argument("--set", action="append", default=[],
                        help="extra recipe override, e.g. model.kernel_fusions=true")
    parser.add_argument("--json", default=None, help="also append the RESULT lines to this file")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("bench/sft_mfu.py needs a CUDA GPU", file=sys.stderr)
        return 2
    from megatron.core import parallel_state

    from nemo_vtp import sft
    from nemo_vtp.config import load_config
    from nemo_vtp.models.qwen25_vl.config import preset
    from nemo_vtp.parallel import initialize, teardown
    from nemo_vtp.training.flops import decoder_flops_per_token, device_peak_flops
    from nemo_vtp.training.policy import build_policy, train_step_end, zero_grads

    arch = preset("7b").replace(num_hidden_layers=args.layers)
    tmp = Path(tempfile.mkdtemp())
    (tmp / "config.json").write_text(json.dumps(arch.to_hf_dict()))
    recipe = Path(__file__).resolve().parents[1] / "recipes/tiny/sft.yaml"
    cfg = load_config(recipe, [f"run.output_dir={tmp}", "run.device=cuda", "model.params_dtype=bfloat16",
                               "model.transformer_impl=transformer_engine", f"model.hf_config={tmp}/config.json",
                               "model.freeze_vision=true", "model.freeze_merger=true", f"optimizer.lr={args.lr}",
                               "optimizer.lr_warmup_steps=0", "optimizer.lr_schedule=constant",
                               "optimizer.weight_decay=0.0", *PRECISIONS[args.precision], *args.set])
    _single_process_env()
    device = initialize(cfg.parallel, cfg.run.seed, "cuda")
    policy = build_policy(cfg, device, total_steps=args.warmup + args.steps)
    state = SimpleNamespace(policy=policy, device=device)
    batches = synthetic_batches(args.grad_accum * 2, args.micro_batch, args.seq, 32768, seed=0, device=device)
    world = torch.distributed.get_world_size()
    dp = parallel_state.get_data_parallel_world_size()
    tokens_per_step = args.grad_accum * args.micro_batch * args.seq * dp  # global, all DP ranks
    flops_per_token = decoder_flops_per_token(arch, args.seq)
    peak = device_peak_flops(device)
    lines = [report("device", device=torch.cuda.get_device_name(), date=time.strftime("%Y-%m-%d"),
                    torch=torch.__version__, precision=args.precision, layers=args.layers, seq=args.seq,
                    overrides=args.set, gpus=world, tp=parallel_state.get_tensor_model_parallel_world_size(), dp=dp,
                    micro_batch=args.micro_batch, grad_accum=args.grad_accum,
                    params_b=round(sum(p.numel() for c in policy.chunks for p in c.parameters()
                                       if p.requires_grad) / 1e9, 3))]
    losses, fwd_bwd, opt, total = [], [], [], []
    for step in range(args.warmup + args.steps):
        half = (step % 2) * args.grad_accum
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        zero_grads(policy)
        loss, _ = sft._run_micro_batches(state, batches[half:half + args.grad_accum], forward_only=False)
        torch.cuda.synchronize()
        t1 = time.perf_counter()
        train_step_end(policy)
        torch.cuda.synchronize()
        t2 = time.perf_counter()
        losses.append(round(loss, 4))
        if step >= args.warmup:
            fwd_bwd.append(t1 - t0)
            opt.append(t2 - t1)
            total.append(t2 - t0)
    step_s = statistics.median(total)
    tokens_per_s = tokens_per_step / step_s
    lines.append(report(
        "sft_mfu", precision=args.precision, layers=args.layers, overrides=args.set, step_s=round(step_s, 4),
        fwd_bwd_s=round(statistics.median(fwd_bwd), 4),
        optimizer_s=round(statistics.median(opt), 4), tokens_per_s=round(tokens_per_s),
        tflops_per_s=round(tokens_per_s * flops_per_token / 1e12, 1),
        mfu=round(tokens_per_s * flops_per_token / (world * peak), 4) if peak else None,
        mfu_fwd_bwd=round(tokens_per_step / statistics.median(fwd_bwd) * flops_per_token / (world * peak), 4)
        if peak else None,
        max_memory_gib=round(torch.cuda.max_memory_allocated() / 2**30, 1), losses=losses))
    if args.json and torch.distributed.get_rank() == 0:
        with open(args.json, "a", encoding="utf-8") as f:
            f.write("".join(json.dumps(x) + "\n" for x in lines))
    teardown()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
