"""Data engine pieces without a model: prompts and parsers, chain selection, grounding, the formal
description, the resumable sharded runner, settings, and both pipelines over the scripted teacher."""

import json
from dataclasses import replace

import pytest

from nemo_vtp.config.data_engine import CleanSFTConfig, DataEngineConfig
from nemo_vtp.data.annotate import Annotator, Chain, ground, majority_answer, top_budget
from nemo_vtp.data.clean_sft import Cleaner, formal_description, overall_score
from nemo_vtp.data.engine_cli import load_settings
from nemo_vtp.data.io import read_samples, resolve_images
from nemo_vtp.data.prompts import VERSIONS, Facts, load_prompt, parse_facts, parse_rewrite, parse_score, question_text
from nemo_vtp.data.runner import Outcome, ShardFiles, finished_ids, parse_shard, run_samples
from nemo_vtp.data.schema import Response, Sample
from nemo_vtp.data.scripted_teacher import Noise, ScriptedTeacher, question_facts
from nemo_vtp.data.synth import WorldSpec, generate
from nemo_vtp.data.teachers import ChatRequest, Completion, ParseError, completions_from_reply, user_message
from nemo_vtp.rewards.matching import IndexedText, fact_in_text
from nemo_vtp.rewards.parsing import Sections


def _c(text: str) -> list[Completion]:
    return [Completion(text, None, 0)]


# ---------------------------------------------------------------------- prompts and parsers
def test_every_prompt_file_renders_and_documents_its_parsing():
    fields = {"question": "Q?", "description": "D", "think": "T", "answer": "A", "formal_description": "F",
              "reasoning": "R"}
    for name, version in VERSIONS.items():
        prompt = load_prompt(name)
        assert prompt.tag == f"{name}.v{version}" and "parsing" in prompt.rules and "reply" in prompt.rules
        text = prompt.render(**fields)
        assert "#" not in text.splitlines()[0] and "Q?" in text and "$" not in text
    with pytest.raises(KeyError, match="question"):
        load_prompt("chain").render()


@pytest.mark.parametrize(("reply", "want"), [
    ("<score>7</score>", 0.7), ("a <score>2</score> b <score> 10 </score>", 1.0), ("<score>0</score>", 0.0),
    ("<score>11</score>", None), ("score: 7", None), ("", None)])
def test_parse_score(reply, want):
    if want is None:
        with pytest.raises(ParseError):
            parse_score(_c(reply))
    else:
        assert parse_score(_c(reply)) == want


def test_parse_facts_rules():
    text = ("noise <visual>\n- 3 red circles\n* 3 red circles\n1. the blue bar is 7\n\n</visual>\n"
            "<textual>\n- 3 + 4 = 7 || add them\n- 7\n</textual>")
    facts = parse_facts(_c(text))
    assert facts.visual == ["3 red circles", "the blue bar is 7"]  # bullets stripped, duplicates dropped
    assert facts.textual == ["3 + 4 = 7", "7"] and facts.steps == ["add them", ""]
    for bad in ["<visual>\n- a\n</visual>", "<visual></visual><textual></textual>", "just text"]:
        with pytest.raises(ParseError):
            parse_facts(_c(bad))
    assert parse_facts(_c("<visual></visual><textual>- 5</textual>")).textual == ["5"]


def test_parse_rewrite_needs_some_section():
    text, sections = parse_rewrite(_c("<description>d</description><answer>4</answer>"))
    assert sections.answer == "4" and sections.think == ""
    with pytest.raises(ParseError):
        parse_rewrite(_c("gibberish without tags"))


def test_completions_from_reply_sums_logprobs():
    reply = {"choices": [{"message": {"content": "a b"}, "finish_reason": "stop",
                          "logprobs": {"content": [{"logprob": -0.5}, {"logprob": -1.0}]}},
                         {"message": {"content": "c"}, "logprobs": None}]}
    first, second = completions_from_reply(reply)
    assert (first.logprob, first.num_tokens, first.mean_logprob) == (-1.5, 2, -0.75)
    assert second.logprob is None and second.text == "c"
    assert ChatRequest([], seed=3).body("m") == {"messages": [], "n": 1, "max_tokens": 256, "temperature": 0.0,
                                                 "top_p": 1.0, "logprobs": False, "seed": 3, "model": "m"}


# ---------------------------------------------------------------------- selection and grounding
def _chain(answer: str, lp: float) -> Chain:
    return Chain("t", answer, Sections("d", "t", answer), lp, 1, lp)


def test_top_budget_and_majority():
    chains = [_chain("4", -5.0), _chain("four", -1.0), _chain("5", -2.0), _chain("", -0.5)]
    assert [c.text for c in top_budget(chains, 2)] == ["", "four"]
    sample = Sample("x", "s", [], "q", "4")
    answer, share = majority_answer(chains, sample)
    assert answer == "4" and share == 0.5  # "4" and "four" agree under R_acc; the empty answer counts against
    assert majority_answer([_chain("", 0.0)], sample) == (None, 0.0)


def test_ground_keeps_given_facts_the_chain_states_and_uses():
    chain = Sections("A bar chart: the red bar is 4, the blue bar is 6.",
                     "The question asks for the sum of the red bar and the blue bar. 4 + 6 = 10. So the answer is 10.",
                     "10")
    question = "What is the sum of the values of the red bar and the blue bar, in cm?"
    facts = Facts(visual=["the red bar is 4", "the green bar is 2"],
                  textual=["the red bar and the blue bar", "4 + 6 = 10", "6 + 5 = 11", "in cm"],
                  steps=["sum", "computed", "invented", "unit"])
    kept, removed_v, removed_z = ground(facts, chain, question)
    assert kept.visual == ["the red bar is 4"] and removed_v == ["the green bar is 2"]
    # Z holds given facts the reasoning applies: the chain's own computation is not given (not in the
    # question or the description), the invented one is neither given nor used, the unit is never used.
    assert kept.textual == ["the red bar and the blue bar"] and kept.steps == ["sum"]
    assert removed_z == ["4 + 6 = 10", "6 + 5 = 11", "in cm"]


# ---------------------------------------------------------------------- clean-sft scoring
def test_formal_description_sources():
    bare = Sample("x", "s", [], "q", "a")
    assert formal_description(bare) == ""
    text = formal_description(Sample("x", "s", [], "q", "a", response=Response("3 red circles", "t", "a"),
                                     meta={"boxes": '["cat", {"label": "dog"}]', "ocr": "EXIT"}))
    assert "- cat\n- dog" in text and "(OCR): EXIT" in text and "Earlier description: 3 red circles" in text


def test_overall_weights_and_validation():
    cfg = CleanSFTConfig()
    assert overall_score({"s_f": 1, "s_c": 1, "s_a": 1, "s_m": 1}, cfg) == pytest.approx(1.0)
    assert overall_score({"s_f": 1, "s_c": None, "s_a": 1, "s_m": 0}, cfg) == pytest.approx(0.60)
    assert overall_score({"s_f": 0, "s_c": 1, "s_a": 0, "s_m": 1}, cfg) == pytest.approx(0.40)
    with pytest.raises(ValueError, match="sum to 1"):
        CleanSFTConfig(weight_match=0.5)


# ---------------------------------------------------------------------- runner
def _samples(n: int) -> list[Sample]:
    return [Sample(f"s{i}", "t", [], f"q{i}", "1") for i in range(n)]


def test_runner_resumes_without_duplicates_and_retries_failures(tmp_path):
    calls = []
    fail = {"s1", "s3"}

    def process(s):
        calls.append(s.id)
        if s.id in fail:
            return Outcome("failed", "chains: http", detail="down")
        if s.id == "s4":
            raise RuntimeError("a bug")
        return Outcome("kept", sample=s) if s.id != "s2" else Outcome("dropped", "no accurate chain")

    kw = {"command": "t", "input_path": tmp_path / "in.jsonl", "out_dir": tmp_path / "out", "progress": False,
          "max_concurrency": 2}
    first = run_samples(_samples(6), process, **kw)
    assert (first.counts["kept"], first.counts["dropped"], first.counts["failed"]) == (2, 1, 3)
    assert first.reasons["failed: error: RuntimeError"] == 1 and first.reasons["failed: chains: http"] == 2
    fail.clear()
    calls.clear()
    second = run_samples(_samples(6), process, **kw)
    assert sorted(calls) == ["s1", "s3", "s4"] and second.already_done == 3
    files = ShardFiles.of(tmp_path / "out", (0, 1), "in")
    kept = [json.loads(line)["id"] for line in files.samples.read_text().splitlines()]
    assert sorted(kept) == ["s0", "s1", "s3", "s5"] and len(kept) == len(set(kept))
    assert json.loads(files.summary.read_text())["failed"] == 1  # s4 still raises
    calls.clear()
    run_samples(_samples(6), process, **kw)
    assert calls == ["s4"]


def test_partial_last_line_is_repaired(tmp_path):
    files = ShardFiles.of(tmp_path, (0, 1), "in")
    files.samples.write_text(json.dumps(_samples(1)[0].to_dict()) + "\n" + '{"id": "s1", "sour')
    files.records.write_text('{"id": "s0", "status": "kept"}\n{"id": "s2", "status": "dropped"}\n{"id": "s1"')
    assert finished_ids(files) == {"s0", "s2"}
    assert files.samples.read_text().endswith("\n") and files.records.read_text().endswith("}\n")


def test_shards_partition_the_input(tmp_path):
    seen = []
    for i in range(3):
        run_samples(_samples(10), lambda s: (seen.append(s.id), Outcome("kept", sample=s))[1], command="t",
                    input_path=tmp_path / "in.jsonl", out_dir=tmp_path, shard=(i, 3), progress=False)
        assert ShardFiles.of(tmp_path, (i, 3), "in").samples.name == f"in-0000{i}-of-00003.jsonl"
    assert sorted(seen) == sorted(s.id for s in _samples(10))
    with pytest.raises(ValueError):
        parse_shard("3/3")


def test_consecutive_failures_stop_the_run(tmp_path):
    summary = run_samples(_samples(20), lambda s: Outcome("failed", "chains: connection"), command="t",
                          input_path=tmp_path / "in.jsonl", out_dir=tmp_path / "out", progress=False,
                          max_consecutive_failures=3, max_concurrency=1)
    # The run stops submitting at the third failure in a row; work already in flight (at most
    # 2 x max_concurrency) still finishes and is recorded.
    failed = summary.counts["failed"]
    assert summary.stopped and 3 <= failed <= 4 and failed + summary.not_attempted == 20
    assert "rerun" in str(summary)


def test_duplicate_ids_in_input_are_counted(tmp_path):
    s = _samples(2)
    summary = run_samples([*s, s[0]], lambda x: Outcome("kept", sample=x), command="t",
                          input_path=tmp_path / "in.jsonl", out_dir=tmp_path / "out", progress=False)
    assert summary.counts["kept"] == 2 and summary.reasons["dropped: duplicate id in input"] == 1


# ---------------------------------------------------------------------- settings
def test_settings_from_overrides_and_flags(tmp_path):
    class Args:
        overrides = ["annotate.budget=2", "data_engine.requests.timeout_s=5"]
        teacher = ["http://a:1", str(tmp_path)]
        judge = "http://j:2"
        config = None

    cfg = load_settings(Args)
    assert cfg.annotate.budget == 2 and cfg.requests.timeout_s == 5
    assert [t.backend for t in cfg.teachers] == ["http", "local"] and cfg.judge_teacher.url == "http://j:2"
    Args.overrides = ["annotate.budgett=2"]
    with pytest.raises(ValueError, match="budget"):
        load_settings(Args)


# ---------------------------------------------------------------------- pipelines on the scripted teacher
class _Direct:
    """The scripted teacher called in process (no HTTP): enough for the pipeline logic."""

    def __init__(self, scripted):
        self.label, self.scripted = "scripted", scripted

    def chat(self, request):
        return completions_from_reply(self.scripted.reply(request.body(None)))


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    out = tmp_path_factory.mktemp("world")
    generate(WorldSpec(num=24, seed=5), out)
    return read_samples(out / "train.jsonl")[0], out


def test_annotate_keeps_grounded_facts(world):
    samples, base = world
    teacher = _Direct(ScriptedTeacher(samples, base, Noise(invent_visual=1.0, invent_textual=1.0)))
    cfg = DataEngineConfig(annotate={"num_chains": 6, "budget": 4})
    annotate = Annotator(cfg, [teacher], teacher, base)
    outcomes = [annotate(s) for s in samples]
    kept = [o.sample for o in outcomes if o.status == "kept"]
    assert len(kept) >= len(samples) // 2
    for sample in kept:
        note = json.loads(sample.meta["annotation"])
        assert note["removed_visual"] and note["removed_textual"]  # every invented fact was removed
        description = IndexedText.build(sample.response.description)
        assert all(fact_in_text(v, description) for v in sample.key_info.visual)
        assert sample.response.answer and note["accuracy"] == 1.0 and note["coherence"] >= 0.6


def test_annotate_recovers_the_exact_facts_from_a_noiseless_teacher(world):
    samples, base = world
    teacher = _Direct(ScriptedTeacher(samples, base, Noise(*[0.0] * 7)))
    # min_coherence 0: the scripted judge is R_cons, which scores the clock tasks' reference chains low
    # (the time is read from hand positions the description states, not from a number it states).
    cfg = DataEngineConfig(annotate={"num_chains": 2, "budget": 1, "min_coherence": 0.0})
    annotate = Annotator(cfg, [teacher], teacher, base)
    kept_z = 0
    for sample in samples:
        out = annotate(sample)
        if out.status != "kept":  # a question whose words the think never repeats gives no Z, V still counts
            assert out.reason == "no grounded facts" and not sample.key_info.visual
            continue
        got = out.sample
        assert got.key_info.visual == sample.key_info.visual and got.response == sample.response
        pairs = question_facts(sample.question, sample.response.think)
        # the teacher's Z is every given phrase; grounding keeps those the rule matcher finds stated in the
        # question + description and in the reasoning (a hedged fragment like "more yellow" of "more yellow
        # or orange shapes?" is not a statement, so it goes)
        sections = Sections(sample.response.description, sample.response.think, sample.response.answer)
        given = Facts(sample.key_info.visual, [f for f, _ in pairs], [s for _, s in pairs])
        kept, _, removed = ground(given, sections, sample.question)
        assert got.key_info.textual == kept.textual and len(kept.textual) + len(removed) == len(pairs)
        steps = dict(pairs)
        assert json.loads(got.meta["annotation"])["textual_steps"] == [steps[f] for f in kept.textual]
        kept_z += len(kept.textual)
    assert kept_z > 0


def test_annotated_z_holds_given_facts_not_computations(world):
    """The teacher's extraction adds an invented computation to Z every time: annotation removes it,
    and every Z fact left is in the question (the synthetic images hold no text)."""
    samples, base = world
    teacher = _Direct(ScriptedTeacher(samples, base, Noise(*[0.0] * 6, invent_textual=1.0)))
    cfg = DataEngineConfig(annotate={"num_chains": 2, "budget": 1, "min_coherence": 0.0})
    kept = [o.sample for o in map(Annotator(cfg, [teacher], teacher, base), samples) if o.status == "kept"]
    assert len(kept) >= len(samples) // 2
    for sample in kept:
        note = json.loads(sample.meta["annotation"])
        assert set(note["removed_textual"]) & {"6 + 5 = 11", "the total is 20", "4:15 + 30 minutes = 4:45"}
        assert all("=" not in z and z.lower() in sample.question.lower() for z in sample.key_info.textual)
        assert len(note["textual_steps"]) == len(sample.key_info.textual) and all(note["textual_steps"])


def test_annotate_self_consistency_and_thresholds(world):
    samples, base = world
    teacher = _Direct(ScriptedTeacher(samples, base, Noise(wrong_answer=0.0)))
    cfg = DataEngineConfig(annotate={"num_chains": 4, "budget": 4, "answer_source": "self_consistency"})
    outcome = Annotator(cfg, [teacher], teacher, base)(samples[0])
    assert outcome.status == "kept" and outcome.sample.answer == samples[0].answer
    strict = DataEngineConfig(annotate={"num_chains": 4, "budget": 4, "min_coherence": 1.0})
    noisy = _Direct(ScriptedTeacher(samples, base, Noise(wrong_fact=1.0, drop_clause=0.0)))
    outcomes = [Annotator(strict, [noisy], noisy, base)(s) for s in samples[:6]]
    # A bumped number the reasoning never uses (the total count of shapes) is no conflict: such a chain may pass.
    assert {o.reason for o in outcomes} <= {"", "no coherent chain", "no accurate chain"}
    assert "no coherent chain" in {o.reason for o in outcomes}
    assert all(json.loads(o.sample.meta["annotation"])["coherence"] == 1.0 for o in outcomes if o.status == "kept")


class _Recording:
    """A teacher that answers every request with fixed texts, by prompt kind, and keeps the requests."""

    def __init__(self, rewrite: str, fidelity: int = 10, coherence: int = 10):
        self.label, self.requests = "recording", []
        self.replies = {"rewrite": rewrite, "fidelity": f"<score>{fidelity}</score>",
                        "coherence": f"<score>{coherence}</score>"}

    def chat(self, request):
        text = request.messages[-1]["content"][-1]["text"]
        self.requests.append(text)
        kind = next(k for k in self.replies if text.splitlines()[0] == load_prompt(k).template.template.splitlines()[0])
        return [Completion(self.replies[kind], None, 0)]


def test_clean_sft_scores_and_keeps(world):
    samples, base = world
    clean = _Direct(ScriptedTeacher(samples, base, Noise(wrong_answer=0, wrong_fact=0, drop_clause=0, broken_tag=0)))
    cfg = DataEngineConfig()
    outcome = Cleaner(cfg, clean, clean, base)(samples[0])
    assert outcome.status == "kept"
    note = json.loads(outcome.sample.meta["clean_sft"])
    assert note["s_f"] == note["s_a"] == note["s_c"] == note["gold_match"] == 1.0
    assert note["overall"] >= cfg.clean_sft.threshold
    # A wrong answer the reasoning concludes agrees with it (s_a = 1) but is not the gold answer.
    wrong = _Direct(ScriptedTeacher(samples, base, Noise(wrong_answer=1.0, wrong_fact=0, drop_clause=0, broken_tag=0)))
    dropped = Cleaner(cfg, wrong, wrong, base)(samples[0])
    assert dropped.reason == "wrong answer" and json.loads(dropped.detail)["s_a"] == 1.0
    assert json.loads(dropped.detail)["gold_match"] == 0.0
    lenient = DataEngineConfig(clean_sft={"require_correct_answer": False})
    assert Cleaner(lenient, wrong, wrong, base)(samples[0]).status == "kept"
    bare = Sample("b", "s", samples[0].images, "q", "1")
    assert Cleaner(cfg, clean, clean, base)(bare).reason == "no formal description"


def test_clean_sft_rewrite_sees_neither_gold_answer_nor_original_reasoning(world):
    samples, base = world
    sample = replace(samples[0], answer="4217", response=Response("the red bar is 4", "SECRET-REASONING", "4217"))
    teacher = _Recording("<description>the red bar is 4</description><think>So the answer is 4217.</think>"
                         "<answer>4217</answer>")
    assert Cleaner(DataEngineConfig(), teacher, teacher, base)(sample).status == "kept"
    rewrite = teacher.requests[0]
    assert "the red bar is 4" in rewrite and "4217" not in rewrite and "SECRET-REASONING" not in rewrite


def test_clean_sft_s_a_is_reasoning_answer_agreement_and_s_f_the_fidelity_judge(world):
    samples, base = world
    sample = replace(samples[0], answer="7", response=Response("the red bar is 4, the blue bar is 3", "t", "7"))
    disagree = _Recording("<description>the red bar is 4, the blue bar is 3</description>"
                          "<think>4 + 3 = 7. So the answer is 8.</think><answer>7</answer>")
    out = Cleaner(DataEngineConfig(), disagree, disagree, base)(sample)
    assert out.status == "dropped" and json.loads(out.detail)["s_a"] == 0.0  # the answer matches gold, not the think
    agree = "<description>the red bar is 4, the blue bar is 3</description><think>4 + 3 = 7. So the answer is 7.</think>" \
            "<answer>7</answer>"
    poor = _Recording(agree, fidelity=2)
    out = Cleaner(DataEngineConfig(), poor, poor, base)(sample)
    assert out.status == "dropped" and json.loads(out.detail)["s_f"] == 0.2 and json.loads(out.detail)["s_a"] == 1.0
    good = _Recording(agree)
    assert Cleaner(DataEngineConfig(), good, good, base)(sample).status == "kept"


def test_scripted_fidelity_judge_scores_the_formal_description(world):
    samples, base = world
    sample = next(s for s in samples if len(s.key_info.visual) >= 2)
    teacher = _Direct(ScriptedTeacher(samples, base))
    images = resolve_images(sample, base)
    def judged(formal):
        text = load_prompt("fidelity").render(formal_description=formal, question=question_text(sample))
        return parse_score(teacher.chat(ChatRequest(user_message(text, images))))
    assert judged(sample.response.description) == 1.0
    assert judged(sample.key_info.visual[0]) == pytest.approx(round(10 / len(sample.key_info.visual)) / 10)
