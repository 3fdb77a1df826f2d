"""What a neural trainer measures besides losses: memory, step logs and ``profile_training`` traces.

`StepMonitor` is the one object a training loop calls per step, and only when it exists: it exists
when ``log_interval > 0`` and a run hook listens to `modalbag_log_step`, or when
``profile_training`` is on. Nothing is synchronised with the device except on the steps it logs.

``profile_training`` runs ``torch.profiler`` over the first steps of each learner (one step to
settle, one of warm-up, `PROFILED_STEPS` recorded) and writes a Chrome trace
``<run_dir>/profiler/<learner_id>.trace.json`` (open it in chrome://tracing or Perfetto) plus the
operator summary ``<learner_id>.ops.txt``.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from modalbag.io.artifacts import atomic_write_bytes, publish_file
from modalbag.logs import get_logger

log = get_logger("modalbag.profiling")

MIB = 1 << 20
PROFILED_STEPS = 3
_WAIT, _WARMUP = 1, 1


def current_rss() -> int | None:
    """This process's resident memory now, in bytes."""
    try:
        with open("/proc/self/statm", encoding="ascii") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


def peak_rss() -> int | None:
    """This process's peak resident memory so far, in bytes (None where the platform cannot say)."""
    try:
        import resource
    except ImportError:  # Windows
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def peak_memory_mb(device: Any = None) -> float | None:
    """Peak memory so far, in MiB: CUDA memory allocated on a CUDA ``device``, else this process's
    peak resident set size (what the operating system counts against it). None where unknown."""
    import torch

    if device is not None and getattr(device, "type", str(device)) == "cuda" and torch.cuda.is_available():
        return torch.cuda.max_memory_allocated(device) / MIB
    peak = peak_rss()
    return None if peak is None else peak / MIB


class StepMonitor:
    """Per-step logging (`modalbag_log_step` every ``log_interval`` steps) and profiling of one fit."""

    def __init__(self, run: Any, fit: Any, every: int, log_step: Any, profile_dir: Path | None):
        self.run, self.fit, self.every, self.log_step = run, fit, every, log_step
        self.profiler: Any = None
        self.profile_dir = profile_dir
        self._last_time = time.perf_counter()
        self._last_seen = 0
        self._last_epoch = fit.epoch
        if profile_dir is not None:
            self._start_profiler()

    @classmethod
    def for_fit(cls, run: Any, fit: Any) -> StepMonitor | None:
        """A monitor when this fit logs steps or is profiled; None (no per-step cost) otherwise."""
        config = run.config
        every = int(getattr(config, "log_interval", 0) or 0)
        hook = run.hook.modalbag_log_step
        listening = every > 0 and bool(hook.get_hookimpls())
        profile_dir = None
        if getattr(config, "profile_training", False) and config.run_dir is not None:
            rank = getattr(getattr(run, "distributed", None), "rank", 0) or 0
            if rank == 0:
                profile_dir = Path(config.run_dir) / "profiler"
        if not listening and profile_dir is None:
            return None
        return cls(run, fit, every if listening else 0, hook if listening else None, profile_dir)

    # -- per step ---------------------------------------------------------------------------------

    def step(self, loss: Any, loss_sum: Any, term_sums: Mapping[str, Any], seen: int) -> None:
        """Called after each optimizer step, with this batch's loss and the epoch's running sums."""
        if self.profiler is not None:
            self.profiler.step()
            if self.fit.step >= _WAIT + _WARMUP + PROFILED_STEPS:
                self.close()
        if self.every and self.fit.step % self.every == 0:
            self.log_step(run=self.run, fit=self.fit, step=self.fit.step,
                          values=self._values(loss, loss_sum, term_sums, seen))

    def _values(self, loss: Any, loss_sum: Any, term_sums: Mapping[str, Any], seen: int) -> dict[str, float]:
        now = time.perf_counter()
        if self.fit.epoch != self._last_epoch:  # ``seen`` restarted with the epoch
            self._last_seen, self._last_epoch = 0, self.fit.epoch
        rate = (seen - self._last_seen) / (now - self._last_time) if now > self._last_time else None
        self._last_time, self._last_seen = now, seen
        values = {"loss": float(loss), "epoch_loss": float(loss_sum) / max(seen, 1)}
        optimizer = self.fit.optimizer
        if optimizer is not None:
            values["learning_rate"] = float(optimizer.param_groups[0]["lr"])
        if rate is not None and rate > 0:
            values["samples_per_second"] = rate
        if self.fit.grad_norms:
            values["grad_norm"] = float(self.fit.grad_norms[-1])
        values.update({f"loss_terms/{k}": float(v) / max(seen, 1) for k, v in term_sums.items()})
        return values

    # -- profiling --------------------------------------------------------------------------------

    def _start_profiler(self) -> None:
        import torch
        from torch.profiler import ProfilerActivity, profile, schedule

        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if torch.cuda.is_available() else [])
        assert self.profile_dir is not None
        self.profile_dir.mkdir(parents=True, exist_ok=True)
        self.profiler = profile(activities=activities, record_shapes=True, profile_memory=True,
                                schedule=schedule(wait=_WAIT, warmup=_WARMUP, active=PROFILED_STEPS, repeat=1),
                                on_trace_ready=self._write_trace)
        self.profiler.start()

    def _write_trace(self, profiler: Any) -> None:
        assert self.profile_dir is not None
        name = self.fit.spec.learner_id
        trace = self.profile_dir / f"{name}.trace.json"
        tmp = trace.with_name(f".{trace.name}.{os.getpid()}.tmp")
        profiler.export_chrome_trace(str(tmp))
        publish_file(tmp, trace)
        table = profiler.key_averages().table(sort_by="self_cpu_time_total", row_limit=30)
        atomic_write_bytes(self.profile_dir / f"{name}.ops.txt", table.encode("utf-8"))
        self.fit.notes.append(f"profiled {PROFILED_STEPS} training steps: {trace}")
        log.info("profile.written", learner=name, trace=str(trace))

    def close(self) -> None:
        """Stop profiling (writing what was recorded); called when the window ends and after the fit."""
        profiler, self.profiler = self.profiler, None
        if profiler is not None:
            profiler.stop()


__all__ = ["PROFILED_STEPS", "StepMonitor", "current_rss", "peak_memory_mb", "peak_rss"]
