"""Model folders named by a local path or by a Hugging Face id ("Qwen/Qwen2.5-VL-7B-Instruct").

An id is resolved through huggingface_hub's cache (HF_HUB_CACHE, default ~/.cache/huggingface/hub:
`models--ORG--NAME/refs/main` names the snapshot `models--ORG--NAME/snapshots/<revision>/`) without
touching the network, so it works offline once the files are there. Nothing is downloaded here: a
model that is not cached gives an error with the command that downloads it. Imports no torch.
"""

from __future__ import annotations

import re
from pathlib import Path

# ORG/NAME as the Hub spells repository ids (letters, digits, `-`, `_`, `.`; no leading `.` or `-`).
_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")


def is_hub_id(name: str | Path) -> bool:
    """True for text shaped like a Hub id ("org/name") that is not an existing local path.

    >>> is_hub_id("Qwen/Qwen2.5-VL-7B-Instruct"), is_hub_id("/models/Qwen2.5-VL-7B-Instruct"), is_hub_id("runs")
    (True, False, False)
    """
    text = str(name)
    return bool(_HUB_ID.match(text)) and ".." not in text and not Path(text).exists()


def download_hint(repo_id: str) -> str:
    """The commands that put `repo_id` into the cache (huggingface_hub >= 0.34 has `hf`, older ones `huggingface-cli`)."""
    return f"hf download {repo_id}  (older huggingface_hub: huggingface-cli download {repo_id})"


def resolve_model_dir(name: str | Path, what: str = "model") -> Path:
    """The local folder for `name`: the path itself when it exists, else the cached snapshot of the Hub id.

    Raises FileNotFoundError naming `what` (e.g. "--hf-dir") for a missing path, and for an id that is
    not in the cache (with the download command).
    """
    path = Path(name)
    if path.exists():
        return path
    if not is_hub_id(name):
        raise FileNotFoundError(f"{what}={name}: no such folder (and not a Hugging Face id of the form ORG/NAME)")
    from huggingface_hub import snapshot_download
    from huggingface_hub.constants import HF_HUB_CACHE
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        return Path(snapshot_download(repo_id=str(name), local_files_only=True))
    except LocalEntryNotFoundError:
        raise FileNotFoundError(f"{what}={name}: not a local folder, and the Hugging Face id is not in the cache "
                                f"({HF_HUB_CACHE}). Download it first: {download_hint(str(name))}") from None
