"""Rollouts -> training micro-batches: prompt + response token ids, mrope positions, the mask of the
response tokens the loss sees, advantages and rollout log-probs, aligned for next-token log-probs.

Alignment: for a sequence x (L,) the model's logits at position t score x[t + 1], so `targets[t] =
x[t + 1]` on the same (L,) axis (the last position gets a padding target outside the loss). A response
of R tokens after a prompt of P tokens sits at x[P:P+R]; its log-probs are read at positions
P-1 .. P+R-2, where `loss_mask` is 1 (0 for a filtered response).

Two layouts of a micro-batch, equal in every per-token value:
- padded (`micro_batch_inputs`): B sequences right-padded to the longest, (B, T);
- packed (`pack_micro_batch`): the sequences concatenated in one (1, T) row with `cu_seqlens`
  (SFT's packing, `nemo_vtp.data.packing`); attention must stay inside each segment.
`plan_token_micro_batches` forms packed micro-batches by a token budget, whole groups together.

Images: the G responses of a group share their prompt's images (the same tensors). A micro-batch
carries each distinct image once (`pixel_values`, `image_grid_thw`) and `image_index`, the image
behind each run of `<|image_pad|>` tokens in order, so the vision tower encodes a prompt once per
micro-batch and its gradient sums over the group's responses.

Positions: the prompt keeps its mrope positions; response tokens continue as text from
max(prompt positions) + 1, the rule HF and vLLM decode with. A response in which the policy emitted
an image or video placeholder token is kept out of the loss (those ids would be read as image slots):
the ids are replaced by padding for the forward pass.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from nemo_vtp.data.packing import packed_cu_seqlens, plan_packs

_ROW_KEYS = ("input_ids", "targets", "loss_mask", "rollout_logprobs", "advantages")  # (L,) per sequence


@dataclass
class TrainSequence:
    """One response with its prompt, ready to be batched."""

    prompt_ids: torch.Tensor  # (P,) int64, image pads expanded
    prompt_position_ids: torch.Tensor  # (3, P) int64 mrope positions of the prompt
    response_ids: torch.Tensor  # (R,) int64, including the EOS that ended it
    rollout_logprobs: torch.Tensor  # (R,) float32, log-probs of response_ids under the rollout engine
    pixel_values: torch.Tensor  # (N, 1176) float32, the prompt's images (one tensor shared by its group)
    image_grid_thw: torch.Tensor  # (I, 3) int64
    advantage: float
    keep: bool  # False: in the batch but outside the loss (overlong-filtered or padding group)


def sequence_row(seq: TrainSequence, pad_token_id: int, placeholders: torch.Tensor) -> dict[str, torch.Tensor]:
    """One sequence on its own (L,) axis: input_ids, targets, loss_mask, rollout_logprobs and
    advantages (L,) each, position_ids (3, L)."""
    p, r = len(seq.prompt_ids), len(seq.response_ids)
    emitted_placeholder = torch.isin(seq.response_ids, placeholders)
    input_ids = torch.cat([seq.prompt_ids, torch.where(emitted_placeholder, pad_token_id, seq.response_ids)])
    response_positions = (seq.prompt_position_ids.max() + 1 + torch.arange(r)).expand(3, r)
    loss_mask, rollout_logprobs = torch.zeros(p + r), torch.zeros(p + r)
    rollout_logprobs[p - 1:p - 1 + r] = seq.rollout_logprobs
    if seq.keep and not emitted_placeholder.any():
        loss_mask[p - 1:p - 1 + r] = 1.0
    return {"input_ids": input_ids, "targets": torch.cat([input_ids[1:], input_ids.new_tensor([pad_token_id])]),
            "loss_mask": loss_mask, "rollout_logprobs": rollout_logprobs,
            "advantages": torch.full((p + r,), float(seq.advantage)),
            "position_ids": torch.cat([seq.prompt_position_ids, response_positions], dim=1)}


def shared_images(seqs: Sequence[TrainSequence], share: bool = True) -> dict[str, torch.Tensor | None]:
    """Each distinct prompt image set once: pixel_values (N, 1176), image_grid_thw (I, 3) and
    image_index (I_seq,) int64, the distinct image behind each image of `seqs` in order. A set is
    distinct by identity (a group's responses hold the same tensor). `share=False`: one copy per
    sequence and image_index None (the model's plain path)."""
    first: dict[int, int] = {}  # id(pixel_values) -> index of its first image among the distinct ones
    pixels, grids, index = [], [], []
    for seq in seqs:
        n = len(seq.image_grid_thw)
        if not n:
            continue
        key = id(seq.pixel_values) if share else len(index)
        if key not in first:
            first[key] = sum(len(g) for g in grids)
            pixels.append(seq.pixel_values)
            grids.append(seq.image_grid_thw)
        index += range(first[key], first[key] + n)
    if not pixels:
        return {"pixel_values": None, "image_grid_thw": None, "image_index": None}
    return {"pixel_values": torch.cat(pixels), "image_grid_thw": torch.cat(grids),
            "image_index": torch.tensor(index, dtype=torch.long) if share else None}


def micro_batch_inputs(seqs: Sequence[TrainSequence], pad_token_id: int, image_token_id: int,
                       video_token_id: int, share_images: bool = True) -> dict[str, torch.Tensor | None]:
    """Right-padded (B, T) batch of full sequences.

    Returns input_ids, targets, loss_mask (float), rollout_logprobs, advantages: (B, T); position_ids
    (3, B, T); pixel_values (N, 1176), image_grid_thw (I, 3), image_index (I_seq,), or None without images.
    """
    placeholders = torch.tensor([image_token_id, video_token_id])
    rows = [sequence_row(s, pad_token_id, placeholders) for s in seqs]
    t = max(len(r["input_ids"]) for r in rows)
    out = {k: torch.zeros((len(rows), t), dtype=rows[0][k].dtype) for k in _ROW_KEYS}
    out["input_ids"].fill_(pad_token_id)
    out["targets"].fill_(pad_token_id)
    out["position_ids"] = torch.zeros((3, len(rows), t), dtype=torch.long)
    for i, row in enumerate(rows):
        n = len(row["input_ids"])
        for k in _ROW_KEYS:
            out[k][i, :n] = row[k]
        out["position_ids"][:, i, :n] = row["position_ids"]
    return {**out, **shared_images(seqs, share_images)}


def pack_micro_batch(seqs: Sequence[TrainSequence], pad_token_id: int, image_token_id: int, video_token_id: int,
                     pad_to_multiple_of: int = 1, share_images: bool = True) -> dict[str, torch.Tensor | None]:
    """The sequences packed into one (1, T) row: the keys of `micro_batch_inputs` with B = 1, plus
    cu_seqlens (S + 1,) int32 (a padding tail to a multiple of `pad_to_multiple_of` is one more segment)."""
    placeholders = torch.tensor([image_token_id, video_token_id])
    rows = [sequence_row(s, pad_token_id, placeholders) for s in seqs]
    cu_seqlens = packed_cu_seqlens([len(r["input_ids"]) for r in rows], pad_to_multiple_of)
    pad = int(cu_seqlens[-1]) - int(sum(len(r["input_ids"]) for r in rows))
    out = {}
    for k in _ROW_KEYS:
        fill = pad_token_id if k in ("input_ids", "targets") else 0
        out[k] = torch.cat([*(r[k] for r in rows), torch.full((pad,), fill, dtype=rows[0][k].dtype)])[None]
    positions = torch.cat([*(r["position_ids"] for r in rows), torch.zeros((3, pad), dtype=torch.long)], dim=1)
    return {**out, "position_ids": positions[:, None], "cu_seqlens": cu_seqlens, **shared_images(seqs, share_images)}


def plan_token_micro_batches(lengths: Sequence[int], group_size: int, max_tokens: int) -> list[list[int]]:
    """Indices of sequences per packed micro-batch of at most `max_tokens` tokens, in data order.

    The `group_size` consecutive responses of a prompt stay in one micro-batch when they fit (their
    image is then encoded once); a larger group is split over micro-batches of its own, and a single
    sequence over the budget gets a micro-batch to itself (a training sequence is never dropped).
    """
    groups = [list(range(i, min(i + group_size, len(lengths)))) for i in range(0, len(lengths), group_size)]
    packs, over_budget = plan_packs([sum(lengths[j] for j in g) for g in groups], max_tokens)
    out = [[j for g in pack for j in groups[g]] for pack in packs]
    for g in over_budget:
        seq_packs, too_long = plan_packs([lengths[j] for j in groups[g]], max_tokens)
        out += [[groups[g][k] for k in pack] for pack in seq_packs] + [[groups[g][k]] for k in too_long]
    return out
