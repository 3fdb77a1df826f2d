"""The fused loss primitives equal their eager definitions, in value and in gradient."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from modalbag.denoising.ops import cross_correlation_penalty, embedding_error, gaussian_bottleneck, symmetric_info_nce


def _double(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


@pytest.mark.parametrize(("squared", "cosine"), [(1.0, 1.0), (0.0, 1.0), (2.0, 0.0)])
def test_embedding_error_matches_the_eager_definition_and_its_gradient(squared, cosine):
    pred = _double(3, 5, 2, 8).requires_grad_()
    target = _double(1, 5, 2, 8, seed=1)  # broadcast over the first dimension, as prediction uses it

    def eager(p):
        t = target.expand_as(p)
        return squared * (p - t).pow(2).mean(-1) + cosine * (1 - F.cosine_similarity(p, t, dim=-1))

    torch.testing.assert_close(embedding_error(pred, target, squared, cosine), eager(pred))
    assert torch.autograd.gradcheck(lambda p: embedding_error(p, target, squared, cosine), (pred,))
    grad = torch.autograd.grad(embedding_error(pred, target, squared, cosine).sum(), pred)[0]
    torch.testing.assert_close(grad, torch.autograd.grad(eager(pred).sum(), pred)[0])


def test_embedding_error_sends_no_gradient_to_its_target():
    pred, target = _double(4, 6).requires_grad_(), _double(4, 6, seed=1).requires_grad_()
    embedding_error(pred, target).sum().backward()
    assert target.grad is None and pred.grad is not None


def test_symmetric_info_nce_matches_two_cross_entropies_with_masks():
    k, b = 3, 6
    logits = _double(k, b, b).requires_grad_()
    rows = torch.rand(k, b, generator=torch.Generator().manual_seed(2)) > 0.3
    valid = rows[:, None, :] & rows[:, :, None] | torch.eye(b, dtype=torch.bool)
    weights = rows.double() / rows.sum(1, keepdim=True).clamp_min(1)

    def eager(x):
        x = x.masked_fill(~valid, float("-inf"))
        labels = torch.arange(b).expand(k, b)
        ce = (F.cross_entropy(x.transpose(1, 2), labels, reduction="none")
              + F.cross_entropy(x, labels, reduction="none"))
        return 0.5 * (ce * weights).sum()

    def fused(x):
        return symmetric_info_nce(x.masked_fill(~valid, float("-inf")), weights)

    torch.testing.assert_close(fused(logits), eager(logits))
    torch.testing.assert_close(torch.autograd.grad(fused(logits), logits)[0],
                               torch.autograd.grad(eager(logits), logits)[0])
    assert torch.autograd.gradcheck(fused, (logits,))


def test_cross_correlation_penalty_matches_its_definition_with_missing_rows():
    b, m, e = 10, 3, 4
    x = _double(b, m, e).requires_grad_()
    masks = torch.rand(b, m, generator=torch.Generator().manual_seed(3)) > 0.25
    pair_weights = torch.ones(m, m, dtype=torch.float64).triu(1)
    pair_weights /= pair_weights.sum()

    def eager(x):
        present = masks.double()[..., None]
        n = present.sum(0).clamp_min(1)
        c = (x - (x * present).sum(0) / n) * present
        z = c / (c.pow(2).sum(0) / n + 1e-6).sqrt()
        total = x.new_zeros(())
        for i in range(m):
            for j in range(m):
                n_ij = (masks[:, i] & masks[:, j]).sum().clamp_min(1)
                corr = z[:, i].T @ z[:, j] / n_ij
                total = total + pair_weights[i, j] * corr.pow(2).sum() / (e * e)
        return total

    torch.testing.assert_close(cross_correlation_penalty(x, masks, pair_weights), eager(x))
    assert torch.autograd.gradcheck(lambda t: cross_correlation_penalty(t, masks, pair_weights), (x,))


def test_gaussian_bottleneck_matches_the_reparameterised_sample_and_kl():
    stats = _double(7, 6).requires_grad_()
    with torch.no_grad():
        stats[0, 3] = 12.0  # a clamped log-variance: no gradient through it
    noise = _double(7, 3, seed=1)

    def eager(s):
        mu, log_var = s.chunk(2, dim=-1)
        log_var = log_var.clamp(-10, 10)
        std = torch.exp(0.5 * log_var)
        kl = 0.5 * (mu.pow(2) + log_var.exp() - 1 - log_var).sum(dim=-1).mean()
        return mu + noise * std, kl

    for got, want in zip(gaussian_bottleneck(stats, noise), eager(stats), strict=True):
        torch.testing.assert_close(got, want)
    weights = _double(7, 3, seed=2)

    def scalar(fn):
        return lambda s: (fn(s)[0] * weights).sum() + 3.0 * fn(s)[1]

    torch.testing.assert_close(torch.autograd.grad(scalar(lambda s: gaussian_bottleneck(s, noise))(stats), stats)[0],
                               torch.autograd.grad(scalar(eager)(stats), stats)[0])
    assert torch.autograd.gradcheck(lambda s: gaussian_bottleneck(s, noise), (stats,))


_PRIMITIVES = {
    "embedding_error": (lambda x: embedding_error(x, x.detach().flip(0)).sum(), (6, 8)),
    "symmetric_info_nce": (lambda x: symmetric_info_nce(x, torch.ones(x.shape[:2], dtype=x.dtype)), (2, 5, 5)),
    "cross_correlation_penalty": (lambda x: cross_correlation_penalty(
        x, torch.ones(x.shape[:2], dtype=torch.bool), torch.ones(x.shape[1], x.shape[1]).triu(1)), (8, 3, 4)),
    "gaussian_bottleneck": (lambda x: gaussian_bottleneck(x, torch.zeros(*x.shape[:-1], x.shape[-1] // 2))[1], (6, 8)),
}


@pytest.mark.parametrize("half", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("name", list(_PRIMITIVES))
def test_primitives_take_half_precision_inputs_under_autocast_and_reduce_in_fp32(name, half):
    fn, shape = _PRIMITIVES[name]
    full = _double(*shape).float().requires_grad_()
    low = full.detach().to(half).requires_grad_()
    with torch.autocast("cpu", dtype=half):
        value = fn(low)
    assert value.dtype == torch.float32
    value.backward()
    assert low.grad.dtype == half  # the gradient flows back in the activations' own dtype
    reference = fn(full.detach().to(half).float().requires_grad_())  # the same rounded inputs, in fp32
    torch.testing.assert_close(value, reference.detach(), rtol=1e-5, atol=1e-6)
