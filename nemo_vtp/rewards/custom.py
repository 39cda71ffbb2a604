"""User-defined reward terms (`rewards.extra`): a function named by its module path, "pkg.module:fn",
called as `fn(response: str, sample: dict) -> float` in the reward workers, next to the built-in
terms and under the same per-sample timeout. `sample` holds the fields the workers receive
(question, answer, choices, key_info). The user names the function in their recipe: it is their code.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable


@functools.cache
def load_term(spec: str) -> Callable[[str, dict], float]:
    """The callable named by "pkg.module:attr"; ValueError saying what is wrong otherwise."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"{spec!r} is not of the form 'pkg.module:function'")
    try:
        module = importlib.import_module(module_name)
    except Exception as err:  # noqa: BLE001 -- any import failure of user code is a config error
        raise ValueError(f"cannot import module {module_name!r}: {type(err).__name__}: {err}") from None
    fn = getattr(module, attr, None)
    if fn is None:
        raise ValueError(f"module {module_name!r} has no attribute {attr!r}")
    if not callable(fn):
        raise ValueError(f"{spec!r} is a {type(fn).__name__}, not a callable")
    return fn
