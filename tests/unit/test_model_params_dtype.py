"""Every parameter of a bf16 model is bf16, local layer spec included (its torch norms ignore params_dtype).

Megatron's mixed-precision optimizers index their checkpointed state by the bf16 parameters alone: one
float32 norm among them put every later optimizer state onto the wrong tensor when it was saved.
"""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = """
import json, sys
from nemo_vtp.config import load_config
from nemo_vtp.parallel import initialize
from nemo_vtp.training.policy import build_policy

cfg = load_config("recipes/tiny/sft.yaml", ["model.params_dtype=bfloat16", "run.output_dir=" + sys.argv[1]])
policy = build_policy(cfg, initialize(cfg.parallel, 0, "cpu"), total_steps=1, trainable=False)
params = dict(policy.chunks[0].named_parameters())
print(json.dumps({"count": len(params), "dtypes": {n: str(p.dtype) for n, p in params.items()}}))
"""


def test_bf16_tiny_model_has_only_bf16_parameters(tmp_path):
    out = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path)], cwd=ROOT, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert any(".input_layernorm." in name for name in result["dtypes"]), "the local spec's norms are missing"
    wrong = {n: d for n, d in result["dtypes"].items() if d != "torch.bfloat16"}
    assert result["count"] > 50 and not wrong, wrong
