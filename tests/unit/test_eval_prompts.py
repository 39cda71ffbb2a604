"""Eval prompts: the structured prompt carries exactly the training instruction, and the Table 1
perception strategies (explicit notes, structured grounding, implicit hint) build the prompts they name."""

import json

import pytest

from nemo_vtp.config import load_config
from nemo_vtp.data.instruction import FORMAT_INSTRUCTION
from nemo_vtp.data.processor import processor_from_config
from nemo_vtp.data.schema import KeyInfo, Sample
from nemo_vtp.data.tokenizer import load_tokenizer
from nemo_vtp.eval.benchmarks.synthetic import _item
from nemo_vtp.eval.evaluate import prompt_fn, response_source
from nemo_vtp.eval.items import EvalItem
from nemo_vtp.eval.prompts import GROUNDING_REQUEST, IMPLICIT_HINT, Notes, build_prompt, load_notes
from tests.conftest import ROOT

SAMPLE = Sample("s1", "synth", ["images/s1.png"], "How many red circles are there?", "3",
                key_info=KeyInfo(visual=["3 red circles"], textual=["3"]))
ITEM = EvalItem("m1", "mmmu", [], "Which is larger?\nA. 2\nB. 3", "Which is larger?\nA. 2\nB. 3\nAnswer with the "
                "option's letter from the given choices directly.", "B", choices=["2", "3"])


@pytest.mark.parametrize("recipes", [
    ("sft/sft-qwen25vl-7b-vtp12k-1n8g-tp2.yaml", "rl/rl-qwen25vl-7b-vtp22k-1n8g-tp4.yaml",
     "eval/eval-qwen25vl-7b-mmmu-1n8g-dp8.yaml"),
    ("tiny/sft.yaml", "tiny/rl.yaml", "eval/synthetic.yaml")])
def test_training_and_eval_user_text_are_the_same(recipes):
    """The processor's user text of a sample (SFT examples, RL prompts) is the eval's structured prompt
    of the same question, for the recipes that train and evaluate one model."""
    sft, rl, ev = (load_config(ROOT / "recipes" / r, ["run.output_dir=/tmp/x"]) for r in recipes)
    assert sft.data.instruction == rl.data.instruction == ev.data.instruction
    processor = processor_from_config(sft.data, load_tokenizer())
    item = _item(SAMPLE.to_dict(), "row", ROOT)
    assert processor.question_text(SAMPLE) == build_prompt(item, "structured", ev.data.instruction)
    assert prompt_fn(ev.model_copy(update={"eval": ev.eval.model_copy(update={"prompt": "structured"})}))(item) \
        == processor.question_text(SAMPLE)


def test_the_instruction_has_one_definition():
    cfg = load_config(ROOT / "recipes" / "sft" / "sft-qwen25vl-7b-vtp12k-1n8g-tp2.yaml", [])
    assert cfg.data.instruction == FORMAT_INSTRUCTION and "<description>" in FORMAT_INSTRUCTION
    assert build_prompt(ITEM, "structured", FORMAT_INSTRUCTION) == f"{ITEM.body}\n{FORMAT_INSTRUCTION}"
    assert build_prompt(ITEM, "plain", FORMAT_INSTRUCTION) == ITEM.plain_prompt


def test_table1_styles():
    notes = Notes(["the red bar is 4"], ["12 cm"])
    assert build_prompt(ITEM, "plain", "", "implicit") == f"{IMPLICIT_HINT}\n{ITEM.plain_prompt}"
    assert build_prompt(ITEM, "plain", "", "structured") == f"{ITEM.plain_prompt}\n{GROUNDING_REQUEST}"
    both = build_prompt(ITEM, "plain", "", "explicit-notes", notes)
    assert both.endswith(f"\n\n{ITEM.plain_prompt}") and "- Visual: the red bar is 4" in both and "- Text: 12 cm" in both
    visual = build_prompt(ITEM, "plain", "", "explicit-notes", notes, "visual")
    assert "the red bar is 4" in visual and "12 cm" not in visual
    textual = build_prompt(ITEM, "plain", "", "explicit-notes", notes, "textual")
    assert "12 cm" in textual and "the red bar is 4" not in textual
    # The structured base prompt with the implicit hint: the trained instruction stays at the end.
    assert build_prompt(ITEM, "structured", "Use tags.", "implicit").endswith("\nUse tags.")


def test_table1_style_errors():
    with pytest.raises(ValueError, match="needs perception notes"):
        build_prompt(ITEM, "plain", "", "explicit-notes")
    with pytest.raises(ValueError, match="eval.prompt=plain"):
        build_prompt(ITEM, "structured", FORMAT_INSTRUCTION, "structured")
    with pytest.raises(ValueError, match="prompt_style"):
        build_prompt(ITEM, "plain", "", "loud")


def test_notes_from_file_or_synthetic_key_facts(tmp_path):
    path = tmp_path / "notes.jsonl"
    path.write_text(json.dumps({"id": "m1", "visual": ["a bar"], "textual": ["5 kg"]}) + "\n\n")
    cfg = load_config(ROOT / "recipes" / "eval" / "synthetic.yaml",
                      ["eval.prompt_style=explicit-notes", f"eval.notes_file={path}"])
    make = prompt_fn(cfg)
    assert "- Visual: a bar\n- Text: 5 kg" in make(ITEM)
    synthetic = make(_item(SAMPLE.to_dict(), "row", ROOT))  # not in the file: the item's own key facts
    assert "- Visual: 3 red circles\n- Text: 3" in synthetic and synthetic.endswith(SAMPLE.question)
    assert load_notes(path)["m1"] == Notes(["a bar"], ["5 kg"])
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"visual": []}\n')
    with pytest.raises(ValueError, match="needs an 'id'"):
        load_notes(bad)
    # A strategy's results are kept apart from the plain run's (resume guard).
    assert response_source(cfg)["prompt_style"] == "explicit-notes"
    plain = load_config(ROOT / "recipes" / "eval" / "synthetic.yaml", [])
    assert "prompt_style" not in response_source(plain)
