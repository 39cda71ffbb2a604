"""Overlong filtering mask, and the doctests of the pure RL modules."""

import doctest

import pytest
import torch

import nemo_vtp.rl.advantages
import nemo_vtp.rl.overlong
from nemo_vtp.rl import dapo_loss, overlong_mask


def test_mask_from_lengths_drops_truncated_samples():
    lengths = torch.tensor([3, 5, 0, 2])
    truncated = torch.tensor([False, True, False, False])
    mask = overlong_mask(lengths, truncated, seq_len=6)
    assert mask.shape == (4, 6)
    assert mask.sum(dim=1).tolist() == [3, 0, 0, 2]
    assert mask[0].tolist() == [True, True, True, False, False, False]
    assert overlong_mask(lengths, torch.zeros(4, dtype=torch.bool)).sum(dim=1).tolist() == [3, 5, 0, 2]


def test_truncated_samples_leave_the_loss_and_the_token_count():
    g = torch.Generator().manual_seed(0)
    lp = torch.randn(3, 4, generator=g, dtype=torch.float64).requires_grad_()
    old = lp.detach() + 0.1 * torch.randn(3, 4, generator=g, dtype=torch.float64)
    adv = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    mask = overlong_mask(torch.tensor([4, 4, 2]), torch.tensor([False, True, False]))
    loss, _ = dapo_loss(lp, old, adv, mask)
    keep = [0, 2]
    expected, _ = dapo_loss(lp[keep], old[keep], adv[keep], mask[keep])
    torch.testing.assert_close(loss, expected)
    (grad,) = torch.autograd.grad(loss, lp)
    assert (grad[1] == 0).all() and (grad[2, 2:] == 0).all()


def test_bad_shapes():
    with pytest.raises(ValueError, match="both be"):
        overlong_mask(torch.tensor([1, 2]), torch.tensor([True]))
    with pytest.raises(ValueError, match="does not fit seq_len=2"):
        overlong_mask(torch.tensor([1, 3]), torch.tensor([False, False]), seq_len=2)


@pytest.mark.parametrize("module", [nemo_vtp.rl.advantages, nemo_vtp.rl.overlong])
def test_docstring_examples(module):
    result = doctest.testmod(module)
    assert result.attempted > 0 and result.failed == 0


def test_rl_package_imports_only_torch_the_standard_library_and_pure_packages():
    """The import rule of the design: rl/ imports no megatron, vllm or torch.distributed."""
    import ast
    from pathlib import Path

    allowed = {"__future__", "collections.abc", "dataclasses", "typing", "math", "json", "re", "pathlib", "torch",
               "nemo_vtp.rl", "nemo_vtp.data.processor", "nemo_vtp.data.packing", "nemo_vtp.config.rewards"}
    for path in Path(nemo_vtp.rl.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module] if isinstance(node, ast.ImportFrom) else [])
            for name in names:
                pure = name.startswith(("nemo_vtp.rl.", "nemo_vtp.rewards."))  # rewards: pure Python by design
                assert name in allowed or pure, f"{path.name} imports {name}"
