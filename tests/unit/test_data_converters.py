"""Each converter turns its fixture into valid samples, skips and counts the bad rows, and the
output loads through `datasets`."""

import json
import re
from pathlib import Path

import pytest

from nemo_vtp.data.cli import main as data_main
from nemo_vtp.data.converters import CONVERTERS, convert
from nemo_vtp.data.io import DataError, read_samples

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"

# (source, input relative to fixtures, samples written, records kept, skipped reasons)
CASES = [
    ("llava_cot", "llava_cot/train.jsonl", 3, 2, {"bad field": 1, "missing image": 1}),
    ("vision_sr1", "vision_sr1/cold_start.json", 2, 2, {"bad field": 1}),
    ("vision_sr1", "vision_sr1/rl.jsonl", 2, 2, {"missing field": 1}),
    ("mmk12", "mmk12/train.parquet", 2, 2, {"corrupt image": 1}),
    ("vision_r1", "vision_r1/vision_r1_cold.json", 1, 1, {"bad field": 1}),
    ("vision_r1", "vision_r1/vision_r1_rl.jsonl", 2, 2, {"malformed JSON": 1}),
    ("mulberry", "mulberry/mulberry_sft.json", 1, 1, {"bad field": 1}),
    ("geometry3k", "geometry3k/train.jsonl", 1, 1, {"missing image": 1}),
    ("geometry3k", "geometry3k/intergps", 2, 2, {"malformed JSON": 1}),
]


@pytest.mark.parametrize("source,rel,n_samples,n_kept,skipped", CASES, ids=[c[1] for c in CASES])
def test_converter_fixture(tmp_path, source, rel, n_samples, n_kept, skipped):
    out_file, summary = convert(source, FIXTURES / rel, tmp_path)
    assert summary.kept == n_kept
    assert dict(summary.skipped) == skipped
    # every skip message names the file and the line (or row) it came from
    assert len(summary.examples) == sum(skipped.values())
    assert all(re.search(r"fixtures/.+:\d+: ", e) for e in summary.examples), summary.examples
    samples, check = read_samples(out_file, strict=True)  # every written row is valid, images included
    assert len(samples) == n_samples and check.kept == n_samples
    for s in samples:
        assert s.source == source and s.question and "<image>" not in s.question and s.answer
        if s.response is not None:
            assert s.response.description and s.response.think and s.response.answer == s.answer


def test_llava_cot_mapping(tmp_path):
    out_file, _ = convert("llava_cot", FIXTURES / "llava_cot/train.jsonl", tmp_path)
    samples, _ = read_samples(out_file)
    first, second = samples[0], samples[1]
    assert first.id == "llava_cot-000000000001" and second.id == "llava_cot-000000000001-t1"
    assert first.response.description == "The image shows 1 white square on a red background."
    assert first.response.think.startswith("I will count the red squares")
    assert "exactly 1 white square" in first.response.think
    assert first.answer == "0" and second.answer == "red"


def test_vision_sr1_and_mulberry_sections(tmp_path):
    out_file, _ = convert("vision_sr1", FIXTURES / "vision_sr1/cold_start.json", tmp_path)
    geo, chart = read_samples(out_file)[0]
    assert geo.response.description.startswith("A right triangle ABC") and geo.answer == "4"
    assert chart.answer == "green"
    out_file, _ = convert("mulberry", FIXTURES / "mulberry/mulberry_sft.json", tmp_path)
    (m,) = read_samples(out_file)[0]
    assert m.response.description.startswith("A life-cycle diagram") and m.answer == "A"
    assert "arrows give the order" in m.response.think and "points to the larva" in m.response.think


def test_rl_sources_keep_gold_answers(tmp_path):
    out_file, _ = convert("mmk12", FIXTURES / "mmk12/train.parquet", tmp_path)
    samples, _ = read_samples(out_file)
    assert [s.answer for s in samples] == ["5", "6"] and samples[1].meta == {"subject": "physics"}
    assert all(s.response is None and s.images[0].startswith("images/mmk12/") for s in samples)
    out_file, _ = convert("vision_r1", FIXTURES / "vision_r1/vision_r1_cold.json", tmp_path)
    (cold,) = read_samples(out_file)[0]
    assert cold.answer == "3" and "4 * 3 = 12" in cold.meta["source_reasoning"] and cold.response is None
    out_file, _ = convert("geometry3k", FIXTURES / "geometry3k/intergps", tmp_path)
    geo = read_samples(out_file)[0]
    assert [g.answer for g in geo] == ["B", "A"] and "B. 60" in geo[0].question and geo[0].choices[1] == "60"


def test_strict_stops_with_file_line_and_field(tmp_path):
    with pytest.raises(DataError) as info:
        convert("vision_sr1", FIXTURES / "vision_sr1/rl.jsonl", tmp_path, strict=True)
    assert info.value.line == 3 and "answer" in info.value.field and "rl.jsonl:3" in str(info.value)


def test_output_loads_with_datasets(tmp_path):
    datasets = pytest.importorskip("datasets")
    files = [convert(src, FIXTURES / rel, tmp_path / src)[0] for src, rel in
             [("llava_cot", "llava_cot/train.jsonl"), ("mmk12", "mmk12/train.parquet"),
              ("geometry3k", "geometry3k/train.jsonl"), ("vision_r1", "vision_r1/vision_r1_cold.json")]]
    for f in files:
        ds = datasets.load_dataset("json", data_files=str(f), split="train", cache_dir=str(tmp_path / "hf"))
        samples, _ = read_samples(f)
        assert len(ds) == len(samples)
        assert ds[0]["id"] == samples[0].id and ds[0]["answer"] == samples[0].answer


def test_cli_convert(tmp_path, capsys):
    assert data_main(["convert", "--source", "mulberry", "--in", str(FIXTURES / "mulberry/mulberry_sft.json"),
                      "--out", str(tmp_path)]) == 0
    assert "kept 1 of 2 rows" in capsys.readouterr().out
    assert set(CONVERTERS) == {"llava_cot", "vision_sr1", "mmk12", "vision_r1", "mulberry", "geometry3k"}


def test_images_outside_the_output_folder_go_through_one_link(tmp_path):
    out_file, _ = convert("llava_cot", FIXTURES / "llava_cot/train.jsonl", tmp_path / "out")
    links = list((tmp_path / "out" / "image_roots").iterdir())
    assert len(links) == 1 and links[0].is_symlink() and links[0].resolve() == (FIXTURES / "llava_cot").resolve()
    samples, _ = read_samples(out_file, strict=True)
    assert samples and all(p.startswith(f"image_roots/{links[0].name}/") for s in samples for p in s.images)


def test_source_paths_outside_the_root_only_when_allowed(tmp_path):
    (tmp_path / "src").mkdir()
    record = {"id": "1", "image": "../llava_cot/coco/train2017/000000000001.jpg.png", "question": "q", "answer": "3"}
    (tmp_path / "src" / "in.jsonl").write_text(json.dumps(record) + "\n")
    args = ("mmk12", tmp_path / "src" / "in.jsonl", tmp_path / "out")
    _, summary = convert(*args, image_root=FIXTURES / "mmk12")
    assert summary.kept == 0 and dict(summary.skipped) == {"image outside root": 1}
    out_file, summary = convert(*args, image_root=FIXTURES / "mmk12", allow_outside_root=True)
    assert summary.kept == 1
    assert read_samples(out_file, allow_outside_root=True)[1].kept == 1
