"""Real multi-view data: modalbag against per-view and early-fusion baselines as views go missing.

Data that ships inside scikit-learn (nothing is downloaded), split into views by the data's own
feature groups:

- ``breast_cancer`` (569 samples, 2 classes): the 30 features are the mean, the standard error and
  the worst value of 10 cell-nucleus measurements: views ``mean``, ``error``, ``worst`` (10 each);
- ``digits`` (1,797 8x8 images, 10 classes): the four image quadrants ``top_left``, ``top_right``,
  ``bottom_left``, ``bottom_right`` (16 pixels each);
- ``iris`` (150 samples, 3 classes): the two measured flower parts, ``sepal`` and ``petal``
  (length and width each);
- ``tiny``: small data, breast cancer with 40 training samples and two views, ``mean`` (the
  informative one) and ``error``; tested on every remaining sample (529).

Protocol: per seed, one stratified train/test split (30% test; ``tiny``: 40 training rows), every
method trained on the same training rows with every view present, then scored on the same test
rows under each condition: all views present; each view alone; each view missing independently
with probability p (0.5, 0.7), a sample left with no view being redrawn (so the realised share of
missing views is below p: it is printed). The missing-view masks come from a fixed RNG per
(seed, dataset, p) and are shared by all methods. Standardisation is fitted on training rows only.

Methods, side by side in one run:

- ``svm_prod``: one RBF SVM per view (StandardScaler + CalibratedClassifierCV(SVC(), method="sigmoid",
  cv=5, ensemble=False): Platt scaling, what SVC(probability=True) did before scikit-learn 1.9),
  product-rule late fusion over the views a sample has:
  ``argmax_c sum_v log p_v(c|x_v) - (k-1) log prior(c)``, k the number of views present, prior the
  training class frequencies (the Bayes form under conditional independence of the views);
- ``hgb_nan``: HistGradientBoostingClassifier on the concatenated views, missing views as NaN;
- ``logreg_imp``: logistic regression on the concatenated views (StandardScaler), missing views
  imputed with the training means;
- ``mb_<strategy>``: modalbag through its public API, as a user would write it:
  ``create_model_from_arrays({view: (X, "tabular")}, labels=y)``, ``create_ensemble(random_state=seed)``,
  ``select_base_learners(task_type="classification", num_classes=C, optimization_strategy=strategy)``,
  ``train_ensemble(random_state=seed, threads_per_learner=1)`` (all other options default; see
  ``--threads``), predictions from ``predict_details`` (``predict``'s labels plus the count of samples
  that fell back to the prior) with missing views as all-NaN rows. Which trainers a strategy picks
  depends on the installed trainer plugins and extras: they are printed under each table.

Training seconds are the wall time of fitting only (for modalbag: model creation to the end of
``train_ensemble``), per seed, averaged. Every method runs with the same number of threads
(``--threads``, default 1: BLAS/OpenMP pools limited, modalbag ``threads_per_learner=1``), which
keeps timings steady on a machine shared with other work (OpenMP pools that oversubscribe busy
cores slow down many times over). The CPU seconds of this process over the same span are printed
too: on a busy machine the wall time stretches, the CPU time far less. Warnings raised while a
method fits are counted per category (in the table's notes and the JSON), not printed. A method
that fails (a modalbag strategy, say) is recorded with its error and the run goes on.

    python benchmarks/real_data.py [--quick] [--seeds 0,1,2] [--strategies speed,balanced,accuracy]
                                   [--datasets breast_cancer,digits,iris,tiny] [--json results.json]

``--quick``: one seed (0), modalbag ``balanced`` only and no p=0.7 condition, unless ``--seeds``,
``--strategies`` or ``--missing-rates`` say otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import time
import traceback
import warnings
import zlib
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

STRATEGIES = ("speed", "balanced", "accuracy")
MISSING_RATES = (0.5, 0.7)
DATASETS = ("breast_cancer", "digits", "iris", "tiny")
BASELINES = ("svm_prod", "hgb_nan", "logreg_imp")
BF16_FLAGS = ("avx512_bf16", "amx_bf16", "amx_tile")
TEST_SIZE = 0.3
TINY_TRAIN = 40

Views = dict[str, np.ndarray]


# -- machine ------------------------------------------------------------------------------------------


def machine_info() -> dict[str, Any]:
    """CPU model, its bf16/AMX flags, cores and library versions, read from this machine
    (`modalbag.io.machine.describe_machine`, in the keys this benchmark has always printed)."""
    from modalbag.io.machine import describe_machine

    machine = describe_machine()
    libraries = machine["libraries"]
    return {
        "cpu": machine["cpu"] or "unknown",
        "flags": {flag: bool(value) for flag, value in machine["flags"].items() if flag in BF16_FLAGS},
        "cpu_count": machine["cpu_count"],
        "usable_cores": machine["usable_cores"],
        "python": machine["python"],
        "torch": libraries.get("torch", "not installed"),
        "sklearn": libraries.get("scikit-learn", "not installed"),
        "numpy": libraries.get("numpy", "not installed"),
        "modalbag": machine["modalbag"],
        "load_average_start": _load(),
    }


def _load() -> float | None:
    """The 1-minute load average: timings on a machine busy with other work stretch."""
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None


def print_machine(info: Mapping[str, Any]) -> None:
    flags = ", ".join(f"{k} {'yes' if v else 'no'}" for k, v in info["flags"].items())
    print(f"machine: {info['cpu']}")
    print(f"  flags: {flags}")
    print(f"  cores: {info['usable_cores']} usable of {info['cpu_count']}; "
          f"load average (1 min) {info['load_average_start']}")
    print(f"  python {info['python']}, torch {info['torch']}, sklearn {info['sklearn']}, numpy {info['numpy']}, "
          f"modalbag {info['modalbag']}")


# -- data ---------------------------------------------------------------------------------------------


def load_dataset(name: str) -> tuple[Views, np.ndarray]:
    """``({view: (n, d) float array}, labels)`` of one dataset, views from its own feature groups."""
    from sklearn import datasets

    if name in ("breast_cancer", "tiny"):
        data = datasets.load_breast_cancer()
        names = list(data.feature_names)
        groups = {"mean": [i for i, f in enumerate(names) if f.startswith("mean ")],
                  "error": [i for i, f in enumerate(names) if f.endswith(" error")],
                  "worst": [i for i, f in enumerate(names) if f.startswith("worst ")]}
        assert all(len(g) == 10 for g in groups.values()), groups
        if name == "tiny":
            groups = {"mean": groups["mean"], "error": groups["error"]}
        return {v: data.data[:, cols].astype(np.float64) for v, cols in groups.items()}, data.target
    if name == "digits":
        data = datasets.load_digits()
        img = data.images.astype(np.float64)  # (n, 8, 8)
        quadrants = {"top_left": img[:, :4, :4], "top_right": img[:, :4, 4:],
                     "bottom_left": img[:, 4:, :4], "bottom_right": img[:, 4:, 4:]}
        return {v: q.reshape(len(img), 16) for v, q in quadrants.items()}, data.target
    if name == "iris":
        data = datasets.load_iris()
        names = list(data.feature_names)
        groups = {"sepal": [i for i, f in enumerate(names) if f.startswith("sepal")],
                  "petal": [i for i, f in enumerate(names) if f.startswith("petal")]}
        assert all(len(g) == 2 for g in groups.values()), groups
        return {v: data.data[:, cols].astype(np.float64) for v, cols in groups.items()}, data.target
    raise ValueError(f"unknown dataset {name!r}; choose from {', '.join(DATASETS)}")


def split(name: str, y: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Stratified train/test row indices: 30% test, or 40 training rows for ``tiny``."""
    from sklearn.model_selection import train_test_split

    rows = np.arange(len(y))
    if name == "tiny":
        train, test = train_test_split(rows, train_size=TINY_TRAIN, stratify=y, random_state=seed)
    else:
        train, test = train_test_split(rows, test_size=TEST_SIZE, stratify=y, random_state=seed)
    return np.sort(train), np.sort(test)


# -- conditions ---------------------------------------------------------------------------------------


def missing_view_mask(n: int, n_views: int, p: float, rng: np.random.Generator) -> np.ndarray:
    """``(n, n_views)`` bool, True where a view is kept: each view is dropped independently with
    probability ``p``; a sample that lost every view is redrawn until it keeps at least one."""
    if not 0 <= p < 1:
        raise ValueError(f"p must be in [0, 1), got {p}")
    keep = rng.random((n, n_views)) >= p
    empty = ~keep.any(axis=1)
    while empty.any():
        keep[empty] = rng.random((int(empty.sum()), n_views)) >= p
        empty = ~keep.any(axis=1)
    return keep


def expected_missing_share(n_views: int, p: float) -> float:
    """The share of views missing that `missing_view_mask` gives: P(dropped | not all dropped)."""
    return (p - p**n_views) / (1 - p**n_views)


def conditions(view_names: Sequence[str], n: int, seed: int, dataset: str,
               missing_rates: Sequence[float]) -> dict[str, np.ndarray]:
    """``{condition: (n, n_views) keep mask}``: all present, each view alone, random missing at each p."""
    k = len(view_names)
    out = {"all": np.ones((n, k), dtype=bool)}
    for j, v in enumerate(view_names):
        keep = np.zeros((n, k), dtype=bool)
        keep[:, j] = True
        out[f"only {v}"] = keep
    for p in missing_rates:
        rng = np.random.default_rng([seed, zlib.crc32(dataset.encode()), int(round(p * 1000))])
        out[f"missing p={p:g}"] = missing_view_mask(n, k, p, rng)
    return out


def with_missing(views: Views, keep: np.ndarray) -> Views:
    """Copy of ``views`` with each view's rows set to NaN where ``keep`` is False for it."""
    out = {}
    for j, (v, x) in enumerate(views.items()):
        arr = np.array(x, dtype=np.float64, copy=True)
        arr[~keep[:, j]] = np.nan
        out[v] = arr
    return out


# -- methods ------------------------------------------------------------------------------------------


def product_rule(log_probas: Sequence[np.ndarray], present: np.ndarray, log_prior: np.ndarray | None = None
                 ) -> np.ndarray:
    """Late fusion by the product rule: per sample, the sum over the views it has of the log class
    probabilities, minus ``(k - 1) * log_prior`` when a log prior is given (k: views present).

    ``log_probas[j]``: (n, C) log-probabilities of view j's model (any finite value where the view is
    absent: it is not used); ``present``: (n, n_views) bool. Returns (n, C) unnormalised log scores.
    """
    present = np.asarray(present, dtype=bool)
    scores = np.zeros_like(np.asarray(log_probas[0], dtype=np.float64))
    for j, lp in enumerate(log_probas):
        scores += np.where(present[:, j:j + 1], lp, 0.0)
    if log_prior is not None:
        k = present.sum(axis=1, keepdims=True)
        scores -= (k - 1) * np.asarray(log_prior, dtype=np.float64)[None, :]
    return scores


class PerViewSVM:
    """One StandardScaler + Platt-calibrated RBF SVC per view; product-rule fusion of the views present."""

    def __init__(self, seed: int):
        self.seed = seed

    def fit(self, views: Views, y: np.ndarray) -> PerViewSVM:
        from sklearn.calibration import CalibratedClassifierCV
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler
        from sklearn.svm import SVC

        self.classes_ = np.unique(y)
        counts = np.array([(y == c).sum() for c in self.classes_], dtype=np.float64)
        self.log_prior_ = np.log(counts / counts.sum())
        # Platt scaling on 5-fold cross-validated decision values, then one SVC on every training row:
        # what SVC(probability=True) did before scikit-learn 1.9 deprecated it.
        self.models_ = {v: make_pipeline(StandardScaler(),
                                         CalibratedClassifierCV(SVC(kernel="rbf"), method="sigmoid", cv=5,
                                                                ensemble=False)).fit(x, y)
                        for v, x in views.items()}
        return self

    def predict(self, views: Views) -> np.ndarray:
        names = list(self.models_)
        n = len(next(iter(views.values())))
        present = np.stack([~np.isnan(views[v]).any(axis=1) for v in names], axis=1)
        log_probas = []
        for j, v in enumerate(names):
            lp = np.zeros((n, len(self.classes_)))
            rows = present[:, j]
            if rows.any():
                model = self.models_[v]
                assert np.array_equal(model.classes_, self.classes_)
                lp[rows] = np.log(np.clip(model.predict_proba(views[v][rows]), 1e-12, None))
            log_probas.append(lp)
        return self.classes_[product_rule(log_probas, present, self.log_prior_).argmax(axis=1)]


class ConcatHGB:
    """HistGradientBoostingClassifier on the concatenated views; missing views stay NaN."""

    def __init__(self, seed: int):
        self.seed = seed

    def fit(self, views: Views, y: np.ndarray) -> ConcatHGB:
        from sklearn.ensemble import HistGradientBoostingClassifier

        self.model_ = HistGradientBoostingClassifier(random_state=self.seed).fit(np.hstack(list(views.values())), y)
        return self

    def predict(self, views: Views) -> np.ndarray:
        return self.model_.predict(np.hstack(list(views.values())))


class ConcatLogReg:
    """Logistic regression on the concatenated views: training-mean imputation, then StandardScaler."""

    def __init__(self, seed: int):
        self.seed = seed

    def fit(self, views: Views, y: np.ndarray) -> ConcatLogReg:
        from sklearn.impute import SimpleImputer
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        self.model_ = make_pipeline(SimpleImputer(strategy="mean", keep_empty_features=True), StandardScaler(),
                                    LogisticRegression(max_iter=5000, random_state=self.seed))
        self.model_.fit(np.hstack(list(views.values())), y)
        return self

    def predict(self, views: Views) -> np.ndarray:
        return self.model_.predict(np.hstack(list(views.values())))


class Modalbag:
    """modalbag through its public API, one optimization strategy."""

    def __init__(self, seed: int, strategy: str, train_options: Mapping[str, Any] | None = None):
        self.seed, self.strategy = seed, strategy
        self.train_options = dict(train_options or {})

    def fit(self, views: Views, y: np.ndarray) -> Modalbag:
        import modalbag

        model = modalbag.create_model_from_arrays({v: (x, "tabular") for v, x in views.items()}, labels=y)
        model.create_ensemble(random_state=self.seed)
        model.select_base_learners(task_type="classification", num_classes=len(np.unique(y)),
                                   optimization_strategy=self.strategy)
        model.train_ensemble(random_state=self.seed, **self.train_options)
        self.model_ = model
        summary = model.get_training_summary()
        self.trainers = dict(Counter(r.spec.trainer for r in model.learners.values()))
        self.failed_learners = summary["failed"]
        return self

    def predict(self, views: Views) -> np.ndarray:
        details = self.model_.predict_details(views)  # what predict() returns, plus the fallback count
        self.last_fallback = int(np.asarray(details.fallback).sum())
        return np.asarray(details.predictions)


def method_factories(strategies: Sequence[str], modalbag_options: Mapping[str, Any] | None = None
                     ) -> dict[str, Callable[[int], Any]]:
    """``{method name: seed -> unfitted model}`` for the baselines and each modalbag strategy."""
    out: dict[str, Callable[[int], Any]] = dict(zip(BASELINES, (PerViewSVM, ConcatHGB, ConcatLogReg), strict=True))
    for s in strategies:
        out[f"mb_{s}"] = lambda seed, s=s: Modalbag(seed, s, modalbag_options)
    return out


# -- running ------------------------------------------------------------------------------------------


def _threads(threads: int | None):
    """Limit the BLAS and OpenMP pools to ``threads`` (None: leave the libraries' defaults)."""
    import contextlib

    from threadpoolctl import threadpool_limits

    return contextlib.nullcontext() if threads is None else threadpool_limits(limits=threads)


def _count_warnings(out: dict[str, Any], method: str, caught: Sequence[warnings.WarningMessage]) -> None:
    """Warnings raised while ``method`` fitted, counted by category (first message kept), not printed."""
    if not caught:
        return
    seen: dict[str, Any] = {}
    for w in caught:
        entry = seen.setdefault(w.category.__name__, {"count": 0, "first": str(w.message).splitlines()[0][:200]})
        entry["count"] += 1
    out["warnings"][method] = seen


def run_seed(dataset: str, views: Views, y: np.ndarray, seed: int, methods: Mapping[str, Callable[[int], Any]],
             missing_rates: Sequence[float], log: Callable[[str], None] = lambda _: None,
             threads: int | None = 1) -> dict[str, Any]:
    """Train every method on one split and score it under every condition; every figure measured."""
    train, test = split(dataset, y, seed)
    train_views = {v: x[train] for v, x in views.items()}
    test_views = {v: x[test] for v, x in views.items()}
    conds = conditions(list(views), len(test), seed, dataset, missing_rates)
    inputs = {c: with_missing(test_views, keep) for c, keep in conds.items()}
    out: dict[str, Any] = {
        "seed": seed, "n_train": len(train), "n_test": len(test),
        "missing_share": {c: float(1 - keep.mean()) for c, keep in conds.items()},
        "train_seconds": {}, "train_cpu_seconds": {}, "accuracy": {c: {} for c in conds}, "errors": {},
        "modalbag": {}, "warnings": {},
    }
    for name, factory in methods.items():
        try:
            with _threads(threads), warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                model = factory(seed)
                started, cpu = time.perf_counter(), time.process_time()
                try:
                    model.fit(train_views, y[train])
                finally:
                    _count_warnings(out, name, caught)
                out["train_seconds"][name] = time.perf_counter() - started
                out["train_cpu_seconds"][name] = time.process_time() - cpu
                fallback = {}
                for c, data in inputs.items():
                    predicted = model.predict(data)
                    out["accuracy"][c][name] = float(np.mean(predicted == y[test]))
                    if isinstance(model, Modalbag):
                        fallback[c] = model.last_fallback
            if isinstance(model, Modalbag):
                out["modalbag"][name] = {"trainers": model.trainers, "failed_learners": model.failed_learners,
                                         "n_fallback": fallback}
            log(f"  {dataset} seed {seed} {name}: {out['train_seconds'][name]:.2f}s, "
                f"all views {out['accuracy']['all'][name]:.3f}")
        except Exception as exc:  # a failing method is a result: recorded, the run goes on
            out["errors"][name] = f"{type(exc).__name__}: {exc}"
            out["train_seconds"].pop(name, None)
            out["train_cpu_seconds"].pop(name, None)
            for c in conds:
                out["accuracy"][c].pop(name, None)
            log(f"  {dataset} seed {seed} {name}: FAILED {out['errors'][name]}")
            out.setdefault("tracebacks", {})[name] = traceback.format_exc()
            log(out["tracebacks"][name].rstrip())
    return out


def summarize(per_seed: Sequence[Mapping[str, Any]], methods: Sequence[str]) -> dict[str, Any]:
    """Means over the seeds on which a method ran (with how many that was)."""
    conds = list(per_seed[0]["accuracy"])
    acc = {c: {} for c in conds}
    std = {c: {} for c in conds}
    secs, cpu, n_ok = {}, {}, {}
    for m in methods:
        runs = [r for r in per_seed if m in r["train_seconds"]]
        n_ok[m] = len(runs)
        if not runs:
            continue
        secs[m] = float(np.mean([r["train_seconds"][m] for r in runs]))
        cpu[m] = float(np.mean([r["train_cpu_seconds"][m] for r in runs]))
        for c in conds:
            values = [r["accuracy"][c][m] for r in runs]
            acc[c][m] = float(np.mean(values))
            std[c][m] = float(np.std(values))
    share = {c: float(np.mean([r["missing_share"][c] for r in per_seed])) for c in conds}
    return {"accuracy": acc, "accuracy_std": std, "train_seconds": secs, "train_cpu_seconds": cpu, "seeds_ok": n_ok,
            "missing_share": share}


def run_dataset(dataset: str, seeds: Sequence[int], strategies: Sequence[str], missing_rates: Sequence[float],
                modalbag_options: Mapping[str, Any] | None = None, threads: int | None = 1,
                log: Callable[[str], None] = lambda _: None) -> dict[str, Any]:
    """Every seed of one dataset, with the per-seed figures and their means.

    ``threads``: BLAS/OpenMP threads for every method while it fits and predicts, and modalbag's
    ``threads_per_learner`` (None: every library's own default)."""
    views, y = load_dataset(dataset)
    options = dict(modalbag_options or {})
    if threads is not None:
        options.setdefault("threads_per_learner", threads)
    methods = method_factories(strategies, options)
    first_fit = warm_up(dataset, views, y, seeds[0], methods, threads)
    per_seed = [run_seed(dataset, views, y, s, methods, missing_rates, log, threads) for s in seeds]
    return {
        "dataset": dataset, "views": {v: x.shape[1] for v, x in views.items()}, "n_samples": len(y),
        "n_classes": int(len(np.unique(y))), "seeds": list(seeds), "methods": list(methods),
        "first_fit_seconds": first_fit, "per_seed": per_seed, "mean": summarize(per_seed, list(methods)),
    }


def warm_up(dataset: str, views: Views, y: np.ndarray, seed: int, methods: Mapping[str, Callable[[int], Any]],
            threads: int | None) -> dict[str, float]:
    """Fit every method once on the first seed's split, untimed in the table: a process's first fit
    pays one-off costs (imports, plugin discovery, BLAS start-up) that the per-seed figures should not
    mix with training. Returns each method's first-fit seconds, printed beside the table."""
    train, _ = split(dataset, y, seed)
    out = {}
    for name, factory in methods.items():
        started = time.perf_counter()
        try:
            with _threads(threads), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                factory(seed).fit({v: x[train] for v, x in views.items()}, y[train])
        except Exception:  # noqa: BLE001, S112 - the timed runs record the failure
            continue
        out[name] = time.perf_counter() - started
    return out


def format_table(result: Mapping[str, Any]) -> str:
    """Rows: conditions (with the realised share of views missing), columns: methods; mean accuracy."""
    methods, mean = result["methods"], result["mean"]
    first = result["per_seed"][0]
    lines = [f"{result['dataset']}: views {', '.join(f'{v} ({d})' for v, d in result['views'].items())}; "
             f"{result['n_classes']} classes; train {first['n_train']}, test {first['n_test']}; "
             f"seeds {','.join(map(str, result['seeds']))}; accuracy, mean over seeds",
             "| condition | missing | " + " | ".join(methods) + " |",
             "|---|---|" + "---|" * len(methods)]
    for c, row in mean["accuracy"].items():
        cells = [f"{row[m]:.3f}" if m in row else "error" for m in methods]
        lines.append(f"| {c} | {mean['missing_share'][c]:.2f} | " + " | ".join(cells) + " |")
    cells = [f"{mean['train_seconds'][m]:.2f}" if m in mean["train_seconds"] else "error" for m in methods]
    lines.append("| train seconds | | " + " | ".join(cells) + " |")
    cells = [f"{mean['train_cpu_seconds'][m]:.2f}" if m in mean["train_cpu_seconds"] else "error" for m in methods]
    lines.append("| train CPU seconds | | " + " | ".join(cells) + " |")
    base = mean["train_seconds"].get("svm_prod")
    if base:
        cells = [f"{mean['train_seconds'][m] / base:.1f}x" if m in mean["train_seconds"] else "error"
                 for m in methods]
        lines.append("| train time / svm_prod | | " + " | ".join(cells) + " |")
    notes = []
    for m in methods:
        if 0 < mean["seeds_ok"][m] < len(result["seeds"]):
            notes.append(f"{m} ran on {mean['seeds_ok'][m]} of {len(result['seeds'])} seeds")
        errors = {r["errors"][m] for r in result["per_seed"] if m in r["errors"]}
        notes += [f"{m} failed: {e}" for e in sorted(errors)]
        raised = Counter()
        for r in result["per_seed"]:
            for category, entry in r["warnings"].get(m, {}).items():
                raised[category] += entry["count"]
        if raised:
            notes.append(f"{m} warnings while fitting (all seeds): "
                         + ", ".join(f"{c} x{n}" for c, n in sorted(raised.items())))
        trainers = Counter()
        fallback = 0
        for r in result["per_seed"]:
            info = r["modalbag"].get(m)
            if info:
                trainers.update(info["trainers"])
                fallback += sum(info["n_fallback"].values())
        if trainers:
            picked = ", ".join(f"{t} x{n / mean['seeds_ok'][m]:.3g}" for t, n in sorted(trainers.items()))
            notes.append(f"{m} learners: {picked} (per seed, mean over seeds); test samples on the prior "
                         f"fallback, all conditions and seeds: {fallback}")
    first = result.get("first_fit_seconds") or {}
    if first:
        notes.append("first fit in the process, untimed above (imports, plugin discovery): "
                     + ", ".join(f"{m} {t:.2f}s" for m, t in first.items()))
    return "\n".join(lines + [f"  {n}" for n in notes])


def _csv(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="one seed, modalbag 'balanced' only, no p=0.7 condition (unless given explicitly)")
    parser.add_argument("--seeds", help="comma-separated split seeds (default 0,1,2; --quick: 0)")
    parser.add_argument("--strategies", help=f"modalbag optimization strategies (default {','.join(STRATEGIES)}; "
                                             "--quick: balanced; 'none' for baselines only)")
    parser.add_argument("--datasets", default=",".join(DATASETS), help=f"comma-separated, of {','.join(DATASETS)}")
    parser.add_argument("--missing-rates", help="comma-separated p (default 0.5,0.7; --quick: 0.5)")
    parser.add_argument("--threads", type=int, default=1,
                        help="threads for every method (BLAS/OpenMP pools, modalbag threads_per_learner); "
                             "0: each library's default. Default 1: equal for all, and steady on a shared machine")
    parser.add_argument("--json", help="also write every figure here")
    parser.add_argument("--verbose", action="store_true", help="one line per method and seed as it finishes")
    args = parser.parse_args(argv)

    seeds = [int(s) for s in _csv(args.seeds)] if args.seeds else ([0] if args.quick else [0, 1, 2])
    if args.strategies is None:
        strategies = ["balanced"] if args.quick else list(STRATEGIES)
    else:
        strategies = [] if args.strategies.strip() == "none" else _csv(args.strategies)
    rates = [float(p) for p in _csv(args.missing_rates)] if args.missing_rates else (
        [0.5] if args.quick else list(MISSING_RATES))
    datasets = _csv(args.datasets)
    for d in datasets:
        if d not in DATASETS:
            parser.error(f"unknown dataset {d!r}; choose from {', '.join(DATASETS)}")
    for s in strategies:
        if s not in STRATEGIES:
            parser.error(f"unknown strategy {s!r}; choose from {', '.join(STRATEGIES)}")

    info = machine_info()
    print_machine(info)
    print(f"seeds {seeds}; modalbag strategies {strategies or 'none'}; missing rates {rates}; "
          f"threads per method {args.threads or 'library default'}\n")
    log = print if args.verbose else (lambda _: None)
    started = time.perf_counter()
    results = {}
    for d in datasets:
        t0 = time.perf_counter()
        results[d] = run_dataset(d, seeds, strategies, rates, threads=args.threads or None, log=log)
        results[d]["wall_seconds"] = time.perf_counter() - t0
        print(format_table(results[d]))
        print(f"  ({results[d]['wall_seconds']:.1f}s for this dataset)\n", flush=True)
    total = time.perf_counter() - started
    info["load_average_end"] = _load()
    print(f"total {total:.1f}s; load average (1 min) at start {info['load_average_start']}, "
          f"at end {info['load_average_end']}")
    report = {"machine": info, "seeds": seeds, "strategies": strategies, "missing_rates": rates,
              "threads": args.threads or None,
              "total_seconds": total, "datasets": results}
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(report, fh, indent=2)
    return report


if __name__ == "__main__":
    main()
