"""``early_stopping``: stop a learner when validation loss stops improving, and keep its best weights.

Watches `EpochRecord.monitored` (validation loss, or training loss without a validation split).
After ``early_stopping_patience`` validations without an improvement larger than ``min_delta`` it
stops the fit (with ``eval_interval=1``, the default, a validation is an epoch; epochs between
validations are not counted); at the end of the fit it restores the weights of the best epoch.
"""

from __future__ import annotations

from typing import Any

import attrs

from modalbag import hookimpl
from modalbag.kernel import Register, Run
from modalbag.kernel.fit import FitState, StashKey
from modalbag.kernel.options import non_negative
from modalbag.kernel.records import EpochRecord


@attrs.frozen(kw_only=True)
class EarlyStoppingOptions:
    min_delta: float = attrs.field(default=0.0, validator=non_negative, metadata={
        "help": "Decrease of the monitored loss (validation loss, else training loss) needed to count as an "
                "improvement (0: any decrease)."})
    restore_best_weights: bool = attrs.field(default=True, metadata={
        "help": "At the end of the fit, restore the weights of the epoch with the best monitored loss "
                "(false keeps the last epoch's)."})


@attrs.define
class _Best:
    value: float = float("inf")
    epoch: int = 0
    state: dict[str, Any] | None = None
    since: int = 0  # validations since the best one


BEST = StashKey[_Best]()


class EarlyStopping:
    def __init__(self, config: Any, options: EarlyStoppingOptions):
        self.patience = config.early_stopping_patience
        self.options = options

    @hookimpl
    def modalbag_epoch_end(self, run: Run, fit: FitState, record: EpochRecord) -> None:
        best = fit.stash.setdefault(BEST, _Best())
        if record.validation_skipped:
            return
        value = record.monitored()
        if value < best.value - self.options.min_delta:
            best.value, best.epoch, best.since = value, record.epoch, 0
            if self.options.restore_best_weights and fit.model is not None:
                best.state = {k: v.detach().clone() for k, v in fit.model.state_dict().items()}
            return
        best.since += 1
        if best.since >= self.patience:
            unit = "epochs" if record.epoch - best.epoch == best.since else "validations"
            fit.control.stop(f"no improvement for {self.patience} {unit} (best epoch {best.epoch})")

    @hookimpl
    def modalbag_checkpoint_state(self, run: Run, fit: FitState) -> dict[str, Any] | None:
        best = fit.stash.get(BEST)  # part of a resumable training state: patience and best weights
        return None if best is None else {"validator.early_stopping": attrs.asdict(best, recurse=False)}

    @hookimpl
    def modalbag_restore_state(self, run: Run, fit: FitState, state: Any) -> None:
        saved = state.get("validator.early_stopping")
        if saved is not None:
            fit.stash[BEST] = _Best(float(saved["value"]), int(saved["epoch"]), saved["state"],
                                    int(saved.get("since", fit.epoch - int(saved["epoch"]))))

    @hookimpl
    def modalbag_fit_end(self, run: Run, fit: FitState) -> None:
        best = fit.stash.get(BEST)
        if best is not None and best.state is not None and best.epoch != fit.epoch:
            fit.model.load_state_dict(best.state)
            fit.notes.append(f"restored the weights of epoch {best.epoch} (monitored loss {best.value:.4f})")


@hookimpl
def modalbag_register_validators(register: Register) -> None:
    register("early_stopping", EarlyStopping, options=EarlyStoppingOptions,
             summary="Stop when validation loss stops improving; restore the best weights")
