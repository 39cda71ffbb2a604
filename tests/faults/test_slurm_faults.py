"""The Slurm launch with `nemo-vtp` installed in a venv whose path is too long for a shebang line:
pip then writes a `#!/bin/sh` entry point, and the launcher must still find the venv's python and
run `python -m nemo_vtp.cli` with it (no cluster needed: slurm/common.sh's own function)."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# What pip writes when the interpreter's path is over 127 characters (the kernel's shebang limit).
LONG_PATH_ENTRY = """#!/bin/sh
'''exec' "{python}" "$0" "$@"
' '''
import sys
from nemo_vtp.cli import main
sys.exit(main())
"""


def test_long_venv_path_runs_the_venvs_python(tmp_path):
    venv_bin = tmp_path / ("v" * 60) / ("e" * 60) / "venv" / "bin"
    venv_bin.mkdir(parents=True)
    python = venv_bin / "python"
    python.symlink_to(sys.executable)
    assert len(str(python)) > 127
    entry = venv_bin / "nemo-vtp"
    entry.write_text(LONG_PATH_ENTRY.format(python=python))
    entry.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k not in ("NEMO_VTP_PYTHON", "NEMO_VTP_CONTAINER_IMAGE")}
    env.update(PATH=f"{venv_bin}:{env['PATH']}", PYTHONPATH=str(ROOT))
    # The checkout given has no .venv, so the python behind `nemo-vtp` on PATH is the one chosen.
    script = f'source "{ROOT}/slurm/common.sh"; py=$(nemo_vtp_python "{tmp_path}"); echo "$py"; "$py" -m nemo_vtp.cli'
    out = subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True, timeout=60)
    chosen, *usage = out.stdout.splitlines()
    assert chosen == str(python), out.stdout  # the shebang-line reading gave "/bin/sh" here
    assert out.returncode == 2 and usage[0].startswith("usage: nemo-vtp "), out.stderr
