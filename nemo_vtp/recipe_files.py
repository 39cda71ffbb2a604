"""The shipped recipes: `nemo-vtp recipes list` and `nemo-vtp recipes copy NAME DIR`.

In a checkout they are the repository's `recipes/`; an installed wheel carries the same files as
package data (`nemo_vtp/recipes/`, see setup.py). A recipe named `recipes/...` on the command line
that does not exist in the working directory is read from there, so `nemo-vtp demo` and
`nemo-vtp sft recipes/tiny/sft.yaml` work outside a checkout.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import yaml

PREFIX = "recipes"  # how docs and --help name the shipped recipes: recipes/tiny/sft.yaml


def recipes_root() -> Path:
    """The checkout's `recipes/` when this package runs from a checkout, else the installed package data."""
    package = Path(__file__).resolve().parent
    checkout = package.parent / PREFIX
    return checkout if (checkout / "base").is_dir() else package / PREFIX


def find_recipe(path: str | Path) -> Path:
    """`path` when it exists; else, for `recipes/REST`, the shipped `REST`; else `path` (the loader reports it)."""
    path = Path(path)
    if path.exists() or path.is_absolute() or not path.parts or path.parts[0] != PREFIX:
        return path
    shipped = recipes_root().joinpath(*path.parts[1:])
    return shipped if shipped.is_file() else path


def list_recipes() -> list[str]:
    """Every shipped recipe as `recipes/GROUP/NAME.yaml`, sorted."""
    root = recipes_root()
    return sorted(f"{PREFIX}/{p.relative_to(root).as_posix()}" for p in root.rglob("*.yaml"))


def _defaults_chain(recipe: Path) -> list[Path]:
    """`recipe` and every file its `defaults:` names, recursively (paths relative to the naming file)."""
    chain, todo = [], [recipe.resolve()]
    while todo:
        path = todo.pop()
        if path in chain:
            continue
        chain.append(path)
        defaults = (yaml.safe_load(path.read_text(encoding="utf-8")) or {}).get("defaults") or []
        todo += [(path.parent / d).resolve() for d in ([defaults] if isinstance(defaults, str) else defaults)]
    return chain


def copy_recipes(name: str, dest: str | Path) -> list[Path]:
    """Copy the recipe (or folder of recipes) `name` and the files their `defaults:` name into `dest`, in the
    same layout (so `../base/sft.yaml` still resolves); returns the written files. Existing files are kept."""
    root = recipes_root().resolve()
    rel = name.removeprefix(f"{PREFIX}/").removesuffix(".yaml")
    if (root / rel).is_dir():
        recipes = sorted((root / rel).rglob("*.yaml"))
    elif (root / f"{rel}.yaml").is_file():
        recipes = [root / f"{rel}.yaml"]
    else:
        raise FileNotFoundError(f"no shipped recipe {name!r}: see `nemo-vtp recipes list`")
    written = []
    for recipe in recipes:
        for path in _defaults_chain(recipe):
            target = Path(dest) / path.relative_to(root)
            if not target.exists():
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(path, target)
                written.append(target)
    return written


def parser() -> argparse.ArgumentParser:
    out = argparse.ArgumentParser(prog="nemo-vtp recipes", description="the shipped recipes")
    sub = out.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="print every shipped recipe")
    copy = sub.add_parser("copy", help="copy a recipe (or a folder, e.g. tiny) with its defaults into DIR to edit")
    copy.add_argument("name", help="e.g. sft/sft-qwen25vl-7b-vtp12k-1n8g-tp2, recipes/tiny/sft.yaml or tiny")
    copy.add_argument("dir", help="destination folder; files already there are kept")
    return out


def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    if args.command == "list":
        print("\n".join(list_recipes()))
        return 0
    try:
        written = copy_recipes(args.name, args.dir)
    except FileNotFoundError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    for path in written:
        print(path)
    print(f"copied {len(written)} files into {args.dir}")
    return 0
