#!/usr/bin/env bash
# One GPU session's checks and figures, after node.sh installed the stack. Run from the repository root.
# Usage: session.sh A..I OUT_DIR
#   A: versions, TE spec vs local spec, FP8 SFT curves (make test-gpu subset), bench/sft_mfu.py bf16 / FP8
#   B: vLLM tests (engine, Megatron refit, tiny RL end to end), bench/refit.py, bench/rollout.py
# Every item has its own time limit; logs go to OUT_DIR (a few files), a summary table is printed last.
set -uo pipefail
PART=${1:?A or B}; OUT=${2:?out dir}; mkdir -p "$OUT"
export PYTHONPATH=$PWD:$(bash scripts/gpu_node/node.sh pythonpath)
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 VLLM_NO_USAGE_STATS=1 VLLM_USE_FLASHINFER_SAMPLER=0
export TOKENIZERS_PARALLELISM=false NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
SUMMARY=$OUT/summary_$PART.txt; : > "$SUMMARY"
item() {  # item NAME SECONDS CMD... : run with a limit, log to OUT/PART.log, one summary line
  local name=$1 limit=$2; shift 2; local t=$(date +%s)
  echo "===== $name ($(date +%T), limit ${limit}s): $*" | tee -a "$OUT/$PART.log"
  timeout -k 10 "$limit" "$@" >> "$OUT/$PART.log" 2>&1; local rc=$?
  printf '%-34s rc=%-3s %4ss\n' "$name" "$rc" "$(( $(date +%s) - t ))" | tee -a "$SUMMARY"
  grep -h '^RESULT ' "$OUT/$PART.log" | tail -n +1 > "$OUT/results_$PART.jsonl"
}
versions() {
  { nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm --format=csv; python3 - <<'PY'
import importlib, torch
print("torch", torch.__version__, torch.version.cuda, torch.cuda.get_device_name())
for m in ("transformer_engine", "megatron.core", "vllm", "transformers", "pydantic", "omegaconf"):
    try:
        mod = importlib.import_module(m); print(m, getattr(mod, "__version__", "?"))
    except Exception as e:
        print(m, "IMPORT FAILED", type(e).__name__, e)
import megatron.core.package_info as p; print("megatron-core", p.__version__)
PY
  } > "$OUT/versions.txt" 2>&1; cat "$OUT/versions.txt"
}
PT="python3 -m pytest -q -s -m gpu -p no:cacheprovider"  # word-split on purpose
MFU="python3 bench/sft_mfu.py --grad-accum 8 --steps 5 --warmup 2"
case $PART in
  A)  # everything, first session
    versions
    item test_te_layer_spec 200 $PT tests/gpu/test_te_layer_spec.py
    item test_fp8_sft 260 $PT tests/gpu/test_fp8_sft.py
    for prec in bf16 fp8-delayed fp8-tensorwise; do item "sft_mfu_$prec" 110 $MFU --precision $prec --layers 6; done ;;
  B)
    item test_vllm_engine 150 $PT tests/gpu/test_vllm_engine.py
    item test_vllm_refit_megatron 240 $PT tests/gpu/test_vllm_refit_megatron.py
    item test_rl_vllm 190 $PT tests/gpu/test_rl_vllm.py
    item bench_refit 120 python3 bench/refit.py --engine vllm --shape 7b --bucket-mb 256,1024,0 --repeats 2
    item bench_rollout 150 python3 bench/rollout.py --shape 7b --prompts 32 --n 8 --max-tokens 256 --enforce-eager ;;
  C)  # second session: the tests that failed in the first, after fixes
    versions
    item test_vllm_engine 150 $PT tests/gpu/test_vllm_engine.py
    item test_vllm_refit_megatron 260 $PT tests/gpu/test_vllm_refit_megatron.py
    item test_rl_vllm 200 $PT tests/gpu/test_rl_vllm.py ;;
  D)  # second session: FP8 SFT test, rollout ratio, SFT MFU with kernel fusions and at 8 layers
    item test_fp8_sft 200 $PT tests/gpu/test_fp8_sft.py
    item bench_rollout 150 python3 bench/rollout.py --shape 7b --prompts 32 --n 8 --max-tokens 256 --enforce-eager
    item sft_mfu_bf16_fused 100 $MFU --precision bf16 --layers 6 --set model.kernel_fusions=true
    item sft_mfu_bf16_L8 110 $MFU --precision bf16 --layers 8
    item sft_mfu_fp8d_L8 110 $MFU --precision fp8-delayed --layers 8 ;;
  E)  # third session: optimizer-checkpoint layouts on GPU, external launcher, FP8 SFT curves, tiny RL
    for layout in fully_reshardable dp_reshardable; do
      item "ckpt_probe_$layout" 100 python3 scripts/gpu_node/ckpt_probe.py $layout /tmp/ckpt_$layout
    done
    item test_vllm_refit_external 120 $PT tests/gpu/test_vllm_refit_megatron.py -k external
    item test_fp8_sft 200 $PT tests/gpu/test_fp8_sft.py
    item test_rl_vllm 200 $PT tests/gpu/test_rl_vllm.py ;;
  F)  # fourth session: which condition breaks the distributed optimizer's checkpoint; tiny RL without it
    P="python3 scripts/gpu_node/ckpt_probe.py fully_reshardable"
    item ckpt_warmup0 60 $P /tmp/c1 optimizer.lr_warmup_steps=0
    item ckpt_te_pad16 60 $P /tmp/c2 model.transformer_impl=transformer_engine data.pad_to_multiple_of=16
    item ckpt_local 60 $P /tmp/c3 model.transformer_impl=local
    item ckpt_steps12 80 $P /tmp/c4 training.train_steps=12
    item test_rl_vllm 200 $PT tests/gpu/test_rl_vllm.py ;;
  G)  # fifth session (one H200): the bf16 fix for the optimizer checkpoint, the RL step by phase
    versions
    item test_rl_vllm 200 $PT tests/gpu/test_rl_vllm.py
    item bench_rl_step 330 python3 bench/rl_step.py --layers 8 --prompts 16 --group 8 --max-tokens 512 --steps 4 ;;
  H)  # fifth session (one H200): SFT MFU with rope fusion and TE weight-gradient accumulation fusion
    F="--set model.kernel_fusions=true"
    item sft_mfu_bf16_L8 110 $MFU --precision bf16 --layers 8
    item sft_mfu_bf16_L8_fused 110 $MFU --precision bf16 --layers 8 $F
    item sft_mfu_fp8d_L8_fused 120 $MFU --precision fp8-delayed --layers 8 $F
    item sft_mfu_fp8t_L8_fused 120 $MFU --precision fp8-tensorwise --layers 8 $F ;;
  I)  # two H200s: tensor parallelism 2 (SFT parity and resume, RL with vLLM TP=2)
    versions
    item test_tp2 420 $PT tests/gpu/test_tp2.py ;;
  K)  # two H200s: the full-depth 7B language model at TP=2, bf16 and FP8, kernel fusions on
    M2="torchrun --standalone --nproc-per-node 2 bench/sft_mfu.py --grad-accum 8 --steps 4 --warmup 2 --layers 28"
    T2="--set parallel.tensor_model_parallel_size=2 --set model.kernel_fusions=true"
    item sft_mfu_L28_tp2_bf16 180 $M2 --precision bf16 $T2
    item sft_mfu_L28_tp2_fp8d 180 $M2 --precision fp8-delayed $T2
    item sft_mfu_L28_tp2_sp_bf16 180 $M2 --precision bf16 $T2 --set parallel.sequence_parallel=true ;;
esac
echo "----- summary $PART"; cat "$SUMMARY"; grep -h '^RESULT ' "$OUT/$PART.log" | cut -c1-400
