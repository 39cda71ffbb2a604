"""Installed use: a wheel built from the sources, installed into a fresh venv, run from a folder that is not
a checkout. The venv sees the project venv's packages through a .pth line (nothing is downloaded) and
imports nemo_vtp from the wheel only (no PYTHONPATH)."""

from __future__ import annotations

import os
import shutil
import site
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _run(args: list, cwd: Path, timeout: int = 120) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    proc = subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{args}: {proc.stdout[-2000:]}{proc.stderr[-3000:]}"
    return proc


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(python of the fresh venv, an empty working folder outside the checkout)."""
    tmp = tmp_path_factory.mktemp("install")
    src = tmp / "src"  # building writes build/ next to setup.py: keep it out of the checkout
    src.mkdir()
    for name in ("setup.py", "README.md"):
        shutil.copy(ROOT / name, src / name)
    ignore = shutil.ignore_patterns("__pycache__", "tokenizer")
    for name in ("nemo_vtp", "recipes"):
        shutil.copytree(ROOT / name, src / name, ignore=ignore)
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", tmp / "wheels", src],
         cwd=tmp)
    wheel = next((tmp / "wheels").glob("nemo_vtp-*.whl"))
    _run([sys.executable, "-m", "venv", "--without-pip", tmp / "venv"], cwd=tmp)
    python = tmp / "venv" / "bin" / "python"
    purelib = Path(_run([python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"], cwd=tmp).stdout.strip())
    (purelib / "project_venv.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    _run([sys.executable, "-m", "pip", "--python", python, "install", "-q", "--no-deps", "--no-index", wheel], cwd=tmp)
    work = tmp / "work"
    work.mkdir()
    return python, work


def test_wheel_ships_the_recipes_and_runs_outside_a_checkout(installed):
    python, work = installed
    where = _run([python, "-c", "import nemo_vtp; print(nemo_vtp.__file__)"], cwd=work).stdout
    assert str(ROOT) not in where and "site-packages" in where  # the wheel's copy, not the checkout's
    nemo_vtp = python.parent / "nemo-vtp"
    listed = _run([nemo_vtp, "recipes", "list"], cwd=work).stdout.split()
    shipped = sorted(f"recipes/{p.relative_to(ROOT / 'recipes').as_posix()}" for p in (ROOT / "recipes").rglob("*.yaml"))
    assert listed == shipped
    assert _run([nemo_vtp, "--version"], cwd=work).stdout.strip() == "nemo-vtp 0.1.0"
    assert "usage: nemo-vtp demo" in _run([nemo_vtp, "demo", "--help"], cwd=work).stdout
    # A recipe named as the docs name it resolves to the shipped copy, `defaults:` included.
    shown = _run([nemo_vtp, "config", "show", "recipes/tiny/sft.yaml"], cwd=work).stdout
    assert "name: tiny-sft" in shown
    _run([nemo_vtp, "recipes", "copy", "sft/sft-qwen25vl-7b-vtp12k-1n8g-tp2", "mine"], cwd=work)
    copied = sorted(p.relative_to(work / "mine").as_posix() for p in (work / "mine").rglob("*.yaml"))
    assert copied == ["base/common.yaml", "base/sft.yaml", "sft/sft-qwen25vl-7b-vtp12k-1n8g-tp2.yaml"]
    shown = _run([nemo_vtp, "config", "show", "mine/sft/sft-qwen25vl-7b-vtp12k-1n8g-tp2.yaml"], cwd=work).stdout
    assert "sft-qwen25vl-7b-vtp12k" in shown
