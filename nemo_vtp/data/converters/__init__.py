"""Source converters: public dataset schemas -> our sample JSONL (`nemo-vtp data convert`).

`convert(source, in_path, out_dir)` reads a .jsonl/.json/.parquet file (or, for geometry3k, an
Inter-GPS folder of problem folders), converts each record, checks its images, and writes
`out_dir/<source>-<input name>.jsonl`. A record that cannot be used is skipped and counted by reason
(or, with strict=True, stops the run) with an error naming file, line/row and field.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

from nemo_vtp.data.converters.common import ConvertContext, iter_records
from nemo_vtp.data.converters.sources import CONVERTERS
from nemo_vtp.data.io import DataError, ImageError, ReadSummary, check_image, decode_json, write_samples
from nemo_vtp.data.schema import FieldError, Sample

logger = logging.getLogger(__name__)

__all__ = ["CONVERTERS", "convert"]


def _records(in_path: Path, out_dir: Path, source: str, image_root: Path | None,
             allow_outside_root: bool) -> Iterator[tuple]:
    """(file, row, record, context) for a file, or for every `*/data.json` of a folder-per-problem layout."""
    if in_path.is_dir():
        for data_file in sorted(in_path.glob("*/data.json"), key=lambda p: p.parent.name):
            ctx = ConvertContext(in_path, out_dir, data_file.parent, source, in_path, allow_outside_root)
            record = decode_json(data_file, 1, data_file.read_bytes())
            yield data_file, record.line if isinstance(record, DataError) else 1, record, ctx
        return
    root = image_root or in_path.parent
    ctx = ConvertContext(in_path, out_dir, root, source, root, allow_outside_root)
    for row, record in iter_records(in_path):
        yield in_path, row, record, ctx


def _convert_record(fn, record, ctx: ConvertContext, file: Path, row: int | None) -> list[Sample]:
    """The samples of one record, or the DataError (file, row, field) that says why there are none."""
    if isinstance(record, DataError):
        raise record
    try:
        if not isinstance(record, dict):
            raise FieldError("<record>", f"expected a JSON object, got {type(record).__name__}", reason="not an object")
        return fn(record, ctx, row)
    except FieldError as err:
        raise DataError.from_field(file, row, err) from None
    except DataError:
        raise
    except (TypeError, AttributeError, KeyError, ValueError) as err:  # a shape no converter check foresaw
        raise DataError(file, row, None, f"unusable record ({type(err).__name__}: {err})",
                        reason="unusable record") from None


def _check(samples: list[Sample], out_dir: Path, file: Path, row: int, max_image_pixels: int | None) -> None:
    for sample in samples:
        for k, image in enumerate(sample.images):
            try:
                check_image(out_dir / image, max_image_pixels)
            except ImageError as err:
                raise DataError(file, row, f"images[{k}]", str(err), reason=err.reason) from None


def convert(source: str, in_path: str | Path, out_dir: str | Path, *, image_root: str | Path | None = None,
            strict: bool = False, max_image_pixels: int | None = None, max_warnings: int = 20,
            allow_outside_root: bool = False) -> tuple[Path, ReadSummary]:
    """Convert one input of `source` into our JSONL; returns (output file, summary of kept/skipped rows).
    Source image paths must stay inside the image root unless `allow_outside_root`."""
    if source not in CONVERTERS:
        raise ValueError(f"unknown source {source!r} (valid: {', '.join(CONVERTERS)})")
    in_path, out_dir = Path(in_path), Path(out_dir)
    if not in_path.exists():
        raise DataError(in_path, None, None, "input not found", reason="missing file")
    out_dir.mkdir(parents=True, exist_ok=True)
    fn = CONVERTERS[source]
    summary = ReadSummary(str(in_path))
    samples: list[Sample] = []
    root = Path(image_root) if image_root else None
    for file, row, record, ctx in _records(in_path, out_dir, source, root, allow_outside_root):
        summary.rows += 1
        try:
            converted = _convert_record(fn, record, ctx, file, row)
            _check(converted, out_dir, file, row, max_image_pixels)
        except DataError as err:
            if strict:
                raise
            if summary.num_skipped < max_warnings:
                logger.warning("skipping record: %s", err)
            summary.skip(err)
            continue
        samples.extend(converted)
        summary.kept += 1
    out_file = out_dir / f"{source}-{in_path.stem}.jsonl"
    write_samples(out_file, samples)
    return out_file, summary
