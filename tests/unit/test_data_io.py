"""Schema validation and bad input: errors name file, line and field; bad rows are skipped and counted."""

import json

import pytest
from PIL import Image

from nemo_vtp.data.io import DataError, read_samples, write_samples
from nemo_vtp.data.schema import KeyInfo, Response, Sample, format_response, parse_sample


def _good(i, image="ok.png"):
    return Sample(f"s{i}", "test", [image], "How many?", "3", response=Response("3 red circles", "3", "3"),
                  key_info=KeyInfo(["3 red circles"], ["3"]), meta={"level": 1}).to_dict()


def test_format_response_is_exact():
    r = Response("d", "t", "a")
    assert format_response(r) == "<description>d</description><think>t</think><answer>a</answer>"
    assert format_response({"description": "d", "think": "t", "answer": "a"}) == format_response(r)


def test_roundtrip_and_parse_errors():
    row = _good(0)
    assert parse_sample(row).to_dict() == row
    cases = [({k: v for k, v in row.items() if k != "answer"}, "answer"),
             ({**row, "images": "ok.png"}, "images"),
             ({**row, "response": {"description": "d", "think": "t"}}, "response.answer"),
             ({**row, "key_info": {"visual": [1]}}, "key_info.visual"),
             ({**row, "colour": "red"}, "colour")]
    for bad, field in cases:
        with pytest.raises(ValueError) as info:
            parse_sample(bad)
        assert info.value.field == field


def _write_bad_file(tmp_path):
    Image.new("RGB", (30, 20), (1, 2, 3)).save(tmp_path / "ok.png")
    Image.new("RGB", (400, 300)).save(tmp_path / "big.png")
    (tmp_path / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\nthis is not a png")
    lines = [json.dumps(_good(0)),
             "{not json",
             json.dumps({k: v for k, v in _good(2).items() if k != "question"}),
             json.dumps(_good(3, "missing.png")),
             json.dumps(_good(4, "corrupt.png")),
             json.dumps(_good(5, "big.png")),
             "",
             json.dumps(_good(7))]
    path = tmp_path / "data.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_bad_rows_skipped_and_counted(tmp_path, caplog):
    path = _write_bad_file(tmp_path)
    samples, summary = read_samples(path, max_image_pixels=100_000)
    assert [s.id for s in samples] == ["s0", "s7"]
    assert summary.rows == 7 and summary.kept == 2
    assert dict(summary.skipped) == {"malformed JSON": 1, "missing field": 1, "missing image": 1,
                                     "corrupt image": 1, "image over pixel limit": 1}
    text = "\n".join(summary.examples)
    for needle in (f"{path}:2: ", f"{path}:3: field 'question'", f"{path}:4: field 'images[0]'",
                   f"{path}:5: field 'images[0]'", f"{path}:6: field 'images[0]'"):
        assert needle in text
    assert "skipped 5" in str(summary) and "skipped 5" in caplog.text


def test_strict_raises_at_first_bad_row(tmp_path):
    path = _write_bad_file(tmp_path)
    with pytest.raises(DataError) as info:
        read_samples(path, strict=True)
    assert info.value.line == 2 and info.value.reason == "malformed JSON"


def test_write_then_read(tmp_path):
    Image.new("RGB", (30, 20)).save(tmp_path / "ok.png")
    rows = [_good(i) for i in range(3)]
    assert write_samples(tmp_path / "x.jsonl", rows) == 3
    samples, summary = read_samples(tmp_path / "x.jsonl", strict=True)
    assert [s.to_dict() for s in samples] == rows and summary.num_skipped == 0


def test_image_outside_root_loads_only_when_allowed(tmp_path):
    root = tmp_path / "data"
    root.mkdir()
    Image.new("RGB", (30, 20)).save(tmp_path / "shared.png")
    write_samples(root / "train.jsonl", [_good(0, "../shared.png"), _good(1, str(tmp_path / "shared.png"))])
    samples, summary = read_samples(root / "train.jsonl")
    assert samples == [] and dict(summary.skipped) == {"image outside root": 2}
    assert "train.jsonl:1: field 'images[0]': '../shared.png' is outside the dataset root" in summary.examples[0]
    samples, summary = read_samples(root / "train.jsonl", allow_outside_root=True)
    assert [s.id for s in samples] == ["s0", "s1"] and not summary.skipped
