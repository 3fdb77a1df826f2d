"""`NeuralLearner`: builds the fusion network for one bag, trains it with a `TrainingLoop`, predicts and saves."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from modalbag.config.stages import parse_stages
from modalbag.kernel.fit import FitState
from modalbag.kernel.proposals import BagProfile, LearnerProposal
from modalbag.kernel.records import LearnerSpec
from modalbag.kernel.run import BagData, Run
from modalbag.plugins.trainers.neural._batches import InMemory, Streamed, loader_workers, read_rows, wants_loader
from modalbag.plugins.trainers.neural._domain import DOMAIN_CLASSIFIER, DomainClassifier, TargetBatches
from modalbag.plugins.trainers.neural._loop import CompiledOrEager, TrainingLoop, Validation, class_weights
from modalbag.plugins.trainers.neural._ncl import OUTPUT_KINDS
from modalbag.plugins.trainers.neural._network import (
    FusionNetwork,
    ImageEncoder,
    L2Normalize,
    SequenceEncoder,
    Standardize,
    TrainAugment,
    VectorEncoder,
)
from modalbag.plugins.trainers.neural._options import NeuralOptions
from modalbag.training.checkpoints import restore_training_state
from modalbag.training.profiling import StepMonitor
from modalbag.training.progressive import ProgressivePlan, StageScaledSchedule

_SIZES = {"speed": (64, 32), "balanced": (128, 64), "accuracy": (256, 128)}


class NeuralLearner:
    """A fusion network for one bag: ``fit`` on a `BagData`, ``predict_output`` on new rows."""

    #: ``domain_adaptation`` aligns this learner's fused representation (`_domain`); learners without
    #: the attribute get a note that it does not apply to them.
    adapts_domains = True

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
                             {m: data.specs[m].shape for m in self.spec.modalities}, augment,
                             members=opts.ncl_members, member_output=OUTPUT_KINDS[self.task_type])

    @property
    def soft_targets(self) -> bool:
        """Distillation: the bag's classification targets are a teacher's probabilities (n, classes)."""
        return self.options.soft_target_temperature is not None and self.task_type == "classification"

    def _targets(self, targets: np.ndarray) -> torch.Tensor:
        if self.soft_targets:
            return torch.as_tensor(targets, dtype=torch.float32)
        if self.task_type == "classification":
            return torch.as_tensor(targets, dtype=torch.long)
        y = torch.as_tensor(targets, dtype=torch.float32)
        if self.task_type == "regression":
            return (y - self.target_mean) / self.target_std
        return y

    def _loss_fn(self, run: Run) -> Any:
        if self.soft_targets:
            return SoftTargetLoss(float(self.options.soft_target_temperature))
        if self.task_type == "classification":
            return nn.CrossEntropyLoss(weight=class_weights(self.config, run.task.n_outputs),
                                       label_smoothing=self.config.label_smoothing)
        if self.task_type == "multilabel":
            smoothing = self.config.label_smoothing
            return SmoothedBCEWithLogitsLoss(smoothing) if smoothing else nn.BCEWithLogitsLoss()
        return nn.MSELoss()

    def _device(self, run: Run) -> torch.device:
        ddp = getattr(run, "distributed", None)
        wanted = self.options.device
        if ddp is not None:
            device = torch.device(ddp.device)
            if wanted.startswith("cuda") and device.type != "cuda":  # num_gpus=2 on a machine without them
                raise ValueError(f"device={wanted!r} but the DDP ranks run on {device.type}: torch sees no CUDA "
                                 f"device; drop num_gpus / device='cuda' to train the ranks on CPU")
            return device
        if wanted == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        if wanted.startswith("cuda") and not torch.cuda.is_available():
            raise ValueError(f"device={wanted!r} but torch sees no CUDA device; use device='auto' or 'cpu'")
        return torch.device(wanted)

    # -- fitting ------------------------------------------------------------------------------

    def fit(self, data: BagData, run: Run, fit: FitState) -> None:
        with torch.random.fork_rng(devices=[]), cuda_backend_flags(self.options):
            torch.manual_seed(fit.seed)
            loop = self._prepare(data, run, fit)
            loop.optimizer.zero_grad(set_to_none=True)
            first_epoch = restore_training_state(run, fit, schedule=loop.schedule, generator=loop.generator)
            fit.trial_steps = loop.trial_steps
            run.hook.modalbag_fit_ready(run=run, fit=fit)
            loop.monitor = StepMonitor.for_fit(run, fit)  # None unless steps are logged or profiled
            loop.run_epochs(first_epoch)  # from 1, or after the last saved epoch when resuming

    def _prepare(self, data: BagData, run: Run, fit: FitState) -> TrainingLoop:
        """Everything one fit needs, built in a fixed order (the order draws from the seeded RNG)."""
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
        if cfg.cross_validation_folds > 1 or cfg.hpo_trials or cfg.hpo_time_budget:
            fit.notes.append("cross_validation_folds / hpo_trials apply to tabular trainers; this neural learner "
                             "is scored on its validation rows only")
        device = self._device(run)
        model = self._network_for(data, rows, run, fit, device)
        plan = self._progressive_plan(model)
        fit.optimizer = optimizer = run.build_optimizer([p for p in model.parameters() if p.requires_grad])
        ddp = getattr(run, "distributed", None)  # a DDP rank: shard each batch, average gradients
        net = model if ddp is None else ddp.wrap(model)
        ddp_ignored = [] if ddp is None else [p for p in model.aux.parameters() if p.requires_grad]
        net = self._maybe_compile(net, fit, ddp is not None)
        source = self._source(data, rows, device, fit)
        validation = self._validation(data, val_rows, device, isinstance(source, InMemory))
        n, bs = len(rows), cfg.batch_size
        if self.options.drop_last and n >= bs:
            fit.steps_per_epoch = steps_per_epoch = n // bs
        else:
            fit.steps_per_epoch = steps_per_epoch = max(1, math.ceil(n / bs) - (n % bs == 1 and n > bs))
        schedule = run.build_schedule(optimizer, math.ceil(steps_per_epoch / cfg.gradient_accumulation_steps))
        if plan is not None:
            schedule = StageScaledSchedule(optimizer, schedule)
        return TrainingLoop(
            learner=self, run=run, fit=fit, data=data, model=model, net=net, optimizer=optimizer, schedule=schedule,
            loss_fn=self._loss_fn(run).to(device), source=source, validation=validation, device=device,
            generator=torch.Generator().manual_seed(fit.seed), n_rows=n, steps_per_epoch=steps_per_epoch,
            plan=plan, ddp=ddp, ddp_ignored=ddp_ignored, domain=self._target_batches(data, device, fit))

    def _target_batches(self, data: BagData, device: torch.device, fit: FitState) -> TargetBatches | None:
        """``domain_adaptation``'s target rows with this learner's modalities (None when off or absent)."""
        method = self.config.domain_adaptation
        if not method:
            return None
        if data.domain_arrays is None or data.domain_masks is None:
            fit.notes.append(f"domain_adaptation={method!r}: no target_data reached this fit; it trained on the "
                             f"source rows alone")
            return None
        batches = TargetBatches(data.domain_arrays, data.domain_masks, self.spec.modalities, device, fit.seed + 1)
        if len(batches) < 2:
            fit.notes.append(f"domain_adaptation={method!r}: target_data has {len(batches)} rows with any of this "
                             f"learner's modalities ({', '.join(self.spec.modalities)}); it trained on the source "
                             f"rows alone")
            return None
        fit.notes.append(f"domain_adaptation={method!r} on {len(batches)} target rows, weight "
                         f"{self.config.domain_weight():g}")
        return batches

    def _network_for(self, data: BagData, rows: np.ndarray, run: Run, fit: FitState,
                     device: torch.device) -> FusionNetwork:
        """The bag's network on ``device``, with the objectives' modules the setup hook attaches."""
        self.model = model = self._build(data, rows, run.task.n_outputs).to(device)
        if self.target_mean is not None:
            self.target_mean, self.target_std = self.target_mean.to(device), self.target_std.to(device)
        fit.model, fit.aux_modules = model, model.aux
        if self.config.domain_adaptation == "dann" and data.domain_arrays is not None:
            model.aux[DOMAIN_CLASSIFIER] = DomainClassifier(model.embedding_dim)
        run.hook.modalbag_fit_setup(run=run, fit=fit)
        return model.to(device)  # objectives may have attached modules on the CPU

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
            workers = loader_workers(opts.num_workers)
            if workers < opts.num_workers:
                fit.notes.append(f"num_workers={opts.num_workers} is more than the {workers} cores this process may "
                                 f"use: {workers} DataLoader workers instead")
            fit.notes.append(f"data: streamed by a DataLoader ({workers} workers)")
            return Streamed(data.arrays, data.masks, self.spec.modalities, rows, targets, device,
                            num_workers=workers, pin_memory=opts.pin_memory,
                            persistent_workers=opts.persistent_workers, prefetch_factor=opts.prefetch_factor)
        return InMemory(data.arrays, data.masks, self.spec.modalities, rows, targets, device)

    def _validation(self, data: BagData, rows: np.ndarray, device: torch.device, in_memory: bool) -> Validation:
        targets = self._targets(data.targets[rows]).to(device)
        if in_memory and len(rows):
            x, masks = read_rows(data.arrays, data.masks, self.spec.modalities, rows)
            batches = [({m: t.to(device) for m, t in x.items()}, masks.to(device))]
        else:  # read per epoch, a batch at a time, so on-disk data never has to fit in memory
            batches = None
        return Validation(data, rows, targets, batches)

    # -- prediction ---------------------------------------------------------------------------

    @torch.no_grad()
    def logits(self, x: Mapping[str, torch.Tensor], masks: torch.Tensor) -> torch.Tensor:
        assert self.model is not None
        was_training = self.model.training
        self.model.eval()
        bs = self.options.eval_batch_size
        n = len(masks)
        out = [self.model({m: t[i:i + bs] for m, t in x.items()}, masks[i:i + bs])["logits"].float()
               for i in range(0, n, bs)]
        self.model.train(was_training)
        return torch.cat(out) if out else torch.empty(0)

    def to_output(self, logits: torch.Tensor) -> np.ndarray:
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
        if self.options.test_time_augmentation:
            return self.augmented_outputs(x, torch.from_numpy(mask).to(device)).mean(axis=0)
        return self.to_output(self.logits(x, torch.from_numpy(mask).to(device)))

    @torch.no_grad()
    def member_outputs(self, inputs: Mapping[str, np.ndarray],
                       masks: Mapping[str, np.ndarray] | None = None) -> np.ndarray:
        """``ncl_members``: each member head's output (M, n, k), probabilities for classification (the
        prediction, without test-time augmentation, is their mean); (1, n, k) for a single head."""
        if self.model is None:
            raise RuntimeError("this learner has not been fitted")
        model, mods = self.model, self.spec.modalities
        device = next(model.parameters()).device
        n = len(inputs[mods[0]])
        x = {m: torch.as_tensor(np.ascontiguousarray(inputs[m]), dtype=torch.float32).to(device) for m in mods}
        mask = torch.from_numpy(np.ones((n, len(mods)), dtype=bool) if masks is None
                                else np.stack([np.asarray(masks[m], dtype=bool) for m in mods], axis=1)).to(device)
        was_training = model.training
        model.eval()
        bs, chunks = self.options.eval_batch_size, []
        for i in range(0, n, bs):
            out = model({m: t[i:i + bs] for m, t in x.items()}, mask[i:i + bs])
            chunks.append(out["member_logits"] if "member_logits" in out else out["logits"][None])
        model.train(was_training)
        logits = torch.cat(chunks, dim=1).float()
        return np.stack([self.to_output(z) for z in logits])

    @torch.no_grad()
    def augmented_outputs(self, x: Mapping[str, torch.Tensor], masks: torch.Tensor) -> np.ndarray:
        """``test_time_augmentation``: the outputs (tta_samples, n, k) of augmented copies of the rows,
        whose mean is the prediction. Each copy flips raw images left-right with probability 1/2, adds
        Gaussian noise of standard deviation ``tta_noise`` to every modality's (normalised) embedding,
        and hides each present modality with probability ``tta_modality_dropout`` (keeping one). The
        draws come from a generator seeded by ``tta_seed``: the same rows, in the same order, always get
        the same prediction."""
        assert self.model is not None
        opts, model = self.options, self.model
        generator = torch.Generator().manual_seed(opts.tta_seed)
        was_training = model.training
        model.eval()
        bs, n = opts.eval_batch_size, len(masks)
        copies = []
        for _ in range(opts.tta_samples):
            chunks = []
            for i in range(0, n, bs):
                xb = {m: t[i:i + bs] for m, t in x.items()}
                mb = masks[i:i + bs]
                xb = {m: _flip_half(t, generator) if t.ndim == 4 else t for m, t in xb.items()}
                embeddings, _ = model.embed(xb)
                if opts.tta_noise:
                    noise = torch.randn(embeddings.shape, generator=generator).to(embeddings.device)
                    embeddings = embeddings + opts.tta_noise * noise
                if opts.tta_modality_dropout and mb.shape[1] > 1:
                    kept = mb & (torch.rand(mb.shape, generator=generator).to(mb.device) >= opts.tta_modality_dropout)
                    mb = torch.where(kept.any(dim=1, keepdim=True), kept, mb)
                chunks.append(model.head(model.fuse(embeddings, mb)).float())
            copies.append(self.to_output(torch.cat(chunks)))
        model.train(was_training)
        return np.stack(copies)

    # -- files --------------------------------------------------------------------------------

    def save(self, path: str | Path) -> Path:
        """Write the fitted learner to folder ``path``: safetensors weights plus JSON (no pickle)."""
        from modalbag.plugins.trainers.neural import _io

        return _io.save(self, path)

    @classmethod
    def load(cls, path: str | Path) -> NeuralLearner:
        """A learner written by `save`, ready to predict (on the CPU)."""
        from modalbag.plugins.trainers.neural import _io

        return _io.load(cls, path)

    def describe(self) -> dict[str, Any]:
        n_params = sum(p.numel() for p in self.model.parameters()) if self.model is not None else None
        return {"architecture": "fusion_network", "modalities": list(self.spec.modalities),
                "hidden_dim": self.hidden_dim, "embedding_dim": self.embedding_dim, "parameters": n_params,
                "ncl_members": self.options.ncl_members}


def _flip_half(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    flip = (torch.rand(images.shape[0], generator=generator) < 0.5).to(images.device)
    return torch.where(flip[:, None, None, None], images.flip(-1), images)


class SoftTargetLoss(nn.Module):
    """Knowledge distillation (Hinton et al., 2015): the cross-entropy of the student's softmax at
    temperature T against the teacher's probabilities at T, times T**2 so the gradients keep their
    scale as T changes. The targets arrive already softened (`modalbag.api.distillation`)."""

    def __init__(self, temperature: float):
        super().__init__()
        self.temperature = temperature

    def forward(self, logits: torch.Tensor, soft: torch.Tensor) -> torch.Tensor:
        t = self.temperature
        return -(soft * torch.log_softmax(logits / t, dim=1)).sum(dim=1).mean() * t * t


class SmoothedBCEWithLogitsLoss(nn.Module):
    """Label smoothing for multilabel targets: each label's binary cross-entropy against
    ``y * (1 - eps) + eps / 2``, the two-class case of Szegedy et al. (2016) that
    ``CrossEntropyLoss(label_smoothing=eps)`` applies to one-of-K classes."""

    def __init__(self, smoothing: float):
        super().__init__()
        self.smoothing = smoothing

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        soft = targets * (1.0 - self.smoothing) + 0.5 * self.smoothing
        return nn.functional.binary_cross_entropy_with_logits(logits, soft)


@contextlib.contextmanager
def cuda_backend_flags(options: NeuralOptions) -> Iterator[None]:
    """``cudnn_benchmark`` and ``tf32`` while one learner trains, the previous values restored after:
    they are process-wide switches, and one learner's choice must not leak into the next."""
    if not (options.cudnn_benchmark or options.tf32):
        yield
        return
    saved = (torch.backends.cudnn.benchmark, torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    try:
        if options.cudnn_benchmark:
            torch.backends.cudnn.benchmark = True
        if options.tf32:
            torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
        yield
    finally:
        (torch.backends.cudnn.benchmark, torch.backends.cuda.matmul.allow_tf32,
         torch.backends.cudnn.allow_tf32) = saved


def _usable(rows: np.ndarray, masks: Mapping[str, np.ndarray], modalities: tuple[str, ...]) -> np.ndarray:
    """Rows that have at least one of the bag's modalities (the rest carry nothing to learn)."""
    if len(rows) == 0:
        return rows
    return rows[np.any([masks[m][rows] for m in modalities], axis=0)]


__all__ = ["NeuralLearner"]
