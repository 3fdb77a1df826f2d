"""``variance``: a hinge on each embedding dimension's batch standard deviation (VICReg's variance term).

For each modality m with embeddings e_m over the rows that have it::

    L = mean_m mean_d max(0, gamma - sqrt(Var_batch(e_m[:, d]) + eps))

with gamma = ``variance_target``. It keeps encoders from collapsing to a constant, which the
stop-gradient objectives (reconstruction, prediction) otherwise only avoid implicitly.
"""

from __future__ import annotations

from typing import Any

import attrs
import torch

from modalbag import hookimpl
from modalbag.denoising import DenoisingContext, ObjectiveOutput, RepresentationSpec
from modalbag.kernel import Register


def _positive(instance: Any, attribute: attrs.Attribute, value: float) -> None:
    if value <= 0:
        raise ValueError(f"{attribute.name} must be > 0, got {value!r}")


@attrs.frozen(kw_only=True)
class VarianceOptions:
    variance_target: float = attrs.field(default=1.0, validator=_positive)


class Variance:
    name = "variance"
    min_modalities = 1

    def __init__(self, config: Any, options: VarianceOptions):
        self.target = options.variance_target

    def build(self, spec: RepresentationSpec) -> None:
        return None

    def loss(self, module: None, ctx: DenoisingContext) -> ObjectiveOutput | None:
        w = ctx.masks.float()[..., None]  # (B, M, 1): rows that have each modality
        n = w.sum(dim=0).clamp_min(2.0)
        mean = (ctx.embeddings * w).sum(dim=0) / n
        var = ((ctx.embeddings - mean) ** 2 * w).sum(dim=0) / (n - 1)
        std = torch.sqrt(var + 1e-4)
        hinge = torch.relu(self.target - std).mean()
        return ObjectiveOutput(hinge, {"std": std.detach().mean()})


@hookimpl
def modalbag_register_objectives(register: Register) -> None:
    register("variance", Variance, options=VarianceOptions, summary="VICReg variance hinge against collapse")
