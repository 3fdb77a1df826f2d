"""``accumulation``: one optimizer step every ``gradient_accumulation_steps`` batches.

Gradients of consecutive batches add up in ``.grad``; at a boundary (every k-th batch, and the
epoch's last batch) they are divided by the number of batches accumulated, so that k batches of
size b give the gradient of the mean loss over their k*b samples, the same as one batch of k*b
(exactly so when the batches are the same size and the loss is a mean). Between boundaries the
step is skipped and the schedule does not advance; at a boundary this plugin returns ``None`` so
the next implementation (``amp``'s scaled step) or the trainer's default clip-step-zero runs.
Clipping therefore sees the accumulated, averaged (and unscaled) gradient.

It runs first among ``modalbag_optimizer_step`` implementations (``tryfirst``), whatever the
configuration order, because skipping must come before anyone steps.
"""

from __future__ import annotations

from typing import Any

from modalbag import hookimpl
from modalbag.kernel import Register, Run
from modalbag.kernel.fit import FitState, StashKey

_PENDING = StashKey[int]()


class Accumulation:
    def __init__(self, config: Any, options: None):
        self.k = config.gradient_accumulation_steps

    @hookimpl
    def modalbag_fit_setup(self, run: Run, fit: FitState) -> None:
        fit.stash[_PENDING] = 0
        fit.notes.append(f"gradient accumulation: one optimizer step per {self.k} batches")

    @hookimpl(tryfirst=True)
    def modalbag_optimizer_step(self, run: Run, fit: FitState) -> bool | None:
        pending = fit.stash.get(_PENDING, 0) + 1
        last_of_epoch = fit.batch_in_epoch == fit.steps_per_epoch - 1
        if pending < self.k and not last_of_epoch:
            fit.stash[_PENDING] = pending
            fit.deferred_step = True
            return True
        fit.stash[_PENDING] = 0
        if pending > 1:
            for group in fit.optimizer.param_groups:
                for p in group["params"]:
                    if p.grad is not None:
                        p.grad.div_(pending)
        return None


@hookimpl
def modalbag_register_precisions(register: Register) -> None:
    register("accumulation", Accumulation,
             summary="Gradient accumulation: an optimizer step every gradient_accumulation_steps batches")
