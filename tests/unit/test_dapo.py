"""dapo_loss against a naive per-token reference: values, gradients, clip boundaries, dual clip,
masks, TIS, both aggregations and global normalisation over micro-batches."""

import math

import pytest
import torch

from nemo_vtp.rl.loss import MAX_METRICS, SUM_METRICS, dapo_loss, reduce_metrics

LOW, HIGH = 0.2, 0.28


def reference(lp, old, adv, mask, low=LOW, high=HIGH, dual=None, num_tokens=None, rollout=None, cap=None,
              agg="token-mean", num_sequences=None):
    """The DAPO objective written token by token, straight from the formula."""
    B, T = lp.shape
    counts = {"low": 0, "high": 0, "dual": 0}
    n_tok = num_tokens if num_tokens is not None else sum(int(m) for m in mask.flatten().tolist())
    seq_terms, n_seq = [], 0
    for i in range(B):
        seq_sum, seq_len = lp.new_zeros(()), 0
        for t in range(T):
            if not mask[i, t]:
                continue
            a = adv[i] if adv.dim() == 1 else adv[i, t]
            r = torch.exp(lp[i, t] - old[i, t])
            obj = min(r * a, torch.clamp(r, 1 - low, 1 + high) * a)
            counts["low"] += int(a < 0 and r < 1 - low)
            counts["high"] += int(a > 0 and r > 1 + high)
            if dual is not None and a < 0:
                counts["dual"] += int(r > dual)
                obj = max(obj, dual * a)
            w = 1.0
            if cap is not None:
                w = min(math.exp(float(old[i, t] - rollout[i, t])), cap)
            seq_sum = seq_sum - w * obj
            seq_len += 1
        n_seq += seq_len > 0
        seq_terms.append(seq_sum if agg == "token-mean" else seq_sum / max(seq_len, 1))
    total = sum(seq_terms)
    denom = n_tok if agg == "token-mean" else (num_sequences if num_sequences is not None else n_seq)
    return total / max(denom, 1), {k: v / max(n_tok, 1) for k, v in counts.items()}


def make_batch(B=6, T=9, seed=0, dtype=torch.float64, spread=0.4):
    g = torch.Generator().manual_seed(seed)
    old = -torch.rand(B, T, generator=g, dtype=dtype) * 3
    lp = (old + spread * torch.randn(B, T, generator=g, dtype=dtype)).requires_grad_()
    adv = torch.randn(B, generator=g, dtype=dtype)
    adv[0] = 0.0  # a zero-advantage response
    mask = torch.rand(B, T, generator=g) < 0.8
    mask[1] = False  # a fully masked response
    return lp, old, adv, mask


def grads(loss, lp):
    (g,) = torch.autograd.grad(loss, lp)
    return g


@pytest.mark.parametrize("dual", [None, 3.0])
@pytest.mark.parametrize("per_token_adv", [False, True])
def test_matches_reference_values_and_grads(dual, per_token_adv):
    lp, old, adv, mask = make_batch(seed=1, spread=0.6)
    if per_token_adv:
        adv = adv[:, None] * torch.linspace(0.5, 1.5, lp.shape[1], dtype=lp.dtype)
    # large negative-advantage ratios so that the dual clip binds on some tokens
    with torch.no_grad():
        lp[2, :3] = old[2, :3] + math.log(5.0)
        adv[2] = -1.0 if not per_token_adv else adv[2].abs().neg()
    loss, metrics = dapo_loss(lp, old, adv, mask, dual_clip=dual)
    ref, counts = reference(lp, old, adv, mask, dual=dual)
    torch.testing.assert_close(loss, ref, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(grads(loss, lp), grads(ref, lp), rtol=1e-12, atol=1e-12)
    for name, key in (("clip_frac_low", "low"), ("clip_frac_high", "high"), ("dual_clip_frac", "dual")):
        assert metrics[name].item() == pytest.approx(counts[key])
    assert counts["low"] > 0 and counts["high"] > 0
    assert (counts["dual"] > 0) == (dual is not None)


def _exact_logprob_for_ratio(value: float) -> torch.Tensor:
    """A float32 x with exp(x) == float32(value) exactly (searched among neighbours of log(value))."""
    target = torch.tensor(value, dtype=torch.float32)
    base = torch.tensor(math.log(value), dtype=torch.float32)
    for direction in (float("inf"), float("-inf")):
        x = base
        for _ in range(8):
            if torch.exp(x) == target and (torch.exp(x.repeat(64)) == target).all():
                return x
            x = torch.nextafter(x, torch.tensor(direction))
    raise AssertionError(f"no float32 log-prob gives ratio exactly {value}")


def test_ratios_exactly_at_clip_boundaries_are_not_clipped():
    c = 3.0
    bounds = [1 + HIGH, 1 - LOW, 1 - LOW, 1 + HIGH, c]
    signs = [1.0, -1.0, 1.0, -1.0, -1.0]  # upper bound binds A>0, lower binds A<0, dual binds A<0
    lp = torch.stack([_exact_logprob_for_ratio(b) for b in bounds])[None, :].clone().requires_grad_()
    old = torch.zeros_like(lp)
    adv = torch.tensor(signs)[None, :]
    mask = torch.ones_like(lp, dtype=torch.bool)
    ratio = torch.exp(lp.detach() - old)
    assert torch.equal(ratio, torch.tensor(bounds, dtype=torch.float32)[None, :])
    loss, metrics = dapo_loss(lp, old, adv, mask, dual_clip=c)
    ref, _ = reference(lp, old, adv, mask, dual=c)
    torch.testing.assert_close(loss, ref, rtol=1e-6, atol=1e-7)
    g = grads(loss, lp)
    torch.testing.assert_close(g, grads(ref, lp), rtol=1e-6, atol=1e-7)
    # gradient flows at the bounds: d(-A r)/d lp / n = -A r / n
    torch.testing.assert_close(g, -adv * ratio / 5)
    assert metrics["clip_frac_low"] == 0 and metrics["clip_frac_high"] == 0 and metrics["dual_clip_frac"] == 0
    # just beyond each bound (a few ulps of the ratio), the token is clipped and its gradient is zero
    away = torch.tensor([1.0, -1.0, -1.0, 1.0, 1.0])  # outward for tokens 0, 1, 4
    beyond = (lp.detach() + 1e-6 * away[None, :]).requires_grad_()
    loss2, metrics2 = dapo_loss(beyond, old, adv, mask, dual_clip=c)
    assert torch.exp(beyond.detach()[0, 0]) > 1 + HIGH and torch.exp(beyond.detach()[0, 1]) < 1 - LOW
    g2 = grads(loss2, beyond)
    assert g2[0, 0] == 0 and g2[0, 1] == 0 and g2[0, 4] == 0 and g2[0, 2] != 0 and g2[0, 3] != 0
    assert metrics2["clip_frac_high"].item() == pytest.approx(1 / 5)
    assert metrics2["clip_frac_low"].item() == pytest.approx(1 / 5)
    assert metrics2["dual_clip_frac"].item() == pytest.approx(1 / 5)


@pytest.mark.parametrize("agg", ["token-mean", "seq-mean-token-mean"])
def test_micro_batches_with_global_counts_sum_to_full_batch(agg):
    lp, old, adv, mask = make_batch(B=7, seed=2)
    rollout = old + 0.05 * torch.randn_like(old)
    kw = {"dual_clip": 2.5, "rollout_logprobs": rollout, "tis_cap": 1.02, "loss_agg": agg}
    full, full_metrics = dapo_loss(lp, old, adv, mask, **kw)
    n_tok, n_seq = mask.sum(), (mask.sum(1) > 0).sum()
    parts, part_metrics = [], []
    for rows in (slice(0, 3), slice(3, 4), slice(4, 7)):
        loss, metrics = dapo_loss(lp[rows], old[rows], adv[rows], mask[rows], num_tokens=n_tok,
                                  num_sequences=n_seq, **{**kw, "rollout_logprobs": rollout[rows]})
        parts.append(loss)
        part_metrics.append(metrics)
    summed = sum(parts)
    torch.testing.assert_close(summed, full, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(grads(summed, lp), grads(full, lp), rtol=1e-12, atol=1e-12)
    reduced = reduce_metrics(part_metrics)
    assert set(reduced) == set(full_metrics) == set(SUM_METRICS) | set(MAX_METRICS) | {"ratio_max"}
    for key, value in full_metrics.items():
        torch.testing.assert_close(reduced[key], value, rtol=1e-12, atol=1e-12)
    ref, _ = reference(lp, old, adv, mask, dual=2.5, rollout=rollout, cap=1.02, agg=agg)
    torch.testing.assert_close(full, ref, rtol=1e-12, atol=1e-12)
    # splitting WITHOUT the global count is not the same loss: the count matters
    local = sum(dapo_loss(lp[r], old[r], adv[r], mask[r], **{**kw, "rollout_logprobs": rollout[r]})[0]
                for r in (slice(0, 3), slice(3, 4), slice(4, 7)))
    assert not torch.allclose(local, full)


def test_tis_weights_and_mismatch_metrics():
    lp, old, adv, mask = make_batch(seed=3)
    rollout = old + 0.3 * torch.randn(old.shape, dtype=old.dtype, generator=torch.Generator().manual_seed(3))
    loss, metrics = dapo_loss(lp, old, adv, mask, rollout_logprobs=rollout, tis_cap=1.5)
    ref, _ = reference(lp, old, adv, mask, rollout=rollout, cap=1.5)
    torch.testing.assert_close(loss, ref, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(grads(loss, lp), grads(ref, lp), rtol=1e-12, atol=1e-12)
    d = (old - rollout)[mask]
    rho = d.exp()
    n = mask.sum()
    assert metrics["rollout_logprob_abs_diff"].item() == pytest.approx((d.abs().sum() / n).item())
    assert metrics["rollout_logprob_abs_diff_max"].item() == pytest.approx(d.abs().max().item())
    assert metrics["rollout_kl"].item() == pytest.approx(((rho - 1 - d).sum() / n).item())
    assert metrics["tis_clip_frac"].item() == pytest.approx(((rho > 1.5).sum() / n).item())
    assert 0 < metrics["tis_clip_frac"] < 1
    assert metrics["tis_weight_mean"].item() == pytest.approx((rho.clamp(max=1.5).sum() / n).item())
    # without a cap: the mismatch is reported but the loss is the plain one
    plain, plain_metrics = dapo_loss(lp, old, adv, mask, rollout_logprobs=rollout)
    torch.testing.assert_close(plain, dapo_loss(lp, old, adv, mask)[0])
    assert "tis_weight_mean" not in plain_metrics and "rollout_kl" in plain_metrics


def test_on_policy_is_the_policy_gradient_and_kl_metrics():
    lp, old, adv, mask = make_batch(seed=4)
    with torch.no_grad():
        lp.copy_(old)
    loss, metrics = dapo_loss(lp, old, adv, mask)
    n = mask.sum()
    expected_grad = torch.where(mask, -adv[:, None] / n, 0.0)
    torch.testing.assert_close(grads(loss, lp), expected_grad)
    assert metrics["approx_kl"] == 0 and metrics["ratio_mean"].item() == pytest.approx(1.0)
    assert metrics["ratio_max"] == 1.0
    lp2, _, _, _ = make_batch(seed=4, spread=0.4)
    _, m2 = dapo_loss(lp2, old, adv, mask)
    r = (lp2.detach() - old)[mask].exp()
    assert m2["approx_kl"].item() == pytest.approx(((r - 1 - r.log()).sum() / n).item())
    assert m2["ratio_max"].item() == pytest.approx(r.max().item())
    assert m2["approx_kl"] > 0


def test_masked_positions_never_leak_nan_or_inf():
    lp, old, adv, mask = make_batch(seed=5)
    clean, _ = dapo_loss(lp, old, adv, mask)
    dirty_lp = torch.where(mask, lp.detach(), float("nan")).requires_grad_()
    dirty_old = torch.where(mask, old, float("-inf"))
    dirty_adv = torch.where(mask, adv[:, None], float("nan"))  # per-token advantages, nan where masked
    loss, metrics = dapo_loss(dirty_lp, dirty_old, dirty_adv, mask, rollout_logprobs=dirty_old, tis_cap=2.0)
    torch.testing.assert_close(loss.detach(), clean.detach())
    g = grads(loss, dirty_lp)
    assert torch.isfinite(g).all() and (g[~mask] == 0).all()
    assert all(torch.isfinite(v) for v in metrics.values())


def test_empty_micro_batch_and_float32_bf16_inputs():
    lp, old, adv, mask = make_batch(seed=6)
    loss, metrics = dapo_loss(lp, old, adv, torch.zeros_like(mask))
    assert loss == 0 and metrics["clip_frac_low"] == 0
    loss32, _ = dapo_loss(lp.float(), old.float(), adv.float(), mask)
    loss16, _ = dapo_loss(lp.bfloat16(), old.bfloat16(), adv.bfloat16(), mask)
    assert loss32.dtype == torch.float32 and loss16.dtype == torch.float32
    torch.testing.assert_close(loss32.double(), dapo_loss(lp, old, adv, mask)[0], rtol=1e-5, atol=1e-6)


def test_bad_arguments_are_named():
    lp, old, adv, mask = make_batch()
    with pytest.raises(ValueError, match="dual_clip must be > 1"):
        dapo_loss(lp, old, adv, mask, dual_clip=0.9)
    with pytest.raises(ValueError, match="advantages must be"):
        dapo_loss(lp, old, adv[:3], mask)
    with pytest.raises(ValueError, match="old_logprobs has shape"):
        dapo_loss(lp, old[:, :2], adv, mask)
    with pytest.raises(ValueError, match="tis_cap needs rollout_logprobs"):
        dapo_loss(lp, old, adv, mask, tis_cap=2.0)
    with pytest.raises(ValueError, match="loss_agg"):
        dapo_loss(lp, old, adv, mask, loss_agg="sum")
