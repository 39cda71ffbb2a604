"""Shared test fixtures and markers."""

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RECIPES = ROOT / "recipes"

# Tests must never reach a model hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


_FAULT_OUTCOMES: dict[str, str] = {}


def pytest_configure(config):
    config.addinivalue_line("markers", "gpu: needs a CUDA GPU (skipped cleanly without one)")
    config.addinivalue_line("markers", "slow: takes more than a few seconds")


def pytest_runtest_logreport(report):
    """Record the outcome of each case of the fault suite (tests/faults/)."""
    if not report.nodeid.startswith("tests/faults/"):
        return
    outcomes = _FAULT_OUTCOMES
    if report.failed or report.when == "call" or (report.when == "setup" and report.skipped):
        outcomes[report.nodeid] = "passed" if report.passed else ("skipped" if report.skipped else "failed")


def pytest_terminal_summary(terminalreporter):
    """Print the fault suite's count: every case is one bad input or fault that must be handled."""
    outcomes = _FAULT_OUTCOMES
    if not outcomes:
        return
    failed = sorted(k for k, v in outcomes.items() if v == "failed")
    handled = sum(v == "passed" for v in outcomes.values())
    if failed:
        terminalreporter.write_line(f"fault suite: {len(failed)} of {len(outcomes)} bad inputs and faults NOT handled:")
        for nodeid in failed:
            terminalreporter.write_line(f"  {nodeid}")
    else:
        terminalreporter.write_line(f"{handled} bad inputs and faults, all handled, nothing lost")


def pytest_collection_modifyitems(config, items):
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        # the marker, not `"gpu" in item.keywords`: keywords also hold folder names (a checkout named gpu)
        if item.get_closest_marker("gpu") is not None:
            item.add_marker(skip)


@pytest.fixture
def repo_root() -> Path:
    return ROOT
