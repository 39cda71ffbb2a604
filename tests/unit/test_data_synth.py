"""Synthetic world: determinism, balance, and key facts / answers re-derived from the scene description
and checked against the rendered pixels."""

import hashlib
import json
import math
import re
from collections import Counter

import pytest
from PIL import Image

from nemo_vtp.data.io import read_samples
from nemo_vtp.data.synth import WorldSpec, generate, make_sample, task_combos, world_differences
from nemo_vtp.data.synth.render import COLORS, render

NUM = 3 * len(task_combos((1, 2, 3)))  # three full rounds of every (family, question type, level)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    out = tmp_path_factory.mktemp("world")
    generate(WorldSpec(num=NUM, seed=7), out)
    samples = []
    for split in ("train", "val", "test"):
        rows, summary = read_samples(out / f"{split}.jsonl", strict=True)
        assert summary.kept == len(rows)
        samples += rows
    return out, samples


def _digest(folder):
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_same_seed_same_bytes(world, tmp_path):
    out, _ = world
    generate(WorldSpec(num=NUM, seed=7), tmp_path / "again")
    assert _digest(out) == _digest(tmp_path / "again")
    generate(WorldSpec(num=NUM, seed=8), tmp_path / "other")
    assert _digest(tmp_path / "other")["train.jsonl"] != _digest(out)["train.jsonl"]


def test_balanced_types_levels_and_splits(world):
    _, samples = world
    assert len(samples) == NUM
    by_task = Counter((s.meta["family"], s.meta["qtype"]) for s in samples)
    by_level = Counter(s.meta["level"] for s in samples)
    assert len(set(by_task.values())) == 1 and len(by_task) == NUM // 9
    assert set(by_level.values()) == {NUM // 3}
    splits = Counter(s.meta["split"] for s in samples)
    assert splits == {"train": NUM - 2 * round(NUM * 0.1), "val": round(NUM * 0.1), "test": round(NUM * 0.1)}


def _answer_from_scene(scene, q):
    """Independent derivation of the gold answer from the scene and the question text."""
    colors = [c for c in re.findall(r"\b(" + "|".join(COLORS) + r")\b", q)]
    kind = scene["kind"]
    if kind == "shapes":
        objs = scene["objects"]
        if q.startswith("How many") and "in total" not in q:
            shape = re.search(r"(circle|square|triangle)s", q).group(1)
            return str(sum(o["color"] == colors[0] and o["shape"] == shape for o in objs))
        counts = [sum(o["color"] == c for o in objs) for c in colors]
        return str(sum(counts)) if "in total" in q else colors[counts.index(max(counts))]
    if kind in ("bars", "digits"):
        items = scene["bars"] if kind == "bars" else scene["tiles"]
        key = "value" if kind == "bars" else "digit"
        val = {i["color"]: i[key] for i in items}
        if "largest" in q:
            top = max(items, key=lambda i: i[key])
            return top["color"] if kind == "bars" else str(top[key])
        if "sum of all" in q:
            return str(sum(val.values()))
        if "sum" in q:
            return str(sum(val[c] for c in colors))
        if "greater" in q:
            return str(val[colors[0]] - val[colors[1]])
        if "product" in q:
            return str(val[colors[0]] * val[colors[1]])
        return str(val[colors[0]])
    if kind == "clock":
        later = int(re.search(r"(\d+) minutes", q).group(1)) if "after" in q else 0
        minutes = scene["hour"] % 12 * 60 + scene["minute"] + later
        hour = (minutes // 60) % 12 or 12
        return f"{hour}:{minutes % 60:02d}"
    length = {b["color"]: b["end"] - b["start"] for b in scene["bars"]}
    return str(length[colors[0]] - length[colors[1]]) if "longer" in q else str(length[colors[0]])


def _check_fact(scene, fact):
    """A visual fact, parsed back, must hold in the scene."""
    kind = scene["kind"]
    if kind == "shapes":
        n, size, color, noun = re.fullmatch(r"(\d+) (large |small )?(\w+) (\w+?)s?", fact).groups()
        match = [o for o in scene["objects"] if o["color"] == color and (noun == "shape" or o["shape"] == noun)
                 and (size is None or o["size"] == size.strip())]
        assert len(match) == int(n), fact
    elif kind == "bars":
        color, v = re.fullmatch(r"the (\w+) bar is (\d+)", fact).groups()
        assert {b["color"]: b["value"] for b in scene["bars"]}[color] == int(v), fact
    elif kind == "digits":
        color, d = re.fullmatch(r"the (\w+) tile shows (\d)", fact).groups()
        assert {t["color"]: t["digit"] for t in scene["tiles"]}[color] == int(d), fact
    elif kind == "clock":
        h, m = scene["hour"], scene["minute"]
        expected = {f"the minute hand points to {m // 5 or 12}",
                    f"the hour hand points to {h}" if m == 0 else f"the hour hand is between {h} and {h % 12 + 1}"}
        assert fact in expected, fact
    else:
        color, which, cm = re.fullmatch(r"the (\w+) bar (starts|ends) at (\d+) cm", fact).groups()
        bar = next(b for b in scene["bars"] if b["color"] == color)
        assert bar["start" if which == "starts" else "end"] == int(cm), fact


def _check_arithmetic(fact):
    m = re.fullmatch(r"(\d+):(\d\d) \+ (\d+) minutes = (\d+):(\d\d)", fact)
    if m:
        h, mm, k, h2, m2 = map(int, m.groups())
        t = (h % 12) * 60 + mm + k
        assert ((t // 60) % 12 or 12, t % 60) == (h2, m2), fact
        return
    m = re.fullmatch(r"([\d +*-]+) = (\d+)", fact)
    if m:
        assert eval(m.group(1)) == int(m.group(2)), fact  # digits and + - * only (matched above)
    m = re.fullmatch(r"(\d+) > (\d+)", fact)
    if m:
        assert int(m.group(1)) > int(m.group(2)), fact


def test_key_facts_and_answers_rederived_from_scene(world):
    _, samples = world
    for s in samples:
        scene = json.loads(s.meta["scene"])
        assert _answer_from_scene(scene, s.question) == s.answer, s.id
        assert s.key_info.visual and s.key_info.textual
        for fact in s.key_info.visual:
            _check_fact(scene, fact)
            assert fact in s.response.description
        for fact in s.key_info.textual:
            _check_arithmetic(fact)
            assert fact in s.response.think
        assert s.response.answer == s.answer
        if s.choices:
            assert s.answer in s.choices


def _rgb(name):
    return COLORS[name]


def test_rendered_pixels_match_scene(world):
    out, samples = world
    for s in samples:
        scene = json.loads(s.meta["scene"])
        im = Image.open(out / s.images[0]).convert("RGB")
        assert im.size == (scene["size"], scene["size"])
        assert im.tobytes() == render(scene).tobytes()
        px = im.load()
        if scene["kind"] == "shapes":
            for o in scene["objects"]:
                assert px[o["x"], o["y"]] == _rgb(o["color"])
        elif scene["kind"] == "bars":
            for b in scene["bars"]:
                top = scene["baseline"] - b["value"] * scene["unit"]
                mid = (b["x0"] + b["x1"]) // 2
                assert px[mid, top + 1] == _rgb(b["color"]) and px[mid, top - 2] != _rgb(b["color"])
        elif scene["kind"] == "ruler":
            for b in scene["bars"]:
                y = b["y"] + 2
                x0, x1 = scene["origin"] + b["start"] * scene["cm"], scene["origin"] + b["end"] * scene["cm"]
                assert px[x0, y] == _rgb(b["color"]) and px[x1 - 1, y] == _rgb(b["color"]) and px[x1, y] != _rgb(b["color"])
        elif scene["kind"] == "clock":
            angle = math.radians(scene["minute"] * 6)
            c, r = scene["size"] // 2, scene["radius"] - 12
            assert px[round(c + r * math.sin(angle)), round(c - r * math.cos(angle))] == _rgb("blue")
        else:
            for t in scene["tiles"]:
                assert px[t["x"] + 1, t["y"] + 1] == _rgb(t["color"])


def test_make_sample_is_pure():
    spec = WorldSpec(num=10, seed=3)
    assert make_sample(spec, 4)[0].to_dict() == make_sample(spec, 4)[0].to_dict()
    assert make_sample(spec, 4)[0].to_dict() != make_sample(WorldSpec(num=10, seed=4), 4)[0].to_dict()


def test_families_select_scene_families_and_stay_balanced():
    spec = WorldSpec(num=2 * len(task_combos((1, 2), ("shapes", "clock"))), seed=3, levels=(1, 2),
                     families=("shapes", "clock"))
    samples = [make_sample(spec, i)[0] for i in range(spec.num)]
    by_task = Counter((s.meta["family"], s.meta["qtype"], s.meta["level"]) for s in samples)
    assert {family for family, _, _ in by_task} == {"shapes", "clock"}
    assert len(by_task) == 2 * (3 + 2) and set(by_task.values()) == {2}  # 3 shapes + 2 clock types, 2 levels
    # The default is every family, in the order samples were always drawn (existing worlds keep their bytes).
    assert task_combos((1,)) == task_combos((1,), ("shapes", "bars", "digits", "clock", "ruler"))
    assert [c[0] for c in task_combos((1,))][:4] == ["shapes"] * 3 + ["bars"]


@pytest.mark.parametrize("families, levels", [(("shape",), (1,)), ((), (1,)), (("shapes",), (4,))])
def test_unknown_family_or_level_is_a_clear_error(families, levels):
    with pytest.raises(ValueError, match="families must be|levels must be"):
        task_combos(levels, families)


def test_world_differences_name_each_changed_field(tmp_path):
    spec = WorldSpec(num=6, seed=2, levels=(1,), families=("shapes",))
    generate(spec, tmp_path)
    manifest = tmp_path / "world.json"
    assert json.loads(manifest.read_text())["families"] == ["shapes"]
    assert world_differences(spec, manifest) == []
    other = WorldSpec(num=6, seed=2, levels=(1, 2), families=("shapes", "bars"))
    lines = world_differences(other, manifest)
    assert [line.split(":")[0] for line in lines] == ["levels", "families"]
    assert lines[1].endswith("has ['shapes'], the recipe asks for ['shapes', 'bars']")
    # A manifest written before `families` existed describes the default world (every family).
    old = json.loads(manifest.read_text())
    del old["families"]
    manifest.write_text(json.dumps(old))
    assert [line.split(":")[0] for line in world_differences(spec, manifest)] == ["families"]
    assert world_differences(WorldSpec(num=6, seed=2, levels=(1,)), manifest) == []
