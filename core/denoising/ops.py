"""Fused loss primitives for denoising objectives: one autograd node each, analytic gradients.

At the batch sizes objectives run at, a step's cost is the number of operators (each a dispatch,
an autograd node and a backward call), not their arithmetic. These primitives compute a whole loss
tail in a few plain tensor operations under ``no_grad`` and give autograd one node whose backward
is written out, so an objective's cost stays near its matmuls. Each is checked against its eager
definition with ``torch.autograd.gradcheck`` in float64 (tests/core/test_denoising_ops.py).

Third-party objectives may use them: they are part of the public API.

Precision: each primitive computes in float32 whatever it is given. Under ``torch.autocast`` the
heads that feed them produce bf16 or fp16 activations, while their reductions (norms, sums of
squares, log-sum-exp) lose too much in 8 or 11 bits of mantissa, and fp16 overflows past 65504;
so half-precision inputs are upcast and autocast is off inside. float64 stays float64 (gradcheck).
The returned losses are float32 and their gradients flow back in the inputs' own dtype.
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch

_EPS = 1e-8
_FULL = (torch.float32, torch.float64)


def _full_precision(*tensors: torch.Tensor) -> tuple[Any, list[torch.Tensor]]:
    """A context with autocast off on the tensors' device (when it was on), and the tensors in fp32
    unless already fp32/fp64. Cheap when nothing is half: no context is entered, nothing is copied."""
    device_type = tensors[0].device.type
    off = (torch.autocast(device_type, enabled=False) if torch.is_autocast_enabled(device_type)
           else contextlib.nullcontext())
    return off, [t if t.dtype in _FULL else t.float() for t in tensors]


class _EmbeddingError(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, pred: torch.Tensor, target: torch.Tensor, squared_weight: float,
                cosine_weight: float) -> torch.Tensor:
        diff = pred - target
        out = diff.pow(2).mean(-1) * squared_weight if squared_weight else None
        pred_norm = target_norm = cos = None
        if cosine_weight:
            pred_norm = pred.norm(dim=-1, keepdim=True).clamp_min(_EPS)
            target_norm = target.norm(dim=-1, keepdim=True).clamp_min(_EPS)
            cos = (pred * target).sum(-1, keepdim=True) / (pred_norm * target_norm)
            term = (1 - cos.squeeze(-1)) * cosine_weight
            out = term if out is None else out + term
        ctx.save_for_backward(pred, target, diff if squared_weight else None, pred_norm, target_norm, cos)
        ctx.weights = (squared_weight, cosine_weight)
        return out

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        pred, target, diff, pred_norm, target_norm, cos = ctx.saved_tensors
        squared_weight, cosine_weight = ctx.weights
        grad = grad[..., None]
        out = None
        if squared_weight:  # d/dp mean((p - t)^2) = 2 (p - t) / E
            out = diff * (2 * squared_weight / pred.shape[-1])
        if cosine_weight:  # d/dp (1 - cos) = -(t / (|p||t|) - cos p / |p|^2)
            term = (cos / pred_norm.pow(2)) * pred - target / (pred_norm * target_norm)
            term = term * cosine_weight
            out = term if out is None else out + term
        return out * grad, None, None, None


def embedding_error(pred: torch.Tensor, target: torch.Tensor, squared_weight: float = 1.0,
                    cosine_weight: float = 1.0) -> torch.Tensor:
    """Per row: ``squared_weight * mean((pred - target)^2) + cosine_weight * (1 - cos(pred, target))``.

    ``target`` is a stop-gradient target (no gradient flows to it) and broadcasts to ``pred``;
    the last dimension is the feature dimension. Returns ``pred.shape[:-1]``.
    """
    off, (pred, target) = _full_precision(pred, target.detach())
    with off:
        return _EmbeddingError.apply(pred, target.to(pred.dtype).expand_as(pred), float(squared_weight),
                                     float(cosine_weight))


class _SymmetricInfoNCE(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, logits: torch.Tensor, row_weights: torch.Tensor) -> torch.Tensor:
        # one exponential for both directions (exp dominates at large batches): shifted by the global
        # maximum, so row and column sums come from the same matrix
        shift = logits.amax()
        exp = torch.exp(logits - shift)
        tiny = torch.finfo(exp.dtype).tiny  # rows that count never get near it (see the docstring)
        row_sums, col_sums = exp.sum(dim=2).clamp_min(tiny), exp.sum(dim=1).clamp_min(tiny)  # (K, B) each
        ce = row_sums.log() + col_sums.log() + 2 * (shift - logits.diagonal(dim1=1, dim2=2))  # both directions
        ctx.save_for_backward(exp, row_sums, col_sums, row_weights)
        return 0.5 * (ce * row_weights).sum()

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, None]:
        exp, row_sums, col_sums, w = ctx.saved_tensors
        # d/dlogits: w_b (softmax over row b - e_b) + w_c (softmax over column c - e_c), halved
        half = 0.5 * grad
        out = exp * ((w * half / row_sums)[:, :, None] + (w * half / col_sums)[:, None, :])
        out.diagonal(dim1=1, dim2=2).sub_(w * (2 * half))
        return out, None


def symmetric_info_nce(logits: torch.Tensor, row_weights: torch.Tensor) -> torch.Tensor:
    """``sum_k,b row_weights[k, b] * (CE(logits[k, b, :], b) + CE(logits[k, :, b], b)) / 2``.

    ``logits`` (K, B, B) holds K similarity matrices whose diagonal are the positives (the same
    sample in two modalities); entries that must not count are ``-inf`` or a large negative number
    (keep the diagonal of rows that count finite). ``row_weights`` (K, B) weighs each sample, e.g.
    ``1 / count`` for rows with both modalities.

    Exact while every row and column that counts has a logit within about 80 (float32) of the
    largest logit overall: always so for unit-norm similarities at temperatures of 0.025 or more.
    """
    off, (logits, row_weights) = _full_precision(logits, row_weights.detach())
    with off:
        return _SymmetricInfoNCE.apply(logits, row_weights.to(logits.dtype))


class _CrossCorrelationPenalty(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, present: torch.Tensor, pair_weights: torch.Tensor) -> torch.Tensor:
        b, m, e = x.shape
        n = present.sum(dim=0).clamp_min(1.0)  # (M, 1)
        centred = (x - (x * present).sum(dim=0) / n) * present
        inv_std = torch.rsqrt(centred.pow(2).sum(dim=0) / n + 1e-6)  # (M, E); eps: finite at zero variance
        z = (centred * inv_std).reshape(b, m * e)
        products = (z.T @ z).view(m, e, m, e)
        coefficients = pair_weights / (present[..., 0].T @ present[..., 0]).clamp_min(1.0).pow(2) / (e * e)
        ctx.save_for_backward(z, centred, inv_std, n, present, products, coefficients)
        return (products.pow(2).sum(dim=(1, 3)) * coefficients).sum()

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, None, None]:
        z, centred, inv_std, n, present, products, coefficients = ctx.saved_tensors
        b, m, e = centred.shape
        d_products = 2 * products * coefficients[:, None, :, None]  # dL/dS, S = z^T z
        d_products = (d_products + d_products.permute(2, 3, 0, 1)).reshape(m * e, m * e)
        d_z = (z @ d_products).view(b, m, e) * grad
        # through z = c * r with r = (mean_b c^2 + eps)^-1/2 ...
        d_centred = d_z * inv_std - centred * (inv_std.pow(3) * (d_z * centred).sum(dim=0) / n)
        # ... and c = (x - mean_present(x)) * present
        d_x = (d_centred - (d_centred * present).sum(dim=0) / n) * present
        return d_x, None, None


def cross_correlation_penalty(embeddings: torch.Tensor, masks: torch.Tensor, pair_weights: torch.Tensor) -> torch.Tensor:
    """``sum_ij pair_weights[i, j] * ||C_ij||_F^2 / E^2`` for (B, M, E) embeddings and (B, M) masks.

    Each modality is standardised over the rows where it is present (absent rows become zero), so
    one (M E x M E) product gives every pair's cross-correlation over the rows where both are
    present: ``C_ij = sum_b z_i[b] z_j[b]^T / n_ij``. ``pair_weights`` (M, M) picks and weighs the
    pairs (e.g. the upper triangle, normalised, for the mean over pairs).
    """
    off, (embeddings,) = _full_precision(embeddings)
    present = masks.detach().to(embeddings.dtype)[..., None]
    with off:
        return _CrossCorrelationPenalty.apply(embeddings, present, pair_weights.detach().to(embeddings.dtype))


class _GaussianBottleneck(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, stats: torch.Tensor, noise: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, log_var = stats.chunk(2, dim=-1)
        clamped = log_var.clamp(-10.0, 10.0)
        std = torch.exp(0.5 * clamped)
        sample = torch.addcmul(mu, noise, std)
        kl = 0.5 * (mu.pow(2) + std.pow(2) - 1 - clamped).sum(dim=-1).mean()
        ctx.save_for_backward(mu, log_var, std, noise)
        return sample, kl

    @staticmethod
    def backward(ctx: Any, grad_sample: torch.Tensor, grad_kl: torch.Tensor) -> tuple[torch.Tensor, None]:
        mu, log_var, std, noise = ctx.saved_tensors
        rows = mu[..., 0].numel()
        grad_mu = grad_sample + mu * (grad_kl / rows)
        grad_log_var = 0.5 * (grad_sample * noise * std + (std.pow(2) - 1) * (grad_kl / rows))
        grad_log_var = grad_log_var * ((log_var >= -10.0) & (log_var <= 10.0))  # clamp's gradient
        return torch.cat([grad_mu, grad_log_var], dim=-1), None


def gaussian_bottleneck(stats: torch.Tensor, noise: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """A reparameterised sample of N(mu, diag exp(log_var)) and its KL to N(0, I), averaged over rows.

    ``stats`` (..., 2K) holds ``[mu | log_var]`` (log_var clamped to [-10, 10]); ``noise`` defaults
    to a standard normal draw. Returns ``(mu + noise * std, mean_rows KL(q || N(0, I)))``.
    """
    off, (stats,) = _full_precision(stats)
    if noise is None:
        noise = torch.randn(*stats.shape[:-1], stats.shape[-1] // 2, device=stats.device, dtype=stats.dtype)
    with off:
        return _GaussianBottleneck.apply(stats, noise.to(stats.dtype))


__all__ = ["cross_correlation_penalty", "embedding_error", "gaussian_bottleneck", "symmetric_info_nce"]
