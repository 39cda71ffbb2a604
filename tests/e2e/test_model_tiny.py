"""`nemo-vtp model tiny` writes a folder that converts: here written into a hand-laid HF cache and converted
by its Hugging Face id, offline, as docs/conversion.md starts."""

import json
import subprocess
import sys

from nemo_vtp.cli import main
from tests.e2e.stages import ROOT, env
from tests.unit.test_model_hub import lay_out_cache


def test_tiny_model_converts_by_hub_id_offline(tmp_path):
    snapshot = lay_out_cache(tmp_path / "hub", "tiny-org/tiny-qwen25vl")
    assert main(["model", "tiny", "--out", str(snapshot)]) == 0
    config = json.loads((snapshot / "config.json").read_text())
    assert config["model_type"] == "qwen2_5_vl" and (snapshot / "model.safetensors").is_file()
    assert main(["model", "tiny", "--out", str(snapshot)]) == 2  # never overwrites a model

    # A process of its own, as a user runs it: the conversion sets up torch.distributed, which must not
    # stay behind in the test process (its store's port would be inherited by every later run).
    proc = subprocess.run([sys.executable, "-m", "nemo_vtp.cli", "convert", "hf-to-megatron", "--hf-dir",
                           "tiny-org/tiny-qwen25vl", "--out", str(tmp_path / "mcore")],
                          env={**env(), "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path / "hub")},
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / "mcore" / "metadata.json").is_file()
    converted = json.loads((tmp_path / "mcore" / "hf" / "config.json").read_text())
    assert converted["vocab_size"] == config["text_config"]["vocab_size"]
