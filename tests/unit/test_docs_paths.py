"""What the docs and --help texts name exists: every `recipes/...yaml`, every step folder of the tiny runs,
and every variable the shipped recipes read is the one the walkthrough exports."""

import re
from pathlib import Path

from nemo_vtp.config.loader import load_config

ROOT = Path(__file__).resolve().parents[2]
RECIPE_PATH = re.compile(r"recipes/[A-Za-z0-9_./-]+\.yaml")
TINY_STEP = re.compile(r"runs/(tiny-sft|tiny-rl)/checkpoints/iter_(\d+)")
OLD_STEP = re.compile(r"checkpoints/step_\d+|step_0\d{6}")  # step folder names from before the Megatron-LM ones
ENV_VAR = re.compile(r"\$\{oc\.env:(NEMO_VTP_[A-Z_]+)")


def _texts() -> dict[str, str]:
    """Docs, README, help strings and comments of the package, sbatch scripts and recipes."""
    files = [*ROOT.glob("docs/*.md"), ROOT / "README.md", *ROOT.glob("nemo_vtp/**/*.py"), *ROOT.glob("slurm/*"),
             *ROOT.glob("recipes/**/*.yaml"), ROOT / "Makefile"]
    return {str(f.relative_to(ROOT)): f.read_text(encoding="utf-8") for f in files if f.is_file()}


def _is_placeholder(path: str) -> bool:
    """`recipes/sft/RECIPE.yaml`, `recipes/GROUP/NAME.yaml`: a name in capitals stands for any recipe."""
    return any(part.removesuffix(".yaml").isupper() for part in path.split("/")[1:])


def test_every_named_recipe_exists():
    missing = sorted({f"{name}: {path}" for name, text in _texts().items() for path in RECIPE_PATH.findall(text)
                      if not _is_placeholder(path) and not (ROOT / path).is_file()})
    assert not missing, "\n".join(missing)


def _kept_steps(recipe: str) -> set[int]:
    """Steps whose folders a finished run of `recipe` leaves on disk (the last keep_last saves)."""
    cfg = load_config(ROOT / recipe)
    steps, every = cfg.training.train_steps, cfg.checkpoint.save_interval
    assert steps, f"{recipe}: the check needs training.train_steps"
    saved = sorted({*range(every, steps + 1, every), steps} if every else {steps})
    return set(saved[-cfg.checkpoint.keep_last:])


def test_named_step_folders_of_the_tiny_sft_run_are_kept():
    kept = _kept_steps("recipes/tiny/sft.yaml")
    named = {(name, int(step)) for name, text in _texts().items() for run, step in TINY_STEP.findall(text)
             if run == "tiny-sft"}
    wrong = sorted(f"{name}: step {step} (a finished run keeps {sorted(kept)})" for name, step in named
                   if step not in kept)
    assert named and not wrong, "\n".join(wrong)


def test_no_text_names_a_step_folder_the_trainer_no_longer_writes():
    old = sorted(f"{name}: {found}" for name, text in _texts().items() for found in OLD_STEP.findall(text))
    assert not old, "\n".join(old)


def test_recipes_read_only_the_documented_variables():
    read = {var for name, text in _texts().items() if name.startswith("recipes/") for var in ENV_VAR.findall(text)}
    walkthrough = (ROOT / "docs" / "walkthrough.md").read_text()
    assert read == {"NEMO_VTP_MODELS", "NEMO_VTP_DATA", "NEMO_VTP_CKPTS", "NEMO_VTP_RUNS",
                    "NEMO_VTP_JUDGE_URL", "NEMO_VTP_JUDGE_NAME"}
    assert all(var in walkthrough for var in read)
