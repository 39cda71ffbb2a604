"""The fault suite's own plumbing: the count line pytest prints comes from real outcomes."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_count_line_reports_handled_and_unhandled(tmp_path):
    # A throwaway suite under a folder named like ours: one case handled, one not.
    faults = tmp_path / "tests" / "faults"
    faults.mkdir(parents=True)
    (tmp_path / "tests" / "__init__.py").write_text("")
    (faults / "__init__.py").write_text("")
    (tmp_path / "tests" / "conftest.py").write_text((ROOT / "tests" / "conftest.py").read_text())
    (faults / "test_x.py").write_text("def test_ok():\n    pass\n\ndef test_bad():\n    raise ValueError('x')\n")
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"],
                         cwd=tmp_path, capture_output=True, text=True)
    assert "fault suite: 1 of 2 bad inputs and faults NOT handled" in run.stdout
    (faults / "test_x.py").write_text("def test_ok():\n    pass\n")
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"],
                         cwd=tmp_path, capture_output=True, text=True)
    assert "1 bad inputs and faults, all handled, nothing lost" in run.stdout, run.stdout
