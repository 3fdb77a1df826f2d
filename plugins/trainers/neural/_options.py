"""The ``neural`` trainer's options, each with its help text (validated when the config is read)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

from modalbag.kernel.options import integer_at_least, non_negative, positive


def _positive_or_none(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    """None, or an integer >= 1 (a width, a count)."""
    if value is not None:
        integer_at_least(1)(instance, attribute, value)


def _device(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if not isinstance(value, str) or not (value in ("auto", "cpu", "cuda") or value.startswith("cuda:")):
        raise ValueError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {value!r}")


def _modality_weights(value: Any) -> dict[str, float] | None:
    """A ``{modality: weight}`` mapping, or `analyze_modality_importance`'s result (its ``importance``)."""
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise TypeError(f"modality_weights must map modality names to numbers, got {value!r}")
    if isinstance(value.get("importance"), Mapping):
        value = value["importance"]
    out = {}
    for name, weight in value.items():
        if weight is None:
            continue  # not measured for that modality: it gets the mean
        if isinstance(weight, bool) or not isinstance(weight, (int, float)):
            raise TypeError(f"modality_weights[{name!r}] must be a number, got {weight!r}")
        out[str(name)] = max(0.0, float(weight))
    return out


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
    modality_balancing: bool = attrs.field(default=False, metadata={
        "help": "Balance the modalities in the fusion network: each is hidden during training with a probability "
                "proportional to its weight in modality_weights (equal weights without them), so the network "
                "cannot lean on the dominant one. The mean rate is modality_dropout, or 0.2 when that is 0; "
                "each rate is capped at 0.9."})
    modality_weights: Mapping[str, float] | None = attrs.field(default=None, converter=_modality_weights, metadata={
        "help": "Relative weight of each modality for modality_balancing: a {modality: weight} mapping, or what "
                "model.analyze_modality_importance() returns (its importance). Unlisted modalities get the mean."})
    adversarial_training: bool = attrs.field(default=False, metadata={
        "help": "Train on adversarial copies of each batch too: inputs moved within adversarial_epsilon "
                "standard deviations per feature to raise the loss (FGSM, or PGD with adversarial_steps > 1); "
                "the step's loss mixes clean and adversarial at adversarial_ratio."})
    adversarial_epsilon: float = attrs.field(default=0.1, validator=non_negative, metadata={
        "help": "Radius of the adversarial perturbation, in standard deviations of each feature (the safety "
                "report's attack uses the same option)."})
    adversarial_steps: int = attrs.field(default=1, validator=integer_at_least(1), metadata={
        "help": "Gradient-sign steps of the perturbation search: 1 is FGSM, more is PGD (each step 2.5 * "
                "epsilon / steps, projected back into the ball)."})
    adversarial_ratio: float = attrs.field(default=0.5, validator=[attrs.validators.ge(0.0),
                                                                   attrs.validators.le(1.0)], metadata={
        "help": "Weight of the adversarial copy's loss in the step's loss (the clean batch's is 1 - ratio)."})
    ncl_members: int = attrs.field(default=1, validator=integer_at_least(1), metadata={
        "help": "Negative correlation learning (Liu & Yao, 1999) inside the learner: with 2 or more, that many "
                "task heads on the shared modality encoders and fusion are trained together, each on its task "
                "loss minus ncl_lambda times its squared distance from the heads' mean output (probabilities "
                "for classification), and the learner predicts their mean. 1: one head, off."})
    ncl_lambda: float | None = attrs.field(default=None, validator=attrs.validators.optional(
        [attrs.validators.ge(0.0), attrs.validators.le(1.0)]), metadata={
        "help": "Strength of the negative correlation penalty under ncl_members >= 2, in [0, 1] (1 trains the "
                "heads' mean alone under a squared-error loss). None: the config's ensemble_diversity_weight "
                "when that is > 0 (capped at 1), else 0.5."})
    soft_target_temperature: float | None = attrs.field(default=None, validator=attrs.validators.optional(
        positive), metadata={
        "help": "Set by model.distill(): train on a teacher's probabilities at this temperature (soft targets) "
                "instead of labels. Not for direct use."})
    test_time_augmentation: bool = attrs.field(default=False, metadata={
        "help": "Predict with the mean output of tta_samples augmented copies of each row (image flips, "
                "noise in embedding space, modality dropout on the present modalities), drawn from a "
                "generator seeded by tta_seed. Costs tta_samples forward passes per prediction."})
    tta_samples: int = attrs.field(default=8, validator=integer_at_least(1), metadata={
        "help": "Augmented copies averaged per prediction under test_time_augmentation."})
    tta_noise: float = attrs.field(default=0.1, validator=non_negative, metadata={
        "help": "Standard deviation of the Gaussian noise added to each modality's normalised embedding "
                "under test_time_augmentation."})
    tta_modality_dropout: float = attrs.field(default=0.2, validator=[attrs.validators.ge(0.0),
                                                                      attrs.validators.lt(1.0)], metadata={
        "help": "Probability of hiding each present modality in an augmented copy (one is always kept)."})
    tta_seed: int = attrs.field(default=0, validator=integer_at_least(0), metadata={
        "help": "Seed of the test-time augmentation draws."})
    shuffle: bool = attrs.field(default=True, metadata={
        "help": "Draw a new order of the training rows every epoch (seeded by the fit); false keeps the rows' "
                "order, as time-ordered data may want."})
    drop_last: bool = attrs.field(default=False, metadata={
        "help": "Leave out an epoch's last, smaller batch, so every step sees batch_size rows (false: a last "
                "batch of a single row is merged into the one before, as batch norm needs two)."})
    eval_interval: int = attrs.field(default=1, validator=integer_at_least(1), metadata={
        "help": "Validate every N epochs (and after the last): epochs between have no validation loss, and "
                "early stopping's patience counts validations, not epochs."})
    memory_cleanup_interval: int = attrs.field(default=0, validator=integer_at_least(0), metadata={
        "help": "Every N epochs, collect Python garbage and return the CUDA caching allocator's free blocks "
                "to the device (0: never). Costs time; for long runs that share a GPU."})
    cudnn_benchmark: bool = attrs.field(default=False, metadata={
        "help": "On CUDA, let cuDNN time its convolution algorithms and keep the fastest (set while the learner "
                "trains, restored after). Faster for fixed image sizes; results may then differ run to run."})
    tf32: bool = attrs.field(default=False, metadata={
        "help": "On CUDA GPUs with TensorFloat-32 (Ampere and later), run fp32 matmuls and convolutions in TF32 "
                "(set while the learner trains, restored after): faster, about 3 decimal digits."})


# -- modules ------------------------------------------------------------------------------------


__all__ = ["NeuralOptions"]
