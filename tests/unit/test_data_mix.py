"""`data mix`: counts and fractions, deduplication by id and by image+question, seeds, provenance."""

import json
from pathlib import Path

import pytest
from PIL import Image

from nemo_vtp.data.io import read_samples, write_samples
from nemo_vtp.data.mix import SourceSpec, mix, parse_source, val_size
from nemo_vtp.data.schema import Sample


def _source(folder: Path, name: str, n: int, colour_of=lambda k: (k, 0, 0), question_of=str) -> Path:
    """A JSONL of n samples in `folder`, image k filled with colour_of(k), question question_of(k)."""
    (folder / "img").mkdir(parents=True, exist_ok=True)
    samples = []
    for k in range(n):
        image = folder / "img" / f"{name}-{k}.png"
        Image.new("RGB", (8, 8), colour_of(k)).save(image)
        samples.append(Sample(id=f"{name}-{k}", source=name, images=[f"img/{image.name}"],
                              question=question_of(k), answer="1"))
    path = folder / f"{name}.jsonl"
    write_samples(path, samples)
    return path


def test_counts_fractions_and_provenance(tmp_path):
    a = _source(tmp_path / "a", "a", 10)
    b = _source(tmp_path / "b", "b", 8, colour_of=lambda k: (0, k, 0))
    summary = mix([SourceSpec(a, count=4), SourceSpec(b, fraction=0.5)], tmp_path / "out", seed=1, val=2)
    assert (summary["train"], summary["val"]) == (6, 2)
    rows = read_samples(tmp_path / "out" / "train.jsonl")[0] + read_samples(tmp_path / "out" / "val.jsonl")[0]
    assert sorted(r.source for r in rows) == ["a"] * 4 + ["b"] * 4
    for r in rows:  # images resolve from the output folder, and the origin names the source line
        assert (tmp_path / "out" / r.images[0]).is_file()
        file, line = r.meta["mix_origin"].rsplit(":", 1)
        assert json.loads(Path(file).read_text().splitlines()[int(line) - 1])["id"] == r.id


def test_same_seed_same_bytes_other_seed_other_choice(tmp_path):
    a = _source(tmp_path / "a", "a", 30)
    for out, seed in (("x", 0), ("y", 0), ("z", 1)):
        mix([SourceSpec(a, count=10)], tmp_path / out, seed=seed, val=0.2)
    read = lambda d: (tmp_path / d / "train.jsonl").read_bytes() + (tmp_path / d / "val.jsonl").read_bytes()  # noqa: E731
    assert read("x") == read("y") and read("x") != read("z")


def test_duplicates_by_id_and_by_image_and_question(tmp_path):
    a = _source(tmp_path / "a", "a", 4)
    # b: same pixels and questions as a for k < 2 (other ids, other files); k >= 2 differ in the question
    b = _source(tmp_path / "b", "b", 4, question_of=lambda k: str(k) if k < 2 else f"other {k}")
    summary = mix([SourceSpec(a), SourceSpec(b), SourceSpec(a)], tmp_path / "out")
    a1, b1, a2 = summary["sources"]
    assert (a1["unique"], a1["duplicate_id"], a1["duplicate_content"]) == (4, 0, 0)
    assert (b1["unique"], b1["duplicate_content"]) == (2, 2)
    assert (a2["unique"], a2["duplicate_id"]) == (0, 4)
    assert summary["train"] == 6


@pytest.mark.parametrize("text, expected", [("f.jsonl", SourceSpec(Path("f.jsonl"))),
                                            ("d/f.jsonl=12", SourceSpec(Path("d/f.jsonl"), count=12)),
                                            ("f.jsonl=0.25", SourceSpec(Path("f.jsonl"), fraction=0.25))])
def test_parse_source(text, expected):
    assert parse_source(text) == expected


def test_val_size():
    assert [val_size(v, 50) for v in (0, 0.1, 0.001, 3, 80)] == [0, 5, 1, 3, 50]
