"""Prediction cost against the number of availability patterns in one call.

Each distinct set of usable learners in a prediction call needs its own combination (`modalbag.ensemble`),
so a call where every modality is present meets one pattern and a call where each is missing at
random meets hundreds. This script trains one ensemble (``--modalities`` tabular modalities of
``--features`` columns, ``--bags`` learners of one ``--trainer``, ``--rows`` training rows) and times
``predict_proba`` on ``--rows`` new rows:

- ``all present``: every modality present (one pattern);
- ``random missing``: each modality missing independently with probability ``--missing`` (at least one
  kept), first call: every pattern's combination is fitted in the call;
- ``random missing, again``: the same rows a second time (the combinations are cached);
- with ``--compare-exact``, ``random missing, each pattern fitted``: a combination fitted for every
  pattern, as modalbag did before (one run, not a median).

Both first calls start from an ensemble with no pattern's combination cached (the shared
combination that patterns use beyond five modalities is fitted with the ensemble, in training). Printed: seconds (median of
``--repeats``), the number of distinct learner patterns, and the ratio to the all-present call (goal:
at most 2x for 12 modalities, 4,000 rows). Also the accuracy of both calls, so a faster rule that
predicts worse shows.

    python benchmarks/pattern_cost.py [--modalities 12] [--bags 36] [--rows 4000] [--missing 0.5]
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

import numpy as np

import modalbag
from modalbag.io.machine import describe_machine, machine_line


def make_data(n: int, modalities: int, features: int, seed: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Three classes; every modality carries a weak, independent view of the class."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    centres = np.random.default_rng(1234).normal(size=(modalities, 3, features))
    data = {f"m{i:02d}": (centres[i][y] * 0.6 + rng.normal(size=(n, features))).astype(np.float32)
            for i in range(modalities)}
    return data, y


def with_missing(data: dict[str, np.ndarray], p: float, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    names = list(data)
    n = len(next(iter(data.values())))
    keep = rng.random((n, len(names))) >= p
    none = ~keep.any(axis=1)
    keep[none, rng.integers(0, len(names), none.sum())] = True
    out = {}
    for j, name in enumerate(names):
        x = data[name].copy()
        x[~keep[:, j]] = np.nan
        out[name] = x
    return out


def timed_predict(model: Any, data: dict[str, np.ndarray], fresh: bool) -> tuple[float, np.ndarray]:
    if fresh:
        model.ensemble.forget_pattern_combinations()
    started = time.perf_counter()
    proba = model.predict_proba(data)
    return time.perf_counter() - started, proba


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--modalities", type=int, default=12)
    parser.add_argument("--features", type=int, default=4)
    parser.add_argument("--bags", type=int, default=36)
    parser.add_argument("--rows", type=int, default=4000)
    parser.add_argument("--missing", type=float, default=0.5)
    parser.add_argument("--trainer", default="logistic", help="one trainer, or several (comma-separated) to measure")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--compare-exact", action="store_true",
                        help="also time the random-missing call with a combination fitted for each pattern "
                             "(what modalbag did before the shared combination; slow: tens of ms a pattern)")
    args = parser.parse_args(argv)

    print(machine_line(describe_machine()))
    data, y = make_data(args.rows, args.modalities, args.features, seed=0)
    test, y_test = make_data(args.rows, args.modalities, args.features, seed=1)
    missing = with_missing(test, args.missing, seed=2)
    model = modalbag.create_model_from_arrays({k: (v, "tabular") for k, v in data.items()}, labels=y)
    model.create_ensemble(n_bags=args.bags, random_state=0)
    model.select_base_learners(task_type="classification", num_classes=3, instantiate=False,
                               trainers=args.trainer.split(","))
    started = time.perf_counter()
    model.train_ensemble(epochs=5, save_checkpoints=False, threads_per_learner=1, random_state=0)
    print(f"trained {len(model.learners)} {args.trainer} learners on {args.rows} rows x {args.modalities} "
          f"modalities in {time.perf_counter() - started:.1f}s")

    rows = []
    for label, inputs, fresh in (("all present", test, True), ("random missing", missing, True),
                                 ("random missing, again", missing, False)):
        times, proba = [], None
        for _ in range(args.repeats):
            seconds, proba = timed_predict(model, inputs, fresh)
            times.append(seconds)
        patterns = len(np.unique(np.stack([np.all([~np.isnan(inputs[m]).all(axis=1) for m in spec.modalities],
                                                  axis=0) for spec in (r.spec for r in model.learners.values())],
                                          axis=1), axis=0))
        accuracy = float(np.mean(proba.argmax(axis=1) == y_test))
        rows.append((label, statistics.median(times), patterns, accuracy))
    if args.compare_exact:
        import modalbag.ensemble.ensemble as ensemble_module

        ensemble_module.EXACT_PATTERN_MAX_MODALITIES = args.modalities  # every pattern fitted for itself
        seconds, proba = timed_predict(model, missing, fresh=True)
        patterns = rows[1][2]
        rows.append(("random missing, each pattern fitted", seconds, patterns,
                     float(np.mean(proba.argmax(axis=1) == y_test))))
    base = rows[0][1]
    print("\n| call | seconds | learner patterns | x all present | accuracy |\n|---|---|---|---|---|")
    for label, seconds, patterns, accuracy in rows:
        print(f"| {label} | {seconds:.3f} | {patterns} | {seconds / base:.2f}x | {accuracy:.3f} |")


if __name__ == "__main__":
    main()
