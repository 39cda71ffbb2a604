"""User-defined reward terms for the `rewards.extra` tests: a module a recipe names by path."""

import time

NOT_CALLABLE = 3


def answer_is_short(response: str, sample: dict) -> float:
    """1.0 when the response has at most 5 words; it reads the sample to check it arrives."""
    assert "question" in sample
    return 1.0 if len(response.split()) <= 5 else 0.0


def raises(response: str, sample: dict) -> float:
    raise RuntimeError("a bug in the user's term")


def hangs_on_marker(response: str, sample: dict) -> float:
    """Never returns for a response containing HANG; 1.0 otherwise."""
    while "HANG" in response:
        time.sleep(0.05)
    return 1.0
