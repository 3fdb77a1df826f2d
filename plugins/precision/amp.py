"""``amp``: automatic mixed precision where the hardware gains from it (``mixed_precision=True``).

The choice, made once per learner from the device the model lives on:

- CUDA with bf16 support: ``torch.autocast("cuda", dtype=torch.bfloat16)``; bf16 has fp32's
  exponent range, so no loss scaling is needed.
- CUDA without bf16: fp16 autocast plus a ``torch.amp.GradScaler`` (dynamic loss scaling: the loss
  is multiplied before backward, gradients are unscaled before clipping, and a step whose
  gradients overflow is skipped while the scale shrinks).
- CPU: bf16 autocast only when the processor computes bf16 natively (AVX512-BF16 or AMX) *and* a
  probe measures bf16 matmuls faster than fp32 ones; otherwise full fp32. Emulated bf16 is slower
  and less accurate, and the spec's default is ``mixed_precision=True``: it must never make a
  default run slower or worse.

The choice is logged and written to the learner's notes. Gradient clipping, when configured, is
applied to *unscaled* gradients at the real optimizer step, so it composes with ``accumulation``
(which defers steps and runs before this plugin at each step).
"""

from __future__ import annotations

import functools
import time
from contextlib import AbstractContextManager
from typing import Any

import attrs

from modalbag import hookimpl
from modalbag.kernel import Register, Run
from modalbag.kernel.fit import FitState, StashKey
from modalbag.logs import get_logger

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


@attrs.frozen(kw_only=True)
class AmpOptions:
    """``amp_dtype``: 'auto' (the rules above), or 'bf16', 'fp16' (with loss scaling) or 'fp32' to force one.

    Forcing is what tests and cross-device checks need: 'auto' follows the hardware, so a suite run
    on one machine would otherwise meet only the path that machine picks. fp16 on a CPU is emulated
    on most processors (slow); it exists to exercise the loss-scaled path anywhere."""

    amp_dtype: str = attrs.field(default="auto", validator=attrs.validators.in_(("auto", "bf16", "fp16", "fp32")),
                                 metadata={"help": "'auto' follows the hardware (CUDA: bf16 where supported, else "
                                                   "fp16 with loss scaling; CPU: bf16 only where native and "
                                                   "measured faster, else fp32); 'bf16', 'fp16' (with loss "
                                                   "scaling) or 'fp32' force one."})


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


@functools.lru_cache(maxsize=1)
def cpu_bf16_speedup() -> float | None:
    """fp32 time / bf16-autocast time for a 512x512 matmul chain on this CPU; None without native bf16."""
    if not set(_CPU_NATIVE_BF16) & cpu_flags():
        return None
    import torch

    a, b = torch.randn(512, 512), torch.randn(512, 512)

    def timed(dtype: Any) -> float:
        best = float("inf")
        for _ in range(5):
            started = time.perf_counter()
            with torch.autocast("cpu", dtype=dtype, enabled=dtype is not None):
                for _ in range(8):
                    (a @ b).sum()
            best = min(best, time.perf_counter() - started)
        return best

    timed(torch.bfloat16)  # warm up kernels
    return timed(None) / timed(torch.bfloat16)


def choose(device: str, forced: str = "auto") -> Precision:
    """The precision for a model on ``device`` (see the module docstring for the rules)."""
    import torch

    if device.startswith("cuda"):
        bf16 = torch.cuda.is_bf16_supported()
        if forced == "fp32":
            return Precision(device, None, None, "fp32 forced by amp_dtype")
        if forced == "bf16" or (forced == "auto" and bf16):
            return Precision(device, torch.bfloat16, None, "CUDA bf16 autocast (no loss scaling needed)")
        return Precision(device, torch.float16, torch.amp.GradScaler("cuda"),
                         "CUDA fp16 autocast with dynamic loss scaling")
    if forced == "fp16":  # never chosen by 'auto': most CPUs emulate fp16; forced, it tests the scaled path
        return Precision(device, torch.float16, torch.amp.GradScaler("cpu"),
                         "CPU fp16 autocast with dynamic loss scaling, forced by amp_dtype")
    if forced == "fp32":
        return Precision(device, None, None, "fp32 forced by amp_dtype")
    if forced == "bf16":
        return Precision(device, torch.bfloat16, None, "CPU bf16 autocast forced by amp_dtype")
    speedup = cpu_bf16_speedup()
    if speedup is None:
        return Precision(device, None, None, "fp32: this CPU has no native bf16 (AVX512-BF16/AMX); "
                                             "emulated bf16 would be slower")
    if speedup <= 1.05:
        return Precision(device, None, None, f"fp32: bf16 measured {speedup:.2f}x fp32 speed on this CPU")
    return Precision(device, torch.bfloat16, None, f"CPU bf16 autocast, measured {speedup:.2f}x faster than fp32")


class Amp:
    """Per-step precision hooks: autocast, scaled backward, unscaled clipping and scaled step."""

    def __init__(self, config: Any, options: AmpOptions | None):
        self.options = options or AmpOptions()

    @hookimpl
    def modalbag_fit_setup(self, run: Run, fit: FitState) -> None:
        device = str(next(fit.model.parameters()).device)
        choice = choose(device, self.options.amp_dtype)
        fit.stash[_CHOICE] = choice
        fit.notes.append(f"precision: {choice.reason}")
        log.info("precision.chosen", learner=fit.spec.learner_id, device=device,
                 dtype=None if choice.dtype is None else str(choice.dtype).removeprefix("torch."),
                 loss_scaling=choice.scaler is not None)

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
        scaler.update()
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
