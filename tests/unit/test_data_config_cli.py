"""The `data:` recipe section and the `nemo-vtp data synth` command."""

import json

import pytest
from pydantic import ValidationError

from nemo_vtp.cli import main as cli_main
from nemo_vtp.config import RecipeConfig
from nemo_vtp.config.data import DataConfig
from nemo_vtp.data.processor import processor_from_config
from nemo_vtp.data.tokenizer import load_tokenizer


def test_data_section_defaults_and_validation():
    cfg = RecipeConfig()
    assert cfg.data.train_path is None and cfg.data.synth.levels == [1, 2, 3]
    with pytest.raises(ValidationError, match="levels"):
        DataConfig(synth={"levels": [4]})
    assert cfg.data.synth.families == ["shapes", "bars", "digits", "clock", "ruler"]
    with pytest.raises(ValidationError, match=r"families.0\s+Input should be 'shapes', 'bars'"):
        DataConfig(synth={"families": ["shape"]})
    with pytest.raises(ValidationError, match="families"):
        DataConfig(synth={"families": []})
    with pytest.raises(ValidationError, match="max_sequence"):
        DataConfig(max_sequence=10)
    proc = processor_from_config(DataConfig(max_pixels=28 * 28 * 16, instruction="Use the three tags."),
                                 load_tokenizer())
    assert proc.vision.max_pixels == 28 * 28 * 16 and proc.instruction == "Use the three tags."


def test_cli_synth_writes_splits(tmp_path, capsys):
    assert cli_main(["data", "synth", "--out", str(tmp_path), "--num", "20", "--seed", "5", "--levels", "2"]) == 0
    assert "wrote 20 samples" in capsys.readouterr().out
    rows = [json.loads(line) for s in ("train", "val", "test")
            for line in (tmp_path / f"{s}.jsonl").read_text().splitlines()]
    assert len(rows) == 20 and {r["meta"]["level"] for r in rows} == {2}
    assert json.loads((tmp_path / "world.json").read_text())["splits"] == {"train": 16, "val": 2, "test": 2}
    assert cli_main(["data", "nope"]) == 2


def test_cli_synth_families(tmp_path, capsys):
    assert cli_main(["data", "synth", "--out", str(tmp_path), "--num", "12", "--families", "clock", "ruler"]) == 0
    rows = [json.loads(line) for s in ("train", "val", "test")
            for line in (tmp_path / f"{s}.jsonl").read_text().splitlines()]
    assert {r["meta"]["family"] for r in rows} == {"clock", "ruler"}
    assert json.loads((tmp_path / "world.json").read_text())["families"] == ["clock", "ruler"]


def test_a_run_refuses_a_synthetic_world_that_data_synth_does_not_describe(tmp_path):
    from nemo_vtp.training.data import ensure_synthetic_world

    def recipe(**synth):
        return RecipeConfig(run={"output_dir": str(tmp_path)}, data={"synth": {"num": 6, **synth}})

    world = ensure_synthetic_world(recipe(families=["shapes"], levels=[1]))
    assert (world / "world.json").is_file()
    assert ensure_synthetic_world(recipe(families=["shapes"], levels=[1])) == world  # the same world: reused
    with pytest.raises(ValueError, match=r"families: .*world.json has \['shapes'\]"):
        ensure_synthetic_world(recipe(levels=[1]))
