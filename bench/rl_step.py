"""One Qwen2.5-VL-7B-shaped RL step on one GPU, broken down by phase, through `nemo-vtp rl` itself.

    VLLM_USE_FLASHINFER_SAMPLER=0 PYTHONPATH=. python bench/rl_step.py [--layers 8] [--prompts 16] [--group 8]
        [--max-tokens 512] [--image-side 448] [--steps 4] [--cuda-graphs] [--json out.jsonl]

The model: the 7B language model (width 3584, vocab 152064) at `--layers` decoder layers with the full
7B vision tower, random weights, bf16, the 7B RL recipe (`recipes/rl/rl-qwen25vl-7b-vtp22k-1n8g-tp4.yaml`:
TE layer spec, full recompute, distributed optimizer) at TP=1, vLLM colocated in the training process
(external launcher, sleep level 2 while Megatron trains). Prompts: the synthetic perception world with
`--image-side` px images (448 px = 256 image tokens), `--prompts` x `--group` responses per step.

Random weights rarely emit an end token, so nearly every response is `--max-tokens` long, and every
reward is the same: dynamic sampling and overlong filtering are off (all advantages are 0; the update
does the same arithmetic as with real ones). `checkpoint.save_at_end=false`: nothing is written.

Steps: (1) a child process writes the random model as a weights-only checkpoint (what `checkpoint.load`
starts from, like `convert hf-to-megatron` output); (2) `torchrun -m nemo_vtp.cli rl` runs `--steps`
rollout steps; (3) the per-phase seconds of the steps after the first (warm-up) are printed as
`RESULT {json}` lines: generate, score, sleep, old log-probs, update, refit (wake + load), whole step,
the tokens (prompt + response, padding not counted) per second of the old-log-prob and update passes,
and the rollout/trainer log-prob gap (a wrong micro-batch layout shows there as a jump from ~1e-3 nat).
Trailing k=v arguments are recipe overrides, e.g. `rl.micro_batch_tokens=8192` (packed micro-batches)
or `rl.share_prompt_vision=false` (the vision tower once per response, the former path).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench.refit import report  # noqa: E402

RECIPE = ROOT / "recipes" / "rl" / "rl-qwen25vl-7b-vtp22k-1n8g-tp4.yaml"
PHASES = {"generate_s": "rl/time/generate_s", "score_s": "rl/time/score_s", "sleep_s": "rl/time/sleep_s",
          "old_logprob_s": "rl/time/old_logprob_s", "update_s": "rl/time/update_s",
          "refit_s": "rl/time/refit_s", "refit_load_s": "rl/refit/seconds", "refit_wake_s": "rl/refit/wake_s",
          "step_s": "rl/time/step_s", "train_tokens": "rl/train_tokens",
          "rollout_logprob_abs_diff": "rl/loss/rollout_logprob_abs_diff"}


def write_arch(folder: Path, layers: int) -> Path:
    """config.json of the 7B preset with `layers` decoder layers and the synthetic world's token ids."""
    from nemo_vtp.data.tokenizer import load_tokenizer, special_token_ids
    from nemo_vtp.models.qwen25_vl.config import preset

    ids = special_token_ids(load_tokenizer(None))
    ids.pop("vocab_size")  # keep the 7B vocabulary: the output layer is a large share of the step
    arch = preset("7b", num_hidden_layers=layers, **ids)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(arch.to_hf_dict(), indent=1))
    return folder / "config.json"


def write_random_checkpoint(overrides: list[str], out: Path) -> None:
    """Child process: build the policy as the RL run will (random init) and save its weights only."""
    from nemo_vtp.config import load_config
    from nemo_vtp.models.qwen25_vl.checkpoint import save_model_checkpoint, write_hf_side
    from nemo_vtp.parallel import initialize
    from nemo_vtp.training.policy import build_policy

    cfg = load_config(RECIPE, overrides)
    device = initialize(cfg.parallel, cfg.run.seed, cfg.run.device)
    policy = build_policy(cfg, device, total_steps=1, trainable=False)
    save_model_checkpoint(policy.chunks, out)
    write_hf_side(out, policy.arch, torch.bfloat16, files_from=None)
    n = sum(p.numel() for c in policy.chunks for p in c.parameters())
    print(f"wrote {n / 1e9:.2f} B random parameters to {out}", flush=True)


def _child_env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
            "PYTHONUNBUFFERED": "1", "VLLM_USE_FLASHINFER_SAMPLER": os.environ.get("VLLM_USE_FLASHINFER_SAMPLER", "0")}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--prompts", type=int, default=16)
    parser.add_argument("--group", type=int, default=8)
    parser.add_argument("--max-tokens", type=int, default=512)
    parser.add_argument("--image-side", type=int, default=448)
    parser.add_argument("--steps", type=int, default=4, help="rollout steps; the first is warm-up")
    parser.add_argument("--micro-batch", type=int, default=4)
    parser.add_argument("--updates", type=int, default=2, help="optimizer updates per rollout step")
    parser.add_argument("--gpu-memory-utilization", type=float, default=0.35)
    parser.add_argument("--cuda-graphs", action="store_true", help="let vLLM capture CUDA graphs (slower start)")
    parser.add_argument("--work-dir", default=None, help="default: a temporary folder, removed at the end")
    parser.add_argument("--json", default=None)
    parser.add_argument("--write-checkpoint", default=None, help=argparse.SUPPRESS)  # the child of step (1)
    parser.add_argument("overrides", nargs="*", help="extra k=v recipe overrides")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("bench/rl_step.py needs a CUDA GPU", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="rl_step_") as tmp:
        work = Path(args.work_dir or tmp)
        common = ["run.device=cuda", "model.tokenizer=null", "parallel.tensor_model_parallel_size=1",
                  f"model.hf_config={work / 'arch' / 'config.json'}", *args.overrides]
        if args.write_checkpoint:
            write_random_checkpoint(common, Path(args.write_checkpoint))
            return 0
        return run(args, work, common)


def run(args, work: Path, common: list[str]) -> int:
    from nemo_vtp.data.synth.world import WorldSpec, generate

    write_arch(work / "arch", args.layers)
    # 80% of the world is the train split; a few prompts to spare
    generate(WorldSpec(num=math.ceil(args.prompts * (args.steps + 1) / 0.8) + 8, image_size=args.image_side),
             work / "world")
    ckpt = work / "init"
    env = _child_env()
    subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=1", __file__,
                    "--write-checkpoint", str(ckpt), "--work-dir", str(work), *args.overrides],
                   check=True, env=env, cwd=ROOT)
    responses = args.prompts * args.group
    run_dir = work / "rl"
    rl = [f"run.output_dir={run_dir}", f"data.train_path={work / 'world' / 'train.jsonl'}", f"checkpoint.load={ckpt}",
          "checkpoint.save_interval=0", "checkpoint.save_at_end=false", "logging.progress_bar=false",
          "logging.tensorboard=false", f"rl.num_prompts={args.prompts}", f"generation.sampling.n={args.group}",
          f"rl.mini_batch_size={responses // args.updates}", f"rl.micro_batch_size={args.micro_batch}",
          f"rl.rollout_steps={args.steps}", "rl.dynamic_sampling.enabled=false", "rl.overlong_filter=false",
          f"generation.sampling.max_new_tokens={args.max_tokens}",
          f"rewards.overlong_cache_tokens={args.max_tokens // 4}",
          f"generation.vllm.gpu_memory_utilization={args.gpu_memory_utilization}",
          f"generation.vllm.enforce_eager={str(not args.cuda_graphs).lower()}", *common]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=1",
           "-m", "nemo_vtp.cli", "rl", str(RECIPE), *rl]
    print(" ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, env=env, cwd=ROOT)
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    rows = [r for r in rows if "rl/time/step_s" in r]
    lines = []
    for row in rows:
        lines.append(report("rl_step_row", step=row["step"], **{k: row.get(v) for k, v in PHASES.items()},
                            gen_tokens_per_s=row.get("rl/gen_tokens_per_s"),
                            response_length=row.get("rl/response_length_mean")))
    timed = rows[1:] or rows
    median = {k: round(statistics.median(r[v] for r in timed if v in r), 4) for k, v in PHASES.items()
              if any(v in r for r in timed)}
    tokens = responses * statistics.median(r["rl/response_length_mean"] for r in timed)
    rates = {}
    if "train_tokens" in median:  # prompt + response tokens through each pass (no padding counted)
        rates = {"old_logprob_tokens_per_s": round(median["train_tokens"] / median["old_logprob_s"]),
                 "update_tokens_per_s": round(median["train_tokens"] / median["update_s"])}  # ppo_epochs 1
    lines.append(report("rl_step", device=torch.cuda.get_device_name(), layers=args.layers, prompts=args.prompts,
                        group=args.group, max_tokens=args.max_tokens, image_side=args.image_side,
                        cuda_graphs=args.cuda_graphs, timed_steps=len(timed), **median,
                        response_tokens_per_step=round(tokens), **rates,
                        gen_tokens_per_s=round(statistics.median(r["rl/gen_tokens_per_s"] for r in timed))))
    if args.json:
        with open(args.json, "a") as f:
            f.writelines(json.dumps(line) + "\n" for line in lines)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
