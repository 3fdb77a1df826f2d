"""What modalbag's training loop costs over a hand-written PyTorch loop, on the same network.

The same fusion network (encoders for 768-, 2048- and 50-dim inputs, 5 classes), the same data,
batch size 64 and AdamW, trained for ``--epochs`` epochs

- by a raw loop: shuffle, index tensors, forward, cross-entropy, backward, clip, step, plus one
  validation pass per epoch (what any real loop does), and
- by modalbag's neural trainer through the engine (`modalbag.execution.fitting.fit_learner`) with the
  default configuration: its hooks, the ``amp`` precision choice, early stopping, the checkpoint
  validator and, with a run directory, the default ``jsonl`` record sink, all on.

Both build the network and their tensors inside the timing, in one process, alternating
raw / modalbag ``--repeats`` times, so machine noise hits both alike. The headline figure is the
ratio of median *epoch* times: the span from one epoch's end to the next (training, validation,
and for modalbag every hook, validator and sink), epochs 2 onwards, pooled over repeats. Also
reported for whole fits (setup included): the ratio of median wall times, the median of the paired
wall ratios, and the median of the paired ratios of this process's CPU time. One thread each unless
``--threads``.

``--device`` and ``--precision`` (an ``amp_dtype``) move both loops to a GPU and/or force a precision.
The raw loop trains in the precision modalbag's learner used (read from its notes after an untimed
first fit: with ``auto`` on a CPU with native bf16 that is what the ``amp`` plugin measured on the
learner's own step and kept for this machine), with the same loss scaling, so both sides do the same
arithmetic; ``--precision bf16`` runs both in bf16 autocast. Both are printed. Training samples per second (training
rows / median epoch time) and, on CUDA, each side's peak allocated memory are reported too.

``--quickstart`` also trains the Quick Start ensemble (20 bags, 1000 samples) and reports its
training samples per second (from the learners' epoch records) and this process's peak RSS.

    python benchmarks/loop_overhead.py [--samples 4096] [--epochs 3] [--repeats 5] [--threads 1]
        [--device cpu] [--precision auto] [--quickstart] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import math
import re
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from modalbag import TrainingConfig, create_synthetic_model, hookimpl
from modalbag.data.bags import Bag
from modalbag.data.dataset import encode_labels
from modalbag.engine.engine import Engine
from modalbag.execution.fitting import fit_learner
from modalbag.kernel.records import LearnerSpec
from modalbag.kernel.registry import default_catalog
from modalbag.kernel.run import TaskInfo
from modalbag.plugins.precision.amp import choose
from modalbag.plugins.trainers.neural import FusionNetwork, Standardize, VectorEncoder

sys.path.insert(0, str(Path(__file__).resolve().parent))
from real_data import machine_info, print_machine  # noqa: E402 - the sibling benchmark's machine report

MODALITIES = {"text": (768, "text"), "image": (2048, "image"), "meta": (50, "tabular")}
HIDDEN, EMBEDDING, BATCH, LR = 128, 64, 64, 1e-3


def build_network(arrays: dict[str, np.ndarray], rows: np.ndarray, n_classes: int) -> FusionNetwork:
    """The network modalbag's trainer builds for this bag, assembled by hand."""
    encoders = {m: VectorEncoder(a.shape[1], HIDDEN, EMBEDDING, 0.1) for m, a in arrays.items()}
    scalers = {m: Standardize.fit(a, rows, True) for m, a in arrays.items()}
    return FusionNetwork(encoders, scalers, EMBEDDING, HIDDEN, n_classes, 0.1)


def used_precision(notes: list[str]) -> str:
    """'bf16', 'fp16' or 'fp32': what a learner trained in, from the ``amp`` plugin's note."""
    for note in notes:
        found = re.match(r"precision: (?:CPU |CUDA )?(bf16|fp16|fp32)", note)
        if found:
            return found.group(1)
    return "fp32"  # no amp note: mixed precision off


def raw_loop(arrays: dict[str, np.ndarray], targets: np.ndarray, train: np.ndarray, val: np.ndarray,
             epochs: int, seed: int, epoch_ends: list[float] | None = None, device: str = "cpu",
             precision: str = "fp32") -> float:
    """A hand-written loop; returns its final validation loss (so no work can be skipped) and
    appends the time at the end of each epoch (after its validation pass) to ``epoch_ends``.

    It trains in ``precision`` ('bf16', 'fp16' with the loss scaling the ``amp`` plugin uses, or
    'fp32') and validates in fp32 as modalbag's trainer does."""
    choice = choose(device, precision)
    torch.manual_seed(seed)
    net = build_network(arrays, train, int(targets.max()) + 1).to(device)
    # the same (fused) AdamW kernel the adamw plugin picks, so the ratio measures the loop alone
    opt = torch.optim.AdamW(net.parameters(), lr=LR, weight_decay=1e-4, fused=True)
    x = {m: torch.from_numpy(a[train]).to(device) for m, a in arrays.items()}
    xv = {m: torch.from_numpy(a[val]).to(device) for m, a in arrays.items()}
    y, yv = torch.from_numpy(targets[train]).to(device), torch.from_numpy(targets[val]).to(device)
    masks = torch.ones(len(train), len(arrays), dtype=torch.bool, device=device)
    masks_v = torch.ones(len(val), len(arrays), dtype=torch.bool, device=device)
    loss_fn = nn.CrossEntropyLoss()
    g = torch.Generator().manual_seed(seed)
    scaler = choice.scaler
    val_loss = math.nan
    for _ in range(epochs):
        net.train()
        order = torch.randperm(len(train), generator=g).to(device)
        for start in range(0, len(train), BATCH):
            idx = order[start:start + BATCH]
            with torch.autocast(device.split(":")[0], dtype=choice.dtype, enabled=choice.dtype is not None):
                out = net({m: t.index_select(0, idx) for m, t in x.items()}, masks.index_select(0, idx))
                loss = loss_fn(out["logits"].float(), y.index_select(0, idx))
            if scaler is None:
                loss.backward()
                nn.utils.clip_grad_norm_(net.parameters(), 1.0, foreach=True)
                opt.step()
            else:
                scaler.scale(loss).backward()
                scaler.unscale_(opt)
                nn.utils.clip_grad_norm_(net.parameters(), 1.0, foreach=True)
                scaler.step(opt)
                scaler.update()
            opt.zero_grad(set_to_none=True)
        net.eval()
        with torch.no_grad():
            val_loss = float(loss_fn(net(xv, masks_v)["logits"], yv))
        if epoch_ends is not None:
            epoch_ends.append(time.perf_counter())
    return val_loss


class EpochClock:
    """A plugin that notes the time at each epoch's end, after every other epoch_end hook."""

    def __init__(self) -> None:
        self.ends: list[float] = []

    @hookimpl(trylast=True)
    def modalbag_epoch_end(self, run, fit, record) -> None:
        self.ends.append(time.perf_counter())


def modalbag_fit(model, targets: np.ndarray, rows: np.ndarray, epochs: int, run_dir: str | None,
                 clock: EpochClock | None = None, device: str = "cpu", precision: str = "auto") -> Any:
    """The default configuration (but no warmup or schedule, which the raw loop has not either)."""
    dataset = model.dataset
    _, classes = encode_labels(dataset.labels, "classification")
    task = TaskInfo("classification", len(classes), classes, np.bincount(targets) / len(targets))
    config = TrainingConfig.from_dict({"epochs": epochs, "batch_size": BATCH, "learning_rate": LR,
                                       "enable_denoising": False, "warmup_epochs": 0, "scheduler_type": "none",
                                       "run_dir": run_dir, "threads_per_learner": torch.get_num_threads(),
                                       "device": device, "amp_dtype": precision})
    engine = Engine(default_catalog(), plugins=[clock] if clock is not None else ())
    run = engine.prepare(config, task)
    run.hook.modalbag_run_start(run=run)
    mods = tuple(MODALITIES)
    bag = Bag(0, mods, rows, np.empty(0, dtype=np.int64), seed=0)
    spec = LearnerSpec("bag_000", 0, "neural", mods, {m: t for m, (_, t) in MODALITIES.items()},
                       {"hidden_dim": HIDDEN, "embedding_dim": EMBEDDING})
    result = fit_learner(spec, bag, dataset, targets, run, engine.catalog)
    run.hook.modalbag_run_end(run=run, learners={spec.learner_id: result})
    assert result.ok, result.error
    return result


def peak_cuda_mb(device: str) -> float | None:
    """Peak memory allocated on ``device`` since the last reset, in MiB; None off CUDA."""
    return torch.cuda.max_memory_allocated(device) / 2**20 if device.startswith("cuda") else None


def reset_peak(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)


def overhead(samples: int, epochs: int, repeats: int, device: str = "cpu",
             precision: str = "auto") -> dict[str, object]:
    model = create_synthetic_model(MODALITIES, n_samples=samples, n_classes=5, random_state=0)
    targets, _ = encode_labels(model.dataset.labels, "classification")
    arrays = {m: model.dataset.arrays[m] for m in MODALITIES}
    rows = np.arange(samples)
    # modalbag holds out validation_split (0.2) of the bag's rows, seeded by the bag; the raw loop
    # holds out the same share
    n_val = int(round(0.2 * samples))
    val = np.sort(np.random.default_rng(0).choice(rows, n_val, replace=False))
    train = np.setdiff1d(rows, val)
    raw_times, mb_times, raw_cpu, mb_cpu = [], [], [], []
    raw_epochs: list[float] = []
    mb_epochs: list[float] = []
    raw_peak: list[float] = []
    mb_peak: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        first = modalbag_fit(model, targets, rows, 1, None, device=device, precision=precision)  # untimed
        note = next((n for n in first.notes if n.startswith("precision:")), "precision: fp32 (mixed precision off)")
        used = used_precision(first.notes)  # the raw loop trains in what modalbag's learner used
        raw_loop(arrays, targets, train, val, 1, 0, device=device, precision=used)  # warm its kernels too
        for i in range(repeats):
            ends: list[float] = []
            reset_peak(device)
            wall, cpu = time.perf_counter(), time.process_time()
            raw_loop(arrays, targets, train, val, epochs, i, ends, device, used)
            raw_times.append(time.perf_counter() - wall)
            raw_cpu.append(time.process_time() - cpu)
            raw_epochs += list(np.diff(ends))  # epochs 2..E: a whole epoch, validation included
            raw_peak += [peak_cuda_mb(device)] if device.startswith("cuda") else []
            clock = EpochClock()
            reset_peak(device)
            wall, cpu = time.perf_counter(), time.process_time()
            fitted = modalbag_fit(model, targets, rows, epochs, f"{tmp}/run{i}", clock, device, precision)
            assert used_precision(fitted.notes) == used, (fitted.notes, used)  # a kept decision: every fit alike
            mb_times.append(time.perf_counter() - wall)
            mb_cpu.append(time.process_time() - cpu)
            mb_epochs += list(np.diff(clock.ends))  # the same span, with every hook and sink
            mb_peak += [peak_cuda_mb(device)] if device.startswith("cuda") else []
    ratios = [m / r for m, r in zip(mb_times, raw_times, strict=True)]
    cpu_ratios = [m / r for m, r in zip(mb_cpu, raw_cpu, strict=True)]
    raw_epoch, mb_epoch = statistics.median(raw_epochs), statistics.median(mb_epochs)
    return {"samples": samples, "epochs": epochs, "repeats": repeats, "threads": torch.get_num_threads(),
            "device": device, "precision": precision, "precision_used": used, "precision_note": note,
            "train_rows": len(train), "raw_epoch_s": raw_epoch, "modalbag_epoch_s": mb_epoch,
            "epoch_ratio": mb_epoch / raw_epoch,
            "raw_samples_per_s": len(train) / raw_epoch, "modalbag_samples_per_s": len(train) / mb_epoch,
            "raw_peak_cuda_mb": max(raw_peak, default=None), "modalbag_peak_cuda_mb": max(mb_peak, default=None),
            "ratio_of_median_times": statistics.median(mb_times) / statistics.median(raw_times),
            "ratio_median": statistics.median(ratios), "ratios": ratios,
            "cpu_ratio_median": statistics.median(cpu_ratios), "cpu_ratios": cpu_ratios}


def quickstart(epochs: int) -> dict[str, object]:
    model = create_synthetic_model(MODALITIES_QS, n_samples=1000, n_classes=5)
    model.create_ensemble(n_bags=20, dropout_strategy="adaptive")
    started = time.perf_counter()
    trained = model.train_ensemble(task_type="classification", num_classes=5, epochs=epochs, enable_denoising=False)
    wall = time.perf_counter() - started
    seen = sum(len(r.records) for r in trained.values())
    rates = [e.samples_per_second for r in trained.values() for e in r.records if e.samples_per_second]
    return {"learners": len(trained), "epochs_run": seen, "wall_s": wall,
            "samples_per_second_median": statistics.median(rates) if rates else None,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


MODALITIES_QS = {"text_embeddings": (768, "text"), "image_features": (2048, "image"), "user_metadata": (50, "tabular")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--samples", type=int, default=4096)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu", help="'cpu', 'cuda' or 'cuda:N'")
    parser.add_argument("--precision", default="auto", choices=("auto", "bf16", "fp16", "fp32"),
                        help="amp_dtype for both loops")
    parser.add_argument("--quickstart", action="store_true")
    parser.add_argument("--quickstart-epochs", type=int, default=50)
    parser.add_argument("--json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    machine = machine_info()
    print_machine(machine)  # the figures below are re-measured on other machines: say which one this is
    result: dict[str, object] = {"machine": machine, "overhead": overhead(args.samples, args.epochs, args.repeats, args.device,
                                                      args.precision)}
    o = result["overhead"]
    print(f"median epoch (2nd epoch on, validation and hooks included): raw {o['raw_epoch_s']:.3f} s, "
          f"modalbag {o['modalbag_epoch_s']:.3f} s: {o['epoch_ratio']:.3f}x (goal <= 1.05x)")
    print(f"whole fits of {o['epochs']} epochs, setup included: wall {o['ratio_of_median_times']:.3f}x (ratio of "
          f"medians), {o['ratio_median']:.3f}x (median of paired ratios); CPU time {o['cpu_ratio_median']:.3f}x")
    print("paired wall ratios " + ", ".join(f"{r:.3f}" for r in o["ratios"]))
    print("paired CPU ratios  " + ", ".join(f"{r:.3f}" for r in o["cpu_ratios"]))
    print(f"precision (--precision {o['precision']}): both sides {o['precision_used']}; modalbag's learner: "
          f"{o['precision_note'].removeprefix('precision: ')}")
    print(f"{o['device']}: raw {o['raw_samples_per_s']:.0f} samples/s, "
          f"modalbag {o['modalbag_samples_per_s']:.0f} samples/s")
    if args.quickstart:
        q = quickstart(args.quickstart_epochs)
        result["quickstart"] = q
        print(f"Quick Start: {q['learners']} learners, {q['wall_s']:.1f} s, median "
              f"{q['samples_per_second_median']:.0f} samples/s per learner, peak RSS {q['peak_rss_mb']:.0f} MB")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(result, fh, indent=2)


if __name__ == "__main__":
    main()
