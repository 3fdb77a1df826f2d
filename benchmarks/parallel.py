"""Bags side by side: the ``serial`` executor vs ``local`` worker processes, and Ray's overhead.

Trains the same 8-bag ensemble (neural learners only) several ways on this machine and prints, for
each: wall time, speedup over serial, and the peak memory of this process plus every process it
started (workers, the fork server, Ray's processes), sampled every 50 ms as the sum of their
proportional set sizes (PSS: a page shared by N processes, as workers share the fork server's
imported libraries, counts 1/N in each), or of their RSS where PSS is not available.

- ``serial``: one learner at a time in this process, with every core (n_jobs=1, torch's own
  default), and ``serial (1 thread)``: the same with one thread. Small networks gain little from a
  second thread, and torch's thread pool collapses when another process takes a core (the second
  thread waits at every barrier), so the speedup is given over the faster of the two.
- ``local (cold)``: n_jobs workers, the first call of the process, so it includes starting the fork
  server (importing torch once); ``local (warm)``: the same call again, as every later run of a
  process sees it.
- ``ray``: each bag a Ray task on a local Ray instance started beforehand (its start is printed
  apart); its overhead is measured against ``local (warm)`` on the same work.

The parent imports and warms torch before timing anything, so serial is not charged for imports.
Predictions of local and ray are checked equal to a serial run with the same threads per learner.

    python benchmarks/parallel.py [--bags 8] [--jobs 2] [--epochs 6] [--samples 2000] [--no-ray] [--no-default-serial] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import threading
import time

import numpy as np

from modalbag import create_synthetic_model

MODALITIES = {"text": (256, "text"), "image": (512, "image"), "meta": (32, "tabular")}


class PeakMemory:
    """Peak total PSS (else RSS) of this process and its descendants, sampled in a thread."""

    def __init__(self, interval: float = 0.05):
        self.interval, self.peak = interval, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, tree_rss(os.getpid()))
            self._stop.wait(self.interval)

    @property
    def mb(self) -> float:
        return round(self.peak / 2**20, 1)


def tree_rss(root: int) -> int:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as fh:
                    ppid = int(fh.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    total, todo, page = 0, [root], os.sysconf("SC_PAGE_SIZE")
    while todo:
        pid = todo.pop()
        todo += children.get(pid, [])
        total += process_memory(pid, page)
    return total


def process_memory(pid: int, page: int) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        with open(f"/proc/{pid}/statm", encoding="ascii") as fh:
            return int(fh.read().split()[1]) * page
    except (OSError, ValueError, IndexError):
        return 0


def make_model(args: argparse.Namespace):
    model = create_synthetic_model(MODALITIES, n_samples=args.samples, n_classes=3, random_state=0)
    model.create_ensemble(n_bags=args.bags, random_state=0)
    model.generate_bags()
    model.select_base_learners(instantiate=False, trainers=["neural"])
    return model


def train(args: argparse.Namespace, label: str, **config) -> dict:
    model = make_model(args)
    options = {"epochs": args.epochs, "batch_size": 64, "enable_denoising": False, "mixed_precision": False,
               "save_checkpoints": False, "early_stopping_patience": 0, "warmup_epochs": 1, **config}
    load = os.getloadavg()[0]  # other work on the machine skews every timing: printed with each
    with PeakMemory() as memory:
        started = time.perf_counter()
        model.train_ensemble(**options)
        seconds = time.perf_counter() - started
    summary = model.get_training_summary()
    data, _ = model.synthetic_task.sample(500, random_state=1)
    return {"label": label, "seconds": round(seconds, 2), "peak_mb": memory.mb, "load": round(load, 2), "trained": summary["trained"],
            "failed": summary["failed"], "proba": model.predict_proba(data),
            "bag_seconds": round(sum(summary["training_times"].values()), 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bags", type=int, default=8)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--samples", type=int, default=2000)
    parser.add_argument("--no-ray", action="store_true")
    parser.add_argument("--no-default-serial", action="store_true",
                        help="skip serial with torch's default threads (minutes when another process takes a core)")
    parser.add_argument("--json")
    args = parser.parse_args()

    from modalbag.execution import available_cores, available_memory, estimate_footprint

    cores = available_cores()
    print(f"{cores} cores, {round((available_memory() or 0) / 2**30, 1)} GiB available, "
          f"load average {os.getloadavg()[0]:.2f}; {args.bags} bags x {args.epochs} epochs, {args.samples} samples")
    model = make_model(args)
    specs = {s.bag_id: s for s in model.learner_specs}
    sizes = [estimate_footprint(specs[b.id], b, model.dataset.specs, _config(args), 3).total_mb for b in model.bags]
    print(f"estimated footprint per bag (MB): {sizes}")
    small = argparse.Namespace(**{**vars(args), "bags": 1, "epochs": 1, "samples": 200})
    train(small, "warm-up")  # imports and first-call costs of this process, charged to nobody

    runs = [] if args.no_default_serial else [train(args, "serial", executor="serial", n_jobs=1)]
    runs.append(train(args, "serial (1 thread)", executor="serial", n_jobs=1, threads_per_learner=1))
    n_serial = len(runs)
    runs.append(train(args, "local (cold)", executor="local", n_jobs=args.jobs))
    runs.append(train(args, "local (warm)", executor="local", n_jobs=args.jobs))
    reference = train(args, "serial, same threads as a worker", executor="serial", n_jobs=args.jobs)
    if not args.no_ray:
        try:
            import ray
        except ImportError:
            print("ray is not installed: skipping (pip install 'modalbag[ray]')")
        else:
            started = time.perf_counter()
            ray.init(num_cpus=cores, include_dashboard=False, log_to_driver=False)
            print(f"ray.init: {time.perf_counter() - started:.1f} s (not counted below)")
            runs.append(train(args, "ray (cold)", executor="ray", n_jobs=args.jobs))
            runs.append(train(args, "ray (warm)", executor="ray", n_jobs=args.jobs))
            ray.shutdown()

    serial = min(r["seconds"] for r in runs[:n_serial])
    warm_local = next(r for r in runs if r["label"] == "local (warm)")["seconds"]
    print(f"\nspeedup over the faster serial run; load average now {os.getloadavg()[0]:.2f}")
    print(f"{'executor':<18}{'seconds':>9}{'speedup':>9}{'peak MB':>10}{'load':>7}  trained/failed")
    for run in runs:
        extra = ""
        if run["label"].startswith("ray"):
            extra = f"  overhead vs local (warm): {100 * (run['seconds'] / warm_local - 1):+.0f}%"
        print(f"{run['label']:<18}{run['seconds']:>9.2f}{serial / run['seconds']:>8.2f}x{run['peak_mb']:>10.1f}{run['load']:>7.2f}"
              f"  {run['trained']}/{run['failed']}{extra}")
    for run in runs[n_serial:]:
        same = np.array_equal(run["proba"], reference["proba"])
        print(f"{run['label']}: predictions identical to serial with {max(1, cores // args.jobs)} thread(s): {same}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump([{k: v for k, v in r.items() if k != "proba"} for r in runs], fh, indent=2)


def _config(args: argparse.Namespace):
    from modalbag import TrainingConfig

    return TrainingConfig.from_dict({"epochs": args.epochs, "batch_size": 64})


if __name__ == "__main__":
    main()
