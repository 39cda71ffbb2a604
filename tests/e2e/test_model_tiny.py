"""`nemo-vtp model tiny` writes a folder that converts: here written into a hand-laid HF cache and converted
by its Hugging Face id, offline, as docs/conversion.md starts."""

import json

from nemo_vtp.cli import main
from tests.unit.test_model_hub import lay_out_cache


def test_tiny_model_converts_by_hub_id_offline(tmp_path, monkeypatch):
    snapshot = lay_out_cache(tmp_path / "hub", "tiny-org/tiny-qwen25vl")
    assert main(["model", "tiny", "--out", str(snapshot)]) == 0
    config = json.loads((snapshot / "config.json").read_text())
    assert config["model_type"] == "qwen2_5_vl" and (snapshot / "model.safetensors").is_file()
    assert main(["model", "tiny", "--out", str(snapshot)]) == 2  # never overwrites a model

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "hub"))
    assert main(["convert", "hf-to-megatron", "--hf-dir", "tiny-org/tiny-qwen25vl", "--out",
                 str(tmp_path / "mcore")]) == 0
    assert (tmp_path / "mcore" / "metadata.json").is_file()
    converted = json.loads((tmp_path / "mcore" / "hf" / "config.json").read_text())
    assert converted["vocab_size"] == config["text_config"]["vocab_size"]
