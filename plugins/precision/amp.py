"""``amp``: automatic mixed precision where the hardware gains from it (``mixed_precision=True``).

The choice, made once per learner from the device the model lives on:

- CUDA with bf16 support: ``torch.autocast("cuda", dtype=torch.bfloat16)``; bf16 has fp32's
  exponent range, so no loss scaling is needed.
- CUDA without bf16: fp16 autocast plus a ``torch.amp.GradScaler`` (dynamic loss scaling: the loss
  is multiplied before backward, gradients are unscaled before clipping, and a step whose
  gradients overflow is skipped while the scale shrinks).
- CPU: full fp32 unless the processor computes bf16 natively (AVX512-BF16 or AMX). Where it does,
  the learner's own training step decides: a few real steps each way (`TRIAL_STEPS`, alternated,
  after a warm-up step; the model, optimizer and random state are put back afterwards) and bf16 is
  kept only when its step is at least `BF16_MIN_SPEEDUP` times faster. A synthetic probe does not
  predict this: a matmul chain measured 3.85x faster in bf16 on a machine where the real network's
  epoch was slower. Emulated bf16 is slower and less accurate, and the spec's default is
  ``mixed_precision=True``: it must never make a default run slower or worse.

A timed decision would change with the machine's load, and with it the trained weights; so the
first one made for a learner's step on a machine is kept (`modalbag.plugins.precision._decisions`)
and every later run there (a rerun, a resume) reuses it: same config and seed, same predictions.

The choice, with the timings it was made on, is logged and written to the learner's notes. Gradient clipping, when configured, is
applied to *unscaled* gradients at the real optimizer step, so it composes with ``accumulation``
(which defers steps and runs before this plugin at each step).
"""

from __future__ import annotations

import time
from contextlib import AbstractContextManager
from typing import Any

import attrs

from modalbag import hookimpl
from modalbag.kernel import Register, Run
from modalbag.kernel.fit import FitState, StashKey
from modalbag.logs import get_logger
from modalbag.plugins.precision._decisions import cache_path, decision_key, keep_decision, read_decision

log = get_logger("modalbag.precision.amp")


@attrs.frozen
class Precision:
    """What a learner trains in: ``dtype`` is None for full fp32."""

    device: str
    dtype: Any
    scaler: Any
    reason: str


_CHOICE = StashKey[Precision]()

_CPU_NATIVE_BF16 = ("avx512_bf16", "amx_bf16")


def _loss_scale(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if value == "dynamic":
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ValueError(f"loss_scale must be 'dynamic' or a positive number, got {value!r}")


@attrs.frozen(kw_only=True)
class AmpOptions:
    """``amp_dtype``: 'auto' (the rules above), or 'bf16', 'fp16' (with loss scaling) or 'fp32' to force one.

    Forcing is what tests and cross-device checks need: 'auto' follows the hardware, so a suite run
    on one machine would otherwise meet only the path that machine picks. fp16 on a CPU is emulated
    on most processors (slow); it exists to exercise the loss-scaled path anywhere."""

    amp_dtype: str = attrs.field(default="auto", validator=attrs.validators.in_(("auto", "bf16", "fp16", "fp32")),
                                 metadata={"help": "'auto' follows the hardware (CUDA: bf16 where supported, else "
                                                   "fp16 with loss scaling; CPU: bf16 only where native and the "
                                                   "learner's own step measured faster, decided once per "
                                                   "machine, else fp32); 'bf16', 'fp16' (with loss "
                                                   "scaling) or 'fp32' force one."})
    gradient_scaling: bool = attrs.field(default=True, metadata={
        "help": "Scale the loss in fp16 training so small gradients do not flush to zero (a GradScaler); false "
                "trains fp16 unscaled (no effect in bf16 or fp32, which need no scaling)."})
    loss_scale: Any = attrs.field(default="dynamic", validator=_loss_scale, metadata={
        "help": "fp16 loss scale: 'dynamic' (start at 2**16, halve on overflow, double after 2000 clean steps) "
                "or a fixed number (steps whose gradients overflow are skipped; the scale never changes)."})


def cpu_flags() -> frozenset[str]:
    """The processor's feature flags from /proc/cpuinfo (empty where that file does not exist)."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as fh:
            for line in fh:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def grad_scaler(device: str, options: AmpOptions | None = None) -> Any:
    """fp16's loss scaler as ``gradient_scaling`` and ``loss_scale`` ask: dynamic, fixed, or none."""
    import torch

    options = options or AmpOptions()
    if not options.gradient_scaling:
        return None
    if options.loss_scale == "dynamic":
        return torch.amp.GradScaler(device)
    # a fixed scale: overflowing steps are still skipped; each step's update resets the scale to it
    return torch.amp.GradScaler(device, init_scale=float(options.loss_scale))


def choose(device: str, forced: str = "auto", options: AmpOptions | None = None) -> Precision:
    """The precision for a model on ``device`` (see the module docstring for the rules)."""
    import torch

    if device.startswith("cuda"):
        bf16 = torch.cuda.is_bf16_supported()
        if forced == "fp32":
            return Precision(device, None, None, "fp32 forced by amp_dtype")
        if forced == "bf16" or (forced == "auto" and bf16):
            return Precision(device, torch.bfloat16, None, "CUDA bf16 autocast (no loss scaling needed)")
        scaler = grad_scaler("cuda", options)
        return Precision(device, torch.float16, scaler, f"CUDA fp16 autocast with {_scaling(options)}")
    if forced == "fp16":  # never chosen by 'auto': most CPUs emulate fp16; forced, it tests the scaled path
        return Precision(device, torch.float16, grad_scaler("cpu", options),
                         f"CPU fp16 autocast with {_scaling(options)}, forced by amp_dtype")
    if forced == "fp32":
        return Precision(device, None, None, "fp32 forced by amp_dtype")
    if forced == "bf16":
        return Precision(device, torch.bfloat16, None, "CPU bf16 autocast forced by amp_dtype")
    if not set(_CPU_NATIVE_BF16) & cpu_flags():
        return Precision(device, None, None, "fp32: this CPU has no native bf16 (AVX512-BF16/AMX); "
                                             "emulated bf16 would be slower")
    return Precision(device, None, None, MEASURE_ON_FIRST_STEPS)


def _scaling(options: AmpOptions | None) -> str:
    options = options or AmpOptions()
    if not options.gradient_scaling:
        return "no loss scaling (gradient_scaling=false)"
    if options.loss_scale == "dynamic":
        return "dynamic loss scaling"
    return f"a fixed loss scale of {options.loss_scale:g}"


#: The reason of a CPU choice not made yet: `Amp.modalbag_fit_ready` times the learner's step.
MEASURE_ON_FIRST_STEPS = "fp32 until the learner's own step is timed both ways"
#: Timed steps each way (after one untimed warm-up step each), in two alternating rounds.
TRIAL_STEPS = 4
#: bf16 is kept only when its step is at least this much faster than fp32's.
BF16_MIN_SPEEDUP = 1.05


def step_signature(run: Run, fit: FitState) -> dict[str, Any]:
    """What a learner's step time depends on, besides the machine: its parameters, batch, plugins."""
    shapes = sorted((name, list(t.shape)) for name, t in fit.model.state_dict().items())
    return {"parameters": shapes, "batch_size": run.config.batch_size, "plugins": sorted(run.active.names())}


def machine_signature(device: str) -> dict[str, Any]:
    import torch

    from modalbag.io.machine import describe_machine

    machine = describe_machine()
    return {"cpu": machine.get("cpu"), "flags": sorted(set(_CPU_NATIVE_BF16 + ("amx_tile",)) & cpu_flags()),
            "torch": torch.__version__, "threads": torch.get_num_threads(), "device": device}


def decide_cpu(run: Run, fit: FitState, device: str) -> tuple[Precision, str]:
    """bf16 or fp32 for this learner on this CPU: the kept decision, else measured on its own step
    and kept. Returns the precision and the note that says how it was decided."""
    import torch

    key = decision_key(machine_signature(device), step_signature(run, fit))
    kept = read_decision(key)
    if kept is not None:
        dtype = torch.bfloat16 if kept["dtype"] == "bf16" else None
        return (Precision(device, dtype, None, f"CPU {kept['dtype']}, decided on {kept['date']}: {kept['timing']}"),
                f"reused the decision kept for this step on this machine ({cache_path()})")
    trial = fit.trial_steps
    assert trial is not None
    bf16 = Precision(device, torch.bfloat16, None, "trial")
    fp32 = Precision(device, None, None, "trial")
    times: dict[str, list[float]] = {"fp32": [], "bf16": []}
    for _ in range(2):  # alternate, so a change of load affects both sides alike
        for name, candidate in (("fp32", fp32), ("bf16", bf16)):
            fit.stash[_CHOICE] = candidate
            times[name].append(trial(TRIAL_STEPS))
    t32, t16 = min(times["fp32"]), min(times["bf16"])
    speedup = t32 / t16 if t16 > 0 else 0.0
    chosen = "bf16" if speedup >= BF16_MIN_SPEEDUP else "fp32"
    timing = (f"the learner's step took {t32 * 1e3:.2f} ms in fp32 and {t16 * 1e3:.2f} ms in bf16 autocast "
              f"(best of 2 x {TRIAL_STEPS} steps each way): bf16 {speedup:.2f}x, "
              f"{'kept' if chosen == 'bf16' else f'below {BF16_MIN_SPEEDUP}x, so fp32'}")
    decision = {"dtype": chosen, "timing": timing, "date": time.strftime("%Y-%m-%d"),
                "fp32_ms": t32 * 1e3, "bf16_ms": t16 * 1e3}
    problem = keep_decision(key, decision)
    how = (f"measured now and kept for later runs on this machine ({cache_path()})" if problem is None
           else f"measured now; not kept ({problem}), so a later run measures again")
    return Precision(device, torch.bfloat16 if chosen == "bf16" else None, None, f"CPU {chosen}: {timing}"), how


class Amp:
    """Per-step precision hooks: autocast, scaled backward, unscaled clipping and scaled step."""

    def __init__(self, config: Any, options: AmpOptions | None):
        self.options = options or AmpOptions()

    @hookimpl
    def modalbag_fit_setup(self, run: Run, fit: FitState) -> None:
        device = str(next(fit.model.parameters()).device)
        choice = choose(device, self.options.amp_dtype, self.options)
        fit.stash[_CHOICE] = choice
        if choice.reason != MEASURE_ON_FIRST_STEPS:
            self._announce(fit, choice)

    @hookimpl
    def modalbag_fit_ready(self, run: Run, fit: FitState) -> None:
        choice = fit.stash.get(_CHOICE)
        if choice is None or choice.reason != MEASURE_ON_FIRST_STEPS:
            return
        if fit.trial_steps is None:  # a trainer that cannot time its step: stay in fp32
            choice = attrs.evolve(choice, reason="fp32: the trainer cannot time its own step")
            how = None
        else:
            choice, how = decide_cpu(run, fit, choice.device)
        fit.stash[_CHOICE] = choice
        self._announce(fit, choice, how)

    @staticmethod
    def _announce(fit: FitState, choice: Precision, how: str | None = None) -> None:
        fit.notes.append(f"precision: {choice.reason}" + (f" ({how})" if how else ""))
        log.info("precision.chosen", learner=fit.spec.learner_id, device=choice.device,
                 dtype=None if choice.dtype is None else str(choice.dtype).removeprefix("torch."),
                 loss_scaling=choice.scaler is not None, decided=how)

    @hookimpl
    def modalbag_autocast(self, run: Run, fit: FitState) -> AbstractContextManager[Any] | None:
        choice = fit.stash.get(_CHOICE)
        if choice is None or choice.dtype is None:
            return None
        import torch

        return torch.autocast(choice.device.split(":")[0], dtype=choice.dtype)

    @hookimpl
    def modalbag_backward(self, run: Run, fit: FitState, loss: Any) -> bool | None:
        choice = fit.stash.get(_CHOICE)
        if choice is None or choice.scaler is None:
            return None
        choice.scaler.scale(loss).backward()
        return True

    @hookimpl
    def modalbag_optimizer_step(self, run: Run, fit: FitState) -> bool | None:
        choice = fit.stash.get(_CHOICE)
        if choice is None or choice.scaler is None:
            return None
        scaler = choice.scaler
        scaler.unscale_(fit.optimizer)  # clip the true gradients, not the scaled ones
        fit.clip_gradients()
        scaler.step(fit.optimizer)  # skipped when the unscaled gradients hold inf/NaN
        fixed = self.options.loss_scale
        scaler.update(None if fixed == "dynamic" else float(fixed))  # a fixed scale stays put
        fit.optimizer.zero_grad(set_to_none=True)
        return True

    @hookimpl
    def modalbag_checkpoint_state(self, run: Run, fit: FitState) -> dict[str, Any] | None:
        scaler = scaler_of(fit)  # the loss scale must survive a resume, or early steps are skipped again
        return None if scaler is None else {"precision.amp": {"scaler": scaler.state_dict()}}

    @hookimpl
    def modalbag_restore_state(self, run: Run, fit: FitState, state: Any) -> None:
        scaler, saved = scaler_of(fit), state.get("precision.amp")
        if scaler is not None and saved is not None:
            scaler.load_state_dict(saved["scaler"])


def scaler_of(fit: FitState) -> Any:
    """The learner's GradScaler, or None (for checkpointing its state)."""
    choice = fit.stash.get(_CHOICE)
    return None if choice is None else choice.scaler


@hookimpl
def modalbag_register_precisions(register: Register) -> None:
    register("amp", Amp, options=AmpOptions,
             summary="Mixed precision where it pays: bf16/fp16 autocast (+ GradScaler) on CUDA, native bf16 on CPU")
