"""Bad recipes and overrides: each is one ConfigError naming the file:line or the override, found
fast (an alias bomb does not get to expand), and the CLI prints it as one line."""

import time
from pathlib import Path

import pytest

from nemo_vtp.config import ConfigError, load_config
from nemo_vtp.config.cli import main as config_main

ROOT = Path(__file__).resolve().parents[2]
RECIPE = ROOT / "recipes/tiny/sft.yaml"

ALIAS_BOMB = "\n".join(["a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]"] + [
    f"{b}: &{b} [{', '.join([f'*{a}'] * 9)}]" for a, b in zip("abcdefgh", "bcdefghi")])


def _load_error(path, overrides=()) -> str:
    start = time.monotonic()
    with pytest.raises(ConfigError) as info:
        load_config(path, list(overrides))
    assert time.monotonic() - start < 10.0  # refused, not expanded (it used to run for minutes)
    return str(info.value)


BAD_OVERRIDES = {
    "unclosed list": ("optimizer.lr=[1,", "command line `optimizer.lr=[1,`: cannot parse the value '[1,'"),
    "unclosed quote": ("run.name='abc", "command line `run.name='abc`: cannot parse the value"),
    "broken interpolation": ("run.name=${", "command line `run.name=${`: cannot parse the value"),
    "alias bomb in a value": ("run.tags=[&a [1,1,1,1,1,1,1,1,1], &b [*a,*a,*a,*a,*a,*a,*a,*a,*a], "
                              "&c [*b,*b,*b,*b,*b,*b,*b,*b,*b], &d [*c,*c,*c,*c,*c,*c,*c,*c,*c], "
                              "&e [*d,*d,*d,*d,*d,*d,*d,*d,*d]]", "command line `run.tags="),
    "empty key part": (".a=1", "override '.a=1' has an empty key"),
    "unknown key": ("foo.bar=1", "command line `foo.bar=1`: unknown key 'foo' in top level"),
    "unknown nested key": ("optimizer.lrr=1", "command line `optimizer.lrr=1`: unknown key 'optimizer.lrr'"),
    "missing environment variable": ("run.name=${oc.env:NEMO_VTP_NO_SUCH_VARIABLE}",
                                     "command line `run.name=${oc.env:NEMO_VTP_NO_SUCH_VARIABLE}`: run.name: "
                                     "cannot resolve interpolation"),
}


@pytest.mark.parametrize("override,message", BAD_OVERRIDES.values(), ids=BAD_OVERRIDES.keys())
def test_bad_override_names_the_override(override, message):
    error = _load_error(RECIPE, [override])
    assert message in error and "<schema default>" not in error, error


BAD_FILES = {
    "non-UTF-8 byte": (b"run:\n  name: caf\xe9\n", r"bad.yaml:2: not UTF-8"),
    "alias bomb": (ALIAS_BOMB.encode(), r"bad.yaml: more than 100,000 values once its YAML aliases expand"),
    "recursive alias": (b"a: &a [*a]\n", r"bad.yaml: more than 100,000 values"),
    "deep nesting": (b"a: " + b"[" * 1000 + b"]" * 1000 + b"\n", r"bad.yaml: invalid YAML: nested too deeply"),
    "syntax error": (b"run:\n  name: [x\n", r"bad.yaml:3: invalid YAML"),
}


@pytest.mark.parametrize("text,message", BAD_FILES.values(), ids=BAD_FILES.keys())
def test_bad_recipe_file_names_file_and_line(tmp_path, text, message):
    (tmp_path / "bad.yaml").write_bytes(text)
    error = _load_error(tmp_path / "bad.yaml")
    assert message in error, error


def test_bad_inherited_file_is_named(tmp_path):
    (tmp_path / "base.yaml").write_bytes(b"optimizer:\n  lr: 1e-5\nrun:\n  name: \xff\n")
    (tmp_path / "leaf.yaml").write_text("defaults: [base.yaml]\noptimizer:\n  lr: 2e-5\n")
    error = _load_error(tmp_path / "leaf.yaml")
    assert "base.yaml:4: not UTF-8" in error, error


def test_cli_prints_one_error_line(capsys):
    assert config_main(["show", str(RECIPE), "optimizer.lr=[1,"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: command line `optimizer.lr=[1,`: cannot parse") and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
