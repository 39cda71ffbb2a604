"""The `nemo-vtp` entry point: --version, --help of the heavy stages without importing torch or Megatron,
the shipped recipes (list, copy), and constraints.txt against the running environment."""

import json
import subprocess
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import pytest

from nemo_vtp.cli import main
from nemo_vtp.config.loader import load_config
from nemo_vtp.recipe_files import copy_recipes, find_recipe, list_recipes

ROOT = Path(__file__).resolve().parents[2]


def test_version(capsys):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"nemo-vtp {version('nemo_vtp')}"


@pytest.mark.parametrize("argv", [["sft", "--help"], ["rl", "-h"], ["convert", "hf-to-megatron", "--help"],
                                  ["model", "tiny", "--help"]])
def test_help_imports_neither_torch_nor_megatron(argv):
    code = ("import json, sys; from nemo_vtp.cli import main\n"
            f"try:\n    rc = main({argv!r})\nexcept SystemExit as e:\n    rc = e.code\n"
            "print(json.dumps([rc, sorted(m for m in ('torch', 'megatron') if m in sys.modules)]))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    rc, heavy = json.loads(proc.stdout.strip().splitlines()[-1])
    assert rc == 0 and heavy == [] and "usage: nemo-vtp" in proc.stdout
    assert "Warning" not in proc.stderr


def test_recipes_list_names_every_recipe_file(capsys):
    assert main(["recipes", "list"]) == 0
    listed = capsys.readouterr().out.split()
    assert listed == list_recipes() and "recipes/tiny/sft.yaml" in listed
    assert all((ROOT / path).is_file() for path in listed) and len(listed) == len(list(ROOT.glob("recipes/*/*.yaml")))


def test_recipes_copy_keeps_the_defaults_chain_loadable(tmp_path):
    written = copy_recipes("recipes/rl/rl-qwen25vl-7b-vtp22k-1n8g-tp4.yaml", tmp_path)
    assert sorted(p.relative_to(tmp_path).as_posix() for p in written) == [
        "base/common.yaml", "base/rl.yaml", "rl/rl-qwen25vl-7b-vtp22k-1n8g-tp4.yaml"]
    copied = load_config(tmp_path / "rl" / "rl-qwen25vl-7b-vtp22k-1n8g-tp4.yaml")
    assert copied == load_config(ROOT / "recipes" / "rl" / "rl-qwen25vl-7b-vtp22k-1n8g-tp4.yaml")
    assert copy_recipes("rl/rl-qwen25vl-7b-vtp22k-1n8g-tp4", tmp_path) == []  # nothing overwritten
    with pytest.raises(FileNotFoundError, match="recipes list"):
        copy_recipes("sft/none", tmp_path)


def test_a_recipes_path_outside_a_checkout_reads_the_shipped_copy(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert find_recipe("recipes/tiny/sft.yaml") == ROOT / "recipes" / "tiny" / "sft.yaml"
    (tmp_path / "recipes").mkdir()
    (tmp_path / "recipes" / "mine.yaml").write_text("run: {name: x}\n")
    assert find_recipe("recipes/mine.yaml") == Path("recipes/mine.yaml")  # the working directory's wins
    assert find_recipe("elsewhere/sft.yaml") == Path("elsewhere/sft.yaml")


def test_constraints_pin_what_this_environment_runs():
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, pinned = line.partition("==")
            assert pinned, f"constraints.txt: {line!r} is not NAME==VERSION"
            pins[name.lower().replace("_", "-")] = pinned
    assert "torch" not in pins and not any(n.startswith("nemo") for n in pins)
    for name in ("transformers", "megatron-core", "huggingface-hub", "pydantic"):
        try:
            assert pins[name] == version(name), name
        except PackageNotFoundError:
            pytest.fail(f"{name} is pinned but not installed")
