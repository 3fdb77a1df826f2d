"""``plateau``: multiply the rate by ``factor`` when the validation loss stops improving for ``patience`` epochs."""

from __future__ import annotations

from typing import Any

import attrs

from modalbag import hookimpl
from modalbag.kernel import Register
from modalbag.kernel.options import non_negative, strictly_between_0_and_1


def _patience(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(f"{attribute.name} must be a whole number of epochs >= 0, got {value!r}")


@attrs.frozen(kw_only=True)
class PlateauOptions:
    mode: str = attrs.field(default="min", validator=attrs.validators.in_(("min",)), metadata={
        "help": "'min' (the only value): a lower monitored loss is an improvement."})
    factor: float = attrs.field(default=0.5, validator=strictly_between_0_and_1, metadata={
        "help": "The learning rate is multiplied by this at each cut, strictly between 0 and 1."})
    patience: int = attrs.field(default=5, validator=_patience, metadata={
        "help": "Epochs without improvement of the monitored loss (validation loss, else training loss) "
                "tolerated before the rate is cut."})
    threshold: float = attrs.field(default=1e-4, validator=non_negative, metadata={
        "help": "Relative improvement that counts: the loss must fall below best * (1 - threshold)."})
    min_lr: float = attrs.field(default=0.0, validator=non_negative, metadata={
        "help": "The rate is never cut below this."})
    cooldown: int = attrs.field(default=0, validator=_patience, metadata={
        "help": "Epochs after a cut before epochs without improvement are counted again (0: none)."})


class Plateau:
    def __init__(self, optimizer: Any, options: PlateauOptions):
        from torch.optim.lr_scheduler import ReduceLROnPlateau

        self.inner = ReduceLROnPlateau(optimizer, mode=options.mode, factor=options.factor, patience=options.patience,
                                       threshold=options.threshold, min_lr=options.min_lr, cooldown=options.cooldown)

    def after_batch(self) -> None:
        pass

    def after_epoch(self, val_loss: float | None) -> None:
        if val_loss is not None:
            self.inner.step(val_loss)


def build(optimizer: Any, config: Any, options: PlateauOptions, steps_per_epoch: int) -> Plateau:
    return Plateau(optimizer, options)


@hookimpl
def modalbag_register_schedulers(register: Register) -> None:
    register("plateau", build, options=PlateauOptions, summary="Reduce the rate when validation loss plateaus")
