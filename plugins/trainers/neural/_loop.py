"""The ``neural`` trainer's training loop: epochs of steps over one fit's moving parts.

`NeuralLearner` builds a `TrainingLoop` once per fit (network, optimizer, schedule, batches,
validation rows, the run's per-step hooks) and runs it from the first epoch still to run. An epoch
walks one shuffled order of the rows (`epoch_batches`); each step (`step`) calls four hooks:
autocast, auxiliary losses, backward and optimizer step. The running sums stay on the device, so
an epoch costs one host sync; the epoch then becomes an `EpochRecord` for the validators and sinks,
and the full training state is saved when due.
"""

from __future__ import annotations

import contextlib
import copy
import math
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import attrs
import numpy as np
import torch
from torch import nn

from modalbag.errors import TrainingDivergedError
from modalbag.kernel.fit import FitState
from modalbag.kernel.records import EpochRecord
from modalbag.kernel.run import BagData, Run
from modalbag.plugins.trainers.neural._adversarial import adversarial_inputs, feature_scales
from modalbag.plugins.trainers.neural._batches import Batch, eval_batches
from modalbag.plugins.trainers.neural._domain import (
    DOMAIN_CLASSIFIER,
    TargetBatches,
    coral_loss,
    dann_loss,
    reversal_coefficient,
)
from modalbag.plugins.trainers.neural._mixing import choose_mix, drop_modalities, mixed_loss
from modalbag.plugins.trainers.neural._ncl import ambiguity, ncl_strength
from modalbag.plugins.trainers.neural._network import FusionNetwork
from modalbag.training.checkpoints import save_training_state
from modalbag.training.metrics import task_metrics
from modalbag.training.profiling import StepMonitor, peak_memory_mb
from modalbag.training.progressive import ProgressivePlan

if TYPE_CHECKING:
    from modalbag.plugins.trainers.neural._learner import NeuralLearner


def class_weights(config: Any, n_classes: int) -> torch.Tensor | None:
    """``class_weights`` as a tensor over every class (a mapping names only the classes it reweights)."""
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
class Validation:
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


@attrs.define(eq=False)
class EpochSums:
    """An epoch's running sums, kept on the device (read once, at the end of the epoch)."""

    loss: torch.Tensor
    total: torch.Tensor
    terms: dict[str, torch.Tensor] = attrs.field(factory=dict)
    seen: int = 0

    @classmethod
    def zeros(cls, device: torch.device) -> EpochSums:
        return cls(torch.zeros((), device=device), torch.zeros((), device=device))


@attrs.define(eq=False)
class TrainingLoop:
    """One fit's moving parts; `run` trains the epochs from ``first_epoch`` to ``config.epochs``."""

    learner: NeuralLearner
    run: Run
    fit: FitState
    data: BagData
    model: FusionNetwork
    net: Any  #: what the steps call: the model, DDP-wrapped or compiled
    optimizer: Any
    schedule: Any
    loss_fn: nn.Module
    source: Any  #: InMemory or Streamed: the batches of an epoch's order
    validation: Validation
    device: torch.device
    generator: torch.Generator
    n_rows: int
    steps_per_epoch: int
    plan: ProgressivePlan | None = None
    ddp: Any = None
    ddp_ignored: list[torch.nn.Parameter] = attrs.field(factory=list)
    monitor: StepMonitor | None = None
    domain: TargetBatches | None = None  #: the target rows of domain_adaptation, None without
    # the run's per-step hook callers, looked up once (attribute lookups on the hook relay cost per step)
    _autocast: Any = attrs.field(init=False)
    _aux_losses: Any = attrs.field(init=False)
    _backward: Any = attrs.field(init=False)
    _optimizer_step: Any = attrs.field(init=False)
    _has_aux: bool = attrs.field(init=False)
    _mixing: bool = attrs.field(init=False)
    _drop: Any = attrs.field(init=False)  #: per-step modality hiding rate(s), None for none
    _scales: Any = attrs.field(init=False, default=None)  #: per-modality feature sd, for adversarial_training
    _ncl_lambda: float = attrs.field(init=False, default=0.0)  #: the penalty's strength under ncl_members

    def __attrs_post_init__(self) -> None:
        hook = self.run.hook
        self._autocast, self._aux_losses = hook.modalbag_autocast, hook.modalbag_auxiliary_losses
        self._backward, self._optimizer_step = hook.modalbag_backward, hook.modalbag_optimizer_step
        self._has_aux = bool(self._aux_losses.get_hookimpls())
        opts = self.learner.options
        self._mixing = opts.mixup_alpha > 0 or opts.cutmix_alpha > 0
        self._drop = modality_drop_rates(opts, self.learner.spec.modalities, self.device)
        if opts.ncl_members > 1:
            self._ncl_lambda, source = ncl_strength(opts, self.run.config)
            self.fit.notes.append(f"ncl: {opts.ncl_members} member heads trained with negative correlation "
                                  f"learning, lambda {self._ncl_lambda:g} ({source})")

    def run_epochs(self, first_epoch: int) -> None:
        try:
            for epoch in range(first_epoch, self.run.config.epochs + 1):
                if not self.epoch(epoch):
                    break
        finally:
            self.source.close()
            if self.monitor is not None:
                self.monitor.close()
        if self.plan is not None:
            self.model.requires_grad_(True)
        self.model.eval()

    def epoch(self, epoch: int) -> bool:
        """Train one epoch, record it, save the training state when due; False once the fit stops."""
        fit = self.fit
        fit.epoch = epoch
        self._enter_stage(epoch)
        started = time.perf_counter()
        self.model.train()
        sums = EpochSums.zeros(self.device)
        for step, batch in enumerate(self.source.epoch(self.epoch_batches())):
            fit.batch_in_epoch, fit.deferred_step = step, False
            self.step(batch, sums)
        record = self._record(epoch, sums, time.perf_counter() - started)
        fit.records.append(record)
        self.run.hook.modalbag_epoch_end(run=self.run, fit=fit, record=record)
        self.schedule.after_epoch(None if record.validation_skipped else record.monitored())
        cleanup = self.learner.options.memory_cleanup_interval
        if cleanup and epoch % cleanup == 0:
            release_memory(self.device)
        if fit.control.should_stop:
            fit.notes.append(f"stopped after epoch {epoch}: {fit.control.stop_reason}")
        save_training_state(self.run, fit, schedule=self.schedule, generator=self.generator)  # when due
        return not fit.control.should_stop

    def _enter_stage(self, epoch: int) -> None:
        if self.plan is None:
            return
        stage = self.plan.enter(epoch, self.model, self.schedule)
        if stage is not None:
            self.fit.notes.append(f"epoch {epoch}: {stage.name} (frozen: {list(stage.frozen_layers) or 'none'}"
                                  f"{', fine-tuning' if stage.fine_tuning else ''}, lr x{stage.lr_multiplier:g})")

    def epoch_batches(self) -> list[torch.Tensor]:
        """This epoch's row batches: one shuffled order from the fit's generator (the rows' own order
        with ``shuffle=False``), this rank's share under DDP.

        With ``drop_last`` the last, smaller batch is left out; otherwise a last batch of one row is
        merged into the one before (batch norm cannot train on one row).
        """
        n, bs, steps = self.n_rows, self.run.config.batch_size, self.steps_per_epoch
        opts = self.learner.options
        order = torch.randperm(n, generator=self.generator) if opts.shuffle else torch.arange(n)
        if opts.drop_last:
            batches = [order[s * bs: (s + 1) * bs] for s in range(steps)]
        else:
            batches = [order[s * bs: (s + 1) * bs if s < steps - 1 else n] for s in range(steps)]
        if self.ddp is not None:
            batches = [self.ddp.shard(idx) for idx in batches]
        return batches

    def step(self, batch: Batch, sums: EpochSums) -> None:
        """One training step: forward under the autocast hook, losses, backward and optimizer step hooks."""
        run, fit = self.run, self.fit
        size = len(batch["target"])
        loss, total = self._losses(batch, sums, size)
        if not self._backward(run=run, fit=fit, loss=total):
            total.backward()
        if self.ddp_ignored:  # the auxiliary heads DDP leaves out (see DistributedContext.wrap)
            self.ddp.average_gradients(self.ddp_ignored)
        if not self._optimizer_step(run=run, fit=fit):
            fit.default_step()
        if not fit.deferred_step:
            self.schedule.after_batch()
        fit.step += 1
        sums.loss += loss.detach() * size
        sums.total += total.detach() * size
        sums.seen += size
        if self.monitor is not None:
            self.monitor.step(loss.detach(), sums.loss, sums.terms, sums.seen)

    def trial_steps(self, n: int) -> float:
        """Seconds per step of ``n`` real training steps (forward under the autocast hook, losses,
        backward, optimizer step), after one untimed step; then the model, the optimizer, the random
        state and the fit's counters are put back as they were (see ``modalbag_fit_ready``).

        The batches come from an order of their own, so the fit's data order is untouched; the
        learning-rate schedule is not advanced (its steps are not part of the cost measured)."""
        fit = self.fit
        model_state = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        optimizer_state = copy.deepcopy(self.optimizer.state_dict())
        counters = (fit.step, fit.batch_in_epoch, fit.deferred_step, len(fit.grad_norms))
        rng = torch.get_rng_state()
        cuda_rng = torch.cuda.get_rng_state(self.device) if self.device.type == "cuda" else None
        order = torch.randperm(self.n_rows, generator=torch.Generator().manual_seed(fit.seed + 1))
        bs = min(self.run.config.batch_size, self.n_rows)
        twice = torch.cat([order, order])
        batches = [twice[start:start + bs] for start in ((i * bs) % self.n_rows for i in range(n + 1))]
        sums = EpochSums.zeros(self.device)
        was_training = self.model.training
        self.model.train()
        try:
            started = 0.0
            for i, batch in enumerate(self.source.epoch(batches)):
                if i == 1:
                    self._synchronize()
                    started = time.perf_counter()
                _, total = self._losses(batch, sums, len(batch["target"]))
                total.backward()
                self.optimizer.step()
                self.optimizer.zero_grad(set_to_none=True)
            self._synchronize()
            return (time.perf_counter() - started) / max(1, n)
        finally:
            self.model.load_state_dict(model_state)
            self.optimizer.load_state_dict(optimizer_state)
            self.optimizer.zero_grad(set_to_none=True)
            fit.step, fit.batch_in_epoch, fit.deferred_step = counters[:3]
            del fit.grad_norms[counters[3]:]
            torch.set_rng_state(rng)
            if cuda_rng is not None:
                torch.cuda.set_rng_state(cuda_rng, self.device)
            self.model.train(was_training)

    def _synchronize(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def _losses(self, batch: Batch, sums: EpochSums, size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The task loss and the total with every auxiliary term (each term's sum added to ``sums``)."""
        opts = self.learner.options
        if self._drop is not None:
            batch["masks"] = drop_modalities(batch["masks"], self._drop)
        mix = choose_mix(batch, opts.mixup_alpha, opts.cutmix_alpha) if self._mixing else None
        ctx = self._autocast(run=self.run, fit=self.fit)
        # the auxiliary heads run under the same autocast as the network whose activations they
        # read; the losses themselves are reduced in fp32
        with ctx if ctx is not None else contextlib.nullcontext():
            output = self.net(batch["inputs"], batch["masks"],
                              (mix[1], mix[2]) if mix is not None and mix[0] == "mixup" else None)
            if "member_logits" in output:  # ncl_members: each head's task loss, their mean, less the penalty
                loss, ambiguity_term = self._member_losses(batch, output, mix)
                total = loss - self._ncl_lambda * ambiguity_term
                running = sums.terms.get("ncl_ambiguity", torch.zeros((), device=self.device))
                sums.terms["ncl_ambiguity"] = running + ambiguity_term.detach() * size
            else:
                loss = self._task_loss(output["logits"], output.get("mixed_logits"), batch, mix)
                total = loss
            if opts.adversarial_training:
                adv = self._adversarial_loss(batch, mix)
                if adv is not None:
                    ratio = opts.adversarial_ratio
                    total = (1.0 - ratio) * loss + ratio * adv
                    running = sums.terms.get("adversarial", torch.zeros((), device=self.device))
                    sums.terms["adversarial"] = running + adv.detach() * size
            if self.domain is not None:
                term, name = self._domain_loss(batch, output)
                # CORAL's term is weighted here; DANN's weight is its reversal coefficient (the domain
                # classifier itself learns at full strength)
                total = total + (self.run.config.domain_weight() * term if name == "coral" else term)
                running = sums.terms.get(name, torch.zeros((), device=self.device))
                sums.terms[name] = running + term.detach().float() * size
            if self._has_aux:
                output["task_loss"] = loss
                for terms in self._aux_losses(run=self.run, fit=self.fit, batch=batch, output=output):
                    for name, term in (terms or {}).items():
                        term = term.float()
                        total = total + term
                        running = sums.terms.get(name, torch.zeros((), device=self.device))
                        sums.terms[name] = running + term.detach() * size
        return loss, total

    def _task_loss(self, logits: torch.Tensor, mixed_logits: torch.Tensor | None, batch: Batch,
                   mix: Any) -> torch.Tensor:
        """The task loss of one head's logits, with the batch's mixup or CutMix targets where drawn."""
        logits = logits.float()
        if mix is None:
            return self.loss_fn(logits, batch["target"])
        mixed = mixed_logits.float() if mix[0] == "mixup" and mixed_logits is not None else logits
        return mixed_loss(self.loss_fn, mixed, batch["target"], mix[1], mix[2])

    def _member_losses(self, batch: Batch, output: Mapping[str, Any], mix: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """``ncl_members`` (see `_ncl`): the members' mean task loss and their ambiguity
        ``mean_i |F_i - F̄|²`` on the batch (fp32, under any autocast)."""
        members = output["member_logits"]
        mixed = output.get("mixed_member_logits")
        loss = torch.stack([self._task_loss(z, None if mixed is None else mixed[i], batch, mix)
                            for i, z in enumerate(members)]).mean()
        head = self.model.head
        return loss, ambiguity(head.outputs(members), head.output)

    def _adversarial_loss(self, batch: Batch, mix: Any) -> torch.Tensor | None:
        """The task loss of the batch's adversarial copy (see `_adversarial`); None under mixup or
        CutMix, whose mixed targets the search does not model."""
        if mix is not None:
            return None
        opts = self.learner.options
        if self._scales is None:
            self._scales = feature_scales(self.model)
        radius = {m: opts.adversarial_epsilon * self._scales[m] for m in batch["inputs"]}
        adv = adversarial_inputs(self.net, self.loss_fn, batch["inputs"], batch["masks"], batch["target"], radius,
                                 opts.adversarial_steps, lambda: self._autocast(run=self.run, fit=self.fit))
        return self.loss_fn(self.net(adv, batch["masks"])["logits"].float(), batch["target"])

    def _domain_loss(self, batch: Batch, output: Mapping[str, Any]) -> tuple[torch.Tensor, str]:
        """This step's domain term and its name (see `_domain`): a target batch as large as the source
        one, run through the network, its fused representation compared with the source batch's."""
        assert self.domain is not None
        x, masks = self.domain.draw(len(batch["target"]), self.fit.step)
        if self._drop is not None:  # hidden as the source rows are, so the two compare like for like
            masks = drop_modalities(masks, self._drop)
        fused_target = self.net(x, masks)["fused"]
        if self.run.config.domain_adaptation == "coral":
            return coral_loss(output["fused"], fused_target), "coral"
        fit, cfg = self.fit, self.run.config
        progress = ((fit.epoch - 1) + fit.batch_in_epoch / max(1, self.steps_per_epoch)) / max(1, cfg.epochs)
        coefficient = reversal_coefficient(progress, cfg.domain_weight())
        return dann_loss(self.model.aux[DOMAIN_CLASSIFIER], output["fused"], fused_target, coefficient), "domain"

    def _record(self, epoch: int, sums: EpochSums, seconds: float) -> EpochRecord:
        """The epoch as a record: train loss, validation loss and metrics, rate, memory, plugin metrics."""
        seen = sums.seen
        train_loss = float(sums.loss) / seen
        if not math.isfinite(float(sums.total)):
            terms = {k: float(v) / seen for k, v in sums.terms.items()}
            raise TrainingDivergedError(f"training loss became non-finite at epoch {epoch} (task loss "
                                        f"{train_loss}, auxiliary terms {terms}); lower learning_rate or "
                                        f"set gradient_clipping")
        extra: dict[str, float] = self.fit.gradient_norm_metrics()
        for found in self.run.hook.modalbag_epoch_metrics(run=self.run, fit=self.fit):
            extra.update(found or {})
        interval = self.learner.options.eval_interval
        skipped = bool(len(self.validation.rows)) and epoch % interval != 0 and epoch != self.run.config.epochs
        val_loss, metrics = (None, {}) if skipped else self._validate()
        return EpochRecord(
            epoch=epoch, train_loss=train_loss, val_loss=val_loss,
            accuracy=metrics.get("accuracy"), f1_score=metrics.get("f1"),
            mse=metrics.get("mse"), r2=metrics.get("r2"),
            learning_rate=float(self.optimizer.param_groups[0]["lr"]), training_time=seconds,
            samples_per_second=seen / seconds if seconds > 0 else None, memory_usage_mb=peak_memory_mb(self.device),
            loss_terms={k: float(v) / seen for k, v in sums.terms.items()},
            metrics=extra, validation_skipped=skipped,
        )

    def _validate(self) -> tuple[float | None, dict[str, float]]:
        """Loss and task metrics on the validation rows (None and nothing without any)."""
        val, learner = self.validation, self.learner
        if not len(val.rows):
            return None, {}
        batches = val.batches if val.batches is not None else (
            ({m: t.to(self.device) for m, t in x.items()}, masks.to(self.device))
            for x, masks in eval_batches(val.data.arrays, val.data.masks, learner.spec.modalities, val.rows,
                                         learner.options.eval_batch_size))
        logits = torch.cat([learner.logits(x, masks) for x, masks in batches])
        val_loss = float(self.loss_fn(logits, val.targets))
        labels = val.data.targets[val.rows]
        if labels.ndim == 2 and learner.task_type == "classification":  # a teacher's probabilities: its classes
            labels = labels.argmax(axis=1)
        metrics = task_metrics(learner.task_type, labels, learner.to_output(logits))
        return val_loss, metrics


def modality_drop_rates(options: Any, modalities: Sequence[str], device: torch.device) -> Any:
    """The probability of hiding each modality of a training sample: ``modality_dropout`` for all, or
    with ``modality_balancing`` one rate per modality in proportion to ``modality_weights`` (mean rate
    ``modality_dropout``, else 0.2; capped at 0.9), so a dominant modality is hidden most often. None
    when nothing is hidden."""
    if not options.modality_balancing:
        return options.modality_dropout or None
    base = options.modality_dropout or 0.2
    given = options.modality_weights or {}
    known = [given[m] for m in modalities if m in given]
    fill = float(np.mean(known)) if known else 1.0
    weights = np.array([given.get(m, fill) for m in modalities], dtype=np.float64)
    mean = weights.mean()
    rates = np.full(len(modalities), base) if mean <= 0 else np.minimum(0.9, base * weights / mean)
    return torch.as_tensor(rates, dtype=torch.float32, device=device)


def release_memory(device: torch.device) -> None:
    """``memory_cleanup_interval``: collect Python garbage (cycles holding tensors) and, on CUDA, hand
    the caching allocator's free blocks back to the device, for other processes sharing it."""
    import gc

    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


__all__ = ["CompiledOrEager", "EpochSums", "TrainingLoop", "Validation", "class_weights", "release_memory"]
