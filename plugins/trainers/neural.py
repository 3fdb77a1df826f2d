"""The ``neural`` trainer: a PyTorch fusion network per bag.

One encoder per modality, chosen by type (an MLP for vectors, a small CNN for raw images, a 1-D
convolution or a small transformer for sequences), an attention fusion that only attends to the
modalities a sample has (missing ones are masked, never zero-filled), and a head per task.

The loop batches in-memory tensors by indexing (no per-sample Dataset on the hot path), keeps the
running loss on the device (one host sync per epoch) and calls four per-step hooks: autocast,
auxiliary losses, backward and optimizer step.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from typing import Any

import attrs
import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from modalbag import hookimpl
from modalbag.engine import BagData, Run
from modalbag.errors import TrainingDivergedError
from modalbag.fit import FitState
from modalbag.metrics import task_metrics
from modalbag.records import EpochRecord, LearnerSpec
from modalbag.selection import BagProfile, LearnerProposal

_SIZES = {"speed": (64, 32), "balanced": (128, 64), "accuracy": (256, 128)}


def _positive_or_none(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if value is not None and value <= 0:
        raise ValueError(f"{attribute.name} must be > 0")


@attrs.frozen(kw_only=True)
class NeuralOptions:
    """Options of the ``neural`` trainer (None: take the value learner selection chose)."""

    hidden_dim: int | None = attrs.field(default=None, validator=_positive_or_none)
    embedding_dim: int | None = attrs.field(default=None, validator=_positive_or_none)
    dropout_rate: float = attrs.field(default=0.1, validator=[attrs.validators.ge(0.0), attrs.validators.lt(1.0)])
    sequence_encoder: str = attrs.field(default="conv", validator=attrs.validators.in_(("conv", "transformer")))
    standardize: bool = True
    eval_batch_size: int = attrs.field(default=1024, validator=attrs.validators.gt(0))


# -- modules ------------------------------------------------------------------------------------


class Standardize(nn.Module):
    """Per-feature (vectors, sequences) or per-channel (images) standardisation, fitted on train rows."""

    def __init__(self, mean: np.ndarray, std: np.ndarray):
        super().__init__()
        self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float32))
        self.register_buffer("std", torch.as_tensor(std, dtype=torch.float32))

    @classmethod
    def fit(cls, x: np.ndarray, enabled: bool) -> Standardize:
        reduce_axes = (0,) if x.ndim == 2 else (0, 1) if x.ndim == 3 else (0, 2, 3)
        keep_shape = [1 if i in reduce_axes else s for i, s in enumerate(x.shape)][1:]
        if not enabled or len(x) == 0:
            return cls(np.zeros(keep_shape, np.float32), np.ones(keep_shape, np.float32))
        mean = x.mean(axis=reduce_axes, dtype=np.float64).reshape(keep_shape)
        std = x.std(axis=reduce_axes, dtype=np.float64).reshape(keep_shape)
        return cls(mean.astype(np.float32), np.maximum(std, 1e-6).astype(np.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


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
    representations ({name: (B, H_m)}), and the ``fused`` representation (B, E): denoising
    objectives read these and call ``fuse`` and ``head`` on modality subsets.
    """

    def __init__(self, encoders: Mapping[str, nn.Module], scalers: Mapping[str, Standardize],
                 embedding_dim: int, hidden_dim: int, n_outputs: int, dropout: float,
                 input_shapes: Mapping[str, tuple[int, ...]] | None = None):
        super().__init__()
        self.modalities = list(encoders)
        self.embedding_dim, self.n_outputs = embedding_dim, n_outputs
        self.input_shapes = dict(input_shapes or {})
        self.encoders = nn.ModuleDict(encoders)
        self.scalers = nn.ModuleDict(scalers)
        self.norm = nn.LayerNorm(embedding_dim)
        self.gate = nn.Sequential(nn.Linear(embedding_dim, embedding_dim // 2 or 1), nn.Tanh(),
                                  nn.Linear(embedding_dim // 2 or 1, 1))
        self.head = nn.Sequential(nn.Linear(embedding_dim, hidden_dim), nn.GELU(), nn.Dropout(dropout),
                                  nn.Linear(hidden_dim, n_outputs))
        self.aux = nn.ModuleDict()  # denoising objectives attach their modules here

    def embed(self, inputs: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        hidden, embedded = {}, []
        for m in self.modalities:
            hidden[m], e = self.encoders[m](self.scalers[m](inputs[m]))
            embedded.append(self.norm(e))
        return torch.stack(embedded, dim=1), hidden

    def fuse(self, embeddings: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        scores = self.gate(embeddings).squeeze(-1).masked_fill(~masks, float("-inf"))
        weights = torch.softmax(scores, dim=1)
        return torch.einsum("bm,bme->be", weights, embeddings)

    def forward(self, inputs: Mapping[str, torch.Tensor], masks: torch.Tensor) -> dict[str, torch.Tensor]:
        embeddings, hidden = self.embed(inputs)
        fused = self.fuse(embeddings, masks)
        return {"logits": self.head(fused), "embeddings": embeddings, "hidden": hidden, "fused": fused}


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
        for m in self.spec.modalities:
            spec = data.specs[m]
            present = rows[data.masks[m][rows]]
            scalers[m] = Standardize.fit(data.arrays[m][present], self.options.standardize)
            if spec.is_vector:
                encoders[m] = VectorEncoder(spec.shape[0], h, e, p)
            elif spec.type == "sequence":
                encoders[m] = SequenceEncoder(spec.shape[1], h, e, p, self.options.sequence_encoder)
            else:
                encoders[m] = ImageEncoder(spec.shape[0], h, e, p)
        return FusionNetwork(encoders, scalers, e, h, n_outputs, p, {m: data.specs[m].shape for m in self.spec.modalities})

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

    # -- fitting ------------------------------------------------------------------------------

    def fit(self, data: BagData, run: Run, fit: FitState) -> None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(fit.bag.seed)
            self._fit(data, run, fit)

    def _fit(self, data: BagData, run: Run, fit: FitState) -> None:
        cfg = self.config
        mods = self.spec.modalities
        rows = _usable(data.train_rows, data.masks, mods)
        val_rows = _usable(data.val_rows, data.masks, mods)
        if len(rows) < 2:
            raise ValueError(f"bag {fit.bag.id} has {len(rows)} usable training rows; it needs at least 2")
        if self.task_type == "regression":
            t = data.targets[rows]
            self.target_mean = torch.as_tensor(t.mean(axis=0), dtype=torch.float32)
            self.target_std = torch.as_tensor(np.maximum(t.std(axis=0), 1e-6), dtype=torch.float32)
        self.model = model = self._build(data, rows, run.task.n_outputs)
        fit.model, fit.aux_modules = model, model.aux
        run.hook.modalbag_fit_setup(run=run, fit=fit)
        fit.optimizer = optimizer = run.build_optimizer([p for p in model.parameters() if p.requires_grad])
        ddp = getattr(run, "distributed", None)  # a DDP rank: shard each batch, average gradients
        net = model if ddp is None else ddp.wrap(model)
        x, masks, y = self._tensors(data, rows)
        xv, masks_v, yv = self._tensors(data, val_rows)
        n, bs = len(rows), cfg.batch_size
        steps_per_epoch = max(1, math.ceil(n / bs) - (n % bs == 1 and n > bs))
        schedule = run.build_schedule(optimizer, steps_per_epoch)
        loss_fn = self._loss_fn(run)
        hook = run.hook
        autocast, aux_losses = hook.modalbag_autocast, hook.modalbag_auxiliary_losses
        backward, optimizer_step = hook.modalbag_backward, hook.modalbag_optimizer_step
        has_aux = bool(aux_losses.get_hookimpls())
        generator = torch.Generator().manual_seed(fit.bag.seed)
        optimizer.zero_grad(set_to_none=True)
        for epoch in range(1, cfg.epochs + 1):
            fit.epoch = epoch
            started = time.perf_counter()
            model.train()
            order = torch.randperm(n, generator=generator)
            loss_sum = torch.zeros(())
            total_sum = torch.zeros(())
            term_sums: dict[str, torch.Tensor] = {}
            seen = 0
            for step in range(steps_per_epoch):
                idx = order[step * bs: (step + 1) * bs if step < steps_per_epoch - 1 else n]
                if ddp is not None:
                    idx = ddp.shard(idx)
                batch = {"inputs": {m: x[m].index_select(0, idx) for m in mods},
                         "masks": masks.index_select(0, idx), "target": y.index_select(0, idx)}
                ctx = autocast(run=run, fit=fit)
                if ctx is None:
                    output = net(batch["inputs"], batch["masks"])
                    loss = loss_fn(output["logits"], batch["target"])
                else:
                    with ctx:
                        output = net(batch["inputs"], batch["masks"])
                        loss = loss_fn(output["logits"].float(), batch["target"])
                total = loss
                if has_aux:
                    output["task_loss"] = loss
                    for terms in aux_losses(run=run, fit=fit, batch=batch, output=output):
                        for name, term in (terms or {}).items():
                            total = total + term
                            term_sums[name] = term_sums.get(name, torch.zeros(())) + term.detach() * len(idx)
                if not backward(run=run, fit=fit, loss=total):
                    total.backward()
                if not optimizer_step(run=run, fit=fit):
                    fit.default_step()
                schedule.after_batch()
                fit.step += 1
                loss_sum += loss.detach() * len(idx)
                total_sum += total.detach() * len(idx)
                seen += len(idx)
            train_loss = float(loss_sum) / seen
            if not math.isfinite(float(total_sum)):
                terms = {k: float(v) / seen for k, v in term_sums.items()}
                raise TrainingDivergedError(f"training loss became non-finite at epoch {epoch} (task loss "
                                            f"{train_loss}, auxiliary terms {terms}); lower learning_rate or "
                                            f"set gradient_clipping")
            extra: dict[str, float] = {}
            for found in hook.modalbag_epoch_metrics(run=run, fit=fit):
                extra.update(found or {})
            record = self._epoch_record(epoch, train_loss, xv, masks_v, yv, data.targets[val_rows], loss_fn,
                                        optimizer, time.perf_counter() - started, seen, term_sums, extra)
            fit.records.append(record)
            hook.modalbag_epoch_end(run=run, fit=fit, record=record)
            schedule.after_epoch(record.monitored())
            if fit.control.should_stop:
                fit.notes.append(f"stopped after epoch {epoch}: {fit.control.stop_reason}")
                break
        model.eval()

    def _tensors(self, data: BagData, rows: np.ndarray) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
        x = {m: torch.from_numpy(np.ascontiguousarray(data.arrays[m][rows])) for m in self.spec.modalities}
        masks = torch.from_numpy(np.stack([data.masks[m][rows] for m in self.spec.modalities], axis=1))
        return x, masks, self._targets(data.targets[rows])

    def _epoch_record(self, epoch: int, train_loss: float, xv: dict[str, torch.Tensor], masks_v: torch.Tensor,
                      yv: torch.Tensor, yv_raw: np.ndarray, loss_fn: Any, optimizer: Any, seconds: float,
                      seen: int, term_sums: dict[str, torch.Tensor], extra: dict[str, float]) -> EpochRecord:
        val_loss, metrics = None, {}
        if len(yv):
            logits = self._logits(xv, masks_v)
            val_loss = float(loss_fn(logits, yv))
            metrics = task_metrics(self.task_type, yv_raw, self._to_output(logits))
        return EpochRecord(
            epoch=epoch, train_loss=train_loss, val_loss=val_loss,
            accuracy=metrics.get("accuracy"), f1_score=metrics.get("f1"),
            mse=metrics.get("mse"), r2=metrics.get("r2"),
            learning_rate=float(optimizer.param_groups[0]["lr"]), training_time=seconds,
            samples_per_second=seen / seconds if seconds > 0 else None,
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
        out = [self.model({m: t[i:i + bs] for m, t in x.items()}, masks[i:i + bs])["logits"] for i in range(0, n, bs)]
        self.model.train(was_training)
        return torch.cat(out) if out else torch.empty(0)

    def _to_output(self, logits: torch.Tensor) -> np.ndarray:
        if self.task_type == "classification":
            return torch.softmax(logits.float(), dim=1).numpy()
        if self.task_type == "multilabel":
            return torch.sigmoid(logits.float()).numpy()
        return (logits.float() * self.target_std + self.target_mean).numpy()

    def predict_output(self, inputs: Mapping[str, np.ndarray], masks: Mapping[str, np.ndarray] | None = None) -> np.ndarray:
        """Class probabilities (or regression values) for rows that have the bag's modalities."""
        if self.model is None:
            raise RuntimeError("this learner has not been fitted")
        mods = self.spec.modalities
        n = len(inputs[mods[0]])
        x = {m: torch.as_tensor(np.ascontiguousarray(inputs[m]), dtype=torch.float32) for m in mods}
        mask = (np.ones((n, len(mods)), dtype=bool) if masks is None
                else np.stack([np.asarray(masks[m], dtype=bool) for m in mods], axis=1))
        return self._to_output(self._logits(x, torch.from_numpy(mask)))

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
def modalbag_register_trainers(register: Any) -> None:
    register("neural", NeuralLearner, options=NeuralOptions,
             summary="PyTorch fusion network: an encoder per modality, masked attention fusion, a task head")
