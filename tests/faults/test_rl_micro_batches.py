"""Bad inputs to the RL micro-batch layouts: a token budget too small to mean anything, a response
longer than the budget, a response in which the policy emitted image placeholders."""

import pytest
import torch

from nemo_vtp.config import ConfigError, load_config
from nemo_vtp.rl.batch import TrainSequence, pack_micro_batch, plan_token_micro_batches

PAD, IMAGE, VIDEO = 0, 5, 6


def test_a_token_budget_below_the_minimum_names_the_field(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("generation:\n  sampling:\n    n: 4\nrl:\n  num_prompts: 2\n  mini_batch_size: 8\n")
    with pytest.raises(ConfigError, match="rl.micro_batch_tokens"):
        load_config(recipe, ["rl.micro_batch_tokens=8"])


def test_a_sequence_over_the_token_budget_is_trained_alone_not_dropped():
    plan = plan_token_micro_batches([30, 500, 40, 20], group_size=2, max_tokens=100)
    assert sorted(i for mb in plan for i in mb) == [0, 1, 2, 3]
    assert [1] in plan and all(sum([30, 500, 40, 20][i] for i in mb) <= 100 for mb in plan if mb != [1])


def test_emitted_image_placeholders_never_reach_the_image_slots():
    grid = torch.tensor([[1, 2, 2]])  # one image of 4 patches -> 1 merged token
    prompt = torch.tensor([10, 3, IMAGE, 4, 11])
    positions = torch.stack([torch.arange(5)] * 3)
    pixels = torch.randn(4, 8)
    seqs = [TrainSequence(prompt, positions, torch.tensor(r), -torch.ones(len(r)), pixels, grid, 1.0, True)
            for r in ([IMAGE, IMAGE, 12], [VIDEO, 13], [14, 15])]
    packed = pack_micro_batch(seqs, PAD, IMAGE, VIDEO)
    slots = int((packed["input_ids"] == IMAGE).sum())
    assert slots == len(packed["image_index"]) == 3  # one per prompt copy: the emitted ones became padding
    assert not (packed["input_ids"] == VIDEO).any()
    assert packed["loss_mask"].sum() == 2  # only the clean response counts
