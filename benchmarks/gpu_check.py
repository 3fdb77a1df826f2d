"""One prepared check of modalbag's CUDA paths, in under five minutes on one GPU.

The sections, each in its own process with its own timeout, so a hang or a crash costs that section
only (its error is recorded and the next one runs):

- ``pytest_cuda``: the tests marked ``cuda`` (the precision matrix on CUDA, fp16 loss scaling, bf16),
  with their passed / failed / skipped counts.
- ``quickstart_bf16`` / ``quickstart_fp16``: the Quick Start's task and adaptive bags, shrunk to fit,
  every bag a neural learner, with the five denoising objectives on ``device="cuda"`` in forced bf16
  autocast / fp16 autocast with loss scaling: held-out accuracy, seconds, and whether every learner
  trained, in that precision on the GPU (as the notes ``amp`` writes from the model's device say).
- ``loop_overhead_cuda``: `benchmarks/loop_overhead.py`'s measurement on the GPU, in the precision
  ``amp`` picks there: modalbag's epoch time over a hand-written loop's (goal <= 1.05x), samples/s
  and peak allocated GPU memory of each.
- ``ddp_nccl_resume``: one learner through the ``torchrun`` executor over every GPU (NCCL; a world of
  one is still a real process group). Rank 0 dies right after epoch 2's checkpoint on the first
  launch; the executor relaunches from that checkpoint, and the resumed fit must finish every epoch.

Without a GPU those sections are null with the reason, and a CPU part runs instead: the precision
matrix's CPU tests and the loop overhead on the CPU in forced fp32 and bf16. Everything goes to
``gpu_check.json`` with the machine's description; a figure that could not be measured is null with
``<key>_reason`` next to it. Exit code 1 when a GPU section failed (an error, a timeout, a failed test
or check), else 0: a failure of the CPU part is recorded and printed, but a machine without a GPU
always exits 0. ``--quick`` skips the pytest runs and shrinks every measurement.

    python benchmarks/gpu_check.py [--out DIR] [--quick]
"""

from __future__ import annotations

import argparse
import datetime
import functools
import json
import os
import platform
import re
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modalbag import hookimpl

ROOT = Path(__file__).resolve().parents[1]
NO_GPU = "no CUDA GPU on this machine"
#: Wall-clock budget of all sections together; each runs for at most min(its timeout, what is left).
BUDGET_S = 285.0
OBJECTIVES = ["reconstruction", "alignment", "consistency", "information", "prediction"]
OVERHEAD_GOAL = 1.05
N_CLASSES = 5


@dataclass(frozen=True)
class Sizes:
    """How much each measurement trains. FULL is sized by estimate to fit the five-minute budget on
    one GPU: retune it (and the timeouts) from the seconds the first GPU run records."""

    qs_samples: int
    qs_bags: int
    qs_epochs: int
    held_out: int
    gpu_overhead: tuple[int, int, int]  # samples, epochs, repeats
    cpu_overhead: tuple[int, int, int]
    ddp_samples: int
    ddp_epochs: int


FULL = Sizes(qs_samples=800, qs_bags=6, qs_epochs=8, held_out=2000, gpu_overhead=(4096, 3, 5),
             cpu_overhead=(1024, 3, 3), ddp_samples=512, ddp_epochs=4)
QUICK = Sizes(qs_samples=200, qs_bags=2, qs_epochs=2, held_out=200, gpu_overhead=(512, 2, 1),
              cpu_overhead=(128, 2, 1), ddp_samples=128, ddp_epochs=3)
CRASH_AFTER_EPOCH = 2


@dataclass(frozen=True)
class Section:
    """A check: a pytest run (``pytest_args``), else the work function of that name in a child process."""

    name: str
    gpu: bool
    timeout_s: float
    pytest_args: tuple[str, ...] = ()


SECTIONS = (
    Section("pytest_cuda", True, 110, ("-m", "cuda")),
    Section("quickstart_bf16", True, 35),
    Section("quickstart_fp16", True, 35),
    Section("loop_overhead_cuda", True, 30),
    Section("ddp_nccl_resume", True, 65),
    Section("cpu_precision_matrix", False, 240, ("tests/plugins/test_precision_matrix.py", "-k", "cpu")),
    Section("cpu_loop_overhead", False, 90),
)


# -- the machine --------------------------------------------------------------------------------


def _proc_field(path: str, key: str) -> str | None:
    """The first ``key: value`` of a /proc file, or None where there is no such file or key."""
    try:
        with open(path, encoding="ascii", errors="replace") as fh:
            for line in fh:
                name, _, value = line.partition(":")
                if name.strip() == key:
                    return value.strip()
    except OSError:
        pass
    return None


def with_reasons(values: dict[str, Any], reasons: dict[str, str]) -> dict[str, Any]:
    """``values`` with ``<key>_reason`` next to each None value that ``reasons`` explains."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        out[key] = value
        if value is None and key in reasons:
            out[f"{key}_reason"] = reasons[key]
    return out


def describe_machine() -> dict[str, Any]:
    """What the figures were measured on: CPU and its bf16 features, memory, torch, CUDA and each GPU."""
    import torch

    from modalbag.execution import available_cores
    from modalbag.plugins.precision.amp import cpu_flags

    flags = cpu_flags()
    memory = _proc_field("/proc/meminfo", "MemTotal")
    cuda = torch.cuda.is_available()
    gpus = [_describe_gpu(i) for i in range(torch.cuda.device_count())] if cuda else []
    values = {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "platform": platform.platform(), "python": platform.python_version(),
        "cpu_model": _proc_field("/proc/cpuinfo", "model name") or platform.processor() or None,
        **{flag: (flag in flags) if flags else None for flag in ("avx512_bf16", "amx_bf16", "amx_tile")},
        "cpu_cores": os.cpu_count(), "cpu_cores_usable": available_cores(),
        "memory_gib": int(memory.split()[0]) / 2**20 if memory else None,
        "load_average_1min": os.getloadavg()[0],  # other work on the machine skews every timing
        "torch": torch.__version__, "cuda_available": cuda, "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if cuda else None,
        "nccl": _nccl_version() if cuda else None,
        "gpus": gpus,
        "gpu_bf16": torch.cuda.is_bf16_supported() if cuda else None,
    }
    no_flags = "no /proc/cpuinfo flags on this system"
    return with_reasons(values, {
        "cpu_model": "neither /proc/cpuinfo nor platform.processor() names the CPU",
        "avx512_bf16": no_flags, "amx_bf16": no_flags, "amx_tile": no_flags,
        "cpu_cores": "os.cpu_count() is unknown here", "memory_gib": "no /proc/meminfo on this system",
        "cuda": "this torch build has no CUDA (torch.version.cuda is None)",
        "cudnn": "torch reports no cuDNN" if cuda else NO_GPU,
        "nccl": "this torch build has no NCCL" if cuda else NO_GPU, "gpu_bf16": NO_GPU})


def _nccl_version() -> str | None:
    """NCCL's version as torch reports it (a tuple in recent releases, an int in older ones)."""
    import torch

    try:
        version = torch.cuda.nccl.version()
    except (AttributeError, RuntimeError):
        return None
    return ".".join(map(str, version)) if isinstance(version, tuple) else str(version)


def _describe_gpu(index: int) -> dict[str, Any]:
    import torch

    props = torch.cuda.get_device_properties(index)
    return {"index": index, "name": props.name, "memory_gib": props.total_memory / 2**30,
            "compute_capability": f"{props.major}.{props.minor}", "multiprocessors": props.multi_processor_count}


def machine_lines(machine: dict[str, Any]) -> list[str]:
    flags = ", ".join(f"{flag} {'yes' if machine[flag] else 'no'}" if machine[flag] is not None else f"{flag} ?"
                      for flag in ("avx512_bf16", "amx_bf16", "amx_tile"))
    memory = f"{machine['memory_gib']:.0f} GiB" if machine["memory_gib"] is not None else "memory ?"
    cpu = (f"machine: {machine['cpu_model'] or 'unknown CPU'} ({flags}); {machine['cpu_cores']} cores "
           f"({machine['cpu_cores_usable']} usable), {memory}, load {machine['load_average_1min']:.2f}")
    software = f"         Python {machine['python']}, torch {machine['torch']}, CUDA {machine['cuda'] or 'none'}"
    if machine["cuda_available"]:
        software += f", cuDNN {machine['cudnn']}, NCCL {machine['nccl']}"
    lines = [cpu, software]
    for gpu in machine["gpus"]:
        lines.append(f"         GPU {gpu['index']}: {gpu['name']}, {gpu['memory_gib']:.1f} GiB, "
                     f"compute {gpu['compute_capability']}, bf16 {'yes' if machine['gpu_bf16'] else 'no'}")
    return lines


# -- running a section with a timeout -----------------------------------------------------------


@dataclass(frozen=True)
class Bounded:
    returncode: int | None  # None when it was killed at its timeout
    output: str
    seconds: float


def run_bounded(command: list[str], timeout_s: float) -> Bounded:
    """Run ``command`` in its own process group; at the timeout kill the whole group (torchrun's ranks too)."""
    started = time.perf_counter()
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True, start_new_session=True)
    try:
        output, _ = process.communicate(timeout=timeout_s)
        return Bounded(process.returncode, output, time.perf_counter() - started)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate()
        return Bounded(None, output, time.perf_counter() - started)


def tail(text: str, lines: int = 30) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


_COUNT = re.compile(r"(\d+) (passed|failed|skipped|deselected|errors?|xfailed|xpassed)")


def pytest_counts(output: str) -> dict[str, int] | None:
    """The counts of pytest's final summary line ("3 passed, 1 skipped in 2.0s"); None without one."""
    summaries = [line for line in output.splitlines() if _COUNT.search(line) and re.search(r" in [\d.]+s", line)]
    if not summaries:
        return None
    counts = dict.fromkeys(("passed", "failed", "skipped", "errors", "deselected", "xfailed", "xpassed"), 0)
    for number, word in _COUNT.findall(summaries[-1]):
        counts["errors" if word.startswith("error") else word] += int(number)
    return counts


_PROGRESS = re.compile(r"^([.sFExX]+)\s*(\[\s*\d+%\])?$")


def progress_counts(output: str) -> dict[str, int]:
    """Counts from the progress characters of ``pytest -q`` (". s F E"): what a run killed before its
    summary line got through."""
    marks = "".join(m.group(1) for line in output.splitlines() if (m := _PROGRESS.match(line.strip())))
    return {"passed": marks.count("."), "failed": marks.count("F"), "skipped": marks.count("s"),
            "errors": marks.count("E"), "xfailed": marks.count("x"), "xpassed": marks.count("X")}


def run_pytest(args: tuple[str, ...], timeout_s: float) -> dict[str, Any]:
    """``python -m pytest ARGS -q -p no:cacheprovider``: counts, exit code, and the tail when it failed."""
    command = [sys.executable, "-m", "pytest", *args, "-q", "-p", "no:cacheprovider"]
    done = run_bounded(command, timeout_s)
    counts = pytest_counts(done.output)
    result: dict[str, Any] = {"command": " ".join(["python", *command[1:]]), "returncode": done.returncode,
                              "counts": counts, "seconds": done.seconds}
    if done.returncode is None:
        result.update(status="failed", error=f"timed out after {timeout_s:.0f} s", output_tail=tail(done.output),
                      returncode_reason="killed at the timeout", counts_before_timeout=progress_counts(done.output))
    elif done.returncode != 0 or counts is None or counts["passed"] == 0:
        why = f"exit code {done.returncode}" if done.returncode else "no test passed"
        result.update(status="failed", error=f"pytest: {why}", output_tail=tail(done.output))
    else:
        result["status"] = "ok"
    if counts is None:
        result["counts_reason"] = ("killed at the timeout before its summary line (counts_before_timeout has what "
                                   "it got through)" if done.returncode is None else
                                   "pytest printed no summary line (see output_tail)")
        result.setdefault("output_tail", tail(done.output))
    return result


def run_child(name: str, quick: bool, timeout_s: float) -> dict[str, Any]:
    """Run the work function ``name`` in a fresh Python (this script with ``--section``)."""
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp:
        result_path = Path(tmp) / "result.json"
        command = [sys.executable, str(Path(__file__).resolve()), "--section", name, "--result", str(result_path)]
        done = run_bounded(command + (["--quick"] if quick else []), timeout_s)
        result = json.loads(result_path.read_text()) if result_path.exists() else None
    if done.returncode is None:
        return {"status": "failed", "error": f"timed out after {timeout_s:.0f} s", "seconds": done.seconds,
                "output_tail": tail(done.output)}
    if result is None:
        return {"status": "failed", "seconds": done.seconds, "output_tail": tail(done.output),
                "error": f"the section's process ended with exit code {done.returncode} and wrote no result"}
    return {**result, "seconds": done.seconds}


def run_section_here(name: str, quick: bool, result_path: str) -> None:
    """In the child: run one work function; record its figures, its failed checks, or its error."""
    started = time.perf_counter()
    try:
        result = WORK[name](QUICK if quick else FULL)
        failed = [check for check, ok in result.get("checks", {}).items() if not ok]
        status = {"status": "failed", "error": "failed checks: " + ", ".join(failed)} if failed else {"status": "ok"}
        result = {**status, **result}
    except Exception:  # noqa: BLE001 - the section records any error; the next one still runs
        result = {"status": "failed", "error": traceback.format_exc(limit=8)}
    result["work_seconds"] = time.perf_counter() - started
    write_json(Path(result_path), result)


# -- the work functions (each runs in its own process) ------------------------------------------


def _device() -> str:
    """'cuda' where there is a GPU; 'cpu' only when a section is run by hand without one (to try it)."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _peak_cuda(device: str) -> dict[str, Any]:
    import torch

    if device.startswith("cuda"):
        return {"peak_cuda_mb": torch.cuda.max_memory_allocated() / 2**20}
    return {"peak_cuda_mb": None, "peak_cuda_mb_reason": "ran on the CPU: no GPU memory to measure"}


def quickstart(precision: str, sizes: Sizes) -> dict[str, Any]:
    """The Quick Start (`modalbag demo`'s task and adaptive bags), denoised, in forced ``precision`` on the GPU.

    Every bag trains the neural trainer: this checks the CUDA training path, and the portfolio
    measurement behind ``optimization_strategy`` would spend the budget on CPU library fits and may
    pick trainers that never touch the GPU."""
    from modalbag import create_synthetic_model
    from modalbag.cli.demo import QUICKSTART_MODALITIES

    device = _device()
    model = create_synthetic_model(QUICKSTART_MODALITIES, n_samples=sizes.qs_samples, n_classes=N_CLASSES,
                                   random_state=0)
    model.create_ensemble(n_bags=sizes.qs_bags, dropout_strategy="adaptive", random_state=0)
    model.generate_bags()
    model.select_base_learners(task_type="classification", num_classes=N_CLASSES, trainers=["neural"],
                               instantiate=False)
    started = time.perf_counter()
    model.train_ensemble(task_type="classification", num_classes=N_CLASSES, epochs=sizes.qs_epochs,
                         enable_denoising=True, denoising_objectives=OBJECTIVES, mixed_precision=True,
                         amp_dtype=precision, device=device, save_checkpoints=False, random_state=0)
    train_s = time.perf_counter() - started
    data, labels = model.synthetic_task.sample(sizes.held_out, random_state=1)
    scores = model.evaluate(data, labels)
    learners = list(model.learners.values())
    # what each learner trained in, from the note amp writes from its model's real device
    wanted = f"{'CUDA' if device == 'cuda' else 'CPU'} {precision} autocast"
    notes = sorted({n for r in learners for n in r.notes if n.startswith("precision:")})
    ran = sorted({key.split(".")[1] for r in learners for e in r.records for key in e.loss_terms
                  if key.startswith("denoising.")})
    return {
        "device": device, "precision": precision, "samples": sizes.qs_samples, "bags": sizes.qs_bags,
        "epochs": sizes.qs_epochs, "held_out_samples": sizes.held_out, "train_s": train_s,
        "held_out_accuracy": scores["accuracy"], "held_out_f1": scores["f1"], "chance": 1 / N_CLASSES,
        "learners": len(learners), "trained": sum(r.ok for r in learners), "precision_notes": notes,
        "objectives_ran": ran, "failed_learners": {r.learner_id: r.error for r in learners if not r.ok},
        **_peak_cuda(device),
        "checks": {"every_learner_trained": all(r.ok for r in learners),
                   f"every_learner_in_{device}_{precision}":
                       all(any(n.startswith("precision:") and wanted in n for n in r.notes) for r in learners),
                   "the_five_objectives_ran": ran == sorted(OBJECTIVES),
                   "beats_chance": scores["accuracy"] > 1 / N_CLASSES},
    }


def loop_overhead_on(device: str, precision: str, size: tuple[int, int, int]) -> dict[str, Any]:
    """benchmarks/loop_overhead.py's measurement (one thread, as it defaults to) on ``device``."""
    import torch
    from loop_overhead import overhead

    torch.set_num_threads(1)
    result = overhead(*size, device=device, precision=precision)
    result["goal"] = OVERHEAD_GOAL
    result["meets_goal"] = result["epoch_ratio"] <= OVERHEAD_GOAL
    no_cuda = "ran on the CPU: torch.cuda.max_memory_allocated measures GPU memory only"
    return with_reasons(result, {"raw_peak_cuda_mb": no_cuda, "modalbag_peak_cuda_mb": no_cuda})


def loop_overhead_cuda(sizes: Sizes) -> dict[str, Any]:
    return loop_overhead_on(_device(), "auto", sizes.gpu_overhead)


def cpu_loop_overhead(sizes: Sizes) -> dict[str, Any]:
    """The CPU's loop overhead in forced fp32 and bf16; a precision that fails records its error."""
    result: dict[str, Any] = {}
    for precision in ("fp32", "bf16"):
        try:
            result[precision] = loop_overhead_on("cpu", precision, sizes.cpu_overhead)
        except Exception:  # noqa: BLE001 - recorded; the other precision is still measured
            result[precision] = None
            result[f"{precision}_reason"] = traceback.format_exc(limit=8)
    result["checks"] = {f"{p}_measured": result[p] is not None for p in ("fp32", "bf16")}
    return result


class DieAfterEpoch:
    """Kills rank 0 right after ``epoch``'s resume checkpoint is written, on the first launch only.

    ``trylast``: the rank's checkpoint hook has saved that epoch by then; the marker file, which
    outlives the process, keeps the relaunch from dying again."""

    def __init__(self, marker: str, epoch: int):
        self.marker, self.epoch = marker, epoch

    @hookimpl(trylast=True)
    def modalbag_epoch_end(self, run: Any, fit: Any, record: Any) -> None:
        distributed = run.distributed
        if distributed is not None and distributed.is_main and record.epoch == self.epoch \
                and not os.path.exists(self.marker):
            Path(self.marker).touch()
            os._exit(7)


class RankProbe:
    """Notes, on each rank, the process group's backend and the model's device: measured, not assumed."""

    @hookimpl
    def modalbag_fit_setup(self, run: Any, fit: Any) -> None:
        import torch.distributed as dist

        backend = dist.get_backend() if dist.is_initialized() else "none"
        device = next(fit.model.parameters()).device
        fit.notes.append(f"rank probe: backend {backend}, device {device}, world {dist.get_world_size()}")


def ddp_nccl_resume(sizes: Sizes) -> dict[str, Any]:
    """One denoised learner over torchrun ranks on every GPU; a rank dies after epoch 2; the run resumes."""
    import torch

    from modalbag import create_synthetic_model
    from modalbag.cli.demo import QUICKSTART_MODALITIES

    device = _device()
    world = torch.cuda.device_count() if device == "cuda" else 1
    with tempfile.TemporaryDirectory(prefix="gpu-check-ddp-") as tmp:
        marker = os.path.join(tmp, "rank0-died")
        model = create_synthetic_model(QUICKSTART_MODALITIES, n_samples=sizes.ddp_samples, n_classes=N_CLASSES,
                                       random_state=0, plugins=[DieAfterEpoch(marker, CRASH_AFTER_EPOCH), RankProbe()])
        model.create_ensemble(n_bags=1, random_state=0)
        model.select_base_learners(trainers=["neural"], instantiate=False)
        started = time.perf_counter()
        model.train_ensemble(epochs=sizes.ddp_epochs, distributed_training=True, num_processes=world,
                             distributed_timeout=45, enable_denoising=True,
                             denoising_objectives=OBJECTIVES, save_checkpoints=False, random_state=0)
        train_s = time.perf_counter() - started
        died = os.path.exists(marker)
    (learner,) = model.learners.values()
    probe = next((n for n in learner.notes if n.startswith("rank probe:")), None)
    backend = re.search(r"backend (\S+),", probe).group(1) if probe else None
    resumed = any(n.startswith(f"resumed from the checkpoint of epoch {CRASH_AFTER_EPOCH} after 1 failed launch")
                  for n in learner.notes)
    epochs = [r.epoch for r in learner.records]
    accuracy = None
    if learner.ok:
        data, labels = model.synthetic_task.sample(sizes.held_out, random_state=1)
        accuracy = model.evaluate(data, labels)["accuracy"]
    values = {"device": device, "world_size": world, "backend": backend, "epochs": sizes.ddp_epochs,
              "rank0_killed_after_epoch": CRASH_AFTER_EPOCH, "rank0_died": died, "resumed": resumed,
              "epochs_recorded": epochs, "train_s": train_s, "learner_status": learner.status,
              "final_val_loss": learner.records[-1].val_loss if learner.records else None,
              "held_out_accuracy": accuracy, "notes": learner.notes}
    result = with_reasons(values, {"backend": "no rank probe note: the rank never set its model up",
                                   "final_val_loss": "no epoch was recorded",
                                   "held_out_accuracy": "the learner did not train"})
    if learner.error is not None:
        result["learner_error"] = learner.error
    expected = "nccl" if device == "cuda" else "gloo"
    result["checks"] = {"learner_trained": learner.ok, "rank0_died_on_the_first_launch": died,
                        "resumed_from_its_checkpoint": resumed,
                        "every_epoch_recorded": epochs == list(range(1, sizes.ddp_epochs + 1)),
                        f"backend_{expected}": backend is not None and expected in backend,
                        f"ddp_over_{world}_ranks": f"trained with DDP over {world} ranks" in learner.notes}
    return result


WORK: dict[str, Callable[[Sizes], dict[str, Any]]] = {
    "quickstart_bf16": functools.partial(quickstart, "bf16"),
    "quickstart_fp16": functools.partial(quickstart, "fp16"),
    "loop_overhead_cuda": loop_overhead_cuda,
    "ddp_nccl_resume": ddp_nccl_resume,
    "cpu_loop_overhead": cpu_loop_overhead,
}


# -- the report ---------------------------------------------------------------------------------


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Atomically (a temporary file, fsync, rename), so a killed check never leaves half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=path.parent)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=2, default=lambda o: o.item() if hasattr(o, "item") else str(o))
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _overhead_text(o: dict[str, Any]) -> str:
    memory = (f", peak {o['raw_peak_cuda_mb']:.0f} / {o['modalbag_peak_cuda_mb']:.0f} MiB"
              if o.get("raw_peak_cuda_mb") is not None else "")
    return (f"{o['epoch_ratio']:.3f}x (goal <= {OVERHEAD_GOAL}x), raw {o['raw_samples_per_s']:.0f} / "
            f"modalbag {o['modalbag_samples_per_s']:.0f} samples/s{memory}")


def summary(name: str, result: dict[str, Any]) -> str:
    """The one line of the table for a section that ran."""
    if "counts" in result:
        counts = result["counts"] or result.get("counts_before_timeout")
        if counts is None:
            return "no summary line"
        text = f"{counts['passed']} passed, {counts['failed']} failed, {counts['skipped']} skipped"
        return text if result["counts"] is not None else f"killed at its timeout after {text}"
    if "error" in result and "checks" not in result:  # an exception or a timeout: no figures
        return result["error"].strip().splitlines()[-1][:100]
    if name.startswith("quickstart"):
        return (f"accuracy {result['held_out_accuracy']:.3f}, {result['trained']}/{result['learners']} trained, "
                f"train {result['train_s']:.1f} s")
    if name == "loop_overhead_cuda":
        return _overhead_text(result)
    if name == "cpu_loop_overhead":
        return "; ".join(f"{p} {_overhead_text(result[p])}" if result[p] else f"{p} failed" for p in ("fp32", "bf16"))
    if name == "ddp_nccl_resume":
        return (f"{result['world_size']} rank(s), {result['backend']}, died after epoch {CRASH_AFTER_EPOCH}, "
                f"resumed {'yes' if result['resumed'] else 'no'}, epochs {result['epochs_recorded']}")
    return ""


def table(sections: dict[str, Any]) -> list[str]:
    lines = [f"{'section':22} {'status':7} {'seconds':>7}  figures", "-" * 100]
    for section in SECTIONS:
        result = sections.get(section.name)
        if result is None:
            lines.append(f"{section.name:22} {'null':7} {'-':>7}  {sections.get(section.name + '_reason', '')}")
        else:
            line = f"{section.name:22} {result['status']:7} {result['seconds']:7.1f}  {summary(section.name, result)}"
            lines.append(line)
    return lines


# -- main ---------------------------------------------------------------------------------------


def not_run_reason(section: Section, cuda: bool, quick: bool) -> str | None:
    """Why a section does not run on this machine with these flags; None when it runs."""
    if section.gpu and not cuda:
        return NO_GPU
    if not section.gpu and cuda:
        return "the CPU part runs only on a machine without a GPU"
    if quick and section.pytest_args:
        return "skipped by --quick"
    return None


def run_all(out: Path, quick: bool) -> int:
    started = time.perf_counter()
    machine = describe_machine()
    cuda = machine["cuda_available"]
    print("\n".join(machine_lines(machine)), flush=True)
    if not cuda:
        print(f"\n{NO_GPU} (torch.cuda.is_available() is False): the GPU sections are null; running the CPU "
              f"part instead.", flush=True)
    report: dict[str, Any] = {"command": " ".join(["python", *sys.argv]), "quick": quick, "cuda_available": cuda,
                              "machine": machine, "sections": {}, "budget_s": BUDGET_S}
    sections: dict[str, Any] = report["sections"]
    path = out / "gpu_check.json"
    for section in SECTIONS:
        reason = not_run_reason(section, cuda, quick)
        left = BUDGET_S - (time.perf_counter() - started)
        if reason is None and left < 10:
            sections[section.name] = {"status": "failed", "seconds": 0.0,
                                      "error": f"not started: the {BUDGET_S:.0f} s budget was spent"}
        elif reason is not None:
            sections[section.name], sections[f"{section.name}_reason"] = None, reason
        else:
            timeout = min(section.timeout_s, left)
            print(f"running {section.name} (at most {timeout:.0f} s) ...", flush=True)
            sections[section.name] = (run_pytest(section.pytest_args, timeout) if section.pytest_args
                                      else run_child(section.name, quick, timeout))
        write_json(path, report)  # after every section: a killed check keeps what it measured
    failed = [name for name, result in sections.items() if isinstance(result, dict) and result["status"] == "failed"]
    gpu_failed = [section.name for section in SECTIONS if section.gpu and section.name in failed]
    report.update(failed_sections=failed, failed_gpu_sections=gpu_failed, seconds=time.perf_counter() - started,
                  exit_code=1 if gpu_failed else 0)
    write_json(path, report)
    print("\n" + "\n".join(table(sections)))
    for name in failed:
        print(f"\n{name} failed: {sections[name]['error']}")
        if sections[name].get("output_tail"):
            print(tail(sections[name]["output_tail"], 15))
    verdict = f"FAILED: {', '.join(failed)}" if failed else "every section that ran passed"
    if failed and not gpu_failed:
        verdict += " (the CPU part only: the exit code reports the GPU sections)"
    print(f"\n{verdict}; {report['seconds']:.0f} s; results in {path}")
    return report["exit_code"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=".", help="directory for gpu_check.json (default: the current one)")
    parser.add_argument("--quick", action="store_true", help="skip the pytest runs and shrink every measurement")
    parser.add_argument("--section", choices=sorted(WORK), help=argparse.SUPPRESS)  # a child: one work function
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.section:
        run_section_here(args.section, args.quick, args.result)
        return 0
    return run_all(Path(args.out), args.quick)


if __name__ == "__main__":
    sys.exit(main())
