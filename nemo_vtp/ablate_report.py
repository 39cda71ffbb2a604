"""`<out>/report.md` and `<out>/plots/<metric>.png` of `nemo-vtp ablate`, from its result rows.

The table has the layout of the paper's Table 3 (one row per arm, the full arm first), with our
held-out measures as columns: each cell the mean over seeds and its 95% interval; a second table
gives each arm's paired (same seed) difference to the full arm with its interval.
"""

from __future__ import annotations

import math
from pathlib import Path

from nemo_vtp.ablate_metrics import METRICS, mean_interval, paired_difference

ARM_TITLES = {"full": "Full (all rewards)", "no-cons": "w/o consistency (R_cons)", "no-tkey": "w/o textual (R_tkey)",
              "no-vkey": "w/o visual (R_vkey)", "acc-fmt": "accuracy + format only"}
METRIC_TITLES = {"accuracy": "accuracy (%)", "format": "format (%)", "coverage": "visual-fact coverage (%)",
                 "hallucinated": "false facts / description", "consistency": "consistency (%)"}
PERCENT = {"accuracy", "format", "coverage", "consistency"}  # shown x100, like the paper's table


def per_seed(results: list[dict], arm: str, metric: str) -> dict[int, float]:
    """{seed index: value} of one arm and metric (runs without the value left out)."""
    return {r["seed_index"]: r["metrics"][metric] for r in results
            if r["arm"] == arm and r["metrics"].get(metric) is not None}


def _fmt(metric: str, value: float) -> str:
    return f"{100 * value:.1f}" if metric in PERCENT else f"{value:.2f}"


def cell(metric: str, stats: tuple[float, float, float] | None, signed: bool = False) -> str:
    """"m [lo, hi]" ("m" alone with one seed; "-" without data)."""
    if stats is None:
        return "-"
    mean, low, high = stats
    text = _fmt(metric, mean)
    text = f"+{text}" if signed and mean > 0 else text
    return text if math.isnan(low) else f"{text} [{_fmt(metric, low)}, {_fmt(metric, high)}]"


def table(results: list[dict], arms: list[str], paired: bool) -> list[str]:
    """Markdown rows: arms x METRICS, means with intervals, or paired differences to the full arm."""
    lines = ["| arm | seeds | " + " | ".join(METRIC_TITLES[m] for m in METRICS) + " |",
             "|---|---|" + "---|" * len(METRICS)]
    for arm in arms:
        if paired and arm == "full":
            continue
        cells = []
        for metric in METRICS:
            values = per_seed(results, arm, metric)
            if paired:
                cells.append(cell(metric, paired_difference(values, per_seed(results, "full", metric)), signed=True))
            else:
                cells.append(cell(metric, mean_interval(list(values.values())) if values else None))
        seeds = len({r["seed_index"] for r in results if r["arm"] == arm})
        lines.append(f"| {ARM_TITLES[arm]} | {seeds} | " + " | ".join(cells) + " |")
    return lines


def plot(results: list[dict], arms: list[str], metric: str, path: Path) -> Path | None:
    """Mean and 95% interval per arm, the single seeds as dots (None when no arm has the metric)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    present = [a for a in arms if per_seed(results, a, metric)]
    if not present:
        return None
    scale = 100.0 if metric in PERCENT else 1.0
    fig, ax = plt.subplots(figsize=(7, 3.6))
    for x, arm in enumerate(present):
        values = [scale * v for v in per_seed(results, arm, metric).values()]
        mean, low, high = mean_interval(values)
        err = None if math.isnan(low) else [[mean - low], [high - mean]]
        ax.bar(x, mean, color="#4c72b0" if arm == "full" else "#999999", alpha=0.8)
        if err is not None:
            ax.errorbar(x, mean, yerr=err, color="black", capsize=4)
        ax.plot([x] * len(values), values, "k.", alpha=0.6)
    ax.set_xticks(range(len(present)), [ARM_TITLES[a] for a in present], rotation=15, fontsize=8)
    ax.set_title(METRIC_TITLES[metric])
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_report(out: Path, results: list[dict], arms: list[str], seeds: int) -> Path:
    """Write report.md and the plots; returns the report's path."""
    from nemo_vtp.ablate import write_atomic

    planned = len(arms) * seeds
    plots = [p for m in METRICS if (p := plot(results, arms, m, out / "plots" / f"{m}.png")) is not None]
    lines = ["# Reward ablation (the paper's Table 3 layout)", "",
             f"{len(results)} of {planned} runs done ({len(arms)} arms x {seeds} seeds). Every arm starts from the "
             "same Stage I checkpoint; each run is evaluated greedily on the held-out split. Cells: mean over "
             "seeds [95% Student-t interval]; one seed gives no interval.", "",
             "Measures: accuracy (R_acc) and format (R_fmt) of the evaluation; visual-fact coverage: share of "
             "the sample's true visual key facts the description states word for word; false facts: clauses of "
             "the description stating a world fact that is false of the scene; consistency: R_cons.", "",
             "## Mean per arm", "", *table(results, arms, paired=False), ""]
    if "full" in arms:
        lines += ["## Paired difference to the full arm (same seed)", "", *table(results, arms, paired=True), ""]
    lines += ["## Plots", "", *[f"![{p.stem}](plots/{p.name})" for p in plots], "",
              "Per-run rows: `results.jsonl`; each run's Stage II log, checkpoints and evaluation records: "
              "`runs/<arm>/seed<k>/`.", ""]
    write_atomic(out / "report.md", "\n".join(lines))
    return out / "report.md"
