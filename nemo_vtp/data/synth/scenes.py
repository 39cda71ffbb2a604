"""Scene descriptions and the questions asked about them, for the synthetic perception world.

A family (`shapes`, `bars`, `digits`, `clock`, `ruler`) makes a scene dict from a seeded
`random.Random` and a difficulty level (1 easy .. 3 hard); a question type reads facts off the
scene and returns a `Question`: the text, the gold answer, the exact visual key facts (what the
image shows, stated in `<description>`), the textual key facts (numbers and the arithmetic of the
reasoning, stated in `<think>`) and the reference description/think built from those facts, so each
fact appears verbatim in the reference response.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from nemo_vtp.data.synth.render import COLORS

COLOR_NAMES = tuple(COLORS)
SHAPES = ("circle", "square", "triangle")
LEVELS = (1, 2, 3)


@dataclass
class Question:
    question: str
    answer: str
    visual: list[str]  # facts the description must state
    textual: list[str]  # facts the reasoning must state
    intro: str  # the scene sentence that opens the description
    asks: str  # what the question asks, in the words of the reasoning
    choices: list[str] | None = None

    def __post_init__(self):
        # Two steps can coincide ("8 - 4 = 4" twice); a key fact is listed once.
        self.visual = list(dict.fromkeys(self.visual))
        self.textual = list(dict.fromkeys(self.textual))

    @property
    def description(self) -> str:
        return f"{self.intro}: {', '.join(self.visual)}."

    @property
    def think(self) -> str:
        return f"The question asks {self.asks}. {'; '.join(self.textual)}. So the answer is {self.answer}."


class Resample(Exception):
    """The scene cannot support the question (e.g. a tie); the caller draws a new scene."""


def plural(n: int, noun: str) -> str:
    """'1 red circle', '3 red circles'."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


# ---------------------------------------------------------------- shapes

def shapes_scene(rng: random.Random, level: int, size: int) -> dict:
    n_objects = {1: (3, 5), 2: (5, 8), 3: (7, 11)}[level]
    colors = rng.sample(COLOR_NAMES, level + 1)
    shapes = rng.sample(SHAPES, level)
    sizes = ("large", "small") if level == 3 else ("large",)
    grid = 4
    cell = size // grid
    cells = rng.sample(range(grid * grid), rng.randint(*n_objects))
    objects = []
    for c in sorted(cells):
        obj_size = rng.choice(sizes)
        r = round(cell * (0.4 if obj_size == "large" else 0.22))
        slack = cell // 2 - r - 1
        objects.append({
            "shape": rng.choice(shapes), "color": rng.choice(colors), "size": obj_size, "r": r,
            "x": (c % grid) * cell + cell // 2 + rng.randint(-slack, slack),
            "y": (c // grid) * cell + cell // 2 + rng.randint(-slack, slack),
        })
    return {"kind": "shapes", "size": size, "objects": objects}


def _count(scene: dict, **match: str) -> int:
    return sum(all(o[k] == v for k, v in match.items()) for o in scene["objects"])


def _shapes_intro(scene: dict) -> str:
    return f"The image shows {plural(len(scene['objects']), 'shape')}"


def ask_shapes_count(scene: dict, rng: random.Random, level: int) -> Question:
    obj = rng.choice(scene["objects"])
    color, shape = obj["color"], obj["shape"]
    n = _count(scene, color=color, shape=shape)
    if level < 3:
        visual, textual = [plural(n, f"{color} {shape}")], [str(n)]
        question = f"How many {color} {shape}s are there?"
    else:
        large = _count(scene, color=color, shape=shape, size="large")
        small = _count(scene, color=color, shape=shape, size="small")
        visual = [plural(large, f"large {color} {shape}"), plural(small, f"small {color} {shape}")]
        textual = [f"{large} + {small} = {n}"]
        question = f"How many {color} {shape}s are there, large and small together?"
    return Question(question, str(n), visual, textual, _shapes_intro(scene), f"for the number of {color} {shape}s")


def ask_shapes_total(scene: dict, rng: random.Random, level: int) -> Question:
    present = sorted({o["color"] for o in scene["objects"]}, key=COLOR_NAMES.index)
    k = 2 if level < 3 else 3
    if len(present) < k:
        raise Resample
    colors = sorted(rng.sample(present, k), key=COLOR_NAMES.index)
    counts = [_count(scene, color=c) for c in colors]
    total = sum(counts)
    names = " and ".join(f"{c} shapes" for c in colors) if k == 2 else f"{colors[0]}, {colors[1]} and {colors[2]} shapes"
    return Question(
        f"How many {names} are there in total?", str(total),
        [plural(n, f"{c} shape") for n, c in zip(counts, colors)],
        [f"{' + '.join(map(str, counts))} = {total}"],
        _shapes_intro(scene), f"for the total number of {names}",
    )


def ask_shapes_compare(scene: dict, rng: random.Random, level: int) -> Question:
    present = sorted({o["color"] for o in scene["objects"]}, key=COLOR_NAMES.index)
    if len(present) < 2:
        raise Resample
    c1, c2 = rng.sample(present, 2)
    a, b = _count(scene, color=c1), _count(scene, color=c2)
    if a == b:
        raise Resample
    winner = c1 if a > b else c2
    return Question(
        f"Are there more {c1} shapes or {c2} shapes? Answer with the colour.", winner,
        [plural(a, f"{c1} shape"), plural(b, f"{c2} shape")],
        [f"{max(a, b)} > {min(a, b)}"],
        _shapes_intro(scene), f"whether there are more {c1} or {c2} shapes", choices=[c1, c2],
    )


# ---------------------------------------------------------------- bars

def bars_scene(rng: random.Random, level: int, size: int) -> dict:
    n_bars = level + 2
    max_value = 9 if level < 3 else 12
    unit = (size - 22) // max_value
    left, right = 8, size - 6
    slot = (right - left - 4) / n_bars
    bars = []
    for i, color in enumerate(rng.sample(COLOR_NAMES, n_bars)):
        x0 = round(left + 4 + i * slot + slot * 0.2)
        bars.append({"color": color, "value": rng.randint(1, max_value), "x0": x0, "x1": x0 + round(slot * 0.6)})
    return {"kind": "bars", "size": size, "bars": bars, "unit": unit, "max_value": max_value,
            "baseline": size - 10, "left": left, "right": right}


def _bar_fact(bar: dict) -> str:
    return f"the {bar['color']} bar is {bar['value']}"


def _bars_intro(scene: dict) -> str:
    return f"A bar chart with {len(scene['bars'])} bars"


def ask_bars_read(scene: dict, rng: random.Random, level: int) -> Question:
    bar = rng.choice(scene["bars"])
    return Question(f"What is the value of the {bar['color']} bar?", str(bar["value"]), [_bar_fact(bar)],
                    [str(bar["value"])], _bars_intro(scene), f"for the value of the {bar['color']} bar")


def ask_bars_sum(scene: dict, rng: random.Random, level: int) -> Question:
    chosen = rng.sample(scene["bars"], 2 if level < 3 else 3)
    total = sum(b["value"] for b in chosen)
    names = " and ".join(f"the {b['color']} bar" for b in chosen)
    return Question(f"What is the sum of the values of {names}?", str(total), [_bar_fact(b) for b in chosen],
                    [f"{' + '.join(str(b['value']) for b in chosen)} = {total}"], _bars_intro(scene),
                    f"for the sum of {names}")


def ask_bars_difference(scene: dict, rng: random.Random, level: int) -> Question:
    hi, lo = sorted(rng.sample(scene["bars"], 2), key=lambda b: -b["value"])
    if hi["value"] == lo["value"]:
        raise Resample
    diff = hi["value"] - lo["value"]
    return Question(f"How much greater is the value of the {hi['color']} bar than that of the {lo['color']} bar?",
                    str(diff), [_bar_fact(hi), _bar_fact(lo)], [f"{hi['value']} - {lo['value']} = {diff}"],
                    _bars_intro(scene), f"for the {hi['color']} bar minus the {lo['color']} bar")


def ask_bars_max(scene: dict, rng: random.Random, level: int) -> Question:
    values = sorted((b["value"] for b in scene["bars"]), reverse=True)
    if values[0] == values[1]:
        raise Resample
    top = max(scene["bars"], key=lambda b: b["value"])
    return Question("Which bar has the largest value? Answer with its colour.", top["color"],
                    [_bar_fact(b) for b in scene["bars"]], [f"{top['value']} is the largest value"],
                    _bars_intro(scene), "for the bar with the largest value",
                    choices=[b["color"] for b in scene["bars"]])


# ---------------------------------------------------------------- digits

def digits_scene(rng: random.Random, level: int, size: int) -> dict:
    n_tiles = level + 1
    cell = size // 2
    side = round(size * 0.27)
    unit = max(1, side // 10)
    tiles = []
    for c, color in zip(sorted(rng.sample(range(4), n_tiles)), rng.sample(COLOR_NAMES, n_tiles)):
        slack = cell - side - 4
        tiles.append({"color": color, "digit": rng.randint(1 if level == 1 else 0, 9), "side": side,
                      "x": (c % 2) * cell + 2 + rng.randint(0, slack), "y": (c // 2) * cell + 2 + rng.randint(0, slack)})
    return {"kind": "digits", "size": size, "tiles": tiles, "unit": unit}


def _tile_fact(tile: dict) -> str:
    return f"the {tile['color']} tile shows {tile['digit']}"


def _digits_intro(scene: dict) -> str:
    return f"The image shows {plural(len(scene['tiles']), 'coloured tile')} with digits"


def ask_digits_read(scene: dict, rng: random.Random, level: int) -> Question:
    tile = rng.choice(scene["tiles"])
    return Question(f"What digit is on the {tile['color']} tile?", str(tile["digit"]), [_tile_fact(tile)],
                    [str(tile["digit"])], _digits_intro(scene), f"for the digit on the {tile['color']} tile")


def ask_digits_sum(scene: dict, rng: random.Random, level: int) -> Question:
    digits = [t["digit"] for t in scene["tiles"]]
    return Question("What is the sum of all the digits shown?", str(sum(digits)),
                    [_tile_fact(t) for t in scene["tiles"]], [f"{' + '.join(map(str, digits))} = {sum(digits)}"],
                    _digits_intro(scene), "for the sum of all the digits")


def ask_digits_max(scene: dict, rng: random.Random, level: int) -> Question:
    top = max(t["digit"] for t in scene["tiles"])
    return Question("What is the largest digit shown?", str(top), [_tile_fact(t) for t in scene["tiles"]],
                    [f"{top} is the largest digit"], _digits_intro(scene), "for the largest digit")


def ask_digits_product(scene: dict, rng: random.Random, level: int) -> Question:
    a, b = rng.sample(scene["tiles"], 2)
    product = a["digit"] * b["digit"]
    return Question(f"What is the product of the digits on the {a['color']} tile and the {b['color']} tile?",
                    str(product), [_tile_fact(a), _tile_fact(b)], [f"{a['digit']} * {b['digit']} = {product}"],
                    _digits_intro(scene), f"for the product of the {a['color']} and {b['color']} digits")


# ---------------------------------------------------------------- clock

def clock_scene(rng: random.Random, level: int, size: int) -> dict:
    step = 15 if level == 1 else 5
    return {"kind": "clock", "size": size, "radius": size // 2 - 6,
            "hour": rng.randint(1, 12), "minute": step * rng.randrange(60 // step)}


def clock_facts(hour: int, minute: int) -> list[str]:
    """Where the hands are: the perception behind reading the time."""
    hour_fact = (f"the hour hand points to {hour}" if minute == 0
                 else f"the hour hand is between {hour} and {hour % 12 + 1}")
    return [hour_fact, f"the minute hand points to {minute // 5 or 12}"]


def _hm(hour: int, minute: int) -> str:
    return f"{hour}:{minute:02d}"


def ask_clock_read(scene: dict, rng: random.Random, level: int) -> Question:
    time = _hm(scene["hour"], scene["minute"])
    return Question("What time does the clock show? Answer as H:MM.", time, clock_facts(scene["hour"], scene["minute"]),
                    [time], "An analog clock", "for the time shown")


def ask_clock_later(scene: dict, rng: random.Random, level: int) -> Question:
    delta = rng.choice((15, 30, 45)) if level == 1 else 5 * rng.randint(1, 12 * level)
    total = scene["minute"] + delta
    hour = (scene["hour"] - 1 + total // 60) % 12 + 1
    later = _hm(hour, total % 60)
    return Question(f"What time will it be {delta} minutes after the time shown? Answer as H:MM.", later,
                    clock_facts(scene["hour"], scene["minute"]),
                    [f"{_hm(scene['hour'], scene['minute'])} + {delta} minutes = {later}"],
                    "An analog clock", f"for the time {delta} minutes later")


# ---------------------------------------------------------------- ruler

def ruler_scene(rng: random.Random, level: int, size: int, n_bars: int) -> dict:
    length_cm, cm = 10, (size - 12) // 10
    bars = []
    for i, color in enumerate(rng.sample(COLOR_NAMES, n_bars)):
        start = 0 if level == 1 else rng.randint(0, 5)
        bars.append({"color": color, "start": start, "end": rng.randint(start + 1, length_cm), "y": 14 + 26 * i})
    return {"kind": "ruler", "size": size, "bars": bars, "cm": cm, "length_cm": length_cm,
            "origin": (size - length_cm * cm) // 2, "ruler_top": size - 32, "bar_height": 12}


def ruler_facts(bar: dict) -> list[str]:
    c = bar["color"]
    return [f"the {c} bar starts at {bar['start']} cm", f"the {c} bar ends at {bar['end']} cm"]


def _length_step(bar: dict) -> str:
    return f"{bar['end']} - {bar['start']} = {bar['end'] - bar['start']}"


def ask_ruler_measure(scene: dict, rng: random.Random, level: int) -> Question:
    bar = scene["bars"][0]
    length = bar["end"] - bar["start"]
    return Question(f"How long is the {bar['color']} bar, in cm?", str(length), ruler_facts(bar),
                    [f"{length} cm" if level == 1 else _length_step(bar)],
                    "A ruler marked in cm under a coloured bar", f"for the length of the {bar['color']} bar")


def ask_ruler_difference(scene: dict, rng: random.Random, level: int) -> Question:
    a, b = sorted(scene["bars"], key=lambda x: x["start"] - x["end"])
    la, lb = a["end"] - a["start"], b["end"] - b["start"]
    if la == lb:
        raise Resample
    steps = [] if level == 1 else [_length_step(a), _length_step(b)]
    return Question(f"How much longer is the {a['color']} bar than the {b['color']} bar, in cm?", str(la - lb),
                    ruler_facts(a) + ruler_facts(b), steps + [f"{la} - {lb} = {la - lb}"],
                    "A ruler marked in cm under two coloured bars",
                    f"how much longer the {a['color']} bar is than the {b['color']} bar")


# ---------------------------------------------------------------- registry

# (family, question type) -> (scene maker, question maker)
TASKS = {
    ("shapes", "count"): (shapes_scene, ask_shapes_count),
    ("shapes", "total"): (shapes_scene, ask_shapes_total),
    ("shapes", "compare"): (shapes_scene, ask_shapes_compare),
    ("bars", "read"): (bars_scene, ask_bars_read),
    ("bars", "sum"): (bars_scene, ask_bars_sum),
    ("bars", "difference"): (bars_scene, ask_bars_difference),
    ("bars", "max"): (bars_scene, ask_bars_max),
    ("digits", "read"): (digits_scene, ask_digits_read),
    ("digits", "sum"): (digits_scene, ask_digits_sum),
    ("digits", "max"): (digits_scene, ask_digits_max),
    ("digits", "product"): (digits_scene, ask_digits_product),
    ("clock", "read"): (clock_scene, ask_clock_read),
    ("clock", "later"): (clock_scene, ask_clock_later),
    ("ruler", "measure"): (lambda rng, level, size: ruler_scene(rng, level, size, 1), ask_ruler_measure),
    ("ruler", "difference"): (lambda rng, level, size: ruler_scene(rng, level, size, 2), ask_ruler_difference),
}


FAMILIES = tuple(dict.fromkeys(family for family, _ in TASKS))  # in TASKS order: shapes, bars, digits, clock, ruler


def make_task(family: str, qtype: str, rng: random.Random, level: int, size: int, max_tries: int = 100):
    """Draw scenes until the question type can be asked; returns (scene, Question)."""
    make_scene, ask = TASKS[(family, qtype)]
    for _ in range(max_tries):
        scene = make_scene(rng, level, size)
        try:
            return scene, ask(scene, rng, level)
        except Resample:
            continue
    raise RuntimeError(f"no valid {family}/{qtype} scene at level {level} after {max_tries} tries")
