"""Bad data: rows, records and files that must be skipped and counted (`file:line: reason`), never
abort a file with a raw exception, never load an image from outside the dataset root."""

import json
import logging
import re
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from nemo_vtp.config import load_config
from nemo_vtp.data.converters import convert
from nemo_vtp.data.io import read_samples
from nemo_vtp.data.synth import WorldSpec, generate
from nemo_vtp.training.data import load_rl_prompts, max_prompt_tokens

ROOT = Path(__file__).resolve().parents[2]
GOOD_ROW = {"id": "good", "source": "test", "images": ["ok.png"], "question": "How many?", "answer": "3"}
LLAVA_ANSWER = "<CAPTION> 3 dots </CAPTION><REASONING> count </REASONING><CONCLUSION> 3 </CONCLUSION>"


def _dataset(tmp_path: Path) -> Path:
    """tmp/data/ (the dataset root, with ok.png) and tmp/secret.png next to it, outside the root."""
    root = tmp_path / "data"
    root.mkdir()
    Image.new("RGB", (56, 56), (10, 20, 30)).save(root / "ok.png")
    Image.new("RGB", (56, 56), (200, 0, 0)).save(tmp_path / "secret.png")
    return root


def _assert_skipped_and_counted(summary, reason: str, line: int | None, kept: int = 1) -> None:
    assert summary.kept == kept and dict(summary.skipped) == {reason: 1}, summary
    where = r":\d+: " if line is None else rf":{line}: "
    assert len(summary.examples) == 1 and re.search(where, summary.examples[0]), summary.examples


# ---------------------------------------------------------------- sample JSONL rows (read_samples)

ROW_CASES = {
    "image path with ..": (json.dumps({**GOOD_ROW, "id": "bad", "images": ["../secret.png"]}).encode(),
                           "image outside root"),
    "absolute image path": (json.dumps({**GOOD_ROW, "id": "bad", "images": ["{tmp}/secret.png"]}).encode(),
                            "image outside root"),
    "non-UTF-8 line": (b'{"id": "bad", "question": "caf\xe9"}', "not UTF-8"),
    "deeply nested JSON": (b"[" * 100_000 + b"]" * 100_000, "JSON nested too deeply"),
    "huge integer": (b'{"id": ' + b"9" * 5000 + b"}", "number out of range"),
}


@pytest.mark.parametrize("bad_line,reason", ROW_CASES.values(), ids=ROW_CASES.keys())
def test_bad_sample_row_is_skipped_and_counted(tmp_path, bad_line, reason):
    root = _dataset(tmp_path)
    path = root / "train.jsonl"
    bad_line = bad_line.replace(b"{tmp}", str(tmp_path).encode())
    path.write_bytes(json.dumps(GOOD_ROW).encode() + b"\n" + bad_line + b"\n" + json.dumps(GOOD_ROW).encode() + b"\n")
    samples, summary = read_samples(path)
    assert [s.id for s in samples] == ["good", "good"]
    _assert_skipped_and_counted(summary, reason, line=2, kept=2)


# ---------------------------------------------------------------- source converters

def _jsonl(path: Path, *records) -> Path:
    path.write_bytes(b"\n".join(r if isinstance(r, bytes) else json.dumps(r).encode() for r in records) + b"\n")
    return path


def _llava(image, id_="1") -> dict:
    return {"id": id_, "image": image, "conversations": [{"from": "human", "value": "How many dots?"},
                                                         {"from": "gpt", "value": LLAVA_ANSWER}]}


CONVERTER_CASES = {
    "JSON array row": (lambda root, tmp: _jsonl(root / "in.jsonl", _llava("ok.png"), [1, 2]), "not an object", 2),
    "bytes of the wrong type": (lambda root, tmp: _jsonl(root / "in.jsonl", _llava("ok.png"),
                                                         _llava({"bytes": "iVBORw0KGgo="}, "2")), "bad field", 2),
    "source image path with ..": (lambda root, tmp: _jsonl(root / "in.jsonl", _llava("ok.png"),
                                                           _llava("../secret.png", "2")), "image outside root", 2),
    "absolute source image path": (lambda root, tmp: _jsonl(root / "in.jsonl", _llava("ok.png"),
                                                            _llava(str(tmp / "secret.png"), "2")),
                                   "image outside root", 2),
    "non-UTF-8 line": (lambda root, tmp: _jsonl(root / "in.jsonl", _llava("ok.png"), b'{"id": "caf\xe9"}'),
                       "not UTF-8", 2),
}


@pytest.mark.parametrize("make,reason,line", CONVERTER_CASES.values(), ids=CONVERTER_CASES.keys())
def test_bad_source_record_is_skipped_and_counted(tmp_path, make, reason, line):
    root = _dataset(tmp_path)
    out_file, summary = convert("llava_cot", make(root, tmp_path), tmp_path / "out")
    _assert_skipped_and_counted(summary, reason, line)
    samples, check = read_samples(out_file, strict=True)  # what was written loads, confined
    assert len(samples) == 1 and not any(".." in p or p.startswith("/") for p in samples[0].images)


def test_non_utf8_json_file_is_one_counted_record(tmp_path):
    root = _dataset(tmp_path)
    path = root / "in.json"
    path.write_bytes(b'[\n  {"id": "1",\n   "problem": "caf\xe9"}\n]\n')
    out_file, summary = convert("mmk12", path, tmp_path / "out")
    assert summary.rows == 1 and summary.kept == 0 and dict(summary.skipped) == {"not UTF-8": 1}
    assert re.search(r"in\.json:3: not UTF-8", summary.examples[0]), summary.examples
    assert out_file.read_text() == ""


def test_corrupt_parquet_is_one_counted_record(tmp_path):
    root = _dataset(tmp_path)
    path = root / "train.parquet"
    pq.write_table(pa.table({"id": ["1"], "image": ["ok.png"], "question": ["How many?"], "answer": ["3"]}), path)
    path.write_bytes(path.read_bytes()[:-20])  # the footer is gone
    out_file, summary = convert("mmk12", path, tmp_path / "out")
    assert summary.kept == 0 and dict(summary.skipped) == {"corrupt parquet": 1}
    assert "train.parquet: corrupt parquet file" in summary.examples[0]


# ---------------------------------------------------------------- RL prompts

def test_rl_prompt_over_the_context_is_skipped_and_counted(tmp_path, caplog):
    generate(WorldSpec(num=10, seed=0, val_fraction=0.1, test_fraction=0.1), tmp_path)
    path = tmp_path / "train.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    rows[0]["question"] = "How many red circles? " * 5000  # ~25k tokens (a 5 MB one gave a 1M-token prompt)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = load_config(ROOT / "recipes/tiny/rl.yaml", [f"data.train_path={path}"])
    limit = max_prompt_tokens(cfg, max_position_embeddings=4096)  # the tiny model's context
    assert limit == 4096 - cfg.generation.sampling.max_new_tokens and cfg.rl.max_prompt_tokens is None
    with caplog.at_level(logging.WARNING):
        prompts = load_rl_prompts(cfg, path)
    assert [s.id for s in prompts.samples] == [r["id"] for r in rows[1:]]
    assert prompts.skipped == {f"prompt longer than max_prompt_tokens={limit}": 1}
    assert "1 of 8 samples skipped for RL" in caplog.text
