"""What the source converters share: reading records from JSON / JSONL / Parquet, resolving or
writing images, and pulling tagged sections out of response text."""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nemo_vtp.data.io import DataError, decode_json, iter_jsonl, outside_root, path_under
from nemo_vtp.data.schema import FieldError

IMAGE_PLACEHOLDER_RE = re.compile(r"<image>\s*|<image_\d+>\s*|<image \d+>\s*")
BOXED_RE = re.compile(r"\\boxed\{")


@dataclass
class ConvertContext:
    """Where a conversion reads and writes."""

    in_path: Path  # the source file (or folder for folder-per-sample layouts)
    out_dir: Path  # the folder of the output JSONL; image paths are written relative to it
    image_root: Path  # the folder source image paths are relative to
    source: str  # our source name, e.g. "llava_cot"
    root: Path | None = None  # the dataset root source images must stay inside; None: image_root
    allow_outside_root: bool = False  # accept absolute and `..` source image paths (written as they resolve)

    def image_path(self, value: Any, sample_id: str, k: int, field: str = "images") -> str:
        """One source image (a path string, {"bytes", "path"} dict, or raw bytes) -> path relative to out_dir.

        Embedded bytes are written to out_dir/images/<source>/ under a content-hash name. A source
        path must stay inside the dataset root (no absolute path, no `..` part) unless
        `allow_outside_root`; when the root lies outside out_dir, the written path goes through one
        link to it (out_dir/image_roots/<source>-<hash>), so the output holds no `..` either.
        """
        if isinstance(value, dict):
            data = value.get("bytes")
            if data is not None and not isinstance(data, (bytes, bytearray)):
                raise FieldError(f"{field}[{k}].bytes", f"expected bytes, got {type(data).__name__}")
            if data:
                return self._write_bytes(bytes(data), value.get("path") or "")
            value = value.get("path")
        if isinstance(value, (bytes, bytearray)):
            return self._write_bytes(bytes(value), "")
        if not isinstance(value, str) or not value:
            raise FieldError(f"{field}[{k}]", f"expected an image path or bytes, got {value!r:.60}")
        if outside_root(value):
            if not self.allow_outside_root:
                raise FieldError(f"{field}[{k}]", f"{value!r} is outside the dataset root {self.root or self.image_root} "
                                 "(absolute or with '..'; --allow-outside-root allows it)", reason="image outside root")
            return os.path.relpath(self.image_root / value, self.out_dir)
        return self._inside_out_dir(self.image_root / value)

    def _inside_out_dir(self, image: Path) -> str:
        """`image` (inside the dataset root) relative to out_dir, through a link to the root if needed."""
        return path_under(self.out_dir, image, self.root or self.image_root, self.source)

    def _write_bytes(self, data: bytes, name_hint: str) -> str:
        suffix = Path(name_hint).suffix.lower() or ".png"
        rel = Path("images") / self.source / f"{hashlib.sha1(data).hexdigest()[:16]}{suffix}"
        target = self.out_dir / rel
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        return str(rel)


def iter_records(path: Path) -> Iterator[tuple[int | None, Any]]:
    """(line or row number, record) of a .jsonl, .json (a list, or {"data": [...]}) or .parquet file.

    What cannot be read (a malformed or non-UTF-8 line or file, a corrupt parquet file or row group)
    yields a DataError in place of the records (the caller counts it).
    """
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        yield from iter_jsonl(path)
    elif suffix == ".json":
        data = decode_json(path, 1, path.read_bytes())
        if isinstance(data, dict) and isinstance(data.get("data"), list):
            data = data["data"]
        if isinstance(data, list):
            yield from enumerate(data, start=1)
        else:
            yield 1, data if isinstance(data, DataError) else \
                DataError(path, None, None, "expected a JSON list of records", reason="not a list")
    elif suffix == ".parquet":
        yield from _parquet_records(path)
    else:
        raise DataError(path, None, None, f"unsupported input format {suffix!r} (use .jsonl, .json or .parquet)")


def _parquet_records(path: Path) -> Iterator[tuple[int | None, Any]]:
    """(row number, record) of a parquet file, one row group at a time: a corrupt row group is one
    DataError and the next ones are still read; a file whose footer cannot be read is one DataError."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(path)
    except (pa.ArrowException, OSError, ValueError) as err:
        yield None, DataError(path, None, None, f"corrupt parquet file ({err})", reason="corrupt parquet")
        return
    first = 1
    for group in range(parquet.num_row_groups):
        rows = parquet.metadata.row_group(group).num_rows
        try:
            records = parquet.read_row_group(group).to_pylist()
        except (pa.ArrowException, OSError, ValueError) as err:
            yield first, DataError(path, first, None, f"corrupt row group {group} (rows {first}-{first + rows - 1}): "
                                   f"{err}", reason="corrupt parquet")
        else:
            yield from enumerate(records, start=first)
        first += rows


def require(record: dict, *keys: str) -> Any:
    """The value of the first of `keys` present and non-empty in `record`; FieldError naming them if none is."""
    if not isinstance(record, dict):
        raise FieldError("<record>", f"expected an object, got {type(record).__name__}")
    for key in keys:
        value = record.get(key)
        if value not in (None, "", []):
            return value
    raise FieldError(" or ".join(keys), "missing")


def as_list(value: Any) -> list:
    return value if isinstance(value, list) else [value]


def clean_question(text: str) -> str:
    """Drop `<image>` placeholders (our prompt places images itself) and surrounding whitespace."""
    return IMAGE_PLACEHOLDER_RE.sub("", text).strip()


def tagged(text: str, tag: str) -> str | None:
    """The stripped content of the first `<tag>...</tag>` in `text`, or None when absent."""
    m = re.search(rf"<{re.escape(tag)}>(.*?)</{re.escape(tag)}>", text, flags=re.DOTALL)
    return m.group(1).strip() if m else None


def last_boxed(text: str) -> str | None:
    """The content of the last `\\boxed{...}` in `text` (braces balanced), or None."""
    starts = [m.end() for m in BOXED_RE.finditer(text)]
    if not starts:
        return None
    depth, i = 1, starts[-1]
    while i < len(text) and depth:
        depth += {"{": 1, "}": -1}.get(text[i], 0)
        i += 1
    return text[starts[-1]:i - 1].strip() if depth == 0 else None


def dialogue_pairs(record: dict) -> list[tuple[str, str]]:
    """(user text, assistant text) pairs of a ShareGPT/LLaVA (`conversations`: from/value) or
    LLaMA-Factory (`messages`: role/content) record, in order; system turns are ignored."""
    turns = require(record, "conversations", "messages")
    if not isinstance(turns, list):
        raise FieldError("conversations", "expected a list of turns")
    pairs, pending = [], None
    for i, turn in enumerate(turns):
        if not isinstance(turn, dict):
            raise FieldError(f"conversations[{i}]", "expected an object")
        role = turn.get("from", turn.get("role"))
        text = turn.get("value", turn.get("content"))
        if not isinstance(text, str):
            raise FieldError(f"conversations[{i}].value", "missing or not a string")
        if role in ("human", "user"):
            pending = text
        elif role in ("gpt", "assistant") and pending is not None:
            pairs.append((pending, text))
            pending = None
    if not pairs:
        raise FieldError("conversations", "no user turn followed by an assistant turn")
    return pairs


def lettered_choices(choices: list[str]) -> str:
    """'A. 3\\nB. 4\\n...' for a list of option texts."""
    return "\n".join(f"{chr(ord('A') + i)}. {c}" for i, c in enumerate(choices))
