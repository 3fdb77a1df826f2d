"""The hook specifications: the contract between modalbag's engine and its plugins.

There are two kinds of hook.

**Registration hooks** (``modalbag_register_<kind>s``) are implemented by plugin *modules*, found
through the ``modalbag`` entry-point group. Each is called once, when the module is loaded, with a
``register`` callable; the module adds named component factories and builds nothing else.
Installed is not active: registering makes a component *available*, never part of a run.

**Run hooks** are implemented by component *instances*. For each run the engine builds the
components the configuration names and registers those instances, in configuration order, into the
run's own plugin manager; only they are called. Broadcast hooks collect every result in that order;
``firstresult`` hooks stop at the first implementation that returns something other than ``None``.
Per-step hooks are kept to four (autocast, auxiliary losses, backward, optimizer step): everything
else happens per run, per learner or per epoch.

Run hooks about one learner run where that learner trains: with an executor that uses worker
processes, on copies of the instances (see `modalbag_register_executors`).

Adding a component family means adding one registration hook here and one entry in
a row of `modalbag.kernel.kinds.KIND_TABLE`; the tests check that every hook is documented and tested.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

from modalbag.kernel.component import Register
from modalbag.kernel.markers import hookspec

if TYPE_CHECKING:  # the engine's types, for documentation only
    import torch

    from modalbag.config.training import TrainingConfig
    from modalbag.kernel.fit import FitState
    from modalbag.kernel.records import EpochRecord, TrainedLearner
    from modalbag.kernel.run import Run



# ---------------------------------------------------------------------------------------------
# Registration hooks: one per component family, called once per plugin module when it is loaded.
# ``register(name, factory, *, options=None, summary="")``: ``options`` is an attrs class holding
# the component's own configuration keys (validated by the plugin); ``summary`` a one-line help.
# ---------------------------------------------------------------------------------------------


@hookspec
def modalbag_register_trainers(register: Register) -> None:
    """Add trainer components: the base learners that fit one bag.

    ``factory(spec, config, options)`` returns an unfitted learner keeping the
    `modalbag.kernel.protocols.Learner` protocol: ``fit(data, run, fit)``, ``predict_output(inputs, masks)``
    and ``describe()``. The factory also offers ``propose(profile, strategy)``, returning a
    `LearnerProposal` or ``None`` when it cannot learn that bag; learner selection picks the
    best-scored proposal across trainers.
    """


@hookspec
def modalbag_register_optimizers(register: Register) -> None:
    """Add optimizer components, chosen by ``optimizer_type``.

    ``factory(params, config, options)`` returns a ``torch.optim.Optimizer`` over ``params``
    using ``config.learning_rate`` and ``config.weight_decay``.
    """


@hookspec
def modalbag_register_schedulers(register: Register) -> None:
    """Add learning-rate schedulers, chosen by ``scheduler_type``.

    ``factory(optimizer, config, options, steps_per_epoch)`` returns a `modalbag.kernel.schedules.Schedule`:
    an object with ``after_batch()`` and ``after_epoch(val_loss)``. Set ``handles_warmup = True``
    on the factory when the schedule warms up by itself (the engine then adds no linear warmup).
    """


@hookspec
def modalbag_register_objectives(register: Register) -> None:
    """Add cross-modal denoising objectives, chosen by ``denoising_objectives``.

    ``factory(config, options)`` returns an `modalbag.denoising.Objective`: ``name``,
    ``min_modalities``, ``build(spec)`` (its trainable modules for one learner, or ``None``) and
    ``loss(module, ctx)`` (an `ObjectiveOutput`, or ``None`` when no row of the batch applies).
    Objectives do not implement run hooks: the engine runs the active ones through one
    `AdvancedCrossModalDenoisingLoss` per learner, weighted by the active strategy.
    """


@hookspec
def modalbag_register_strategies(register: Register) -> None:
    """Add denoising weighting strategies, chosen by ``denoising_strategy``.

    ``factory(config, options)`` returns a `modalbag.denoising.Strategy`, whose
    ``for_fit(objective_names)`` gives each learner its own weighting state (``scale(epoch)``,
    ``active(epoch)``, ``weights(losses, task_loss)``).
    """


@hookspec
def modalbag_register_precisions(register: Register) -> None:
    """Add precision components: how a neural step computes and applies its gradients.

    Turned on by configuration values (``mixed_precision`` activates ``amp``,
    ``gradient_accumulation_steps > 1`` activates ``accumulation``). ``factory(config, options)``
    returns an instance implementing the per-step hooks it needs (`modalbag_autocast`,
    `modalbag_backward`, `modalbag_optimizer_step`) and records what it chose in the learner's
    notes. Precision components compose: each handles its own concern and returns ``None`` for
    the rest, so the next implementation (or the trainer's default) takes over.
    """


@hookspec
def modalbag_register_reports(register: Register) -> None:
    """Add report components: analyses of a *trained* ensemble on data the user holds out.

    ``factory(options)`` returns an object with ``generate(model, data, labels, **inputs)``,
    returning a dict of values computed from ``model``'s predictions on ``(data, labels)``; a value
    that cannot be measured from what was given is ``None`` with the reason under ``"notes"``.
    Reports are reached by name, ``model.report(name, data, labels, **inputs)``, and never take
    part in training.
    """


@hookspec
def modalbag_register_sinks(register: Register) -> None:
    """Add metrics sinks (TensorBoard, W&B, JSON lines, ...), chosen by ``sinks``.

    ``factory(config, options)`` returns an instance implementing the run hooks it needs, usually
    `modalbag_run_start`, `modalbag_epoch_end` and `modalbag_run_end`.
    """


@hookspec
def modalbag_register_validators(register: Register) -> None:
    """Add validators: config checks, early stopping, checkpointing, cross-validation.

    ``factory(config, options)`` returns an instance implementing run hooks; validators act
    through `FitState.control` (for example ``control.should_stop = True``).
    """


@hookspec
def modalbag_register_executors(register: Register) -> None:
    """Add executors: where and how the learners of a run train, chosen by ``executor``.

    ``factory(config, options)`` is called once per run, when the run is assembled, and returns an
    object with ``execute(work)``: ``work`` is a `modalbag.execution.TrainingWork` holding the
    run's learner jobs (each with its memory footprint estimated before it starts). ``execute``
    runs every job once and yields one `modalbag.execution.JobResult` per job as it finishes, in
    any order, never raising for a learner's failure: ``work.fit_here(job)`` fits a job in this
    process; workers elsewhere fit ``work.context()`` (picklable) with ``fit_in_worker``; a job
    whose worker died is reported with ``work.lost(job, reason)``.

    Where hooks run: ``modalbag_run_start`` and ``modalbag_run_end`` always in the calling process.
    The learner hooks (``modalbag_fit_*``, ``modalbag_epoch_end`` and the per-step hooks) run where
    the learner trains; an executor using other processes hands them *copies* of the run's
    instances, made after ``modalbag_run_start``, and what a copy changes does not come back unless
    the learner's record carries it. ``modalbag_fit_error`` for a worker that died is called in the
    calling process.
    """


# ---------------------------------------------------------------------------------------------
# Run hooks: implemented by the active component instances of one run.
# ---------------------------------------------------------------------------------------------


@hookspec
def modalbag_validate_config(config: TrainingConfig) -> list[str] | None:
    """Check the configuration before anything trains.

    Called once per run, after the active set is assembled and before `modalbag_run_start`, and by
    `modalbag.validate_training_config`. Return a list of human-readable problems (each naming the
    key and the fix), or ``None``/``[]`` when satisfied. All results are collected; any problem
    stops the run with a `ConfigError` listing every one.
    """


@hookspec
def modalbag_run_start(run: Run) -> None:
    """A run begins: called once, before the first learner fits. Results are ignored."""


@hookspec
def modalbag_run_end(run: Run, learners: Mapping[str, TrainedLearner]) -> None:
    """A run ended: called once with every learner's record (failed ones included).

    Called even when some learners failed; results are ignored.
    """


@hookspec
def modalbag_fit_setup(run: Run, fit: FitState) -> None:
    """A neural learner's model is built and its optimizer is not yet: attach extra modules.

    Implementations may add trainable modules to ``fit.aux_modules`` (an ``nn.ModuleDict`` that
    is saved and optimized with the model) and keep per-fit state in ``fit.stash``.
    """


@hookspec
def modalbag_fit_ready(run: Run, fit: FitState) -> None:
    """A neural learner's training loop is built (model, optimizer, schedule) and no step has run.

    The place to decide anything by measuring the learner's own training step: ``fit.trial_steps(n)``
    runs ``n`` real steps on the fit's data under the current hooks (the autocast hook's answer
    included) and returns the seconds per step, then restores the model, the optimizer, the random
    state and the fit's counters, so training goes on as if no trial had run. Called on a resumed
    fit too (after its state is restored). Results are ignored.
    """


@hookspec
def modalbag_fit_start(run: Run, fit: FitState) -> None:
    """A learner starts fitting (any trainer): ``fit`` holds the bag, the spec and the model."""


@hookspec
def modalbag_epoch_end(run: Run, fit: FitState, record: EpochRecord) -> None:
    """An epoch ended and ``record`` holds its measured metrics.

    Sinks log it; validators decide, by setting ``fit.control.should_stop``. Called in config
    order; results are ignored.
    """


@hookspec
def modalbag_epoch_metrics(run: Run, fit: FitState) -> dict[str, float] | None:
    """Contribute measured metrics to the epoch's record, just before it is built.

    Called once per epoch by neural trainers; every returned mapping is merged into
    `EpochRecord.metrics` (later implementations win on a shared key). Return ``None`` for none.
    """


@hookspec
def modalbag_fit_end(run: Run, fit: FitState) -> None:
    """A learner finished fitting without error (after its last epoch or an early stop).

    Validators may restore weights here (early stopping restores the best epoch's).
    """


@hookspec
def modalbag_fit_error(run: Run, learner_id: str, error: BaseException) -> None:
    """A learner failed: called with its id and the exception; the run continues without it."""


@hookspec
def modalbag_checkpoint_state(run: Run, fit: FitState) -> dict[str, Any] | None:
    """Contribute this component's per-fit state to a neural learner's training checkpoint.

    Called when the trainer saves its full training state (every ``checkpoint_interval`` epochs,
    after `modalbag_epoch_end`). Return ``{key: state}`` under a key of your own (your plugin's
    name), or ``None``. States hold tensors and plain data only (dicts, lists, numbers, strings):
    checkpoints are read back with ``torch.load(weights_only=True)``, which refuses anything else.
    All results are merged.
    """


@hookspec
def modalbag_restore_state(run: Run, fit: FitState, state: Mapping[str, Any]) -> None:
    """A neural learner resumes from a checkpoint: take back what `modalbag_checkpoint_state` gave.

    Called once, after `modalbag_fit_setup` and before the first resumed epoch, with every
    component's merged state; read your own key (it may be absent). Results are ignored.
    """


@hookspec
def modalbag_log_step(run: Run, fit: FitState, step: int, values: Mapping[str, float]) -> None:
    """Every ``log_interval`` optimizer steps of a neural learner: measured values for sinks.

    Called by neural trainers when ``fit.step`` (steps so far in this fit) is a multiple of
    ``log_interval``, only when ``log_interval > 0`` and some instance implements this hook, so
    steps cost nothing when nobody listens. ``values`` holds plain floats: ``loss`` (this batch's
    task loss), ``epoch_loss`` (running mean of the epoch's task loss), ``learning_rate``,
    ``samples_per_second`` (since the previous call), ``grad_norm`` when measured, and each
    auxiliary term's running mean under ``loss_terms/<name>``. Results are ignored.
    """


# Per-step hooks. The trainer looks these callers up once per fit, so each costs one pluggy call.


@hookspec(firstresult=True)
def modalbag_autocast(run: Run, fit: FitState) -> AbstractContextManager[Any] | None:
    """Return the context manager the forward pass runs under (mixed precision), or ``None``.

    First non-``None`` result wins; with none, the forward pass runs in full precision.
    """


@hookspec
def modalbag_auxiliary_losses(
    run: Run, fit: FitState, batch: Mapping[str, Any], output: Mapping[str, Any]
) -> dict[str, torch.Tensor] | None:
    """Return extra loss terms for this training step, keyed by a name, or ``None``.

    ``batch`` maps ``"inputs"``, ``"masks"`` and ``"target"`` to tensors; ``output`` holds the
    model's ``"logits"``, per-modality ``"embeddings"`` (B, M, E) and ``"hidden"`` representations,
    the ``"fused"`` representation and the batch's ``"task_loss"``. All
    results are collected; the trainer adds every term to the task loss and records each by name.
    """


@hookspec(firstresult=True)
def modalbag_backward(run: Run, fit: FitState, loss: torch.Tensor) -> bool | None:
    """Run the backward pass for ``loss`` (a loss scaler does this). Return ``True`` if handled.

    First non-``None`` result wins; with none, the trainer calls ``loss.backward()``.
    """


@hookspec(firstresult=True)
def modalbag_optimizer_step(run: Run, fit: FitState) -> bool | None:
    """Step the optimizer after a backward pass. Return ``True`` if handled (stepped *or* skipped).

    First non-``None`` result wins: gradient accumulation returns ``True`` between boundaries to
    skip, and ``None`` at a boundary so the next implementation steps. With none, the trainer clips
    gradients to ``gradient_clipping``, steps and zeroes them (`FitState.default_step`).
    """
