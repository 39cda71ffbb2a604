"""RL micro-batches: the packed row holds exactly the padded rows' values, shared prompt images are
carried once with the right index, and token-budget planning keeps groups whole and drops nothing."""

import pytest
import torch

from nemo_vtp.data.packing import block_causal_mask
from nemo_vtp.rl.batch import (
    TrainSequence,
    micro_batch_inputs,
    pack_micro_batch,
    plan_token_micro_batches,
    shared_images,
)

PAD, IMAGE, VIDEO = 0, 5, 6
KEYS = ("input_ids", "targets", "loss_mask", "rollout_logprobs", "advantages")


def _prompt(length, n_images, seed):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(10, 50, (length,), generator=g)
    positions = torch.stack([torch.arange(length)] * 3)
    positions[1, 2:] += 3  # mrope: the height axis differs from the text axis
    return ids, positions, torch.randn(4 * n_images, 8, generator=g), torch.tensor([[1, 2, 2]] * n_images)


def _seqs():
    out = []
    for k, (length, n_images) in enumerate(((6, 1), (9, 2))):
        ids, positions, pixels, grid = _prompt(length, n_images, k)
        for i, response in enumerate(([11, 12, 13], [14, IMAGE, 15, 16], [17, 18])):
            out.append(TrainSequence(ids, positions, torch.tensor(response), -torch.arange(1.0, len(response) + 1) / 10,
                                     pixels, grid, advantage=float(k - i), keep=not (k == 1 and i == 2)))
    return out


def test_sequence_values_alignment_and_masks():
    seqs = _seqs()
    padded = micro_batch_inputs(seqs, PAD, IMAGE, VIDEO)
    first = padded["input_ids"][0]
    assert first[:9].tolist() == [*seqs[0].prompt_ids.tolist(), 11, 12, 13] and first[9:].eq(PAD).all()
    assert padded["targets"][0, :8].tolist() == first[1:9].tolist() and padded["targets"][0, 8] == PAD
    assert padded["loss_mask"][0].nonzero().flatten().tolist() == [5, 6, 7]  # P-1 .. P+R-2
    assert padded["rollout_logprobs"][0, 5:8].tolist() == pytest.approx([-0.1, -0.2, -0.3])
    assert padded["position_ids"][:, 0, 6:9].tolist() == [[9, 10, 11]] * 3  # text after max(prompt) = 8
    assert padded["input_ids"][1, 7] == PAD and padded["loss_mask"][1].sum() == 0  # emitted placeholder
    assert padded["loss_mask"][5].sum() == 0  # keep=False
    assert padded["advantages"][3, :11].eq(1.0).all()


def test_packed_row_holds_the_padded_rows():
    seqs = _seqs()
    padded = micro_batch_inputs(seqs, PAD, IMAGE, VIDEO)
    packed = pack_micro_batch(seqs, PAD, IMAGE, VIDEO, pad_to_multiple_of=16)
    lengths = [len(s.prompt_ids) + len(s.response_ids) for s in seqs]
    cu = packed["cu_seqlens"]
    assert cu.dtype == torch.int32 and cu[:-1].tolist() == [0, *torch.tensor(lengths).cumsum(0).tolist()]
    assert cu[-1] == packed["input_ids"].shape[1] == 64 and packed["input_ids"].shape[0] == 1
    for i, n in enumerate(lengths):
        seg = slice(int(cu[i]), int(cu[i + 1]))
        for key in KEYS:
            assert torch.equal(packed[key][0, seg], padded[key][i, :n]), key
        assert torch.equal(packed["position_ids"][:, 0, seg], padded["position_ids"][:, i, :n])
    tail = slice(sum(lengths), None)
    assert packed["loss_mask"][0, tail].sum() == 0 and packed["input_ids"][0, tail].eq(PAD).all()
    assert packed["loss_mask"].sum() == padded["loss_mask"].sum()  # the DAPO token count is unchanged
    for key in ("pixel_values", "image_grid_thw", "image_index"):
        assert torch.equal(packed[key], padded[key])


def test_shared_images_once_per_group_in_token_order():
    seqs = _seqs()
    shared = shared_images(seqs)
    assert shared["pixel_values"].shape[0] == 4 + 8 and shared["image_grid_thw"].shape[0] == 3
    assert shared["image_index"].tolist() == [0, 0, 0, 1, 2, 1, 2, 1, 2]
    apart = shared_images(seqs, share=False)
    assert apart["image_grid_thw"].shape[0] == 9 and apart["image_index"] is None
    assert torch.equal(apart["pixel_values"][:4], shared["pixel_values"][:4])
    no_images = [TrainSequence(s.prompt_ids, s.prompt_position_ids, s.response_ids, s.rollout_logprobs,
                               torch.zeros(0, 8), torch.zeros(0, 3, dtype=torch.long), 0.0, True) for s in seqs[:2]]
    assert shared_images(no_images) == {"pixel_values": None, "image_grid_thw": None, "image_index": None}


@pytest.mark.parametrize("lengths, group, budget, expected", [
    ([3, 3, 3, 4, 4, 4], 3, 21, [[0, 1, 2, 3, 4, 5]]),
    ([3, 3, 3, 4, 4, 4], 3, 20, [[0, 1, 2], [3, 4, 5]]),  # whole groups, not 20 tokens of mixed groups
    ([3, 3, 3, 6, 6, 6], 3, 12, [[0, 1, 2], [3, 4], [5]]),  # a group over budget is split
    ([3, 3, 3, 20, 2, 2], 3, 12, [[0, 1, 2], [4, 5], [3]]),  # a sequence over budget: on its own, not dropped
])
def test_plan_token_micro_batches(lengths, group, budget, expected):
    plan = plan_token_micro_batches(lengths, group, budget)
    assert plan == expected
    assert sorted(i for mb in plan for i in mb) == list(range(len(lengths)))


def test_block_causal_mask_keeps_segments_apart():
    mask = block_causal_mask(torch.tensor([0, 2, 5], dtype=torch.int32))[0, 0]
    allowed = (~mask).int().tolist()
    assert allowed == [[1, 0, 0, 0, 0], [1, 1, 0, 0, 0], [0, 0, 1, 0, 0], [0, 0, 1, 1, 0], [0, 0, 1, 1, 1]]
