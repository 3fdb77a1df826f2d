"""How training and prediction cost grow with samples, modalities and bags.

Three curves, each varying one size around a base point (``--base-rows`` 10,000 rows, ``--base-modalities``
4 modalities, ``--base-bags`` 20 bags) while the other two stay at the base:

- ``samples``: 1k, 10k, 100k and 1M rows (up to ``--max-rows``);
- ``modalities``: 2, 4, 8, 16 tabular modalities;
- ``bags``: 5, 20, 80 bags.

Data: synthetic tabular modalities of ``--features`` columns each (3 classes; ``INFORMATIVE`` columns
of a modality carry a class signal, the others are noise), written in blocks to ``.npy`` files in a
temporary folder and opened memory-mapped by ``create_model_from_files`` (which uses
``np.load(path, mmap_mode="r")``): the arrays the model holds stay on disk (each point checks that
they are memory-mapped and prints it). One fixed, cheap trainer for every bag (``--trainer``, default
``sklearn_linear``), ``threads_per_learner=1`` and BLAS/OpenMP pools of one thread, the serial
executor, no checkpoints: the curves measure modalbag's own scaling, not a model's.

Each point runs in a fresh subprocess, so its peak memory is its own. The subprocess first trains and
predicts with a tiny in-memory ensemble (imports every library the point uses, so no timing pays for
imports); its peak resident set size after that is the *baseline*. Then, timed with
``time.perf_counter()``:

- ``bags``: ``create_ensemble(n_bags)`` + ``generate_bags()`` (the default ``adaptive`` strategy);
- ``train``: ``generate_bags`` + ``select_base_learners(trainers=[trainer])`` + ``train_ensemble``:
  everything from the opened files to a trained ensemble (``train cpu``: the process's user + system
  CPU seconds over the same span, steadier than wall time on a shared machine);
- ``predict``: ``predict_proba`` on the first ``--predict-rows`` rows (memory-mapped slices);
- ``predict all`` (``samples`` curve only): ``predict_proba`` on every row.

Peak memory is ``resource.getrusage(RUSAGE_SELF).ru_maxrss`` of the subprocess (the high-water mark
of its resident set, pages read from the memory-mapped files included): after training, and at the
end (after ``predict all``). ``data MiB`` is the size of the point's ``.npy`` files. Each curve's
exponent ``b`` of ``seconds = a * x**b`` is fitted by least squares on the log-log points, over all
points and between the last two (the local slope, where fixed costs matter least). Points are run once
unless ``--repeats`` (then the median; interleaved: every point once, then again).

    python benchmarks/scaling.py [--quick] [--max-rows 1000000] [--curves samples,modalities,bags]
                                 [--trainer sklearn_linear] [--repeats 1] [--json out.json]
                                 [--profile samples:1000000]

``--quick``: the smallest configuration (1k rows, 2 modalities, 5 bags base; samples 1k and 2k,
modalities 2 and 4, bags 5 and 10), seconds in all. ``--profile CURVE:X`` runs that one point under
cProfile and prints the 25 functions with the most cumulative time in training.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from modalbag.io.machine import describe_machine, machine_line

CLASSES = 3
INFORMATIVE = 3
BLOCK_ROWS = 65536
SAMPLES = (1_000, 10_000, 100_000, 1_000_000)
MODALITIES = (2, 4, 8, 16)
BAGS = (5, 20, 80)
ONE_THREAD = {name: "1" for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}


# -- data ----------------------------------------------------------------------------------------

def write_dataset(folder: Path, rows: int, modalities: int, features: int, seed: int = 0) -> dict[str, str]:
    """``modalities`` float32 ``.npy`` files of ``rows`` x ``features`` and ``labels.npy``, written a
    block at a time so the writer never holds the whole data either; returns ``{name: path}``."""
    folder.mkdir(parents=True, exist_ok=True)
    centres = np.random.default_rng(1234).normal(size=(modalities, CLASSES, INFORMATIVE))
    labels = np.lib.format.open_memmap(folder / "labels.npy", mode="w+", dtype=np.int64, shape=(rows,))
    outs = {f"m{i:02d}": np.lib.format.open_memmap(folder / f"m{i:02d}.npy", mode="w+", dtype=np.float32,
                                                   shape=(rows, features)) for i in range(modalities)}
    for start in range(0, rows, BLOCK_ROWS):
        stop = min(rows, start + BLOCK_ROWS)
        rng = np.random.default_rng([seed, start])
        y = rng.integers(0, CLASSES, stop - start)
        labels[start:stop] = y
        for i, out in enumerate(outs.values()):
            block = rng.normal(size=(stop - start, features))
            block[:, :INFORMATIVE] += 0.5 * centres[i][y]
            out[start:stop] = block
    for out in (labels, *outs.values()):
        out.flush()
    del labels, outs
    return {f"m{i:02d}": str(folder / f"m{i:02d}.npy") for i in range(modalities)} | {
        "labels": str(folder / "labels.npy")}


# -- one point, in its own process ---------------------------------------------------------------

def _peak_mib() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _cpu_seconds() -> float:
    import resource

    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _ensemble(model: Any, bags: int, trainer: str, epochs: int) -> float:
    """Bags drawn, learners selected and trained; returns the seconds ``generate_bags`` took."""
    started = time.perf_counter()
    model.create_ensemble(n_bags=bags, random_state=0)
    model.generate_bags()
    bag_seconds = time.perf_counter() - started
    model.select_base_learners(task_type="classification", num_classes=CLASSES, instantiate=False,
                               trainers=[trainer])
    model.train_ensemble(epochs=epochs, save_checkpoints=False, threads_per_learner=1, n_jobs=1, random_state=0)
    return bag_seconds


def warm_up(trainer: str, epochs: int) -> None:
    """A tiny in-memory ensemble trained and used, so the measured point pays for no import."""
    import modalbag

    rng = np.random.default_rng(0)
    y = rng.integers(0, CLASSES, 200)
    data = {f"w{i}": (rng.normal(size=(200, 4)) + y[:, None]).astype(np.float32) for i in range(2)}
    model = modalbag.create_model_from_arrays({k: (v, "tabular") for k, v in data.items()}, labels=y)
    _ensemble(model, 2, trainer, epochs)
    model.predict_proba(data)


def run_point(point: dict[str, Any]) -> dict[str, Any]:
    """Measure one point (in this process): see the module docstring."""
    import modalbag
    from modalbag.data.dataset import is_memory_mapped

    warm_up(point["trainer"], point["epochs"])
    baseline = _peak_mib()
    paths = point["paths"]
    names = [n for n in paths if n != "labels"]
    model = modalbag.create_model_from_files({n: (paths[n], "tabular") for n in names}, labels=paths["labels"])
    mapped = all(is_memory_mapped(model.dataset.arrays[n]) for n in names)
    profiler = None
    if point.get("profile"):
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    cpu, started = _cpu_seconds(), time.perf_counter()
    bag_seconds = _ensemble(model, point["bags"], point["trainer"], point["epochs"])
    train_seconds, train_cpu = time.perf_counter() - started, _cpu_seconds() - cpu
    if profiler is not None:
        import io
        import pstats

        profiler.disable()
        text = io.StringIO()
        pstats.Stats(profiler, stream=text).sort_stats("cumulative").print_stats(25)
        print(text.getvalue(), file=sys.stderr)
    trained = len(model.learners)
    peak_train = _peak_mib()
    few = {n: np.load(paths[n], mmap_mode="r")[: point["predict_rows"]] for n in names}
    started = time.perf_counter()
    model.predict_proba(few)
    predict_seconds = time.perf_counter() - started
    predict_all = None
    if point["predict_all"]:
        every = {n: np.load(paths[n], mmap_mode="r") for n in names}
        started = time.perf_counter()
        model.predict_proba(every)
        predict_all = time.perf_counter() - started
    return {"bags_seconds": bag_seconds, "train_seconds": train_seconds, "train_cpu": train_cpu,
            "predict_seconds": predict_seconds, "predict_all_seconds": predict_all, "learners": trained,
            "baseline_mib": baseline, "peak_train_mib": peak_train, "peak_mib": _peak_mib(),
            "memory_mapped": mapped}


def measure(point: dict[str, Any]) -> dict[str, Any]:
    """`run_point` in a fresh Python process with one-thread BLAS/OpenMP pools."""
    env = os.environ | ONE_THREAD
    done = subprocess.run([sys.executable, __file__, "--point", json.dumps(point)], env=env,
                          capture_output=True, text=True, check=False)
    if point.get("profile"):
        print(done.stderr)
    if done.returncode != 0:
        raise RuntimeError(f"point {point['curve']}={point['x']} failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# -- curves --------------------------------------------------------------------------------------

def curve_points(args: argparse.Namespace) -> dict[str, list[dict[str, Any]]]:
    """Each curve's points: ``{"x", "rows", "modalities", "bags"}``."""
    samples = [n for n in args.samples if n <= args.max_rows]
    out = {
        "samples": [{"x": n, "rows": n, "modalities": args.base_modalities, "bags": args.base_bags} for n in samples],
        "modalities": [{"x": m, "rows": args.base_rows, "modalities": m, "bags": args.base_bags}
                       for m in args.modalities],
        "bags": [{"x": b, "rows": args.base_rows, "modalities": args.base_modalities, "bags": b} for b in args.bags],
    }
    return {name: out[name] for name in args.curves}


def exponent(xs: Sequence[float], ys: Sequence[float]) -> float | None:
    """Least-squares slope of ``log y`` on ``log x``: ``b`` in ``y = a * x**b``."""
    if len(xs) < 2 or any(y is None or y <= 0 for y in ys):
        return None
    return float(np.polyfit(np.log(xs), np.log(ys), 1)[0])


def slopes(xs: Sequence[float], ys: Sequence[float | None]) -> str:
    """``b`` over all points, and between the last two."""
    if len(xs) < 2 or any(y is None for y in ys):
        return "n/a"
    return f"{exponent(xs, ys):.2f} (last two: {exponent(xs[-2:], ys[-2:]):.2f})"


COLUMNS = (("data MiB", "data_mib", ".1f"), ("bags s", "bags_seconds", ".3f"), ("train s", "train_seconds", ".2f"),
           ("train cpu s", "train_cpu", ".2f"), ("predict s", "predict_seconds", ".3f"),
           ("predict all s", "predict_all_seconds", ".3f"), ("peak RSS MiB (train)", "peak_train_mib", ".0f"),
           ("peak RSS MiB", "peak_mib", ".0f"), ("baseline MiB", "baseline_mib", ".0f"))
FITTED = (("train", "train_seconds"), ("train cpu", "train_cpu"), ("bags", "bags_seconds"),
          ("predict", "predict_seconds"), ("predict all", "predict_all_seconds"),
          ("peak RSS above baseline", "peak_above"))


def format_curve(name: str, results: list[dict[str, Any]], predict_rows: int) -> str:
    """A markdown table of one curve, then its fitted exponents."""
    columns = [c for c in COLUMNS if any(r[c[1]] is not None for r in results)]
    head = [name] + [c[0].replace("predict s", f"predict s ({predict_rows} rows)") for c in columns]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in results:
        cells = [f"{r['x']:,}"] + ["" if r[key] is None else format(r[key], fmt) for _, key, fmt in columns]
        lines.append("| " + " | ".join(cells) + " |")
    xs = [r["x"] for r in results]
    fits = [f"{label} {slopes(xs, [r[key] for r in results])}" for label, key in FITTED
            if any(r[key] is not None for r in results)]
    mapped = all(r["memory_mapped"] for r in results)
    lines.append("")
    lines.append(f"exponent b ({name}): " + "; ".join(fits) + f". Data memory-mapped at every point: {mapped}.")
    return "\n".join(lines)


def run(args: argparse.Namespace, folder: Path) -> dict[str, list[dict[str, Any]]]:
    curves = curve_points(args)
    if args.profile:
        name, _, x = args.profile.partition(":")
        curves = {name: [p for p in curves[name] if p["x"] == int(x)]}
    datasets: dict[tuple[int, int], dict[str, str]] = {}
    for points in curves.values():
        for p in points:
            key = (p["rows"], p["modalities"])
            if key not in datasets:
                datasets[key] = write_dataset(folder / f"r{key[0]}_m{key[1]}", *key, args.features)
            p["paths"] = datasets[key]
            p["data_mib"] = sum(Path(v).stat().st_size for k, v in p["paths"].items() if k != "labels") / 2**20
    samples: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for _ in range(args.repeats):  # interleaved: every point once, then again
        for name, points in curves.items():
            for p in points:
                point = {"curve": name, "x": p["x"], "paths": p["paths"], "bags": p["bags"],
                         "trainer": args.trainer, "epochs": args.epochs, "predict_rows": args.predict_rows,
                         "predict_all": name == "samples", "profile": bool(args.profile)}
                result = measure(point)
                samples.setdefault((name, p["x"]), []).append(result)
                print(f"  {name}={p['x']:,}: train {result['train_seconds']:.2f}s, predict "
                      f"{result['predict_seconds']:.3f}s, peak {result['peak_mib']:.0f} MiB", flush=True)
    out: dict[str, list[dict[str, Any]]] = {}
    for name, points in curves.items():
        rows = []
        for p in points:
            runs = samples[(name, p["x"])]
            merged: dict[str, Any] = {"x": p["x"], "data_mib": p["data_mib"], "repeats": len(runs),
                                      "memory_mapped": all(r["memory_mapped"] for r in runs)}
            for key in runs[0]:
                if key in ("memory_mapped",):
                    continue
                values = [r[key] for r in runs]
                merged[key] = None if values[0] is None else statistics.median(values)
            merged["peak_above"] = max(merged["peak_mib"] - merged["baseline_mib"], 1e-3)
            rows.append(merged)
        out[name] = rows
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="the smallest configuration (seconds)")
    parser.add_argument("--curves", default="samples,modalities,bags")
    parser.add_argument("--max-rows", type=int, default=1_000_000, help="the largest point of the samples curve")
    parser.add_argument("--base-rows", type=int, default=10_000)
    parser.add_argument("--base-modalities", type=int, default=4)
    parser.add_argument("--base-bags", type=int, default=20)
    parser.add_argument("--features", type=int, default=8, help="columns per modality")
    parser.add_argument("--trainer", default="sklearn_linear")
    parser.add_argument("--epochs", type=int, default=1, help="epochs (rounds) per learner; linear models ignore it")
    parser.add_argument("--predict-rows", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--workdir", help="folder for the .npy files (default: a temporary folder, removed)")
    parser.add_argument("--json", help="write the results here")
    parser.add_argument("--profile", help="CURVE:X: run only that point, under cProfile")
    parser.add_argument("--point", help=argparse.SUPPRESS)  # internal: measure one point in this process
    args = parser.parse_args(argv)
    if args.point:
        print(json.dumps(run_point(json.loads(args.point))))
        return
    args.curves = args.curves.split(",")
    args.samples, args.modalities, args.bags = SAMPLES, MODALITIES, BAGS
    if args.quick:
        args.base_rows, args.base_modalities, args.base_bags, args.predict_rows = 1000, 2, 5, 200
        args.samples, args.modalities, args.bags = (1000, 2000), (2, 4), (5, 10)
        args.max_rows = min(args.max_rows, 2000)

    print(machine_line(describe_machine()))
    print(f"trainer {args.trainer}, {args.features} columns per modality ({INFORMATIVE} informative), {CLASSES} "
          f"classes; base point {args.base_rows:,} rows, {args.base_modalities} modalities, {args.base_bags} bags; "
          f"load average {os.getloadavg()[0]:.2f}")
    started = time.perf_counter()
    if args.workdir:
        results = run(args, Path(args.workdir))
    else:
        with tempfile.TemporaryDirectory(prefix="modalbag-scaling-") as tmp:
            results = run(args, Path(tmp))
    for name, rows in results.items():
        print(f"\n### {name}\n")
        print(format_curve(name, rows, args.predict_rows))
    print(f"\ntotal {time.perf_counter() - started:.0f}s; load average at the end {os.getloadavg()[0]:.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
