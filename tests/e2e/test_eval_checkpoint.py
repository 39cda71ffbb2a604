"""`nemo-vtp eval` of a Megatron checkpoint end to end on CPU, nothing trained.

A random tiny Qwen2.5-VL (HF) is converted to a Megatron checkpoint laid out like a trainer's save_dir
(`latest` -> step folder, `hf/config.json` and no tokenizer files); the eval CLI (in this process;
the conversions run as child processes) is pointed at the save_dir. Checks: the per-sample JSONL,
summary.json and summary.md exist and agree with each other; every row's numbers are the rewards
package's on the row's response; the responses are exactly the greedy decoding of the source weights
on the training pipeline's prompts (so the conversion, the tokenizer fallback and the prompt path are
right); `evaluate_checkpoint` resumes the finished run without converting or loading anything, and an
output folder of one checkpoint refuses another.
"""

import contextlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

LIMIT, MAX_NEW_TOKENS = 8, 12


def _cli(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    env.pop("WORLD_SIZE", None)
    return subprocess.run([sys.executable, "-m", "nemo_vtp.cli", *args], env=env, cwd=ROOT, capture_output=True,
                          text=True, timeout=300, check=False)


def make_world_and_checkpoint(root: Path):
    """root/data: a synthetic world with 8 test rows; root/hf: a random tiny model (no tokenizer files);
    root/ckpts: its Megatron save_dir (the tracker -> iter_0000007). Returns (step folder, HF model)."""
    from nemo_vtp.data.synth.world import WorldSpec, generate
    from nemo_vtp.data.tokenizer import load_tokenizer, special_token_ids
    from nemo_vtp.models.qwen25_vl.config import preset
    from nemo_vtp.models.qwen25_vl.hf import random_hf_model

    generate(WorldSpec(num=80, seed=3), root / "data")
    # Untied head: with tied embeddings a random model just repeats the last prompt token, whatever the weights.
    arch = preset("tiny", tie_word_embeddings=False, **special_token_ids(load_tokenizer()))
    model = random_hf_model(arch, seed=11)
    model.save_pretrained(root / "hf")  # weights + config only: the checkpoint will carry no tokenizer
    step = root / "ckpts" / "iter_0000007"
    done = _cli("convert", "hf-to-megatron", "--hf-dir", str(root / "hf"), "--out", str(step))
    assert done.returncode == 0, done.stderr[-3000:]
    (root / "ckpts" / "latest_checkpointed_iteration.txt").write_text("7")
    assert not any(p.name.startswith("tokenizer") for p in (step / "hf").iterdir())
    return step, model


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    from nemo_vtp.eval.cli import main as eval_main

    root = tmp_path_factory.mktemp("evalckpt")
    step, model = make_world_and_checkpoint(root)
    out, stdout = root / "eval", io.StringIO()
    with contextlib.redirect_stdout(stdout):  # the CLI in this process: saves a second start of torch/transformers
        code = eval_main([str(ROOT / "recipes" / "eval" / "synthetic.yaml"), f"eval.model_path={root / 'ckpts'}",
                          f"eval.data_dir={root / 'data'}", f"eval.output_dir={out}", f"eval.limit={LIMIT}",
                          f"generation.sampling.max_new_tokens={MAX_NEW_TOKENS}", "logging.progress_bar=false"])
    assert code == 0
    return {"root": root, "out": out, "step": step, "model": model, "stdout": stdout.getvalue()}


def _rows(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "samples.rank0.jsonl").read_text().splitlines()]


def test_outputs_exist_and_agree(run):
    out = run["out"]
    rows, summary = _rows(out), json.loads((out / "summary.json").read_text())
    test_ids = [json.loads(line)["id"] for line in (run["root"] / "data" / "test.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rows] == test_ids[:LIMIT]
    assert summary["overall"]["n"] == LIMIT and summary["counts"]["missing"] == 0
    for metric in ("accuracy", "format", "vkey_coverage", "tkey_coverage"):
        have = [r["metrics"][metric] for r in rows if metric in r["metrics"]]
        assert have, metric
        assert summary["overall"][metric] == pytest.approx(sum(have) / len(have)), metric
    assert summary["overall"]["accuracy"] == pytest.approx(sum(r["correct"] for r in rows) / LIMIT)
    for group in ("family", "qtype", "level"):
        assert sum(v["n"] for v in summary["groups"][group].values()) == LIMIT
    markdown = (out / "summary.md").read_text()
    overall_row = f"| overall | {LIMIT} | {100 * summary['overall']['accuracy']:.1f} |"
    assert overall_row in markdown and overall_row in run["stdout"]


def test_every_row_is_scored_by_the_reward_rules(run):
    from nemo_vtp.rewards.accuracy import accuracy
    from nemo_vtp.rewards.matching import coverage
    from nemo_vtp.rewards.parsing import extract_sections, format_reward

    samples = {json.loads(line)["id"]: json.loads(line)
               for line in (run["root"] / "data" / "test.jsonl").read_text().splitlines()}
    for row in _rows(run["out"]):
        sample, response = samples[row["id"]], row["response"]
        sections = extract_sections(response)
        assert row["metrics"]["accuracy"] == accuracy(sections.answer, sample)
        assert row["metrics"]["format"] == format_reward(response)
        assert row["metrics"]["vkey_coverage"] == coverage(sample["key_info"]["visual"], sections.description)


def test_responses_are_the_greedy_decoding_of_the_checkpoint_weights(run):
    """The reference: the source HF weights in memory, prompts from the training pipeline's processor."""
    from nemo_vtp.config.generation import SamplingConfig
    from nemo_vtp.data.io import read_samples
    from nemo_vtp.data.processor import Processor
    from nemo_vtp.data.tokenizer import load_tokenizer
    from nemo_vtp.generation.engine import prompt_from_rl
    from nemo_vtp.generation.torch_engine import TorchEngine

    data = run["root"] / "data"
    samples = read_samples(data / "test.jsonl")[0][:LIMIT]
    tokenizer = load_tokenizer()
    processor = Processor(tokenizer)
    prompts = [prompt_from_rl(processor.rl_prompt(s, data)) for s in samples]
    engine = TorchEngine(run["model"], tokenizer)
    expected = engine.generate(prompts, SamplingConfig(temperature=0.0, max_new_tokens=MAX_NEW_TOKENS))
    rows = _rows(run["out"])
    assert [r["response"] for r in rows] == [group[0].text for group in expected]
    assert len({r["response"] for r in rows}) > 1  # a random model answers differently per image/question


def test_evaluate_checkpoint_resumes_without_reconverting_and_refuses_another_model(run, monkeypatch):
    from nemo_vtp.config import load_config
    from nemo_vtp.eval import model_source
    from nemo_vtp.eval.checkpoints import evaluate_checkpoint

    cache = run["out"] / "model_hf"
    [converted] = list(cache.iterdir())
    source = json.loads((converted / "source.json").read_text())
    assert source["checkpoint"] == str(run["step"].resolve())
    assert Path(source["tokenizer_from"]).name == "tokenizer"  # the tiny tokenizer: the checkpoint had none

    def no_conversion(*args, **kwargs):
        raise AssertionError("a finished evaluation must not convert again")

    monkeypatch.setattr(model_source, "convert_checkpoint", no_conversion)
    cfg = load_config(ROOT / "recipes" / "eval" / "synthetic.yaml",
                      [f"eval.data_dir={run['root'] / 'data'}", f"eval.limit={LIMIT}", "logging.progress_bar=false"])
    overall = evaluate_checkpoint(cfg, run["step"], run["out"])  # the step folder `latest` names: same model
    assert overall == json.loads((run["out"] / "summary.json").read_text())["overall"]
    assert list(overall) == ["n", "accuracy", "format", "tkey_coverage", "vkey_coverage"]
    assert len(_rows(run["out"])) == LIMIT  # nothing scored twice
    with pytest.raises(ValueError, match="holds the results of"):
        evaluate_checkpoint(cfg, run["root"] / "hf", run["out"])
