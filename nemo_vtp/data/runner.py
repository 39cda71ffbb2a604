"""The resumable, sharded sample loop shared by `data annotate` and `data clean-sft`.

Output of shard i of n in the output folder, NAME being the input file's name without `.jsonl`
(so `--in sft12k/train.jsonl` gives `train.jsonl`, the name the recipes read; no shard suffix when n == 1):
- `NAME[-IIIII-of-NNNNN].jsonl`: the kept samples, image paths relative to that folder;
- `NAME[...].records.jsonl`: one line per attempt `{"id", "status": kept|dropped|failed, "reason", "detail"}`;
- `NAME[...].summary.json`: counts by status and reason, written at the end of every run.

Resume: an id is finished when it is in the samples file or its last record is kept/dropped; a rerun
skips finished ids and tries the rest (failed and never attempted) again, so nothing is written twice.
A line cut short by a kill is removed before appending. The sample line is written before its record.
Shard i of n takes the rows whose position in the input file is i modulo n.
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field, replace
from pathlib import Path

from nemo_vtp.data.io import ReadSummary, path_under
from nemo_vtp.data.schema import Sample

log = logging.getLogger(__name__)

STATUSES = ("kept", "dropped", "failed")


@dataclass
class Outcome:
    """What happened to one sample: kept (with the sample to write), dropped (final) or failed (retried by a rerun)."""

    status: str  # kept | dropped | failed
    reason: str = ""  # short key counted in the summary ("" for kept), e.g. "no accurate chain"
    sample: Sample | None = None  # the output row when kept
    detail: str = ""  # free text for the record (an error message, scores)


@dataclass
class RunSummary:
    command: str
    input: str
    shard: str  # "i/n"
    rows_in_shard: int = 0
    already_done: int = 0  # finished by an earlier run, skipped now
    counts: Counter = field(default_factory=Counter)  # status -> samples this run
    reasons: Counter = field(default_factory=Counter)  # "status: reason" -> samples this run
    not_attempted: int = 0  # left because the run stopped early
    stopped: str = ""  # why the run stopped early ("" when it ran to the end)
    read_skipped: dict = field(default_factory=dict)  # input rows skipped on read, by reason
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return {"command": self.command, "input": self.input, "shard": self.shard,
                "rows_in_shard": self.rows_in_shard, "already_done": self.already_done,
                **{s: self.counts.get(s, 0) for s in STATUSES}, "reasons": dict(sorted(self.reasons.items())),
                "not_attempted": self.not_attempted, "stopped": self.stopped,
                "read_skipped": self.read_skipped, "seconds": round(self.seconds, 2)}

    def __str__(self) -> str:
        lines = [f"{self.command} {self.input} shard {self.shard}: {self.rows_in_shard} rows, "
                 f"{self.already_done} already done; this run: kept {self.counts['kept']}, "
                 f"dropped {self.counts['dropped']}, failed {self.counts['failed']} in {self.seconds:.1f} s"]
        lines += [f"  {n:6d}  {reason}" for reason, n in sorted(self.reasons.items()) if not reason.startswith("kept")]
        if self.read_skipped:
            lines.append(f"  input rows skipped on read: {self.read_skipped}")
        if self.stopped:
            lines.append(f"  stopped early: {self.stopped}; {self.not_attempted} rows not attempted")
        if self.counts["failed"] or self.not_attempted:
            lines.append("  rerun the same command to retry the failed and unattempted rows")
        return "\n".join(lines)


def parse_shard(text: str) -> tuple[int, int]:
    """"i/n" -> (i, n) with 0 <= i < n.

    >>> parse_shard("2/8")
    (2, 8)
    """
    try:
        i, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise ValueError(f"--shard {text!r}: expected i/n, e.g. 0/4") from None
    if n < 1 or not 0 <= i < n:
        raise ValueError(f"--shard {text!r}: need 0 <= i < n")
    return i, n


@dataclass(frozen=True)
class ShardFiles:
    samples: Path
    records: Path
    summary: Path

    @classmethod
    def of(cls, out_dir: str | Path, shard: tuple[int, int], name: str) -> ShardFiles:
        i, n = shard
        stem = Path(out_dir) / (name if n == 1 else f"{name}-{i:05d}-of-{n:05d}")
        return cls(stem.with_name(f"{stem.name}.jsonl"), stem.with_name(f"{stem.name}.records.jsonl"),
                   stem.with_name(f"{stem.name}.summary.json"))


def output_name(input_path: str | Path) -> str:
    """NAME of the output files: the input file's name without its `.jsonl`."""
    return Path(input_path).name.removesuffix(".jsonl")


def _repair_tail(path: Path) -> None:
    """Cut a last line that a kill left without its newline."""
    if not path.is_file() or path.stat().st_size == 0:
        return
    data = path.read_bytes()
    if not data.endswith(b"\n"):
        cut = data.rfind(b"\n") + 1
        log.warning("%s: removing a partial last line (%d bytes) left by an interrupted run", path, len(data) - cut)
        with open(path, "r+b") as f:
            f.truncate(cut)


def _ids_in(path: Path) -> list[tuple[str, str]]:
    """(id, status) of every line of a samples or records file (status "kept" for sample rows)."""
    out = []
    if path.is_file():
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                row = json.loads(line)
                out.append((row["id"], row.get("status", "kept")))
    return out


def finished_ids(files: ShardFiles) -> set[str]:
    """Ids a rerun must skip: in the samples file, or last recorded as kept or dropped."""
    for path in (files.samples, files.records):
        _repair_tail(path)
    last = dict(_ids_in(files.records))
    return {i for i, _ in _ids_in(files.samples)} | {i for i, s in last.items() if s in ("kept", "dropped")}


def rebase_images(sample: Sample, from_dir: Path, to_dir: Path) -> Sample:
    """The sample with image paths rewritten from relative-to-`from_dir` to relative-to-`to_dir`, inside
    `to_dir` (through one link to `from_dir` when it lies outside: see `path_under`)."""
    images = [path_under(to_dir, from_dir / p, from_dir, from_dir.name) for p in sample.images]
    return replace(sample, images=images)


def _safe(process: Callable[[Sample], Outcome], sample: Sample) -> Outcome:
    try:
        return process(sample)
    except Exception as err:  # noqa: BLE001 (one sample's bug or surprise is recorded, never ends the run)
        log.exception("sample %s raised", sample.id)
        return Outcome("failed", f"error: {type(err).__name__}", detail=str(err)[:500])


class _Writer:
    def __init__(self, files: ShardFiles, in_dir: Path):
        files.samples.parent.mkdir(parents=True, exist_ok=True)
        self.in_dir, self.out_dir = in_dir, files.samples.parent
        self.samples = open(files.samples, "a", encoding="utf-8")
        self.records = open(files.records, "a", encoding="utf-8")

    def write(self, sample_id: str, outcome: Outcome) -> None:
        if outcome.status == "kept":
            row = rebase_images(outcome.sample, self.in_dir, self.out_dir).to_dict()
            self.samples.write(json.dumps(row, ensure_ascii=False) + "\n")
            self.samples.flush()
        record = {"id": sample_id, "status": outcome.status, "reason": outcome.reason, "detail": outcome.detail}
        self.records.write(json.dumps(record, ensure_ascii=False) + "\n")
        self.records.flush()

    def close(self) -> None:
        self.samples.close()
        self.records.close()


def run_samples(samples: list[Sample], process: Callable[[Sample], Outcome], *, command: str, input_path: str | Path,
                out_dir: str | Path, shard: tuple[int, int] = (0, 1), max_concurrency: int = 1,
                max_consecutive_failures: int = 20, progress: bool = True,
                read_summary: ReadSummary | None = None) -> RunSummary:
    """Process this shard's unfinished samples with up to `max_concurrency` in flight; see the module doc."""
    start = time.perf_counter()
    # math-verify warns on every call that its alarm-based timeout is off outside the main thread (samples
    # run in worker threads here); R_acc's rule checks decide most answers before math-verify is reached.
    logging.getLogger("math_verify").setLevel(logging.ERROR)
    files = ShardFiles.of(out_dir, shard, output_name(input_path))
    if files.samples.resolve() == Path(input_path).resolve():
        raise ValueError(f"--out {out_dir} would overwrite the input {input_path}: choose another output folder")
    mine = [s for k, s in enumerate(samples) if k % shard[1] == shard[0]]
    summary = RunSummary(command, str(input_path), f"{shard[0]}/{shard[1]}", rows_in_shard=len(mine),
                         read_skipped=dict(read_summary.skipped) if read_summary else {})
    done = finished_ids(files)
    todo, seen = [], set()
    for s in mine:
        if s.id in done:
            summary.already_done += 1
        elif s.id in seen:
            summary.counts["dropped"] += 1
            summary.reasons["dropped: duplicate id in input"] += 1
        else:
            seen.add(s.id)
            todo.append(s)
    writer = _Writer(files, Path(input_path).parent)
    try:
        _loop(todo, process, writer, summary, max_concurrency, max_consecutive_failures, progress)
    finally:
        writer.close()
        summary.seconds = time.perf_counter() - start
        files.summary.write_text(json.dumps(summary.to_dict(), indent=2) + "\n", encoding="utf-8")
    return summary


def _loop(todo: list[Sample], process, writer: _Writer, summary: RunSummary, max_concurrency: int,
          max_consecutive_failures: int, progress: bool) -> None:
    from tqdm import tqdm

    bar = tqdm(total=len(todo), desc=summary.command, unit="sample", disable=not progress, dynamic_ncols=True)
    queue = iter(todo)
    in_flight: dict[Future, Sample] = {}
    streak = 0
    with ThreadPoolExecutor(max_workers=max_concurrency) as pool:
        while True:
            while not summary.stopped and len(in_flight) < 2 * max_concurrency:
                sample = next(queue, None)
                if sample is None:
                    break
                in_flight[pool.submit(_safe, process, sample)] = sample
            if not in_flight:
                break
            finished, _ = wait(in_flight, return_when=FIRST_COMPLETED)
            for future in finished:
                sample, outcome = in_flight.pop(future), future.result()
                writer.write(sample.id, outcome)
                summary.counts[outcome.status] += 1
                summary.reasons[f"{outcome.status}: {outcome.reason}" if outcome.reason else outcome.status] += 1
                streak = streak + 1 if outcome.status == "failed" else 0
                bar.update(1)
                bar.set_postfix(kept=summary.counts["kept"], dropped=summary.counts["dropped"],
                                failed=summary.counts["failed"], refresh=False)
                if streak >= max_consecutive_failures and not summary.stopped:
                    last = f"{outcome.reason}: {outcome.detail[:200]}"
                    summary.stopped = f"{streak} samples failed in a row (last: {last})"
                    log.error("stopping: %s", summary.stopped)
    bar.close()
    summary.not_attempted = sum(1 for _ in queue)
