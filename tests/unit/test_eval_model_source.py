"""What `eval.model_path` may name, and the conversion cache of Megatron checkpoints (the converter
itself is replaced by a fake here; tests/e2e/test_eval_checkpoint.py runs the real one)."""

import json
import os
import subprocess

import pytest

from nemo_vtp.eval import model_source
from nemo_vtp.eval.evaluate import claim_output_dir
from nemo_vtp.eval.model_source import resolve_model


@pytest.fixture
def converter(monkeypatch):
    """A fake `nemo-vtp convert megatron-to-hf`: writes config.json and an empty weights file; counts calls."""
    calls = []

    def fake_run(command, **kwargs):
        calls.append(command)
        # The child is no rank of the outer launch (torchrun's agent store would make it wait forever).
        assert not {"RANK", "WORLD_SIZE", "TORCHELASTIC_USE_AGENT_STORE"} & set(kwargs["env"])
        out = command[command.index("--out") + 1]
        os.makedirs(out)
        open(os.path.join(out, "config.json"), "w").write("{}")
        open(os.path.join(out, "model.safetensors"), "wb").close()
        return subprocess.CompletedProcess(command, 0, "", "")

    monkeypatch.setattr(model_source.subprocess, "run", fake_run)
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "1")
    monkeypatch.setenv("TORCHELASTIC_USE_AGENT_STORE", "True")
    return calls


def _save_dir(root, steps=(5,), old_names=False):
    """The trainer's save_dir: iter_<N> folders and Megatron-LM's tracker (with `old_names`: the step_<N>
    folders and `latest` file of runs saved before)."""
    for step in steps:
        folder = root / "ckpts" / (f"step_{step:07d}" if old_names else f"iter_{step:07d}")
        (folder / "hf").mkdir(parents=True)
        (folder / "metadata.json").write_text("{}")
    if old_names:
        (root / "ckpts" / "latest").write_text(f"step_{steps[-1]:07d}")
    else:
        (root / "ckpts" / "latest_checkpointed_iteration.txt").write_text(str(steps[-1]))
    return root / "ckpts"


def _tokenizer(root):
    (root / "tok").mkdir()
    (root / "tok" / "tokenizer.json").write_text("{}")
    (root / "tok" / "tokenizer_config.json").write_text("{}")
    return root / "tok"


def test_hf_folder_is_used_as_is(tmp_path, converter):
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "model.safetensors").write_bytes(b"")
    source = resolve_model(tmp_path, tmp_path / "cache", _tokenizer(tmp_path))
    assert (source.hf_dir, source.kind) == (tmp_path, "hf") and not converter


def test_checkpoint_is_converted_once_and_reconverted_when_it_changes(tmp_path, converter):
    save_dir, tok = _save_dir(tmp_path, steps=(5, 9)), _tokenizer(tmp_path)
    first = resolve_model(save_dir, tmp_path / "cache", tok)
    assert first.kind == "megatron" and first.origin == save_dir / "iter_0000009"  # what the tracker names
    assert first.hf_dir.parent == tmp_path / "cache" and first.hf_dir.name.startswith("iter_0000009-")
    assert (first.hf_dir / "tokenizer.json").is_file()  # the checkpoint has none: the fallback's are copied
    assert json.loads((first.hf_dir / "source.json").read_text())["tokenizer_from"] == str(tok)
    assert len(converter) == 1
    assert resolve_model(save_dir / "iter_0000009", tmp_path / "cache", tok) == first  # same step: cached
    assert len(converter) == 1
    other = resolve_model(save_dir / "iter_0000005", tmp_path / "cache", tok)
    assert other.hf_dir != first.hf_dir and len(converter) == 2
    meta = save_dir / "iter_0000009" / "metadata.json"
    os.utime(meta, ns=(meta.stat().st_atime_ns, meta.stat().st_mtime_ns + 10**9))  # the step was rewritten
    resolve_model(save_dir, tmp_path / "cache", tok)
    assert len(converter) == 3


def test_save_dir_of_a_run_with_old_step_names_is_found(tmp_path, converter):
    save_dir = _save_dir(tmp_path, steps=(5, 9), old_names=True)
    source = resolve_model(save_dir, tmp_path / "cache", _tokenizer(tmp_path))
    assert source.origin == save_dir / "step_0000009" and len(converter) == 1


def test_checkpoint_tokenizer_files_win_over_the_fallback(tmp_path, monkeypatch, converter):
    save_dir, tok = _save_dir(tmp_path), _tokenizer(tmp_path)

    def run_with_tokenizer(command, **kwargs):  # the real converter copies the checkpoint's hf/ side files
        out = command[command.index("--out") + 1]
        os.makedirs(out)
        for name in ("config.json", "model.safetensors", "tokenizer_config.json"):
            open(os.path.join(out, name), "w").write("{}")
        return subprocess.CompletedProcess(command, 0, "", "")

    monkeypatch.setattr(model_source.subprocess, "run", run_with_tokenizer)
    source = resolve_model(save_dir, tmp_path / "cache", tok)
    assert not (source.hf_dir / "tokenizer.json").exists()
    assert json.loads((source.hf_dir / "source.json").read_text())["tokenizer_from"].endswith("hf")


def test_a_failed_conversion_says_why(tmp_path, monkeypatch):
    monkeypatch.setattr(model_source.subprocess, "run",
                        lambda command, **kw: subprocess.CompletedProcess(command, 2, "", "error: bad shard"))
    with pytest.raises(RuntimeError, match="bad shard"):
        resolve_model(_save_dir(tmp_path), tmp_path / "cache", _tokenizer(tmp_path))
    assert not list((tmp_path / "cache").glob("iter_*"))  # nothing half-written looks converted


def test_other_ranks_wait_for_rank_zero(tmp_path, converter):
    save_dir, tok = _save_dir(tmp_path), _tokenizer(tmp_path)
    with pytest.raises(TimeoutError, match="rank 0"):
        resolve_model(save_dir, tmp_path / "cache", tok, rank=1, world_size=2, wait_s=0.01)
    done = resolve_model(save_dir, tmp_path / "cache", tok, rank=0, world_size=2)
    assert resolve_model(save_dir, tmp_path / "cache", tok, rank=1, world_size=2, wait_s=0.01) == done
    assert len(converter) == 1


@pytest.mark.parametrize("make, message", [
    (lambda p: p / "missing", "no such folder"),
    (lambda p: p, "neither an HF folder"),
    (lambda p: None, "eval.model_path is not set"),
])
def test_unusable_model_paths(tmp_path, make, message):
    with pytest.raises((ValueError, FileNotFoundError), match=message):
        resolve_model(make(tmp_path), tmp_path / "cache", tmp_path)


def test_an_output_folder_belongs_to_one_model(tmp_path):
    claim_output_dir(tmp_path, {"model_path": "/a"}, rank=0)
    claim_output_dir(tmp_path, {"model_path": "/a"}, rank=1)  # the same model resumes
    with pytest.raises(ValueError, match="holds the results of"):
        claim_output_dir(tmp_path, {"model_path": "/b"}, rank=0)


def test_rank_zero_converts_for_the_others_even_when_its_shard_is_done(tmp_path, converter):
    from nemo_vtp.config import load_config
    from nemo_vtp.eval.evaluate import evaluate
    from tests.conftest import ROOT

    fixtures = ROOT / "tests" / "fixtures" / "eval" / "synthetic"
    out = tmp_path / "out"
    cfg = load_config(ROOT / "recipes" / "eval" / "synthetic.yaml",
                      [f"eval.data_dir={fixtures}", f"eval.output_dir={out}", f"eval.model_path={_save_dir(tmp_path)}",
                       f"model.tokenizer={_tokenizer(tmp_path)}", "logging.progress_bar=false"])
    out.mkdir()
    (out / "samples.rank0.jsonl").write_text("".join(json.dumps({"id": i}) + "\n" for i in ("syn-0", "syn-2")))
    assert evaluate(cfg, rank=0, world_size=2) is None  # rank 1 (syn-1) has not run yet
    assert len(converter) == 1 and list((out / "model_hf").glob("iter_0000005-*/source.json"))
