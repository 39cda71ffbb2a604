"""Mix converted sources into one training set: `nemo-vtp data mix SOURCE[=N|=F] ... --out DIR`.

Each source is a sample JSONL file (e.g. what `data convert` wrote) with a count N (an integer: that
many samples) or a fraction F (0 < F <= 1: that share of the source); no `=` takes every sample.
Steps, in this order:
1. read every source (rows that fail the schema or image checks are skipped and counted);
2. deduplicate over all sources, first source first: a sample whose id was seen, or whose images
   (SHA-256 of the bytes) and question were seen, is dropped and counted;
3. per source, shuffle with the seed and take the first N (a source with fewer unique samples than
   asked gives all it has, and the shortfall is reported);
4. shuffle the union with the seed and split off the validation rows (`--val`: a count, or a fraction).
Output in DIR: `train.jsonl`, `val.jsonl` (image paths relative to DIR; the images are not copied)
and `mix.json` (seed, per-source counts, duplicates, shortfalls). Every sample gets
`meta.mix_origin` = "<source file>:<line>" so each row can be traced back to its source.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
from dataclasses import dataclass, field, replace
from pathlib import Path

from nemo_vtp.data.io import iter_jsonl, path_under, read_samples, resolve_images, write_samples
from nemo_vtp.data.schema import Sample

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SourceSpec:
    path: Path
    count: int | None = None  # samples to take; None: see `fraction`
    fraction: float | None = None  # share of the source's unique samples to take; None with count None: all


@dataclass
class SourceReport:
    path: str
    rows: int = 0  # rows in the file
    skipped_on_read: dict = field(default_factory=dict)  # reason -> rows
    duplicate_id: int = 0  # dropped: id seen in an earlier row or source
    duplicate_content: int = 0  # dropped: same images and question as an earlier row
    unique: int = 0  # left after deduplication
    asked: int | None = None  # samples asked for (counts and fractions resolved); None: all
    taken: int = 0  # samples in the mix
    short: int = 0  # asked minus taken when the source has too few


def parse_source(text: str) -> SourceSpec:
    """'PATH', 'PATH=N' (count) or 'PATH=F' (fraction, 0 < F <= 1).

    >>> parse_source("data/a.jsonl=300")
    SourceSpec(path=PosixPath('data/a.jsonl'), count=300, fraction=None)
    >>> parse_source("data/a.jsonl=0.5").fraction
    0.5
    """
    path, sep, amount = text.rpartition("=")
    if not sep:
        return SourceSpec(Path(text))
    if amount.isdigit():
        if int(amount) < 1:
            raise ValueError(f"source {text!r}: the count must be at least 1")
        return SourceSpec(Path(path), count=int(amount))
    try:
        fraction = float(amount)
    except ValueError:
        raise ValueError(f"source {text!r}: expected PATH, PATH=COUNT or PATH=FRACTION") from None
    if not 0 < fraction <= 1:
        raise ValueError(f"source {text!r}: a fraction must be in (0, 1]")
    return SourceSpec(Path(path), fraction=fraction)


def content_key(sample: Sample, base_dir: Path) -> str:
    """SHA-256 over the sample's image bytes and its question: equal for the same question on the same images."""
    digest = hashlib.sha256()
    for image in resolve_images(sample, base_dir):
        digest.update(hashlib.sha256(image.read_bytes()).digest())
    digest.update(sample.question.strip().encode("utf-8"))
    return digest.hexdigest()


def _line_numbers(path: Path) -> dict[str, int]:
    """id -> line number of its first row in a sample JSONL file."""
    lines: dict[str, int] = {}
    for lineno, row in iter_jsonl(path):
        if isinstance(row, dict) and isinstance(row.get("id"), (str, int)):
            lines.setdefault(str(row["id"]), lineno)
    return lines


def _with_origin(sample: Sample, source: Path, line: int, out_dir: Path) -> Sample:
    """The sample with images relative to `out_dir` (inside it: see `path_under`) and `meta.mix_origin` set."""
    images = [path_under(out_dir, p, source.parent, source.stem) for p in resolve_images(sample, source.parent)]
    return replace(sample, images=images, meta={**sample.meta, "mix_origin": f"{source}:{line}"})


def read_unique(specs: list[SourceSpec], out_dir: Path) -> tuple[list[list[Sample]], list[SourceReport]]:
    """Every source's samples after deduplication over all sources (steps 1-2), ready to write to `out_dir`."""
    seen_ids: set[str] = set()
    seen_content: set[str] = set()
    pools, reports = [], []
    for spec in specs:
        samples, read_summary = read_samples(spec.path)
        lines = _line_numbers(spec.path)
        report = SourceReport(str(spec.path), rows=read_summary.rows, skipped_on_read=dict(read_summary.skipped))
        pool = []
        for sample in samples:
            key = content_key(sample, spec.path.parent)
            if sample.id in seen_ids:
                report.duplicate_id += 1
            elif key in seen_content:
                report.duplicate_content += 1
            else:
                seen_ids.add(sample.id)
                seen_content.add(key)
                pool.append(_with_origin(sample, spec.path, lines.get(sample.id, 0), out_dir))
        report.unique = len(pool)
        pools.append(pool)
        reports.append(report)
    return pools, reports


def asked_count(spec: SourceSpec, unique: int) -> int | None:
    """Samples asked of a source with `unique` samples: its count, its fraction rounded, or None (all).

    >>> asked_count(SourceSpec(Path("a"), fraction=0.5), 7)
    4
    """
    if spec.count is not None:
        return spec.count
    if spec.fraction is not None:
        return max(1, round(spec.fraction * unique)) if unique else 0
    return None


def take(pool: list[Sample], asked: int | None, rng: random.Random) -> list[Sample]:
    """A seeded sample of `asked` rows of `pool` (all of them when asked is None or over the pool size)."""
    order = list(pool)
    rng.shuffle(order)
    return order if asked is None else order[:asked]


def val_size(val: float, total: int) -> int:
    """Validation rows: `val` itself when it is a whole number >= 1, else that fraction of `total` (at
    least one row when the fraction is > 0 and two rows or more are left; training keeps at least one).

    >>> val_size(10, 100), val_size(0.05, 100), val_size(0, 100), val_size(0.02, 5)
    (10, 5, 0, 1)
    """
    if val >= 1:
        if val != int(val):
            raise ValueError(f"--val {val}: a count must be a whole number (or give a fraction below 1)")
        return min(int(val), total)
    if val < 0:
        raise ValueError(f"--val {val}: must be >= 0")
    if val == 0 or total < 2:
        return 0
    return min(max(1, round(val * total)), total - 1)


def mix(specs: list[SourceSpec], out_dir: str | Path, *, seed: int = 0, val: float = 0.0) -> dict:
    """Steps 1-4 of the module doc; writes train.jsonl, val.jsonl and mix.json in `out_dir`; returns mix.json's dict."""
    if not specs:
        raise ValueError("give at least one source")
    out = Path(out_dir)
    pools, reports = read_unique(specs, out)
    rng = random.Random(seed)
    chosen: list[Sample] = []
    for spec, pool, report in zip(specs, pools, reports):
        report.asked = asked_count(spec, len(pool))
        picked = take(pool, report.asked, rng)
        report.taken = len(picked)
        if report.asked is not None and report.asked > len(pool):
            report.short = report.asked - len(pool)
            log.warning("%s: asked for %d samples, it has %d unique ones; taking all of them",
                        spec.path, report.asked, len(pool))
        chosen.extend(picked)
    rng.shuffle(chosen)
    n_val = val_size(val, len(chosen))
    val_rows, train_rows = chosen[:n_val], chosen[n_val:]
    write_samples(out / "train.jsonl", train_rows)
    write_samples(out / "val.jsonl", val_rows)
    summary = {"seed": seed, "train": len(train_rows), "val": len(val_rows),
               "sources": [vars(r) for r in reports]}
    (out / "mix.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return summary


def describe(summary: dict) -> str:
    """The human-readable lines `data mix` prints."""
    lines = [f"train {summary['train']}, val {summary['val']} (seed {summary['seed']})"]
    for r in summary["sources"]:
        asked = "all" if r["asked"] is None else r["asked"]
        line = (f"  {r['path']}: {r['rows']} rows, {r['unique']} unique, asked {asked}, took {r['taken']}; "
                f"duplicates: {r['duplicate_id']} by id, {r['duplicate_content']} by image+question")
        if r["skipped_on_read"]:
            line += f"; skipped on read: {r['skipped_on_read']}"
        if r["short"]:
            line += f"; SHORT by {r['short']}"
        lines.append(line)
    return "\n".join(lines)
