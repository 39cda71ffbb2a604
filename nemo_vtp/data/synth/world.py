"""The synthetic perception world: deterministic samples, images and train/val/test split files.

Sample `index` of a world with seed `seed` depends only on (seed, index, levels, families, size): its
task (family, question type, level) is `index`-th in a fixed round-robin over all combinations, so
question types and levels are balanced, and its random draws come from `Random(f"{seed}-{index}")`.
The same arguments give the same bytes, images included.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from nemo_vtp.data.io import write_samples
from nemo_vtp.data.schema import KeyInfo, Response, Sample
from nemo_vtp.data.synth.render import render
from nemo_vtp.data.synth.scenes import FAMILIES, LEVELS, TASKS, make_task

SOURCE = "synth"
SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class WorldSpec:
    """What a synthetic world is made of; the same spec gives the same files."""

    num: int  # number of samples over all splits
    seed: int = 0
    levels: tuple[int, ...] = LEVELS  # difficulty levels to include (1 easy .. 3 hard)
    families: tuple[str, ...] = FAMILIES  # scene families to include (shapes, bars, digits, clock, ruler)
    image_size: int = 112  # side of the square images, pixels (a multiple of 28 avoids resizing)
    val_fraction: float = 0.1
    test_fraction: float = 0.1


def task_combos(levels: Sequence[int], families: Sequence[str] = FAMILIES) -> list[tuple[str, str, int]]:
    """Every (family, question type, level) of the chosen families, in the fixed order samples cycle
    through. An unknown family or level is an error naming the known ones."""
    unknown = sorted(set(families) - set(FAMILIES))
    if unknown or not families:
        raise ValueError(f"families must be a non-empty subset of {list(FAMILIES)}, got {list(families)}")
    bad = sorted(set(levels) - set(LEVELS))
    if bad or not levels:
        raise ValueError(f"levels must be a non-empty subset of {list(LEVELS)}, got {list(levels)}")
    return [(family, qtype, level) for level in levels for (family, qtype) in TASKS if family in families]


def make_sample(spec: WorldSpec, index: int) -> tuple[Sample, dict]:
    """Sample `index` of the world and its scene dict (the image is `render(scene)`)."""
    combos = task_combos(spec.levels, spec.families)
    family, qtype, level = combos[index % len(combos)]
    rng = random.Random(f"{spec.seed}-{index}")
    scene, q = make_task(family, qtype, rng, level, spec.image_size)
    sample_id = f"synth-{spec.seed}-{index:06d}"
    sample = Sample(
        id=sample_id,
        source=SOURCE,
        images=[f"images/{sample_id}.png"],
        question=q.question,
        answer=q.answer,
        choices=q.choices,
        response=Response(description=q.description, think=q.think, answer=q.answer),
        key_info=KeyInfo(visual=list(q.visual), textual=list(q.textual)),
        meta={"family": family, "qtype": qtype, "level": level, "scene": json.dumps(scene, sort_keys=True)},
    )
    return sample, scene


def split_of(spec: WorldSpec) -> list[str]:
    """The split name of every index: a seeded permutation cut into test, val and train."""
    order = list(range(spec.num))
    random.Random(f"split-{spec.seed}").shuffle(order)
    n_test = round(spec.num * spec.test_fraction)
    n_val = round(spec.num * spec.val_fraction)
    names = [""] * spec.num
    for rank, index in enumerate(order):
        names[index] = "test" if rank < n_test else "val" if rank < n_test + n_val else "train"
    return names


def iter_samples(spec: WorldSpec) -> Iterator[tuple[Sample, dict]]:
    """All samples of the world in index order, without rendering (for text corpora)."""
    for index in range(spec.num):
        yield make_sample(spec, index)


def generate(spec: WorldSpec, out_dir: str | Path, progress: bool = False) -> dict[str, int]:
    """Write `out_dir/{train,val,test}.jsonl` and `out_dir/images/*.png`; returns rows per split."""
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    splits = split_of(spec)
    rows: dict[str, list[Sample]] = {name: [] for name in SPLITS}
    indices = range(spec.num)
    if progress:
        from tqdm import tqdm

        indices = tqdm(indices, desc="synth", unit="sample")
    for index in indices:
        sample, scene = make_sample(spec, index)
        sample.meta["split"] = splits[index]
        # compress_level 1: 3x faster than the default and still small; PNG bytes stay deterministic.
        render(scene).save(out / sample.images[0], format="PNG", compress_level=1)
        rows[splits[index]].append(sample)
    counts = {name: write_samples(out / f"{name}.jsonl", rows[name]) for name in SPLITS}
    manifest = {"source": SOURCE, **_spec_fields(spec), "splits": counts}
    (out / "world.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return counts


def _spec_fields(spec: WorldSpec) -> dict:
    return {"num": spec.num, "seed": spec.seed, "levels": list(spec.levels), "families": list(spec.families),
            "image_size": spec.image_size, "val_fraction": spec.val_fraction, "test_fraction": spec.test_fraction}


def world_differences(spec: WorldSpec, manifest_path: str | Path) -> list[str]:
    """How the world described by an existing `world.json` differs from `spec`: one 'field: file has X,
    spec has Y' line per field (empty when they agree). A manifest written before a field existed
    holds that field's default."""
    written = json.loads(Path(manifest_path).read_text(encoding="utf-8"))
    defaults = _spec_fields(WorldSpec(num=spec.num))
    return [f"{name}: {manifest_path} has {written.get(name, defaults[name])}, the recipe asks for {wanted}"
            for name, wanted in _spec_fields(spec).items() if written.get(name, defaults[name]) != wanted]
