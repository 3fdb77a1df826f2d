"""Cross-modal denoising: how objectives and weighting strategies combine into one auxiliary loss.

Objective and strategy *algorithms* are plugins (kinds ``objective`` and ``strategy``); this module
holds the contract they keep and the `AdvancedCrossModalDenoisingLoss` that runs them:

    total = denoising_weight * scale(epoch) * sum_k w_k(epoch) * L_k

where ``L_k`` is objective k's loss on the batch, ``w_k`` its weight from the strategy, and
``scale`` the strategy's ramp (warmup, curriculum). Each objective owns its trainable modules
(decoders, projection heads), which are attached to the learner's model so that they are optimized
and saved with it. Objectives that need more modalities than a bag has are skipped, with a note.

The loss is usable on its own in a hand-written PyTorch loop: see `AdvancedCrossModalDenoisingLoss`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import attrs
import torch
from torch import nn

from modalbag.errors import DataError, NotFittedError
from modalbag.kernel.components import build_options
from modalbag.kernel.fit import FitState, StashKey
from modalbag.kernel.markers import hookimpl
from modalbag.kernel.registry import default_catalog
from modalbag.training.checkpoints import capture, restore


@attrs.frozen
class RepresentationSpec:
    """What an objective needs to size its modules: the model's modalities and widths."""

    modalities: tuple[str, ...]
    embedding_dim: int
    hidden_dims: Mapping[str, int]
    n_outputs: int
    task_type: str


@attrs.define(eq=False)
class DenoisingContext:
    """One batch's representations, shared by every objective of a step.

    ``embeddings`` (B, M, E) and ``masks`` (B, M) follow ``modalities`` order; ``hidden`` maps each
    modality to its encoder's intermediate representation (B, H_m); ``model`` exposes
    ``fuse(embeddings, masks)`` and ``head(fused)`` so objectives can predict from modality subsets.
    ``fusion_scores`` (B, M), when the model's forward returned them, are its fusion gate's logits:
    ``fuse(embeddings, subset, scores=fusion_scores)`` then reuses them instead of re-running the gate.
    """

    model: Any
    modalities: tuple[str, ...]
    embeddings: torch.Tensor
    masks: torch.Tensor
    hidden: Mapping[str, torch.Tensor]
    fused: torch.Tensor
    logits: torch.Tensor
    target: torch.Tensor | None
    task_type: str
    epoch: int = 0
    targets_of: tuple[int, ...] = ()  # indices of modalities objectives may treat as targets
    fusion_scores: torch.Tensor | None = None
    #: Training steps so far in this fit: picks the objectives of this step when they take turns
    #: (``denoising_objectives_per_step``). None: the loss counts its own calls.
    step: int | None = None


@attrs.frozen
class ObjectiveOutput:
    """An objective's loss for a batch and its diagnostics (detached tensors, averaged per epoch)."""

    loss: torch.Tensor
    metrics: Mapping[str, torch.Tensor] = attrs.field(factory=dict)


class Objective(Protocol):
    """What ``factory(config, options)`` of an ``objective`` component returns. An objective that
    trains on the task targets sets a true ``needs_target`` attribute (``information``)."""

    name: str
    min_modalities: int

    def build(self, spec: RepresentationSpec) -> nn.Module | None:
        """The objective's trainable modules for one learner (or None)."""

    def loss(self, module: nn.Module | None, ctx: DenoisingContext) -> ObjectiveOutput | None:
        """The loss on this batch, or None when no row of it applies."""


class FitWeighting(Protocol):
    """A strategy's per-learner state.

    When objectives take turns (``denoising_objectives_per_step``), the weights of those that run
    are multiplied by n/k so the expected loss is the every-step one; a weighting whose
    ``balances_each_step`` attribute is true (``adaptive``: the objectives that ran share the task
    loss) already gives that expectation, and the factor is not applied.
    """

    def scale(self, epoch: int) -> float:
        """Multiplier on ``denoising_weight`` at ``epoch`` (warmup and curriculum ramps)."""

    def active(self, epoch: int) -> set[str] | None:
        """The objectives that run at ``epoch``; None for all of them."""

    def weights(self, losses: Mapping[str, torch.Tensor], task_loss: torch.Tensor | None
                ) -> Mapping[str, Any] | torch.Tensor:
        """Each objective's weight for this step: a mapping to floats or detached scalar tensors, or
        one detached 1-D tensor in the order of ``losses`` (cheaper: no per-objective operators)."""


class Strategy(Protocol):
    """What ``factory(config, options)`` of a ``strategy`` component returns."""

    def for_fit(self, objectives: Sequence[str]) -> FitWeighting: ...


def take_turns(names: Sequence[str], per_step: int, step: int) -> tuple[list[str], float]:
    """The ``per_step`` objectives of ``names`` that run at ``step``, and the factor on their weights.

    Objectives take turns in a fixed cycle, so over ``len(names)`` consecutive steps each runs
    ``per_step`` times; scaling the ones that run by ``len(names) / per_step`` keeps the expected
    total equal to running all of them every step (an unbiased estimate, as in stochastic
    multi-task training), at the cost of ``per_step`` objectives a step. (A weighting that
    ``balances_each_step`` gets that expectation without the factor: see `FitWeighting`.)
    ``per_step`` 0, or at least ``len(names)``: every objective, factor 1.
    """
    n = len(names)
    if per_step <= 0 or per_step >= n:
        return list(names), 1.0
    start = (step * per_step) % n
    return [names[(start + i) % n] for i in range(per_step)], n / per_step


def warmup_scale(epoch: int, warmup_epochs: int) -> float:
    """Linear ramp from 1/(warmup+1) at epoch 1 to 1 once warmup is over."""
    if warmup_epochs <= 0:
        return 1.0
    return min(1.0, epoch / (warmup_epochs + 1))


class AdvancedCrossModalDenoisingLoss(nn.Module):
    """All configured denoising objectives and their weighting, as one ``nn.Module``.

    Standalone use in your own loop::

        loss_fn = AdvancedCrossModalDenoisingLoss(config)          # objectives named by config
        loss_fn.setup(network)                                        # before creating the optimizer
        loss, terms = loss_fn(network, {"text": xb, "image": xi}, epoch=e)

    ``network`` is a fusion network exposing ``embed``, ``fuse`` and ``head`` (the ``neural``
    trainer's `FusionNetwork`, or a `NeuralLearner`, whose ``model`` is used). Modalities absent
    from ``modality_data`` (or all-NaN rows) are masked. ``original_representations`` (a dict by
    modality, or a (B, M, E) tensor) replace the encodings; ``target`` feeds ``information``:
    see `forward`. Importable as ``modalbag.AdvancedCrossModalDenoisingLoss`` too.
    """

    def __init__(self, config: Any, *, objectives: Mapping[str, Objective] | None = None,
                 strategy: Strategy | None = None, catalog: Any = None):
        super().__init__()
        self.config = config
        if objectives is None or strategy is None:
            objectives, strategy = _from_catalog(config, catalog)
        self.objectives = dict(objectives)
        self.strategy = strategy
        self.modules_by_objective = nn.ModuleDict()
        self.skipped: dict[str, str] = {}
        self.weighting: FitWeighting | None = None
        self.spec: RepresentationSpec | None = None
        self._calls = 0

    def setup(self, network: Any, task_type: str | None = None, n_outputs: int | None = None) -> list[str]:
        """Build every applicable objective's modules for ``network``; returns notes on skipped ones."""
        model = getattr(network, "model", network)
        spec = RepresentationSpec(
            modalities=tuple(model.modalities), embedding_dim=model.embedding_dim,
            hidden_dims={m: model.encoders[m].hidden_dim for m in model.modalities},
            n_outputs=n_outputs or model.n_outputs, task_type=task_type or self.config.task_type,
        )
        self.spec = spec
        notes = []
        targets = self._target_modalities(spec.modalities)
        for name, objective in self.objectives.items():
            if len(spec.modalities) < objective.min_modalities:
                self.skipped[name] = (f"objective {name!r} skipped: it needs {objective.min_modalities} modalities "
                                      f"and this learner has {len(spec.modalities)}")
            elif objective.min_modalities > 1 and not targets:
                self.skipped[name] = f"objective {name!r} skipped: no modality of this learner is in denoising_modalities"
            else:
                module = objective.build(spec)
                if module is not None:
                    self.modules_by_objective[name] = module
                continue
            notes.append(self.skipped[name])
        self.weighting = self.strategy.for_fit([n for n in self.objectives if n not in self.skipped])
        return notes

    def _target_modalities(self, modalities: Sequence[str]) -> tuple[int, ...]:
        wanted = self.config.denoising_modalities
        return tuple(i for i, m in enumerate(modalities) if not wanted or m in wanted)

    def compute(self, ctx: DenoisingContext, task_loss: torch.Tensor | None = None
                ) -> tuple[torch.Tensor | None, dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """Weighted total, each objective's weighted term, and diagnostics, for one batch."""
        assert self.weighting is not None, "call setup() first"
        ctx.targets_of = self._target_modalities(ctx.modalities)
        active = self.weighting.active(ctx.epoch)
        eligible = [name for name in self.objectives
                    if name not in self.skipped and (active is None or name in active)]
        step = self._calls if ctx.step is None else ctx.step
        self._calls += 1
        chosen, share = take_turns(eligible, self.config.denoising_objectives_per_step, step)
        raw: dict[str, torch.Tensor] = {}
        metrics: dict[str, torch.Tensor] = {}
        for name in chosen:
            objective = self.objectives[name]
            module = self.modules_by_objective[name] if name in self.modules_by_objective else None  # noqa: SIM401 - ModuleDict has no get()
            out = objective.loss(module, ctx)
            if out is None:
                continue
            raw[name] = out.loss
            # objectives give detached diagnostics as documented; detach() is an operator call each
            metrics.update({f"{name}.{k}": v.detach() if v.requires_grad else v for k, v in out.metrics.items()})
        if not raw:
            return None, {}, metrics
        # one stacked vector for every objective: a handful of operators whatever their number
        names = list(raw)
        losses = torch.stack([raw[name].float() for name in names])
        weights = self.weighting.weights(raw, task_loss)
        if not torch.is_tensor(weights):
            values = [weights[name] for name in names]
            weights = (torch.stack([torch.as_tensor(w, device=losses.device) for w in values]).float()
                       if any(torch.is_tensor(w) for w in values)
                       else torch.tensor(values, dtype=torch.float32, device=losses.device))
        turns_factor = 1.0 if getattr(self.weighting, "balances_each_step", False) else share
        weights = weights.detach().to(losses.device) * (
            self.config.denoising_weight * self.weighting.scale(ctx.epoch) * turns_factor)
        weighted = losses * weights
        detached = losses.detach()
        for i, name in enumerate(names):
            metrics[f"{name}.loss"] = detached[i]
            metrics[f"weight.{name}"] = weights[i]
        return weighted.sum(), dict(zip(names, weighted.unbind(), strict=True)), metrics

    def forward(self, learner: Any, modality_data: Mapping[str, torch.Tensor], epoch: int = 0,
                original_representations: Mapping[str, torch.Tensor] | torch.Tensor | None = None,
                target: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, float]]:
        """The weighted denoising loss of one batch and each objective's weighted term.

        ``original_representations``: the batch's clean representations, computed elsewhere, used
        in place of the encodings of ``modality_data`` (which may be the noised or masked view).
        Either a dict by modality of (B, E) embeddings or of clean inputs of the modality's input
        shape (encoded here; a (B, E) tensor is read as an embedding), modalities left out keeping
        their encoding; or one (B, M, E) tensor in the network's ``modalities`` order. The
        encoders' hidden layers (``reconstruction``'s second depth) come from the inputs encoded.
        ``target``: the batch's task targets, which ``information`` (a bottleneck trained on the
        task loss) needs; without them it raises instead of adding no term.
        """
        model = getattr(learner, "model", learner)
        if model is None or not all(hasattr(model, a) for a in ("modalities", "fuse", "head")):
            raise NotFittedError(
                f"{type(learner).__name__} has no trained network to compute denoising losses on: train it first "
                "(model.train_ensemble(), then model.learners[bag_id].model) or pass a network exposing "
                "embed, fuse and head")
        if self.weighting is None:
            self.setup(model)
        needing = [name for name, objective in self.objectives.items()
                   if getattr(objective, "needs_target", False) and name not in self.skipped]
        if needing and target is None:
            raise DataError(f"denoising objective(s) {needing} train on the task loss and need the batch's targets: "
                              "call forward(..., target=y) (class indices for classification, 0/1 rows for "
                              "multilabel, values for regression), or leave them out of denoising_objectives")
        batch = next(iter(modality_data.values())).shape[0]
        inputs, masks = {}, []
        for m in model.modalities:
            x = modality_data.get(m)
            if x is None:
                shape = (batch, *model.input_shapes[m])
                inputs[m], present = torch.zeros(shape), torch.zeros(batch, dtype=torch.bool)
            else:
                present = ~torch.isnan(x.reshape(batch, -1)).all(dim=1)
                inputs[m] = torch.nan_to_num(x)
            masks.append(present)
        mask = torch.stack(masks, dim=1)
        if original_representations is None:
            out = model(inputs, mask)
            embeddings, hidden, fused, logits = out["embeddings"], out["hidden"], out["fused"], out["logits"]
            scores = out.get("fusion_scores")
        else:
            embeddings, hidden = _with_originals(model, inputs, original_representations, batch)
            fused = model.fuse(embeddings, mask)
            logits = model.head(fused)
            scores = None
        ctx = DenoisingContext(model, tuple(model.modalities), embeddings, mask, hidden, fused, logits, target,
                               self.spec.task_type if self.spec else self.config.task_type, epoch,
                               fusion_scores=scores)
        total, terms, _ = self.compute(ctx)
        if total is None:
            total = embeddings.sum() * 0.0
        return total, {name: float(value.detach()) for name, value in terms.items()}


def _with_originals(model: Any, inputs: dict[str, torch.Tensor], originals: Mapping[str, torch.Tensor] | torch.Tensor,
                    batch: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Embeddings (B, M, E) and hidden layers of a batch whose clean representations were given (see
    `AdvancedCrossModalDenoisingLoss.forward`)."""
    modalities, width = list(model.modalities), model.embedding_dim
    if torch.is_tensor(originals):
        expected = (batch, len(modalities), width)
        if tuple(originals.shape) != expected:
            raise DataError(f"original_representations has shape {tuple(originals.shape)}; a tensor must be "
                            f"(batch, modalities, embedding_dim) = {expected} in the order {modalities}, or pass "
                            f"a dict {{modality: (batch, {width}) embedding or clean input}}")
        _, hidden = model.embed(inputs)
        return originals, hidden
    unknown = sorted(set(originals) - set(modalities))
    if unknown:
        raise DataError(f"original_representations names {unknown}, which this network does not have; "
                        f"its modalities: {modalities}")
    embedded_as = {}
    clean = dict(inputs)
    for m, x in originals.items():
        shape = tuple(x.shape)
        if shape == (batch, width):
            embedded_as[m] = x
        elif shape == (batch, *model.input_shapes[m]):
            clean[m] = torch.nan_to_num(x)
        else:
            raise DataError(f"original_representations[{m!r}] has shape {shape}; expected its embedding "
                            f"{(batch, width)} or its clean input {(batch, *model.input_shapes[m])}")
    embeddings, hidden = model.embed(clean)
    if embedded_as:
        columns = list(embeddings.unbind(1))
        for m, x in embedded_as.items():
            columns[modalities.index(m)] = x.to(embeddings.dtype)
        embeddings = torch.stack(columns, dim=1)
    return embeddings, hidden


def _from_catalog(config: Any, catalog: Any) -> tuple[dict[str, Objective], Strategy]:

    catalog = catalog or default_catalog()
    objectives = {}
    for name in config.denoising_objectives:
        comp = catalog.get("objective", name)
        objectives[name] = comp.factory(config, build_options(comp, config))
    comp = catalog.get("strategy", config.denoising_strategy)
    return objectives, comp.factory(config, build_options(comp, config))


_LOSS = StashKey[AdvancedCrossModalDenoisingLoss]()
_SUMS = StashKey[dict]()


class DenoisingHooks:
    """The run-hook side of denoising, registered by assembly when ``enable_denoising`` is on.

    Per learner: builds an `AdvancedCrossModalDenoisingLoss` and attaches it to the model
    (``fit_setup``), adds its weighted terms to each step's loss (``auxiliary_losses``) and reports
    epoch means of every diagnostic (``epoch_metrics``).
    """

    def __init__(self, config: Any, objectives: Mapping[str, Objective], strategy: Strategy):
        self.config, self.objectives, self.strategy = config, dict(objectives), strategy

    @hookimpl
    def modalbag_fit_setup(self, run: Any, fit: FitState) -> None:
        loss = AdvancedCrossModalDenoisingLoss(self.config, objectives=self.objectives, strategy=self.strategy)
        fit.notes.extend(loss.setup(fit.model, run.task.task_type, run.task.n_outputs))
        fit.aux_modules["denoising"] = loss
        fit.stash[_LOSS] = loss
        fit.stash[_SUMS] = {}

    @hookimpl
    def modalbag_auxiliary_losses(self, run: Any, fit: FitState, batch: Mapping[str, Any],
                                  output: Mapping[str, Any]) -> dict[str, torch.Tensor] | None:
        loss = fit.stash.get(_LOSS)
        if loss is None:
            return None
        ctx = DenoisingContext(fit.model, tuple(fit.model.modalities), output["embeddings"], batch["masks"],
                               output["hidden"], output["fused"], output["logits"], batch["target"],
                               run.task.task_type, fit.epoch, fusion_scores=output.get("fusion_scores"),
                               step=fit.step)
        _, terms, metrics = loss.compute(ctx, output.get("task_loss"))
        if metrics:  # summed as one vector per set of keys: three operators a step, not three per metric
            sums = fit.stash[_SUMS]
            keys = tuple(metrics)
            n = len(batch["target"])
            values = torch.stack([v.float() for v in metrics.values()]) * n
            total, count = sums.get(keys, (0.0, 0))
            sums[keys] = (values + total, count + n)
        return {f"denoising.{name}": term for name, term in terms.items()}

    @hookimpl
    def modalbag_checkpoint_state(self, run: Any, fit: FitState) -> dict[str, Any] | None:
        loss = fit.stash.get(_LOSS)
        return None if loss is None else {"denoising": {"weighting": capture(loss.weighting)}}

    @hookimpl
    def modalbag_restore_state(self, run: Any, fit: FitState, state: Mapping[str, Any]) -> None:
        loss, saved = fit.stash.get(_LOSS), state.get("denoising")
        if loss is not None and saved is not None:
            restore(loss.weighting, saved["weighting"])

    @hookimpl
    def modalbag_epoch_metrics(self, run: Any, fit: FitState) -> dict[str, float] | None:
        sums = fit.stash.get(_SUMS)
        if not sums:
            return None
        totals: dict[str, tuple[float, int]] = {}
        for keys, (vector, count) in sums.items():
            for key, value in zip(keys, vector.tolist(), strict=True):
                total, seen = totals.get(key, (0.0, 0))
                totals[key] = (total + value, seen + count)
        sums.clear()
        return {key: total / count for key, (total, count) in totals.items() if count}


__all__ = ["AdvancedCrossModalDenoisingLoss", "DenoisingContext", "DenoisingHooks", "FitWeighting", "Objective",
           "ObjectiveOutput", "RepresentationSpec", "Strategy", "take_turns", "warmup_scale"]
