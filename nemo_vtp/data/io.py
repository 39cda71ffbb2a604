"""Reading and writing sample JSONL files, and opening images, with errors that name file, line and field.

A row that cannot be used (a line that is not UTF-8, malformed or too deeply nested JSON, a number
too long to convert, a missing or bad field, an image path outside the dataset root, a missing,
corrupt or oversized image) is skipped and counted by reason in a `ReadSummary`; with `strict=True`
the first such row raises `DataError` instead. Nothing is dropped without a count.

Image paths are confined to the dataset root (the JSONL file's folder): an absolute path or one with
a `..` part is refused unless the caller opts in (`allow_outside_root`, `data.allow_outside_root`).
The check is on the path as written, so a symbolic link the dataset's owner placed inside the root is
followed, while a row cannot walk out of it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from PIL import Image, UnidentifiedImageError

from nemo_vtp.data.schema import FieldError, Sample, parse_sample

logger = logging.getLogger(__name__)

MAX_ASPECT_RATIO = 200  # Qwen2.5-VL's resize rule rejects images more elongated than this


class DataError(ValueError):
    """A data row or file that cannot be used. `str()` reads `file:line: field 'x': message`."""

    def __init__(self, path: str | Path, line: int | None, field: str | None, message: str, reason: str = "invalid"):
        where = f"{path}:{line}" if line is not None else str(path)
        what = f"field {field!r}: " if field else ""
        super().__init__(f"{where}: {what}{message}")
        self.path, self.line, self.field, self.message, self.reason = str(path), line, field, message, reason

    @classmethod
    def from_field(cls, path: str | Path, line: int | None, err: FieldError) -> DataError:
        """The DataError of a row whose field `err` names is missing or bad."""
        return cls(path, line, err.field, err.message, reason=err.reason)


class ImageError(ValueError):
    """An image that is missing, corrupt, over the pixel limit or too elongated; `reason` is a short key."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


@dataclass
class ReadSummary:
    """What happened to the rows of one file: how many were read, kept, and skipped for which reason."""

    path: str
    rows: int = 0
    kept: int = 0
    skipped: Counter = field(default_factory=Counter)  # reason -> count
    examples: list[str] = field(default_factory=list)  # the first few error messages, verbatim

    MAX_EXAMPLES = 20

    def skip(self, err: DataError) -> None:
        self.skipped[err.reason] += 1
        if len(self.examples) < self.MAX_EXAMPLES:
            self.examples.append(str(err))

    @property
    def num_skipped(self) -> int:
        return sum(self.skipped.values())

    def __str__(self) -> str:
        text = f"{self.path}: kept {self.kept} of {self.rows} rows"
        if self.skipped:
            reasons = ", ".join(f"{n} {reason}" for reason, n in sorted(self.skipped.items()))
            text += f"; skipped {self.num_skipped} ({reasons})"
        return text


def decode_json(path: str | Path, line: int, data: bytes) -> Any:
    """Decode one JSON document (a JSONL line or a whole .json file), or return the DataError that
    says why not: not UTF-8, malformed, nested too deeply, or a number too long to convert.
    `line` is the 1-based line `data` starts on; errors name the line they are on."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        at = line + data.count(b"\n", 0, err.start)
        return DataError(path, at, None, f"not UTF-8 (byte {data[err.start]:#04x} at offset {err.start})",
                         reason="not UTF-8")
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        return DataError(path, line + err.lineno - 1, None, f"malformed JSON ({err.msg} at column {err.colno})",
                         reason="malformed JSON")
    except RecursionError:
        return DataError(path, line, None, "JSON nested too deeply", reason="JSON nested too deeply")
    except ValueError as err:  # an integer over Python's digit limit (sys.get_int_max_str_digits)
        return DataError(path, line, None, f"number out of range ({err})", reason="number out of range")


def iter_jsonl(path: str | Path) -> Iterator[tuple[int, Any]]:
    """Yield (1-based line number, decoded value) for every non-blank line; a bad line yields a DataError."""
    with open(path, "rb") as f:
        for lineno, line in enumerate(f, start=1):
            if line.strip():
                yield lineno, decode_json(path, lineno, line)


def outside_root(image: str) -> bool:
    """True for an image path that can leave the folder it is relative to (absolute, or with a `..` part)."""
    path = PurePosixPath(image)
    return path.is_absolute() or ".." in path.parts


def open_image(path: str | Path, max_image_pixels: int | None = None) -> Image.Image:
    """Open an image as RGB (transparency composited on white, as HF's image processors do).

    Raises `ImageError` for a missing or unreadable file, more than `max_image_pixels` pixels, or
    an aspect ratio over 200.
    """
    check_image(path, max_image_pixels)
    with Image.open(path) as im:
        im.load()
        return to_rgb(im)


def check_image(path: str | Path, max_image_pixels: int | None = None) -> tuple[int, int]:
    """Check that an image exists, decodes, and is within limits; returns (width, height) in pixels."""
    path = Path(path)
    if not path.is_file():
        raise ImageError("missing image", f"image not found: {path}")
    try:
        with Image.open(path) as im:
            width, height = im.size
            if max_image_pixels is not None and width * height > max_image_pixels:
                raise ImageError("image over pixel limit",
                                 f"image {path} has {width}x{height} = {width * height} pixels, "
                                 f"over the limit of {max_image_pixels}")
            im.verify()  # checks the encoded data without decoding all of it
    except ImageError:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        raise ImageError("corrupt image", f"cannot decode image {path}: {err}") from None
    if min(width, height) == 0 or max(width, height) / min(width, height) > MAX_ASPECT_RATIO:
        raise ImageError("bad aspect ratio", f"image {path} is {width}x{height}: aspect ratio over {MAX_ASPECT_RATIO}")
    return width, height


def to_rgb(im: Image.Image) -> Image.Image:
    """RGB copy of `im`; an alpha channel or palette transparency is composited on white."""
    if "A" in im.getbands() or im.info.get("transparency") is not None:
        rgba = im.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return im.convert("RGB")


def path_under(out_dir: Path, image: Path, root: Path, name: str) -> str:
    """`image` (inside the dataset folder `root`) as a path relative to `out_dir` with no `..` part.

    When `root` lies outside `out_dir`, the path goes through one link to it,
    out_dir/image_roots/<name>-<hash of root>, so the written file stays inside its own root.
    """
    rel = os.path.relpath(os.path.abspath(image), os.path.abspath(out_dir))
    if not outside_root(rel):
        return rel
    root_abs = os.path.abspath(root)
    link = Path("image_roots") / f"{name}-{hashlib.sha1(root_abs.encode()).hexdigest()[:8]}"
    target = Path(out_dir) / link
    if not target.is_symlink():
        target.parent.mkdir(parents=True, exist_ok=True)
        target.symlink_to(root_abs, target_is_directory=True)
    elif os.readlink(target) != root_abs:
        raise DataError(target, None, None, f"links to {os.readlink(target)}, not to the image root {root_abs}")
    return str(link / os.path.relpath(os.path.abspath(image), root_abs))


def resolve_images(sample: Sample, base_dir: str | Path) -> list[Path]:
    """Absolute paths of a sample's images (stored relative to the JSONL file's folder)."""
    return [(Path(base_dir) / p) for p in sample.images]


def read_samples(
    path: str | Path,
    *,
    strict: bool = False,
    check_images: bool = True,
    max_image_pixels: int | None = None,
    max_warnings: int = 20,
    allow_outside_root: bool = False,
) -> tuple[list[Sample], ReadSummary]:
    """Read a sample JSONL file; returns the usable samples and a summary of what was skipped and why.

    With `strict=True` the first bad row raises `DataError` (file, line, field). Otherwise each bad
    row is logged as a warning (the first `max_warnings`) and counted; the summary is logged at the end.
    A row with an image path outside the file's folder is skipped unless `allow_outside_root`.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(path, None, None, "file not found", reason="missing file")
    summary = ReadSummary(str(path))
    samples: list[Sample] = []
    for lineno, row in iter_jsonl(path):
        summary.rows += 1
        try:
            sample = _check_row(path, lineno, row, check_images, max_image_pixels, allow_outside_root)
        except DataError as err:
            if strict:
                raise
            if summary.num_skipped < max_warnings:
                logger.warning("skipping row: %s", err)
            summary.skip(err)
            continue
        samples.append(sample)
        summary.kept += 1
    if summary.num_skipped:
        logger.warning("%s", summary)
    return samples, summary


def _check_row(path: Path, lineno: int, row: Any, check_images: bool, max_image_pixels: int | None,
               allow_outside_root: bool) -> Sample:
    if isinstance(row, DataError):
        raise row
    try:
        sample = parse_sample(row)
    except FieldError as err:
        raise DataError.from_field(path, lineno, err) from None
    for i, image in enumerate(sample.images):
        if not allow_outside_root and outside_root(image):
            raise DataError(path, lineno, f"images[{i}]", f"{image!r} is outside the dataset root {path.parent} "
                            "(absolute or with '..'; data.allow_outside_root allows it)", reason="image outside root")
    if check_images:
        for i, image in enumerate(resolve_images(sample, path.parent)):
            try:
                check_image(image, max_image_pixels)
            except ImageError as err:
                raise DataError(path, lineno, f"images[{i}]", str(err), reason=err.reason) from None
    return sample


def write_samples(path: str | Path, samples: Iterable[Sample | dict]) -> int:
    """Write samples as JSONL (one compact row per line, UTF-8); returns the number of rows written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    with open(path, "w", encoding="utf-8") as f:
        for sample in samples:
            row = sample.to_dict() if isinstance(sample, Sample) else sample
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
            n += 1
    return n
