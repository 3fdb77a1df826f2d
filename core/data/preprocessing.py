"""``model.apply_multimodal_preprocessing(...)``: preprocessing a model applies when it trains.

The choices are stored on the model and become the neural trainer's options at the next
``train_ensemble`` (a value passed to ``train_ensemble`` itself wins). Normalisation and scaling are
part of the trained network, so prediction applies them too; augmentation and modality dropout
act on training batches only.
"""

from __future__ import annotations

from typing import Any

import attrs

from modalbag.errors import ConfigError


@attrs.frozen(kw_only=True)
class Preprocessing:
    """``text_normalization``: L2-normalise text embeddings; ``image_augmentation``: random flips
    (and CutMix when ``cutmix_alpha`` is set) of raw images; ``feature_scaling``: standardise every
    input with statistics of the training rows; ``modality_dropout``: hide each present modality
    of a training sample with this probability (never all of them)."""

    text_normalization: bool = False
    image_augmentation: bool = False
    feature_scaling: bool = True
    modality_dropout: float = attrs.field(default=0.0, validator=[attrs.validators.ge(0.0), attrs.validators.lt(1.0)])

    @classmethod
    def choose(cls, text_normalization: bool = False, image_augmentation: bool = False, feature_scaling: bool = True,
               modality_dropout: float = 0.0) -> Preprocessing:
        """The choices as given to ``model.apply_multimodal_preprocessing``, checked."""
        try:
            return cls(text_normalization=bool(text_normalization), image_augmentation=bool(image_augmentation),
                       feature_scaling=bool(feature_scaling), modality_dropout=float(modality_dropout))
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"apply_multimodal_preprocessing: {exc} (modality_dropout is a probability in "
                              f"[0, 1))") from exc

    def training_options(self) -> dict[str, Any]:
        """The trainer options these choices stand for."""
        return {"text_normalization": self.text_normalization, "image_augmentation": self.image_augmentation,
                "standardize": self.feature_scaling, "modality_dropout": self.modality_dropout}


__all__ = ["Preprocessing"]
