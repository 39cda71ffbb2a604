"""Batching SFT examples and RL prompts: padded (B, T) batches and packed (1, T) sequences.

Packing puts several conversations in one row. Each keeps its own mrope position ids (starting at
0), labels and loss mask; `cu_seqlens` (int32, cumulative lengths, starting at 0 and ending at T)
gives the boundaries so attention stays inside each conversation (Megatron's THD
`PackedSeqParams`, flash-attn varlen). Padding added to reach a multiple is one extra segment with
no loss. Images are concatenated in the order their tokens appear.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from nemo_vtp.data.processor import IGNORE_INDEX, RLPrompt, SFTExample


@dataclass
class SFTBatch:
    """B conversations right-padded to T tokens."""

    input_ids: torch.Tensor  # (B, T) int64, pad_token_id after each conversation
    labels: torch.Tensor  # (B, T) int64, -100 outside responses (unshifted)
    loss_mask: torch.Tensor  # (B, T) float32
    attention_mask: torch.Tensor  # (B, T) int64, 1 on real tokens
    position_ids: torch.Tensor  # (3, B, T) int64, 0 on padding
    pixel_values: torch.Tensor  # (N, 1176) float32, all images of the batch in order
    image_grid_thw: torch.Tensor  # (I, 3) int64
    sample_ids: list[str]


@dataclass
class PackedSFTBatch:
    """Conversations packed into one row of T tokens."""

    input_ids: torch.Tensor  # (1, T) int64
    labels: torch.Tensor  # (1, T) int64, -100 outside responses and on padding (unshifted)
    loss_mask: torch.Tensor  # (1, T) float32
    position_ids: torch.Tensor  # (3, 1, T) int64, restarting at 0 for every conversation
    cu_seqlens: torch.Tensor  # (S + 1,) int32, segment boundaries; a padding tail is the last segment
    max_seqlen: int  # longest segment, tokens
    num_sequences: int  # real conversations (S, or S - 1 with a padding tail)
    pixel_values: torch.Tensor  # (N, 1176) float32
    image_grid_thw: torch.Tensor  # (I, 3) int64
    sample_ids: list[str]


def _round_up(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple


def _vision(examples: Sequence[SFTExample | RLPrompt]) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.cat([e.pixel_values for e in examples]), torch.cat([e.image_grid_thw for e in examples])


def collate_sft(examples: Sequence[SFTExample], pad_token_id: int, pad_to_multiple_of: int = 1) -> SFTBatch:
    """Right-pad B examples to the longest (rounded up to `pad_to_multiple_of`)."""
    length = _round_up(max(len(e.input_ids) for e in examples), pad_to_multiple_of)
    b = len(examples)
    input_ids = torch.full((b, length), pad_token_id, dtype=torch.long)
    labels = torch.full((b, length), IGNORE_INDEX, dtype=torch.long)
    loss_mask = torch.zeros(b, length)
    attention_mask = torch.zeros(b, length, dtype=torch.long)
    position_ids = torch.zeros(3, b, length, dtype=torch.long)
    for i, e in enumerate(examples):
        n = len(e.input_ids)
        input_ids[i, :n], labels[i, :n], loss_mask[i, :n] = e.input_ids, e.labels, e.loss_mask
        attention_mask[i, :n] = 1
        position_ids[:, i, :n] = e.position_ids
    pixel_values, grid = _vision(examples)
    return SFTBatch(input_ids, labels, loss_mask, attention_mask, position_ids, pixel_values, grid,
                    [e.sample_id for e in examples])


def plan_packs(lengths: Sequence[int], max_seq_length: int) -> tuple[list[list[int]], list[int]]:
    """Group example indices into packs of at most `max_seq_length` tokens, keeping data order.

    Greedy: an example joins the current pack if it fits, else starts a new one. Returns (packs,
    indices of examples longer than max_seq_length, which fit no pack and must be counted as skipped).
    """
    packs: list[list[int]] = []
    too_long: list[int] = []
    used = max_seq_length + 1
    for i, n in enumerate(lengths):
        if n > max_seq_length:
            too_long.append(i)
        elif used + n > max_seq_length:
            packs.append([i])
            used = n
        else:
            packs[-1].append(i)
            used += n
    return packs, too_long


def pack_sft(examples: Sequence[SFTExample], pad_token_id: int, pad_to_multiple_of: int = 1) -> PackedSFTBatch:
    """Concatenate examples into one (1, T) row with per-conversation positions and `cu_seqlens`."""
    lengths = [len(e.input_ids) for e in examples]
    cu_seqlens = packed_cu_seqlens(lengths, pad_to_multiple_of)
    pad = int(cu_seqlens[-1]) - sum(lengths)
    input_ids = torch.cat([e.input_ids for e in examples] + [torch.full((pad,), pad_token_id, dtype=torch.long)])
    labels = torch.cat([e.labels for e in examples] + [torch.full((pad,), IGNORE_INDEX, dtype=torch.long)])
    loss_mask = torch.cat([e.loss_mask for e in examples] + [torch.zeros(pad)])
    position_ids = torch.cat([e.position_ids for e in examples] + [torch.zeros(3, pad, dtype=torch.long)], dim=1)
    pixel_values, grid = _vision(examples)
    return PackedSFTBatch(input_ids[None], labels[None], loss_mask[None], position_ids[:, None], cu_seqlens,
                          int((cu_seqlens[1:] - cu_seqlens[:-1]).max()), len(examples), pixel_values, grid,
                          [e.sample_id for e in examples])


def packed_cu_seqlens(lengths: Sequence[int], pad_to_multiple_of: int = 1) -> torch.Tensor:
    """Segment boundaries of sequences of `lengths` packed into one row rounded up to a multiple of
    `pad_to_multiple_of`: (S + 1,) int32 from 0 to the row length; a padding tail is one more segment."""
    total = sum(lengths)
    pad = _round_up(total, pad_to_multiple_of) - total
    segments = [*lengths, *([pad] if pad else [])]
    return torch.tensor([0, *torch.tensor(segments).cumsum(0).tolist()], dtype=torch.int32)


def block_causal_mask(cu_seqlens: torch.Tensor) -> torch.Tensor:
    """(1, 1, T, T) bool attention mask of a packed row, True = masked: causal inside each segment,
    nothing across segments (for attention without THD support, e.g. Megatron's local spec)."""
    sizes = (cu_seqlens[1:] - cu_seqlens[:-1]).long()
    segment = torch.repeat_interleave(torch.arange(len(sizes)), sizes)
    position = torch.arange(int(cu_seqlens[-1]))
    allowed = (segment[:, None] == segment[None, :]) & (position[None, :] <= position[:, None])
    return (~allowed)[None, None]


def shift_labels(labels: torch.Tensor, cu_seqlens: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Next-token targets for models that take aligned targets (Megatron's GPTModel): target[t] = labels[t+1].

    labels (B, T) or (T,). The last token of the row, and with `cu_seqlens` (packed row, B = 1) the
    last token of every segment, gets -100 so no loss crosses a boundary. Returns (targets, loss_mask
    float32), same shape as labels.
    """
    targets = torch.full_like(labels, IGNORE_INDEX)
    targets[..., :-1] = labels[..., 1:]
    if cu_seqlens is not None:
        ends = cu_seqlens[1:].long() - 1
        targets[..., ends] = IGNORE_INDEX
    return targets, (targets != IGNORE_INDEX).float()


def collate_rl_prompts(prompts: Sequence[RLPrompt], pad_token_id: int, padding_side: str = "left") -> dict:
    """Pad prompt ids to (B, T) (left padding by default, as for generation).

    Returns input_ids (B, T), attention_mask (B, T), position_ids (3, B, T) with 0 on padding,
    pixel_values (N, 1176), image_grid_thw (I, 3), samples (list of sample dicts), images (list of lists).
    """
    if padding_side not in ("left", "right"):
        raise ValueError(f"padding_side must be 'left' or 'right', got {padding_side!r}")
    length = max(len(p.prompt_ids) for p in prompts)
    b = len(prompts)
    input_ids = torch.full((b, length), pad_token_id, dtype=torch.long)
    attention_mask = torch.zeros(b, length, dtype=torch.long)
    position_ids = torch.zeros(3, b, length, dtype=torch.long)
    for i, p in enumerate(prompts):
        n = len(p.prompt_ids)
        span = slice(length - n, length) if padding_side == "left" else slice(0, n)
        input_ids[i, span], attention_mask[i, span], position_ids[:, i, span] = p.prompt_ids, 1, p.position_ids
    pixel_values, grid = _vision(prompts)
    return {"input_ids": input_ids, "attention_mask": attention_mask, "position_ids": position_ids,
            "pixel_values": pixel_values, "image_grid_thw": grid,
            "samples": [p.sample for p in prompts], "images": [p.images for p in prompts]}
