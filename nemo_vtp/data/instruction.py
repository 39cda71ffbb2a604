"""The instruction text of a user turn: the one definition that training (SFT, RL rollouts) and
evaluation share, so a model is evaluated on the prompt it was trained on.

`data.instruction` (default `FORMAT_INSTRUCTION`) is appended to the question by `user_text`, in the
processor for every SFT example and RL prompt, and in the evaluation's structured prompt.
"""

from __future__ import annotations

# The three-tag format (METHOD.md, "Output format"), with the answer rule for multiple-choice questions.
FORMAT_INSTRUCTION = (
    "First write, inside <description></description>, the visual and textual evidence from the image and the "
    "question that is needed to answer it. Then reason step by step inside <think></think>. Finally give only "
    "the final answer inside <answer></answer>; for a multiple-choice question, the letter of the correct option."
)


def user_text(question: str, instruction: str) -> str:
    """The question, then the instruction on a new line ("" adds nothing).

    >>> user_text("How many circles?", "Answer briefly.")
    'How many circles?\\nAnswer briefly.'
    >>> user_text("How many circles?", "")
    'How many circles?'
    """
    return f"{question}\n{instruction}" if instruction else question
