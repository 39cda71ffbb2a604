"""Time and peak memory of the chunked log-prob + entropy (forward and backward) against a plain
fp32 log_softmax over the full vocabulary, at TP=1 on one device.

    PYTHONPATH=$PWD python bench/vocab_parallel_logprobs.py [--rows 4 --tokens 2048 --vocab 152064 --dtype bfloat16]

Logits are (rows, tokens, vocab), a micro-batch as the model returns it. Variants: the full fp32
log_softmax; the chunked function at several chunk sizes; and the chunked function on `logits[:, :-1]`,
the shifted slice the RL loop used to pass (a non-contiguous view: the function then copies the whole
logits, and the slice's backward writes a second full-size gradient). Peak memory is what a variant
adds above the logits and their gradient: on a GPU from the allocator's peak, on a CPU from the
peak resident set of a fresh process per variant (Linux `ru_maxrss`, so a few MiB of noise).
"""

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from nemo_vtp.parallel.logprobs import vocab_parallel_logprobs  # noqa: E402

CHUNKS = (512, 1024, 2048, 4096)


def naive(logits, target):
    logp = torch.log_softmax(logits.float(), dim=-1)
    lp = logp.gather(-1, target[..., None]).squeeze(-1)
    return lp, -(logp.exp() * logp).sum(-1)


def chunked(chunk_size, shifted=False):
    def fn(logits, target):
        if shifted:  # the former call's slice of the logits (targets aligned here, to compare the values)
            return vocab_parallel_logprobs(logits[:, :-1], target[:, :-1], chunk_size=chunk_size,
                                           compute_entropy=True)
        return vocab_parallel_logprobs(logits, target, chunk_size=chunk_size, compute_entropy=True)
    return fn


VARIANTS = {"full fp32 log_softmax": naive, **{f"chunked, chunk_size={c}": chunked(c) for c in CHUNKS},
            "chunked 1024 on logits[:, :-1]": chunked(1024, shifted=True)}


def _rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def make_inputs(args, device):
    g = torch.Generator(device=device).manual_seed(0)
    logits = torch.empty(args.rows, args.tokens, args.vocab, device=device, dtype=getattr(torch, args.dtype))
    logits.normal_(generator=g).mul_(3)  # in place: no second copy raises the CPU peak before the measure
    target = torch.randint(0, args.vocab, (args.rows, args.tokens), device=device, generator=g)
    return logits, target


def measure(fn, logits, target, repeats):
    """(median ms of forward+backward, peak extra GiB, outputs). The first run warms up."""
    cuda = logits.is_cuda
    times, peak = [], float("nan")
    grad = torch.zeros_like(logits)  # resident before the measure: a variant's own gradient is expected
    base = torch.cuda.memory_allocated() if cuda else _rss_gib()
    for i in range(repeats + 1):
        x = logits.detach().requires_grad_()
        x.grad = grad
        if cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        lp, ent = fn(x, target)
        (lp.sum() + 0.1 * ent.sum()).backward()
        if cuda:
            torch.cuda.synchronize()
        if i or not repeats:
            times.append(time.perf_counter() - start)
        grad.zero_()
        out = (lp.detach(), ent.detach())
        del x, lp, ent
    peak = ((torch.cuda.max_memory_allocated() - base) / 2**30) if cuda else _rss_gib() - base
    return sorted(times)[len(times) // 2] * 1e3, peak, out


def child(args) -> None:
    """One variant in this (fresh) process: print its figures as JSON."""
    device = "cuda" if torch.cuda.is_available() else "cpu"
    logits, target = make_inputs(args, device)
    ms, peak, out = measure(VARIANTS[args.variant], logits, target, args.repeats)
    _, _, ref = measure(naive, logits, target, 0) if args.variant != "full fp32 log_softmax" else (0, 0, out)
    n = out[0].shape[1]
    err = max((a.float() - b[:, :n].float()).abs().max().item() for a, b in zip(out, ref))
    print(json.dumps({"ms": ms, "peak_gib": peak, "max_diff": err}))


def main() -> None:
    cuda = torch.cuda.is_available()
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=4)
    parser.add_argument("--tokens", type=int, default=2048 if cuda else 256)
    parser.add_argument("--vocab", type=int, default=152064 if cuda else 32768)
    parser.add_argument("--dtype", default="bfloat16" if cuda else "float32")
    parser.add_argument("--repeats", type=int, default=5 if cuda else 3)
    parser.add_argument("--variant", help=argparse.SUPPRESS)  # the child process of one variant
    args = parser.parse_args()
    if args.variant:
        return child(args)
    size = args.rows * args.tokens * args.vocab * torch.finfo(getattr(torch, args.dtype)).bits / 8 / 2**30
    name = torch.cuda.get_device_name() if cuda else "cpu"
    print(f"device={name} rows={args.rows} tokens={args.tokens} vocab={args.vocab} dtype={args.dtype} "
          f"(logits {size:.2f} GiB, their gradient as much again, not counted below)")
    for variant in VARIANTS:
        cmd = [sys.executable, __file__, "--rows", str(args.rows), "--tokens", str(args.tokens), "--vocab",
               str(args.vocab), "--dtype", args.dtype, "--repeats", str(args.repeats), "--variant", variant]
        r = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.splitlines()[-1])
        print(f"{variant:32s} {r['ms']:8.1f} ms fwd+bwd   peak extra {r['peak_gib']:6.2f} GiB   "
              f"max |diff| vs full {r['max_diff']:.2e}")


if __name__ == "__main__":
    main()
