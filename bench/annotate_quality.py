"""Quality of `nemo-vtp data annotate` on the synthetic world, where the exact key facts are known:
precision and recall of the extracted visual facts V against `key_info.visual` and of the textual
facts Z against the given facts of the question that the reference reasoning applies
(`scripted_teacher.question_facts`: Z holds given facts, not the world's computations).

    PYTHONPATH=. python bench/annotate_quality.py [--num 300] [--chains 8] [--budget 4] [--seed 0]

The teacher is the scripted one (nemo_vtp/data/scripted_teacher.py) behind a real HTTP server on
loopback, so the whole pipeline runs as in production: requests with images, log-probs, top-B, the
judge, extraction, grounding, the resumable runner. It perturbs the reference chains with known
probabilities (wrong answer, wrong or missing description fact, broken tag) and its extractions
(dropped facts, invented facts). So the figures measure what the pipeline does around a teacher of
known error rates (chain selection, parsing, grounding), not the extraction quality of a real model.

Variants: full pipeline; without grounding (ground_facts=false); without the accuracy and coherence
filters (min_accuracy=0, min_coherence=0: the best-log-prob well-formed chain is taken); a noiseless
teacher (the pipeline alone then recovers the facts, up to the judge). Matching:
an extracted fact equals a known fact when each states the other (the rewards' rule matcher,
`fact_in_text`, both ways), so wording differences the matcher normalises ("three"/"3") still count.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from nemo_vtp.config.data_engine import DataEngineConfig
from nemo_vtp.data.annotate import Annotator
from nemo_vtp.data.io import read_samples
from nemo_vtp.data.runner import ShardFiles, output_name, run_samples
from nemo_vtp.data.scripted_teacher import Noise, ScriptedTeacher, question_facts, serve
from nemo_vtp.data.synth import WorldSpec, generate
from nemo_vtp.data.teachers import build_teacher
from nemo_vtp.rewards.matching import IndexedText, fact_in_text


def same_fact(a: str, b: str) -> bool:
    return fact_in_text(a, IndexedText.build(b)) and fact_in_text(b, IndexedText.build(a))


def precision_recall(pairs: list[tuple[list[str], list[str]]]) -> tuple[float, float, int, int]:
    """Micro-averaged (precision, recall, #extracted, #known) over (extracted, known) lists."""
    hits_p = hits_r = n_ext = n_known = 0
    for extracted, known in pairs:
        hits_p += sum(any(same_fact(e, k) for k in known) for e in extracted)
        hits_r += sum(any(same_fact(e, k) for e in extracted) for k in known)
        n_ext, n_known = n_ext + len(extracted), n_known + len(known)
    return hits_p / max(1, n_ext), hits_r / max(1, n_known), n_ext, n_known


def run_variant(name: str, overrides: dict, samples, in_path: Path, url: str, out: Path, args) -> dict:
    annotate = {"num_chains": args.chains, "budget": args.budget, **overrides.get("annotate", {})}
    cfg = DataEngineConfig(teachers=[url], seed=args.seed, requests={"backoff_s": 0.01, "max_concurrency": 4},
                           annotate=annotate)
    teacher = build_teacher(cfg.teachers[0], cfg.requests)
    start = time.perf_counter()
    summary = run_samples(samples, Annotator(cfg, [teacher], teacher, in_path.parent), command=f"annotate[{name}]",
                          input_path=in_path, out_dir=out / name, progress=False,
                          max_concurrency=cfg.requests.max_concurrency)
    seconds = time.perf_counter() - start
    truth = {s.id: s.key_info for s in samples}
    kept_file = ShardFiles.of(out / name, (0, 1), output_name(in_path)).samples
    rows = [json.loads(line) for line in kept_file.read_text().splitlines()]
    v = precision_recall([(r["key_info"]["visual"], truth[r["id"]].visual) for r in rows])
    given = {s.id: [fact for fact, _ in question_facts(s.question, s.response.think)] for s in samples}
    z = precision_recall([(r["key_info"]["textual"], given[r["id"]]) for r in rows])
    return {"variant": name, "kept": summary.counts["kept"], "rows": len(samples), "v": v, "z": z,
            "reasons": {k: n for k, n in summary.reasons.items() if k != "kept"},
            "samples_per_s": len(samples) / seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num", type=int, default=300, help="synthetic samples generated (the train split is used)")
    parser.add_argument("--chains", type=int, default=8, help="N chains per sample")
    parser.add_argument("--budget", type=int, default=4, help="B chains kept by log-prob")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        world = Path(tmp) / "world"
        generate(WorldSpec(num=args.num, seed=args.seed), world)
        in_path = world / "train.jsonl"
        samples = read_samples(in_path)[0]
        scripted = ScriptedTeacher(samples, world, seed=args.seed)
        noiseless = ScriptedTeacher(samples, world, Noise(*[0.0] * 7), seed=args.seed)
        (server, url), (server0, url0) = serve(scripted.reply), serve(noiseless.reply)
        try:
            variants = [("full", {}), ("no-grounding", {"annotate": {"ground_facts": False}}),
                        ("no-filters", {"annotate": {"min_accuracy": 0.0, "min_coherence": 0.0}})]
            results = [run_variant(n, o, samples, in_path, url, Path(tmp) / "out", args) for n, o in variants]
            results.append(run_variant("noiseless", {}, samples, in_path, url0, Path(tmp) / "out", args))
        finally:
            for srv in (server, server0):
                srv.shutdown()
                srv.server_close()
    print(f"annotate quality on {len(samples)} synthetic train samples, N={args.chains}, B={args.budget}, "
          f"scripted teacher noise: {scripted.noise}")
    header = ("variant", "kept", "V prec", "V rec", "Z prec", "Z rec", "#V", "#Z", "samples/s")
    print("".join(f"{h:<14}" if i == 0 else f"{h:>{(10, 9, 8, 9, 8, 6, 6, 11)[i - 1]}}" for i, h in enumerate(header)))
    for r in results:
        (vp, vr, nv, _), (zp, zr, nz, _) = r["v"], r["z"]
        print(f"{r['variant']:<14}{r['kept']:>5}/{r['rows']:<4}{vp:>9.3f}{vr:>8.3f}{zp:>9.3f}{zr:>8.3f}{nv:>6}{nz:>6}"
              f"{r['samples_per_s']:>11.1f}")
    for r in results:
        print(f"  {r['variant']}: dropped/failed {r['reasons']}")


if __name__ == "__main__":
    main()
