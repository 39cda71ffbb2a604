"""Recipe loading: YAML files with `defaults:` inheritance, dotlist overrides, `${oc.env:VAR}`
interpolation, validation against the pydantic schema, and errors that name the file, the line
and the key (with the closest valid keys for a typo).

Every leaf value remembers where it came from (file and line, or the command line), so a
validation error deep in an inherited recipe still points at the line to fix.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException
from pydantic import BaseModel, ValidationError

# Keys removed so that each quantity has one knob -> the key that now holds it (named in the error).
REMOVED_KEYS = {
    "rl.group_size": "generation.sampling.n",
    "rl.temperature": "generation.sampling.temperature",
    "rewards.max_response_tokens": "generation.sampling.max_new_tokens",
}


class ConfigError(ValueError):
    """A recipe or override that cannot be used; the message names file, line and key."""


@dataclass(frozen=True)
class Origin:
    file: str
    line: int | None  # 1-based; None for the command line

    def __str__(self) -> str:
        return self.file if self.line is None else f"{self.file}:{self.line}"


MAX_RECIPE_VALUES = 100_000  # keys + values of one recipe file or override after YAML aliases expand (recipes: ~300)


def _check_size(data: Any, where: str) -> None:
    """Refuse data whose expansion (every alias counted where it is used) exceeds MAX_RECIPE_VALUES:
    a few lines of nested aliases (a "billion laughs") would otherwise take the loader minutes and GBs."""
    stack, seen = [data], 0
    while stack:
        item = stack.pop()
        seen += 1
        if seen > MAX_RECIPE_VALUES:
            raise ConfigError(f"{where}: more than {MAX_RECIPE_VALUES:,} values once its YAML aliases expand "
                              "(an alias bomb or a recursive alias?)")
        if isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def _read_text(path: Path) -> str:
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = raw.count(b"\n", 0, err.start) + 1
        raise ConfigError(f"{path}:{line}: not UTF-8 (byte {raw[err.start]:#04x}); save the recipe as UTF-8") from None


def _compose_with_lines(path: Path) -> tuple[dict, dict[str, Origin]]:
    """Parse one YAML file into a dict plus {dotted key: Origin} for every key it sets."""
    text = _read_text(path)
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise ConfigError(f"{where}: invalid YAML: {err}") from None
    except RecursionError:
        raise ConfigError(f"{path}: invalid YAML: nested too deeply") from None
    if data is None:
        return {}, {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a recipe must be a mapping at the top level")
    _check_size(data, str(path))
    origins: dict[str, Origin] = {}

    def walk(n: yaml.Node, prefix: str) -> None:
        if isinstance(n, yaml.MappingNode):
            for key_node, value_node in n.value:
                key = f"{prefix}{key_node.value}"
                origins[key] = Origin(str(path), key_node.start_mark.line + 1)
                walk(value_node, key + ".")

    walk(node, "")
    return data, origins


def _deep_merge(base: dict, top: dict) -> dict:
    out = dict(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def load_yaml_tree(path: str | Path, _seen: tuple[Path, ...] = ()) -> tuple[dict, dict[str, Origin]]:
    """Load a recipe and its `defaults:` chain (paths relative to the file that names them).

    Later defaults override earlier ones; the file's own keys override all its defaults.
    """
    path = Path(path).resolve()
    if not path.is_file():
        raise ConfigError(f"recipe not found: {path}")
    if path in _seen:
        chain = " -> ".join(str(p) for p in (*_seen, path))
        raise ConfigError(f"circular defaults: {chain}")
    data, origins = _compose_with_lines(path)
    defaults = data.pop("defaults", []) or []
    if isinstance(defaults, str):
        defaults = [defaults]
    merged: dict = {}
    merged_origins: dict[str, Origin] = {}
    for entry in defaults:
        if not isinstance(entry, str):
            raise ConfigError(f"{origins.get('defaults', path)}: `defaults:` entries must be file paths")
        sub_path = (path.parent / entry).resolve()
        if sub_path.suffix == "":
            sub_path = sub_path.with_suffix(".yaml")
        sub, sub_origins = load_yaml_tree(sub_path, (*_seen, path))
        merged = _deep_merge(merged, sub)
        merged_origins.update(sub_origins)
    merged = _deep_merge(merged, data)
    merged_origins.update({k: v for k, v in origins.items() if not k.startswith("defaults")})
    return merged, merged_origins


def apply_overrides(data: dict, origins: dict[str, Origin], overrides: list[str]) -> dict:
    """Apply `a.b.c=value` overrides; values are parsed as YAML scalars (2e-5, true, [1,2])."""
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not of the form key=value")
        key, raw = item.split("=", 1)
        key = key.strip().lstrip("+")
        parts = key.split(".")
        if not all(parts):
            raise ConfigError(f"override {item!r} has an empty key")
        value = _parse_override_value(item, raw)
        node = data
        for part in parts[:-1]:
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            elif not isinstance(child, dict):
                raise ConfigError(f"override {item!r}: {part!r} is not a section")
            node = child
        node[parts[-1]] = value
        for i in range(1, len(parts) + 1):  # a section the override creates is blamed on it too
            origins.setdefault(".".join(parts[:i]), Origin(f"command line `{item}`", None))
        origins[key] = Origin(f"command line `{item}`", None)
    return data


def _parse_override_value(item: str, raw: str) -> Any:
    """The value of `key=raw` parsed as YAML (2e-5, true, [1,2]); a ConfigError naming the override if it is not."""
    where = f"command line `{item}`"
    try:
        value = OmegaConf.to_container(OmegaConf.from_dotlist([f"v={raw}"]))["v"]
    except (yaml.YAMLError, OmegaConfBaseException, ValueError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ConfigError(f"{where}: cannot parse the value {raw!r} ({first})") from None
    except RecursionError:
        raise ConfigError(f"{where}: cannot parse the value: nested too deeply") from None
    _check_size(value, where)
    return value


def _resolve_interpolations(data: dict, origins: dict[str, Origin]) -> dict:
    try:
        return OmegaConf.to_container(OmegaConf.create(data), resolve=True)
    except Exception as err:  # omegaconf raises several unrelated error types
        key, first = getattr(err, "full_key", None) or "", (str(err).strip().splitlines() or [""])[0]
        raise ConfigError(f"{_origin_for(key, origins)}: {key or 'recipe'}: cannot resolve interpolation: {first}") from None


def _fields_at(model: type[BaseModel], loc: tuple) -> list[str]:
    """Valid field names of the sub-model at `loc` (for close-match hints)."""
    current: Any = model
    for part in loc:
        fields = getattr(current, "model_fields", None)
        if fields is None or part not in fields:
            return []
        annotation = fields[part].annotation
        current = next(
            (a for a in (annotation, *getattr(annotation, "__args__", ())) if hasattr(a, "model_fields")),
            None,
        )
    return list(getattr(current, "model_fields", {}))


def _origin_for(dotted: str, origins: dict[str, Origin]) -> str:
    key = dotted
    while key:
        if key in origins:
            return str(origins[key])
        key = key.rpartition(".")[0]
    return "<schema default>"


def _first_key_named(message: str, origins: dict[str, Origin]) -> str:
    """A check across sections has no location: the first dotted key its message names that a file set."""
    return next((k for k in re.findall(r"[A-Za-z_]+(?:\.[A-Za-z_]+)+", message) if k in origins), "")


def format_validation_error(err: ValidationError, schema: type[BaseModel], origins: dict[str, Origin]) -> str:
    lines = []
    for e in err.errors():
        loc = tuple(str(p) for p in e["loc"])
        dotted = ".".join(loc) or _first_key_named(e["msg"], origins)
        where = _origin_for(dotted, origins)
        if e["type"] == "extra_forbidden":
            valid = _fields_at(schema, loc[:-1])
            close = difflib.get_close_matches(loc[-1], valid, n=3, cutoff=0.5)
            hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
            if dotted in REMOVED_KEYS:
                hint = f"; removed: set {REMOVED_KEYS[dotted]!r} instead (one knob per quantity)"
            section = ".".join(loc[:-1]) or "top level"
            lines.append(f"{where}: unknown key {dotted!r} in {section}{hint} (valid: {', '.join(valid)})")
        else:
            value = e.get("input")  # a whole section for the checks that relate several fields: not repeated
            got = "" if isinstance(value, dict) else f" (got {value!r})"
            lines.append(f"{where}: {dotted}: {e['msg']}{got}")
    return "invalid recipe:\n  " + "\n  ".join(lines)


def load_config(path: str | Path, overrides: list[str] | None = None, schema: type[BaseModel] | None = None):
    """Load, merge, override, interpolate and validate a recipe. Returns the schema instance."""
    if schema is None:
        from nemo_vtp.config.schema import RecipeConfig as schema
    from nemo_vtp.recipe_files import find_recipe

    data, origins = load_yaml_tree(find_recipe(path))
    data = apply_overrides(data, origins, list(overrides or []))
    # Schema defaults take part in interpolation (`${run.name}` works when only the schema sets it).
    data = _resolve_interpolations(_deep_merge(schema().model_dump(mode="json"), data), origins)
    try:
        return schema.model_validate(data)
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, schema, origins)) from None


def dump_config(cfg: BaseModel) -> str:
    """The resolved config as YAML (what every run writes to `config.resolved.yaml`)."""
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)


def write_resolved(cfg: BaseModel, out_dir: str | Path) -> Path:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "config.resolved.yaml"
    path.write_text(dump_config(cfg), encoding="utf-8")
    return path
