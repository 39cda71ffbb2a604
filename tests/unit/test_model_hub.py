"""Models named by a Hugging Face id resolve through a hand-laid HF cache, offline; a missing one says how to
download it. The cache layout is huggingface_hub's: models--ORG--NAME/{refs/main, snapshots/<rev>/...}."""

from pathlib import Path

import pytest

from nemo_vtp.models.hub import is_hub_id, resolve_model_dir

REVISION = "0123456789abcdef0123456789abcdef01234567"


def lay_out_cache(cache: Path, repo_id: str) -> Path:
    """An empty snapshot folder of `repo_id` in an HF hub cache, with refs/main naming it."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / REVISION
    snapshot.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(REVISION)
    return snapshot


@pytest.fixture
def hub_cache(tmp_path, monkeypatch):
    cache = tmp_path / "hub"
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(cache))  # read at import time
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    return cache


def test_cached_id_resolves_to_its_snapshot(hub_cache):
    snapshot = lay_out_cache(hub_cache, "tiny-org/tiny-qwen")
    (snapshot / "config.json").write_text("{}")
    assert resolve_model_dir("tiny-org/tiny-qwen") == snapshot


def test_missing_id_names_both_download_commands(hub_cache):
    with pytest.raises(FileNotFoundError) as err:
        resolve_model_dir("Qwen/Qwen2.5-VL-7B-Instruct", "--hf-dir")
    text = str(err.value)
    assert "hf download Qwen/Qwen2.5-VL-7B-Instruct" in text
    assert "huggingface-cli download Qwen/Qwen2.5-VL-7B-Instruct" in text and str(hub_cache) in text


def test_local_folder_wins_and_a_missing_path_is_not_an_id(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "org" / "name").mkdir(parents=True)
    assert resolve_model_dir("org/name") == Path("org/name") and not is_hub_id("org/name")
    with pytest.raises(FileNotFoundError, match="no such folder"):
        resolve_model_dir("/models/none/Qwen2.5-VL-7B-Instruct")


def test_tokenizer_and_eval_model_path_accept_an_id(hub_cache, tmp_path):
    from nemo_vtp.data.tokenizer import load_tokenizer
    from nemo_vtp.eval.model_source import resolve_model
    from nemo_vtp.models.qwen25_vl.tiny import make_tokenizer

    snapshot = lay_out_cache(hub_cache, "tiny-org/tiny-qwen")
    make_tokenizer().save_pretrained(snapshot)
    (snapshot / "config.json").write_text("{}")
    (snapshot / "model.safetensors").write_bytes(b"")
    assert load_tokenizer("tiny-org/tiny-qwen").convert_tokens_to_ids("<|image_pad|>") is not None
    source = resolve_model("tiny-org/tiny-qwen", tmp_path / "cache", snapshot)
    assert (source.kind, source.hf_dir) == ("hf", snapshot)


def test_convert_with_an_uncached_id_exits_2_with_the_download_command(hub_cache, capsys):
    from nemo_vtp.cli import main

    assert main(["convert", "hf-to-megatron", "--hf-dir", "Qwen/Qwen2.5-VL-7B-Instruct", "--out", "x"]) == 2
    assert "hf download Qwen/Qwen2.5-VL-7B-Instruct" in capsys.readouterr().err
