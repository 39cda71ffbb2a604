"""Bad inputs on the user's path: `data mix` sources and the data engine's output folder."""

import json

import pytest

from nemo_vtp.data.cli import main as data_main
from nemo_vtp.data.io import write_samples
from nemo_vtp.data.runner import Outcome, run_samples
from nemo_vtp.data.schema import Sample


def _samples(n):
    return [Sample(id=f"s{k}", source="t", images=[], question=f"q{k}", answer="1") for k in range(n)]


def test_mix_source_with_too_few_samples_gives_all_and_reports_short(tmp_path, capsys):
    write_samples(tmp_path / "a.jsonl", _samples(3))
    assert data_main(["mix", f"{tmp_path / 'a.jsonl'}=10", "--out", str(tmp_path / "out")]) == 0
    source = json.loads((tmp_path / "out" / "mix.json").read_text())["sources"][0]
    assert (source["asked"], source["taken"], source["short"]) == (10, 3, 7)
    assert "SHORT by 7" in capsys.readouterr().out


@pytest.mark.parametrize("spec, message", [("a.jsonl=0", "at least 1"), ("a.jsonl=1.5", "(0, 1]"),
                                           ("a.jsonl=lots", "PATH=COUNT"), ("missing.jsonl", "file not found")])
def test_mix_bad_source_is_refused_with_a_reason(tmp_path, capsys, monkeypatch, spec, message):
    monkeypatch.chdir(tmp_path)
    write_samples(tmp_path / "a.jsonl", _samples(2))
    assert data_main(["mix", spec, "--out", "out"]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out" / "train.jsonl").exists()


def test_mix_bad_rows_are_skipped_and_counted(tmp_path):
    lines = [json.dumps(s.to_dict()) for s in _samples(2)] + ['{"id": "x", "sour', '{"id": "y"}']
    (tmp_path / "a.jsonl").write_text("\n".join(lines) + "\n")
    assert data_main(["mix", str(tmp_path / "a.jsonl"), "--out", str(tmp_path / "out")]) == 0
    source = json.loads((tmp_path / "out" / "mix.json").read_text())["sources"][0]
    assert source["taken"] == 2 and source["skipped_on_read"] == {"malformed JSON": 1, "missing field": 1}


def test_data_engine_refuses_to_overwrite_its_input(tmp_path):
    write_samples(tmp_path / "train.jsonl", _samples(2))
    with pytest.raises(ValueError, match="would overwrite the input"):
        run_samples(_samples(2), lambda s: Outcome("kept", sample=s), command="t",
                    input_path=tmp_path / "train.jsonl", out_dir=tmp_path, progress=False)
    assert len((tmp_path / "train.jsonl").read_text().splitlines()) == 2


def test_uncached_hub_id_for_the_tokenizer_names_the_download_command(tmp_path, monkeypatch):
    from nemo_vtp.data.tokenizer import load_tokenizer

    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    with pytest.raises(FileNotFoundError, match="hf download Qwen/Qwen2.5-VL-7B-Instruct"):
        load_tokenizer("Qwen/Qwen2.5-VL-7B-Instruct")


def test_model_tiny_never_writes_into_a_non_empty_folder(tmp_path, capsys):
    (tmp_path / "keep.txt").write_text("mine")
    from nemo_vtp.cli import main

    assert main(["model", "tiny", "--out", str(tmp_path)]) == 2
    assert "not empty" in capsys.readouterr().err and sorted(p.name for p in tmp_path.iterdir()) == ["keep.txt"]


def test_recipes_copy_of_an_unknown_recipe_exits_2(tmp_path, capsys):
    from nemo_vtp.cli import main

    assert main(["recipes", "copy", "sft/no-such-recipe", str(tmp_path / "out")]) == 2
    assert "nemo-vtp recipes list" in capsys.readouterr().err and not (tmp_path / "out").exists()
