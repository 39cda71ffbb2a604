"""`nemo-vtp model tiny` writes a folder that converts: here written into a hand-laid HF cache and converted
by its Hugging Face id, offline, as docs/conversion.md starts."""

import json
import subprocess
import sys

from nemo_vtp.cli import main
from tests.e2e.stages import ROOT, env
from tests.unit.test_model_hub import lay_out_cache


def _cli(*args, extra_env=None, cwd=ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "nemo_vtp.cli", *map(str, args)], env={**env(), **(extra_env or {})},
                          cwd=cwd, capture_output=True, text=True, timeout=300)


def test_tiny_model_converts_by_hub_id_offline(tmp_path):
    snapshot = lay_out_cache(tmp_path / "hub", "tiny-org/tiny-qwen25vl")
    assert main(["model", "tiny", "--out", str(snapshot)]) == 0
    config = json.loads((snapshot / "config.json").read_text())
    assert config["model_type"] == "qwen2_5_vl" and (snapshot / "model.safetensors").is_file()
    assert main(["model", "tiny", "--out", str(snapshot)]) == 2  # never overwrites a model

    hub = {"HF_HUB_CACHE": str(tmp_path / "hub"), "HF_HUB_OFFLINE": "1"}
    done = _cli("convert", "hf-to-megatron", "--hf-dir", "tiny-org/tiny-qwen25vl", "--out", tmp_path / "mcore",
                extra_env=hub)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "mcore" / "metadata.json").is_file()
    converted = json.loads((tmp_path / "mcore" / "hf" / "config.json").read_text())
    assert converted["vocab_size"] == config["text_config"]["vocab_size"]
