"""The ``neural`` trainer: a PyTorch fusion network per bag.

One encoder per modality, chosen by type (an MLP for vectors, a small CNN for raw images, a 1-D
convolution or a small transformer for sequences), an attention fusion that only attends to the
modalities a sample has (missing ones are masked, never zero-filled), and a head per task.

The loop batches in-memory tensors by indexing (no per-sample Dataset on the hot path), keeps the
running loss on the device (one host sync per epoch) and calls four per-step hooks: autocast,
auxiliary losses, backward and optimizer step.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs
import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from modalbag import hookimpl
from modalbag.config.stages import parse_stages
from modalbag.errors import TrainingDivergedError
from modalbag.kernel import Register
from modalbag.kernel.fit import FitState
from modalbag.kernel.proposals import BagProfile, LearnerProposal
from modalbag.kernel.records import EpochRecord, LearnerSpec
from modalbag.kernel.run import BagData, Run
from modalbag.plugins.trainers._batches import (
    InMemory,
    Streamed,
    eval_batches,
    read_rows,
    wants_loader,
)
from modalbag.plugins.trainers._mixing import choose_mix, drop_modalities, mixed_loss
from modalbag.training.checkpoints import restore_training_state, save_training_state
from modalbag.training.metrics import task_metrics
from modalbag.training.profiling import StepMonitor, peak_memory_mb
from modalbag.training.progressive import ProgressivePlan, StageScaledSchedule

_SIZES = {"speed": (64, 32), "balanced": (128, 64), "accuracy": (256, 128)}


def _positive_or_none(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if value is not None and value <= 0:
        raise ValueError(f"{attribute.name} must be > 0")


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
    eval_batch_size: int = attrs.field(default=1024, validator=attrs.validators.gt(0), metadata={
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
    noise_injection: float = attrs.field(default=0.0, validator=attrs.validators.ge(0.0), metadata={
        "help": "Standard deviation of the Gaussian noise added to the standardised inputs during training "
                "(0 disables)."})
    modality_dropout: float = attrs.field(default=0.0, validator=[attrs.validators.ge(0.0), attrs.validators.lt(1.0)],
                                          metadata={"help": "Probability of hiding each present modality of a "
                                                            "training sample, in [0, 1); 0 disables. A draw that "
                                                            "would hide all of them hides none; one-modality bags "
                                                            "are unaffected."})
    mixup_alpha: float = attrs.field(default=0.0, validator=attrs.validators.ge(0.0), metadata={
        "help": "Mixup in the fused representation, with mixing weights drawn from Beta(alpha, alpha) "
                "(0 disables). With cutmix_alpha also set, each batch uses one of the two at random."})
    cutmix_alpha: float = attrs.field(default=0.0, validator=attrs.validators.ge(0.0), metadata={
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
    num_workers: int = attrs.field(default=0, validator=attrs.validators.ge(0), metadata={
        "help": "DataLoader worker processes that read training batches (0: read in the training process)."})
    pin_memory: bool = attrs.field(default=False, metadata={
        "help": "Pin the DataLoader's batches in page-locked memory for faster copies to a CUDA device "
                "(DataLoader path only; no effect on the CPU)."})
    persistent_workers: bool = attrs.field(default=False, metadata={
        "help": "Keep the DataLoader's worker processes alive between epochs (with num_workers > 0)."})
    prefetch_factor: int | None = attrs.field(default=None, validator=_positive_or_none, metadata={
        "help": "Batches each DataLoader worker reads ahead (with num_workers > 0; None: PyTorch's default, 2)."})


# -- modules ------------------------------------------------------------------------------------


class Standardize(nn.Module):
    """Per-feature (vectors, sequences) or per-channel (images) standardisation, fitted on train rows."""

    def __init__(self, mean: np.ndarray, std: np.ndarray):
        super().__init__()
        self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float32))
        self.register_buffer("std", torch.as_tensor(std, dtype=torch.float32))

    @classmethod
    def fit(cls, array: np.ndarray, rows: np.ndarray, enabled: bool, l2_normalize: bool = False,
            chunk: int = 4096) -> Standardize:
        """Mean and std of ``array[rows]``, read ``chunk`` rows at a time (memory-mapped data stays on
        disk), accumulated in float64."""
        shape = array.shape[1:]
        reduce_axes = (0,) if len(shape) == 1 else (0, 1) if len(shape) == 2 else (0, 2, 3)
        keep_shape = [1 if i in reduce_axes else s for i, s in enumerate((len(rows), *shape))][1:]
        if not enabled or len(rows) == 0:
            return cls(np.zeros(keep_shape, np.float32), np.ones(keep_shape, np.float32))
        total = np.zeros(keep_shape, np.float64)
        total_sq = np.zeros(keep_shape, np.float64)
        count = 0
        for start in range(0, len(rows), chunk):
            block = np.asarray(array[np.sort(rows[start:start + chunk])], dtype=np.float64)
            if l2_normalize:
                block = block / np.maximum(np.linalg.norm(block, axis=-1, keepdims=True), 1e-12)
            total += block.sum(axis=reduce_axes).reshape(keep_shape)
            total_sq += np.square(block).sum(axis=reduce_axes).reshape(keep_shape)
            count += block.size // int(np.prod(keep_shape))
        mean = total / count
        std = np.sqrt(np.maximum(total_sq / count - np.square(mean), 0.0))
        return cls(mean.astype(np.float32), np.maximum(std, 1e-6).astype(np.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


class L2Normalize(nn.Module):
    """Unit-length rows: text embeddings compare by direction, so their norm is mostly noise."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(x, dim=-1)


class TrainAugment(nn.Module):
    """Training-time input regularisation on standardised inputs; the identity in eval mode.

    ``feature_dropout`` zeroes input features with probability p (inverted dropout);
    ``noise_injection`` adds Gaussian noise of that standard deviation (inputs are standardised, so
    it is relative to each feature's spread); ``image_augmentation`` flips raw images left-right
    with probability 1/2.
    """

    def __init__(self, feature_dropout: float, noise: float, flip_images: bool):
        super().__init__()
        self.feature_dropout, self.noise, self.flip_images = feature_dropout, noise, flip_images

    @property
    def active(self) -> bool:
        return bool(self.feature_dropout or self.noise or self.flip_images)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return x
        if self.flip_images and x.ndim == 4:
            flip = torch.rand(x.shape[0], device=x.device) < 0.5
            x = torch.where(flip[:, None, None, None], x.flip(-1), x)
        if self.noise:
            x = x + self.noise * torch.randn_like(x)
        if self.feature_dropout:
            x = F.dropout(x, self.feature_dropout, training=True)
        return x


class VectorEncoder(nn.Module):
    """An MLP for feature vectors. Encoders return (hidden, embedding): two representation depths."""

    def __init__(self, in_dim: int, hidden: int, out: int, dropout: float):
        super().__init__()
        self.hidden_dim = hidden
        self.body = nn.Sequential(nn.Linear(in_dim, hidden), nn.GELU(), nn.Dropout(dropout))
        self.out = nn.Linear(hidden, out)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.body(x)
        return h, self.out(h)


class ImageEncoder(nn.Module):
    """A small CNN for raw (C, H, W) images: two strided conv blocks and global pooling."""

    def __init__(self, channels: int, hidden: int, out: int, dropout: float):
        super().__init__()
        width = max(16, hidden // 4)
        self.hidden_dim = 2 * width
        self.body = nn.Sequential(
            nn.Conv2d(channels, width, 3, stride=2, padding=1), nn.GroupNorm(1, width), nn.GELU(),
            nn.Conv2d(width, 2 * width, 3, stride=2, padding=1), nn.GroupNorm(1, 2 * width), nn.GELU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout),
        )
        self.out = nn.Linear(2 * width, out)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.body(x)
        return h, self.out(h)


class SequenceEncoder(nn.Module):
    """(T, F) sequences: 1-D convolutions over time, or a small transformer; mean-pooled."""

    def __init__(self, features: int, hidden: int, out: int, dropout: float, kind: str):
        super().__init__()
        self.kind = kind
        self.hidden_dim = hidden
        if kind == "transformer":
            self.inp = nn.Linear(features, hidden)
            layer = nn.TransformerEncoderLayer(hidden, nhead=4 if hidden % 4 == 0 else 1, dim_feedforward=2 * hidden,
                                               dropout=dropout, batch_first=True, norm_first=True)
            self.body = nn.TransformerEncoder(layer, num_layers=2, enable_nested_tensor=False)
        else:
            self.body = nn.Sequential(nn.Conv1d(features, hidden, 5, padding=2), nn.GELU(),
                                      nn.Conv1d(hidden, hidden, 3, padding=1), nn.GELU())
        self.out = nn.Linear(hidden, out)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.kind == "transformer":
            h = self.body(self.inp(x)).mean(dim=1)
        else:
            h = self.body(x.transpose(1, 2)).mean(dim=2)
        return h, self.out(h)


class FusionNetwork(nn.Module):
    """Encoders per modality, masked attention fusion, task head.

    ``forward`` returns ``logits``, per-modality ``embeddings`` (B, M, E) and ``hidden``
    representations ({name: (B, H_m)}), the ``fused`` representation (B, E) and the gate's
    ``fusion_scores`` (B, M): denoising objectives read these and call ``fuse`` (with those scores)
    and ``head`` on modality subsets.
    """

    def __init__(self, encoders: Mapping[str, nn.Module], scalers: Mapping[str, nn.Module],
                 embedding_dim: int, hidden_dim: int, n_outputs: int, dropout: float,
                 input_shapes: Mapping[str, tuple[int, ...]] | None = None, augment: TrainAugment | None = None):
        super().__init__()
        self.modalities = list(encoders)
        self.embedding_dim, self.n_outputs = embedding_dim, n_outputs
        self.input_shapes = dict(input_shapes or {})
        self.encoders = nn.ModuleDict(encoders)
        self.scalers = nn.ModuleDict(scalers)
        self.augment = augment if augment is not None and augment.active else nn.Identity()
        self.norm = nn.LayerNorm(embedding_dim)
        self.gate = nn.Sequential(nn.Linear(embedding_dim, embedding_dim // 2 or 1), nn.Tanh(),
                                  nn.Linear(embedding_dim // 2 or 1, 1))
        self.head = nn.Sequential(nn.Linear(embedding_dim, hidden_dim), nn.GELU(), nn.Dropout(dropout),
                                  nn.Linear(hidden_dim, n_outputs))
        self.aux = nn.ModuleDict()  # denoising objectives attach their modules here

    def embed(self, inputs: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        hidden, embedded = {}, []
        for m in self.modalities:
            hidden[m], e = self.encoders[m](self.augment(self.scalers[m](inputs[m])))
            embedded.append(self.norm(e))
        return torch.stack(embedded, dim=1), hidden

    def fusion_scores(self, embeddings: torch.Tensor) -> torch.Tensor:
        """(B, M) gate logits: how much each modality's embedding counts where it is present."""
        return self.gate(embeddings).squeeze(-1)

    def fuse(self, embeddings: torch.Tensor, masks: torch.Tensor, scores: torch.Tensor | None = None) -> torch.Tensor:
        """Masked softmax-weighted sum of the present modalities' embeddings. Pass ``scores`` (from
        `fusion_scores`) to fuse another subset of the same batch without re-running the gate."""
        scores = self.fusion_scores(embeddings) if scores is None else scores
        weights = torch.softmax(scores.masked_fill(~masks, float("-inf")), dim=1)
        return torch.bmm(weights[:, None, :], embeddings).squeeze(1)

    def forward(self, inputs: Mapping[str, torch.Tensor], masks: torch.Tensor,
                mix: tuple[float, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
        """``mix=(lam, perm)``: also return ``mixed_logits`` from ``lam * fused + (1 - lam) * fused[perm]``
        (mixup in the fused representation, which works for any modality and for missing ones)."""
        embeddings, hidden = self.embed(inputs)
        scores = self.fusion_scores(embeddings)
        fused = self.fuse(embeddings, masks, scores)
        out = {"logits": self.head(fused), "embeddings": embeddings, "hidden": hidden, "fused": fused,
               "fusion_scores": scores}
        if mix is not None:
            lam, perm = mix
            out["mixed_logits"] = self.head(lam * fused + (1.0 - lam) * fused[perm])
        return out


# -- the learner --------------------------------------------------------------------------------


def _class_weights(config: Any, n_classes: int) -> torch.Tensor | None:
    weights = config.class_weights
    if weights is None:
        return None
    if isinstance(weights, Mapping):
        full = np.ones(n_classes, dtype=np.float32)
        for cls, w in weights.items():
            full[cls] = w
        return torch.as_tensor(full)
    if len(weights) != n_classes:
        raise ValueError(f"class_weights has {len(weights)} entries for {n_classes} classes")
    return torch.as_tensor(weights, dtype=torch.float32)


@attrs.frozen
class _Validation:
    """A learner's validation rows: prebuilt tensors (in-memory path) or read per epoch (streamed)."""

    data: BagData
    rows: np.ndarray
    targets: torch.Tensor
    batches: list[tuple[dict[str, torch.Tensor], torch.Tensor]] | None


class CompiledOrEager:
    """``torch.compile(net)``, falling back to ``net`` (with a note) when compiling fails.

    Compilation happens at the first calls (forward, then backward), so a failure surfaces there:
    the forward is retried eagerly; a failure in the compiled backward is not recoverable mid-step,
    so the first training step is what decides.
    """

    def __init__(self, net: nn.Module, fit: FitState):
        self.eager, self.fit, self.confirmed = net, fit, False
        try:
            self.compiled: Any = torch.compile(net)
        except Exception as exc:  # noqa: BLE001 - any compiler problem means: run eagerly
            self._fallback(exc)

    def _fallback(self, exc: BaseException) -> None:
        self.compiled = None
        reason = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        self.fit.notes.append(f"compile_model: torch.compile failed ({reason}); training runs eagerly")

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self.compiled is not None:
            try:
                out = self.compiled(*args, **kwargs)
                if not self.confirmed:
                    self.confirmed = True
                    self.fit.notes.append("compile_model: compiled with torch.compile")
                return out
            except Exception as exc:  # noqa: BLE001
                self._fallback(exc)
        return self.eager(*args, **kwargs)


class NeuralLearner:
    """A fusion network for one bag: ``fit`` on a `BagData`, ``predict_output`` on new rows."""

    def __init__(self, spec: LearnerSpec, config: Any, options: NeuralOptions | None):
        self.spec, self.config = spec, config
        self.options = options or NeuralOptions()
        arch = dict(spec.architecture)
        self.hidden_dim = self.options.hidden_dim or arch.get("hidden_dim", 128)
        self.embedding_dim = self.options.embedding_dim or arch.get("embedding_dim", 64)
        self.model: FusionNetwork | None = None
        self.task_type = config.task_type
        self.target_mean = self.target_std = None

    # -- selection ----------------------------------------------------------------------------

    @staticmethod
    def propose(profile: BagProfile, strategy: str) -> LearnerProposal:
        hidden, embedding = _SIZES[strategy]
        multimodal = len(profile.modalities) > 1
        raw = any(s.type in ("image", "sequence") and not s.is_vector for s in map(profile.specs.get, profile.modalities))
        score = 1.0 + 0.5 * multimodal + 0.5 * raw
        reason = ("fusion network" if multimodal else "single-modality network") + (" with raw-input encoders" if raw else "")
        return LearnerProposal(score, {"hidden_dim": hidden, "embedding_dim": embedding}, reason)

    # -- building -----------------------------------------------------------------------------

    def _build(self, data: BagData, rows: np.ndarray, n_outputs: int) -> FusionNetwork:
        encoders, scalers = {}, {}
        h, e, p = self.hidden_dim, self.embedding_dim, self.options.dropout_rate
        opts = self.options
        for m in self.spec.modalities:
            spec = data.specs[m]
            present = rows[data.masks[m][rows]]
            normalize = opts.text_normalization and spec.type == "text" and spec.is_vector
            scaler = Standardize.fit(data.arrays[m], present, opts.standardize, l2_normalize=normalize)
            scalers[m] = nn.Sequential(L2Normalize(), scaler) if normalize else scaler
            if spec.is_vector:
                encoders[m] = VectorEncoder(spec.shape[0], h, e, p)
            elif spec.type == "sequence":
                encoders[m] = SequenceEncoder(spec.shape[1], h, e, p, opts.sequence_encoder)
            else:
                encoders[m] = ImageEncoder(spec.shape[0], h, e, p)
        augment = TrainAugment(opts.feature_dropout, opts.noise_injection, opts.image_augmentation)
        return FusionNetwork(encoders, scalers, e, h, n_outputs, p,
                             {m: data.specs[m].shape for m in self.spec.modalities}, augment)

    def _targets(self, targets: np.ndarray) -> torch.Tensor:
        if self.task_type == "classification":
            return torch.as_tensor(targets, dtype=torch.long)
        y = torch.as_tensor(targets, dtype=torch.float32)
        if self.task_type == "regression":
            return (y - self.target_mean) / self.target_std
        return y

    def _loss_fn(self, run: Run) -> Any:
        if self.task_type == "classification":
            return nn.CrossEntropyLoss(weight=_class_weights(self.config, run.task.n_outputs),
                                       label_smoothing=self.config.label_smoothing)
        if self.task_type == "multilabel":
            return nn.BCEWithLogitsLoss()
        return nn.MSELoss()

    def _device(self, run: Run) -> torch.device:
        ddp = getattr(run, "distributed", None)
        if ddp is not None:
            return torch.device(ddp.device)
        wanted = self.options.device
        if wanted == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        if wanted.startswith("cuda") and not torch.cuda.is_available():
            raise ValueError(f"device={wanted!r} but torch sees no CUDA device; use device='auto' or 'cpu'")
        return torch.device(wanted)

    # -- fitting ------------------------------------------------------------------------------

    def fit(self, data: BagData, run: Run, fit: FitState) -> None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(fit.bag.seed)
            self._fit(data, run, fit)

    def _fit(self, data: BagData, run: Run, fit: FitState) -> None:
        cfg, opts = self.config, self.options
        mods = self.spec.modalities
        rows = _usable(data.train_rows, data.masks, mods)
        val_rows = _usable(data.val_rows, data.masks, mods)
        if len(rows) < 2:
            raise ValueError(f"bag {fit.bag.id} has {len(rows)} usable training rows; it needs at least 2")
        if self.task_type == "regression":
            t = data.targets[rows]
            self.target_mean = torch.as_tensor(t.mean(axis=0), dtype=torch.float32)
            self.target_std = torch.as_tensor(np.maximum(t.std(axis=0), 1e-6), dtype=torch.float32)
        if cfg.cross_validation_folds > 1 or cfg.hpo_trials or cfg.hpo_time_budget:
            fit.notes.append("cross_validation_folds / hpo_trials apply to tabular trainers; this neural learner "
                             "is scored on its validation rows only")
        device = self._device(run)
        self.model = model = self._build(data, rows, run.task.n_outputs).to(device)
        if self.target_mean is not None:
            self.target_mean, self.target_std = self.target_mean.to(device), self.target_std.to(device)
        fit.model, fit.aux_modules = model, model.aux
        run.hook.modalbag_fit_setup(run=run, fit=fit)
        model.to(device)  # objectives may have attached modules on the CPU
        plan = self._progressive_plan(model)
        fit.optimizer = optimizer = run.build_optimizer([p for p in model.parameters() if p.requires_grad])
        ddp = getattr(run, "distributed", None)  # a DDP rank: shard each batch, average gradients
        net = model if ddp is None else ddp.wrap(model)
        ddp_ignored = [] if ddp is None else [p for p in model.aux.parameters() if p.requires_grad]
        net = self._maybe_compile(net, fit, ddp is not None)
        source = self._source(data, rows, device, fit)
        val = self._validation(data, val_rows, device, isinstance(source, InMemory))
        n, bs = len(rows), cfg.batch_size
        steps_per_epoch = max(1, math.ceil(n / bs) - (n % bs == 1 and n > bs))
        fit.steps_per_epoch = steps_per_epoch
        optimizer_steps = math.ceil(steps_per_epoch / cfg.gradient_accumulation_steps)
        schedule = run.build_schedule(optimizer, optimizer_steps)
        if plan is not None:
            schedule = StageScaledSchedule(optimizer, schedule)
        loss_fn = self._loss_fn(run).to(device)
        hook = run.hook
        autocast, aux_losses = hook.modalbag_autocast, hook.modalbag_auxiliary_losses
        backward, optimizer_step = hook.modalbag_backward, hook.modalbag_optimizer_step
        has_aux = bool(aux_losses.get_hookimpls())
        mixing = opts.mixup_alpha > 0 or opts.cutmix_alpha > 0
        generator = torch.Generator().manual_seed(fit.bag.seed)
        optimizer.zero_grad(set_to_none=True)
        first_epoch = restore_training_state(run, fit, schedule=schedule, generator=generator)  # 1 unless resuming
        monitor = StepMonitor.for_fit(run, fit)  # None unless steps are logged or profiled
        try:
            for epoch in range(first_epoch, cfg.epochs + 1):
                fit.epoch = epoch
                if plan is not None:
                    stage = plan.enter(epoch, model, schedule)
                    if stage is not None:
                        fit.notes.append(f"epoch {epoch}: {stage.name} (frozen: {list(stage.frozen_layers) or 'none'}"
                                         f"{', fine-tuning' if stage.fine_tuning else ''}, "
                                         f"lr x{stage.lr_multiplier:g})")
                started = time.perf_counter()
                model.train()
                order = torch.randperm(n, generator=generator)
                batches = [order[s * bs: (s + 1) * bs if s < steps_per_epoch - 1 else n] for s in range(steps_per_epoch)]
                if ddp is not None:
                    batches = [ddp.shard(idx) for idx in batches]
                loss_sum = torch.zeros((), device=device)
                total_sum = torch.zeros((), device=device)
                term_sums: dict[str, torch.Tensor] = {}
                seen = 0
                for step, batch in enumerate(source.epoch(batches)):
                    fit.batch_in_epoch, fit.deferred_step = step, False
                    size = len(batch["target"])
                    if opts.modality_dropout:
                        batch["masks"] = drop_modalities(batch["masks"], opts.modality_dropout)
                    mix = choose_mix(batch, opts.mixup_alpha, opts.cutmix_alpha) if mixing else None
                    ctx = autocast(run=run, fit=fit)
                    # the auxiliary heads run under the same autocast as the network whose
                    # activations they read; the losses themselves are reduced in fp32
                    with ctx if ctx is not None else contextlib.nullcontext():
                        output = net(batch["inputs"], batch["masks"],
                                     (mix[1], mix[2]) if mix is not None and mix[0] == "mixup" else None)
                        logits = output["logits"].float()
                        if mix is None:
                            loss = loss_fn(logits, batch["target"])
                        else:
                            mixed = output["mixed_logits"].float() if mix[0] == "mixup" else logits
                            loss = mixed_loss(loss_fn, mixed, batch["target"], mix[1], mix[2])
                        total = loss
                        if has_aux:
                            output["task_loss"] = loss
                            for terms in aux_losses(run=run, fit=fit, batch=batch, output=output):
                                for name, term in (terms or {}).items():
                                    term = term.float()
                                    total = total + term
                                    term_sums[name] = (term_sums.get(name, torch.zeros((), device=device))
                                                       + term.detach() * size)
                    if not backward(run=run, fit=fit, loss=total):
                        total.backward()
                    if ddp_ignored:  # the auxiliary heads DDP leaves out (see DistributedContext.wrap)
                        ddp.average_gradients(ddp_ignored)
                    if not optimizer_step(run=run, fit=fit):
                        fit.default_step()
                    if not fit.deferred_step:
                        schedule.after_batch()
                    fit.step += 1
                    loss_sum += loss.detach() * size
                    total_sum += total.detach() * size
                    seen += size
                    if monitor is not None:
                        monitor.step(loss.detach(), loss_sum, term_sums, seen)
                train_loss = float(loss_sum) / seen
                if not math.isfinite(float(total_sum)):
                    terms = {k: float(v) / seen for k, v in term_sums.items()}
                    raise TrainingDivergedError(f"training loss became non-finite at epoch {epoch} (task loss "
                                                f"{train_loss}, auxiliary terms {terms}); lower learning_rate or "
                                                f"set gradient_clipping")
                extra: dict[str, float] = fit.gradient_norm_metrics()
                for found in hook.modalbag_epoch_metrics(run=run, fit=fit):
                    extra.update(found or {})
                record = self._epoch_record(epoch, train_loss, val, data.targets[val_rows], loss_fn, optimizer,
                                            time.perf_counter() - started, seen, term_sums, extra, device)
                fit.records.append(record)
                hook.modalbag_epoch_end(run=run, fit=fit, record=record)
                schedule.after_epoch(record.monitored())
                if fit.control.should_stop:
                    fit.notes.append(f"stopped after epoch {epoch}: {fit.control.stop_reason}")
                save_training_state(run, fit, schedule=schedule, generator=generator)  # when due
                if fit.control.should_stop:
                    break
        finally:
            source.close()
            if monitor is not None:
                monitor.close()
        if plan is not None:
            model.requires_grad_(True)
        model.eval()

    def _progressive_plan(self, model: FusionNetwork) -> ProgressivePlan | None:
        if not self.config.enable_progressive_learning:
            return None
        stages, issues = parse_stages(self.config.progressive_stages)
        if issues:
            raise ValueError("; ".join(issues))
        plan = ProgressivePlan(stages)
        plan.check_layers(model)
        return plan

    def _maybe_compile(self, net: nn.Module, fit: FitState, distributed: bool) -> Any:
        if not self.options.compile_model:
            return net
        if distributed:
            fit.notes.append("compile_model: not applied under DDP; training runs eagerly")
            return net
        return CompiledOrEager(net, fit)

    def _source(self, data: BagData, rows: np.ndarray, device: torch.device, fit: FitState) -> Any:
        opts = self.options
        targets = self._targets(data.targets[rows])
        if wants_loader(opts.data_loading, data.arrays, opts.num_workers):
            fit.notes.append(f"data: streamed by a DataLoader ({opts.num_workers} workers)")
            return Streamed(data.arrays, data.masks, self.spec.modalities, rows, targets, device,
                            num_workers=opts.num_workers, pin_memory=opts.pin_memory,
                            persistent_workers=opts.persistent_workers, prefetch_factor=opts.prefetch_factor)
        return InMemory(data.arrays, data.masks, self.spec.modalities, rows, targets, device)

    def _validation(self, data: BagData, rows: np.ndarray, device: torch.device, in_memory: bool) -> _Validation:
        targets = self._targets(data.targets[rows]).to(device)
        if in_memory and len(rows):
            x, masks = read_rows(data.arrays, data.masks, self.spec.modalities, rows)
            batches = [({m: t.to(device) for m, t in x.items()}, masks.to(device))]
        else:  # read per epoch, a batch at a time, so on-disk data never has to fit in memory
            batches = None
        return _Validation(data, rows, targets, batches)

    def _epoch_record(self, epoch: int, train_loss: float, val: _Validation, yv_raw: np.ndarray, loss_fn: Any,
                      optimizer: Any, seconds: float, seen: int, term_sums: dict[str, torch.Tensor],
                      extra: dict[str, float], device: torch.device) -> EpochRecord:
        val_loss, metrics = None, {}
        if len(val.rows):
            batches = val.batches if val.batches is not None else (
                ({m: t.to(device) for m, t in x.items()}, masks.to(device))
                for x, masks in eval_batches(val.data.arrays, val.data.masks, self.spec.modalities, val.rows,
                                             self.options.eval_batch_size))
            logits = torch.cat([self._logits(x, masks) for x, masks in batches])
            val_loss = float(loss_fn(logits, val.targets))
            metrics = task_metrics(self.task_type, yv_raw, self._to_output(logits))
        memory = peak_memory_mb(device)
        return EpochRecord(
            epoch=epoch, train_loss=train_loss, val_loss=val_loss,
            accuracy=metrics.get("accuracy"), f1_score=metrics.get("f1"),
            mse=metrics.get("mse"), r2=metrics.get("r2"),
            learning_rate=float(optimizer.param_groups[0]["lr"]), training_time=seconds,
            samples_per_second=seen / seconds if seconds > 0 else None, memory_usage_mb=memory,
            loss_terms={k: float(v) / seen for k, v in term_sums.items()},
            metrics=extra,
        )

    # -- prediction ---------------------------------------------------------------------------

    @torch.no_grad()
    def _logits(self, x: Mapping[str, torch.Tensor], masks: torch.Tensor) -> torch.Tensor:
        assert self.model is not None
        was_training = self.model.training
        self.model.eval()
        bs = self.options.eval_batch_size
        n = len(masks)
        out = [self.model({m: t[i:i + bs] for m, t in x.items()}, masks[i:i + bs])["logits"].float()
               for i in range(0, n, bs)]
        self.model.train(was_training)
        return torch.cat(out) if out else torch.empty(0)

    def _to_output(self, logits: torch.Tensor) -> np.ndarray:
        if self.task_type == "classification":
            return torch.softmax(logits.float(), dim=1).cpu().numpy()
        if self.task_type == "multilabel":
            return torch.sigmoid(logits.float()).cpu().numpy()
        return (logits.float() * self.target_std + self.target_mean).cpu().numpy()

    def predict_output(self, inputs: Mapping[str, np.ndarray], masks: Mapping[str, np.ndarray] | None = None) -> np.ndarray:
        """Class probabilities (or regression values) for rows that have the bag's modalities."""
        if self.model is None:
            raise RuntimeError("this learner has not been fitted")
        mods = self.spec.modalities
        device = next(self.model.parameters()).device
        n = len(inputs[mods[0]])
        x = {m: torch.as_tensor(np.ascontiguousarray(inputs[m]), dtype=torch.float32).to(device) for m in mods}
        mask = (np.ones((n, len(mods)), dtype=bool) if masks is None
                else np.stack([np.asarray(masks[m], dtype=bool) for m in mods], axis=1))
        return self._to_output(self._logits(x, torch.from_numpy(mask).to(device)))

    # -- files --------------------------------------------------------------------------------

    def save(self, path: str | Path) -> Path:
        """Write the fitted learner to folder ``path``: safetensors weights plus JSON (no pickle)."""
        from modalbag.plugins.trainers import _neural_io

        return _neural_io.save(self, path)

    @classmethod
    def load(cls, path: str | Path) -> NeuralLearner:
        """A learner written by `save`, ready to predict (on the CPU)."""
        from modalbag.plugins.trainers import _neural_io

        return _neural_io.load(cls, path)

    def describe(self) -> dict[str, Any]:
        n_params = sum(p.numel() for p in self.model.parameters()) if self.model is not None else None
        return {"architecture": "fusion_network", "modalities": list(self.spec.modalities),
                "hidden_dim": self.hidden_dim, "embedding_dim": self.embedding_dim, "parameters": n_params}


def _usable(rows: np.ndarray, masks: Mapping[str, np.ndarray], modalities: tuple[str, ...]) -> np.ndarray:
    """Rows that have at least one of the bag's modalities (the rest carry nothing to learn)."""
    if len(rows) == 0:
        return rows
    return rows[np.any([masks[m][rows] for m in modalities], axis=0)]


@hookimpl
def modalbag_register_trainers(register: Register) -> None:
    register("neural", NeuralLearner, options=NeuralOptions,
             summary="PyTorch fusion network: an encoder per modality, masked attention fusion, a task head")
