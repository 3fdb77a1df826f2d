"""The ``neural`` trainer's options, each with its help text (validated when the config is read)."""

from __future__ import annotations

from typing import Any

import attrs

from modalbag.kernel.options import integer_at_least, non_negative


def _positive_or_none(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    """None, or an integer >= 1 (a width, a count)."""
    if value is not None:
        integer_at_least(1)(instance, attribute, value)


def _device(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if not isinstance(value, str) or not (value in ("auto", "cpu", "cuda") or value.startswith("cuda:")):
        raise ValueError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {value!r}")


@attrs.frozen(kw_only=True)
class NeuralOptions:
    """Options of the ``neural`` trainer (None: take the value learner selection chose)."""

    hidden_dim: int | None = attrs.field(default=None, validator=_positive_or_none, metadata={
        "help": "Hidden width of the modality encoders (the image CNN's channels scale with it) and of the task "
                "head. None: 64, 128 or 256 for the speed, balanced or accuracy strategy."})
    embedding_dim: int | None = attrs.field(default=None, validator=_positive_or_none, metadata={
        "help": "Size of each modality's embedding and of the fused representation. None: 32, 64 or 128 "
                "for the speed, balanced or accuracy strategy."})
    dropout_rate: float = attrs.field(default=0.1, validator=[attrs.validators.ge(0.0), attrs.validators.lt(1.0)],
                                      metadata={"help": "Dropout probability in the encoders and the task head, "
                                                        "in [0, 1)."})
    sequence_encoder: str = attrs.field(default="conv", validator=attrs.validators.in_(("conv", "transformer")),
                                        metadata={"help": "Encoder of raw (T, F) sequences: 'conv' (two 1-D "
                                                          "convolutions) or 'transformer' (a two-layer "
                                                          "transformer), mean-pooled over time."})
    standardize: bool = attrs.field(default=True, metadata={
        "help": "Standardise each modality's inputs with the mean and standard deviation of the training rows "
                "that have it (per feature; per channel for images)."})
    eval_batch_size: int = attrs.field(default=1024, validator=integer_at_least(1), metadata={
        "help": "Rows per batch when computing validation losses and predictions."})
    device: str = attrs.field(default="auto", validator=_device, metadata={
        "help": "Device the network trains on: 'auto' (CUDA when available, else CPU), 'cpu', 'cuda' or "
                "'cuda:N'. Under distributed training each rank uses its own device."})
    compile_model: bool = attrs.field(default=False, metadata={
        "help": "Compile the network with torch.compile (falls back to eager, with a note, where compilation "
                "fails; not applied under DDP)."})
    # -- regularisation (training time only; prediction never sees it) --
    feature_dropout: float = attrs.field(default=0.0, validator=[attrs.validators.ge(0.0), attrs.validators.lt(1.0)],
                                         metadata={"help": "Probability of zeroing each standardised input value "
                                                           "during training (inverted dropout), in [0, 1); 0 "
                                                           "disables."})
    noise_injection: float = attrs.field(default=0.0, validator=non_negative, metadata={
        "help": "Standard deviation of the Gaussian noise added to the standardised inputs during training "
                "(0 disables)."})
    modality_dropout: float = attrs.field(default=0.0, validator=[attrs.validators.ge(0.0), attrs.validators.lt(1.0)],
                                          metadata={"help": "Probability of hiding each present modality of a "
                                                            "training sample, in [0, 1); 0 disables. A draw that "
                                                            "would hide all of them hides none; one-modality bags "
                                                            "are unaffected."})
    mixup_alpha: float = attrs.field(default=0.0, validator=non_negative, metadata={
        "help": "Mixup in the fused representation, with mixing weights drawn from Beta(alpha, alpha) "
                "(0 disables). With cutmix_alpha also set, each batch uses one of the two at random."})
    cutmix_alpha: float = attrs.field(default=0.0, validator=non_negative, metadata={
        "help": "CutMix on raw images: a box of another sample's images pasted in, its area share drawn from "
                "Beta(alpha, alpha) (0 disables). Without raw images, mixup is used instead where mixup_alpha is set."})
    image_augmentation: bool = attrs.field(default=False, metadata={
        "help": "Flip raw images left-right with probability 1/2 during training."})
    text_normalization: bool = attrs.field(default=False, metadata={
        "help": "L2-normalise text embeddings before standardising (training and prediction alike)."})
    # -- data path --
    data_loading: str = attrs.field(default="auto", validator=attrs.validators.in_(("auto", "memory", "loader")),
                                    metadata={"help": "'auto': stream batches with a DataLoader when a modality "
                                                      "is memory-mapped (data on disk) or num_workers > 0, else "
                                                      "index in-memory tensors; 'memory' or 'loader' force one."})
    num_workers: int = attrs.field(default=0, validator=integer_at_least(0), metadata={
        "help": "DataLoader worker processes that read training batches (0: read in the training process)."})
    pin_memory: bool = attrs.field(default=False, metadata={
        "help": "Pin the DataLoader's batches in page-locked memory for faster copies to a CUDA device "
                "(DataLoader path only; no effect on the CPU)."})
    persistent_workers: bool = attrs.field(default=False, metadata={
        "help": "Keep the DataLoader's worker processes alive between epochs (with num_workers > 0)."})
    prefetch_factor: int | None = attrs.field(default=None, validator=_positive_or_none, metadata={
        "help": "Batches each DataLoader worker reads ahead (with num_workers > 0; None: PyTorch's default, 2)."})


# -- modules ------------------------------------------------------------------------------------


__all__ = ["NeuralOptions"]
