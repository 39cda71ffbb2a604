"""A deterministic, scripted teacher for measuring the data engine where the truth is known.

A random tiny model writes gibberish, and no real VLM runs on a laptop, so the pipeline's quality is
measured with this stand-in (bench/annotate_quality.py, tests). It answers OpenAI chat-completions
request bodies, and `serve()` puts it behind a real HTTP server, so the pipeline runs unchanged:
- chain and rewrite prompts: the sample is found by the SHA-256 of the request's image bytes and the
  question; the
  reply is the sample's reference response, perturbed per choice with seeded probabilities: a wrong
  answer, a wrong number in the description (a perception error the reasoning then contradicts), a
  dropped description clause, a broken tag. Log-probs are seeded noise, unrelated to correctness;
- coherence prompts: 10 x R_cons of the chain in the prompt (the rewards' rule), as `<score>N</score>`;
- fidelity prompts: 10 x the share of the sample's true visual key facts the formal description states
  word for word;
- extract prompts: V = the clauses of the chain's description, Z = the phrases of the question its
  think restates (entities, quantities with units), each mapped to the think sentence that applies it,
  read from the prompt (not from the sample), each with seeded noise: a dropped fact, an invented
  visual fact, an invented computation (which annotation must then reject as not given).
So the figures measure chain selection, parsing and grounding around a teacher of known error rates;
they are not a measure of any real model's extraction quality.
"""

from __future__ import annotations

import base64
import hashlib
import json
import random
import re
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from nemo_vtp.data.io import resolve_images
from nemo_vtp.data.prompts import load_prompt, question_text
from nemo_vtp.data.schema import Sample, format_response
from nemo_vtp.rewards.consistency import consistency


@dataclass(frozen=True)
class Noise:
    """Per-choice probabilities of each perturbation."""

    wrong_answer: float = 0.25  # chain: the answer (and the think's conclusion) is wrong
    wrong_fact: float = 0.2  # chain: one number of the description is off by one
    drop_clause: float = 0.15  # chain: one clause of the description is missing
    broken_tag: float = 0.05  # chain: the closing think tag is missing
    drop_fact: float = 0.1  # extract: each fact is left out with this probability
    invent_visual: float = 0.3  # extract: an invented visual fact is added
    invent_textual: float = 0.3  # extract: an invented computation is added


_NUM_RE = re.compile(r"\d+")
_FIELD_RE = {name: re.compile(rf"^{label}: (.*?)(?=\n\n[A-Z][a-z ]+: |\Z)", re.S | re.M)
             for name, label in [("question", "Question"), ("description", "Description"),
                                 ("think", "Reasoning"), ("answer", "Final answer")]}


def _first_line(name: str) -> str:
    return load_prompt(name).template.template.splitlines()[0]


def _bump(text: str, rng: random.Random) -> str:
    """`text` with one of its numbers changed by +1 (unchanged when it has none)."""
    spans = list(_NUM_RE.finditer(text))
    if not spans:
        return text
    m = rng.choice(spans)
    return text[:m.start()] + str(int(m.group()) + 1) + text[m.end():]


def _clauses(description: str) -> list[str]:
    body = description.split(":", 1)[1] if ":" in description else description
    return [c.strip().rstrip(".") for c in body.split(", ") if c.strip().rstrip(".")]


def _sentences(think: str) -> list[str]:
    return [s.strip().rstrip(".") for s in re.split(r"\.(?:\s+|$)|;\s+", think) if s.strip()]


_WORD_RE = re.compile(r"[A-Za-z0-9:.]+(?<!\.)")
_FILLER = {"the", "a", "an", "of", "is", "are", "what", "how", "which", "there", "in", "and", "than", "that", "to",
           "it", "be", "will", "does", "do", "after", "as", "with", "its", "on", "all"}


def question_facts(question: str, think: str) -> list[tuple[str, str]]:
    """(phrase, sentence) pairs: the longest runs of >= 2 question words that the think repeats word for
    word and that hold a content word, each with the first think sentence holding it.

    >>> question_facts("What time will it be 15 minutes after the time shown?",
    ...                "The question asks for the time 15 minutes later. 3:00 + 15 minutes = 3:15")[0]
    ('15 minutes', 'The question asks for the time 15 minutes later')
    """
    words, sentences = _WORD_RE.findall(question), _sentences(think)
    padded = f" {' '.join(_WORD_RE.findall(think)).lower()} "
    out, i = [], 0
    while i < len(words):
        j = i
        while j < len(words) and f" {' '.join(words[i:j + 1]).lower()} " in padded:
            j += 1
        phrase = " ".join(words[i:j])
        if j - i >= 2 and any(w.lower() not in _FILLER for w in words[i:j]):
            out.append((phrase, next((s for s in sentences if phrase.lower() in s.lower()), "")))
        i = max(j, i + 1)
    return out


class ScriptedTeacher:
    def __init__(self, samples: list[Sample], base_dir: str | Path, noise: Noise = Noise(), seed: int = 0):
        self.noise, self.seed = noise, seed
        # (image digest, question) -> sample: several samples share an image (the same clock face).
        self.by_key: dict[tuple[str, str], Sample] = {}
        for s in samples:
            for path in resolve_images(s, Path(base_dir)):
                self.by_key[(hashlib.sha256(path.read_bytes()).hexdigest(), question_text(s))] = s
        self.kinds = {_first_line(name): name for name in ("chain", "coherence", "extract", "fidelity", "rewrite")}
        self.lock = threading.Lock()
        self.requests = 0  # answered so far

    # ------------------------------------------------------------------ request -> texts
    def _sample_of(self, content: list, prompt: str) -> Sample:
        match = _FIELD_RE["question"].search(prompt)
        question = match.group(1).strip() if match else ""
        for part in content:
            if part.get("type") == "image_url":
                payload = part["image_url"]["url"].split(",", 1)[1]
                key = (hashlib.sha256(base64.b64decode(payload)).hexdigest(), question)
                if key in self.by_key:
                    return self.by_key[key]
        raise KeyError("no known (image, question) in the request")

    def _chain(self, sample: Sample, rng: random.Random) -> str:
        r = sample.response
        description, think, answer = r.description, r.think, r.answer
        if rng.random() < self.noise.wrong_fact:
            description = _bump(description, rng)
        if rng.random() < self.noise.drop_clause and len(_clauses(description)) > 1:
            drop = rng.choice(_clauses(description))
            description = description.replace(f", {drop}", "").replace(f"{drop}, ", "")
        if rng.random() < self.noise.wrong_answer:
            wrong = _bump(answer, rng) if _NUM_RE.search(answer) else next(
                (c for c in (sample.choices or []) if c != answer), answer + "x")
            think, answer = think.replace(f"the answer is {r.answer}", f"the answer is {wrong}"), wrong
        text = format_response({"description": description, "think": think, "answer": answer})
        return text.replace("</think>", "") if rng.random() < self.noise.broken_tag else text

    @staticmethod
    def _fidelity(sample: Sample, prompt: str) -> float:
        facts = sample.key_info.visual if sample.key_info else []
        formal = prompt.lower()
        return sum(f.lower() in formal for f in facts) / len(facts) if facts else 1.0

    def _extract(self, fields: dict, rng: random.Random) -> str:
        visual = [c for c in _clauses(fields["description"]) if rng.random() >= self.noise.drop_fact]
        textual = [(f, step) for f, step in question_facts(fields["question"], fields["think"])
                   if rng.random() >= self.noise.drop_fact]
        if rng.random() < self.noise.invent_visual:
            visual.append(rng.choice(["a green square in the corner", "the gray bar is 3", "2 small purple stars"]))
        if rng.random() < self.noise.invent_textual:
            invented = rng.choice(["6 + 5 = 11", "the total is 20", "4:15 + 30 minutes = 4:45"])
            textual.append((invented, invented))
        v = "\n".join(f"- {x}" for x in visual)
        z = "\n".join(f"- {fact} || {step}" for fact, step in textual)
        return f"<visual>\n{v}\n</visual>\n<textual>\n{z}\n</textual>"

    def texts(self, body: dict) -> list[str]:
        """The n reply texts of one request body."""
        content = body["messages"][-1]["content"]
        content = [{"type": "text", "text": content}] if isinstance(content, str) else content
        prompt = next(p["text"] for p in content if p.get("type") == "text")
        kind = self.kinds.get(prompt.splitlines()[0])
        n = int(body.get("n", 1))
        rngs = [random.Random(f"{self.seed}-{body.get('seed')}-{j}-{prompt}") for j in range(n)]
        if kind in ("chain", "rewrite"):
            sample = self._sample_of(content, prompt)
            return [self._chain(sample, rng) for rng in rngs]
        if kind == "fidelity":
            return [f"<score>{round(10 * self._fidelity(self._sample_of(content, prompt), prompt))}</score>"] * n
        fields = {k: (m.group(1).strip() if (m := rx.search(prompt)) else "") for k, rx in _FIELD_RE.items()}
        if kind == "coherence":
            score = consistency(fields["think"], fields["answer"], fields["description"], fields["question"])
            return [f"<score>{round(10 * score)}</score>"] * n
        if kind == "extract":
            return [self._extract(fields, rng) for rng in rngs]
        return ["I do not know this prompt."] * n

    # ------------------------------------------------------------------ the OpenAI reply
    def reply(self, body: dict) -> dict:
        with self.lock:
            self.requests += 1
        choices = []
        for j, text in enumerate(self.texts(body)):
            rng = random.Random(f"lp-{self.seed}-{body.get('seed')}-{j}-{text}")
            tokens = text.split() or [""]
            content = [{"token": t, "logprob": -abs(rng.gauss(0.6, 0.4))} for t in tokens]
            choices.append({"index": j, "message": {"role": "assistant", "content": text}, "finish_reason": "stop",
                            "logprobs": {"content": content} if body.get("logprobs") else None})
        return {"object": "chat.completion", "model": "scripted", "choices": choices}


def make_handler(reply_fn) -> type[BaseHTTPRequestHandler]:
    """A chat-completions handler answering `reply_fn(body) -> dict` (tests wrap it to inject faults)."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args) -> None:
            pass

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
            data = json.dumps(reply_fn(body)).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    return Handler


def serve(reply_fn, host: str = "127.0.0.1", port: int = 0) -> tuple[ThreadingHTTPServer, str]:
    """Start a server thread answering with `reply_fn`; returns (server, base URL). Stop it with
    `server.shutdown(); server.server_close()`."""
    server = ThreadingHTTPServer((host, port), make_handler(reply_fn))
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    return server, f"http://{host}:{server.server_address[1]}"
