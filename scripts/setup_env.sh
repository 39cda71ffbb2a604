#!/usr/bin/env bash
# Create the virtual environment and install nemo_vtp into it.
# torch: reuse one the machine already has; on a machine without a GPU install the CPU build
# torch==2.13.0 (never an unpinned torch, which would pull a multi-GB CUDA build).
set -euo pipefail
venv=${1:-.venv}
python=${PYTHON:-python3}

if "$python" -c "import torch" 2>/dev/null; then
    echo "[setup] reusing the machine's torch $("$python" -c 'import torch; print(torch.__version__)')"
    "$python" -m venv --system-site-packages "$venv"
else
    "$python" -m venv "$venv"
fi
pip=("$venv/bin/python" -m pip install --disable-pip-version-check -q)
"${pip[@]}" --upgrade pip setuptools wheel >/dev/null

if ! "$venv/bin/python" -c "import torch" 2>/dev/null; then
    if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
        echo "[setup] GPU found: installing the default torch build"
        "${pip[@]}" torch
    else
        echo "[setup] no GPU: installing the CPU build torch==2.13.0"
        "${pip[@]}" torch==2.13.0
    fi
fi
# constraints.txt: the versions CI ran, so a fresh install gets the same transformers, megatron-core, ...
"${pip[@]}" -c constraints.txt -e ".[dev]"
echo "[setup] done: $("$venv/bin/python" -c 'import torch, megatron.core, transformers; print("torch", torch.__version__, "| megatron-core", megatron.core.__version__, "| transformers", transformers.__version__)')"
