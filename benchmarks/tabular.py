"""The GBM trainer plugins against calling each library directly: time and predictions.

For each installed library (XGBoost, LightGBM, CatBoost) one run fits the same bag twice:

- ``plugin``: the modalbag trainer's ``fit`` on a `BagData` (flattening the bag's modalities, class
  weights, per-round records through the run's hooks, native early stopping on the validation rows);
- ``direct``: the library's own training call on the same rows of the same matrix, with the very
  parameters the plugin used (``learner.params``), the same evaluation sets (training and validation:
  the plugin records both losses every round) and the same early stopping;
- ``direct_val_only``: as ``direct`` but evaluating the validation rows only, what a user who does not
  want training losses per round would write (for reference: not the same work).

After one untimed warm-up fit of each, both start from the same modality arrays (the direct path concatenates them into one matrix, as a
user would). Fits alternate (plugin, direct, direct_val_only) ``--repeats`` times. Reported: the
ratio of median wall times, and the median of the per-repeat ratios of CPU time (this process's
CPU seconds, all threads): on a machine shared with other work the wall clock of either side can
stretch by 10% or more between runs, the CPU time far less.
Predictions of the plugin (``predict_output``) and of the direct model on held-out rows must be equal.

    python benchmarks/tabular.py [--rows 10000] [--features 40] [--rounds 200] [--repeats 5] [--threads 1] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from typing import Any

import numpy as np

from modalbag import Bag, Catalog, TrainingConfig
from modalbag.data.bags import split_validation
from modalbag.data.dataset import MultimodalDataset, encode_labels
from modalbag.engine.engine import Engine
from modalbag.kernel.components import build_options
from modalbag.kernel.fit import FitState, training_seed
from modalbag.kernel.records import LearnerSpec
from modalbag.kernel.run import BagData, TaskInfo
from modalbag.plugins.trainers._tabular import library_available

LIBRARIES = ("xgboost", "lightgbm", "catboost")


def make_data(rows: int, features: int, classes: int, seed: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Two tabular modalities whose interactions decide the class (trees need depth to learn it)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, features)).astype(np.float32)
    score = x[:, 0] + np.sin(2 * x[:, 1]) + x[:, 2] * x[:, 3] - np.abs(x[:, features // 2]) + 0.5 * rng.normal(size=rows)
    edges = np.quantile(score, np.linspace(0, 1, classes + 1)[1:-1])
    half = features // 2
    return {"left": x[:, :half], "right": x[:, half:]}, np.searchsorted(edges, score)


def fit_plugin(name: str, catalog: Catalog, config: TrainingConfig, dataset: MultimodalDataset, targets: np.ndarray,
               task: TaskInfo, bag: Bag) -> tuple[Any, FitState, Any]:
    """The trainer's ``fit`` as the engine calls it: the learner, its fit state, and a call that fits."""
    component = catalog.get("trainer", name)
    run = Engine(catalog).prepare(config, task)
    spec = LearnerSpec(bag.learner_id, bag.id, name, bag.modalities, {m: "tabular" for m in bag.modalities},
                       component.factory.propose(_profile(dataset, bag, task), "balanced").architecture)
    learner = component.factory(spec, config, build_options(component, config))
    train_rows, val_rows = split_validation(bag, config.validation_split, bag.seed)
    data = BagData(arrays=dict(dataset.arrays), masks=dict(dataset.masks), specs=dict(dataset.specs),
                   targets=targets, train_rows=train_rows, val_rows=val_rows)
    state = FitState(spec=spec, bag=bag, seed=training_seed(config.random_state, bag.seed))
    return learner, state, lambda: learner.fit(data, run, state)


def _profile(dataset: MultimodalDataset, bag: Bag, task: TaskInfo) -> Any:
    from modalbag.kernel.proposals import BagProfile

    return BagProfile(bag.modalities, dataset.specs, len(bag.rows), task.task_type, task.n_outputs)


def fit_direct(name: str, params: dict[str, Any], arrays: dict[str, np.ndarray], y: np.ndarray,
               train_rows: np.ndarray, val_rows: np.ndarray, patience: int, with_train_eval: bool) -> Any:
    """The library's own API on the same rows, parameters and early stopping as the plugin."""
    params = dict(params)
    x = np.concatenate([arrays["left"], arrays["right"]], axis=1)
    xt, yt, xv, yv = x[train_rows], y[train_rows], x[val_rows], y[val_rows]
    if name == "xgboost":
        import xgboost as xgb

        rounds = params.pop("n_estimators")
        dtrain = xgb.QuantileDMatrix(xt, label=yt, nthread=params.get("nthread"))
        dval = xgb.QuantileDMatrix(xv, label=yv, ref=dtrain, nthread=params.get("nthread"))
        evals = ([(dtrain, "train")] if with_train_eval else []) + [(dval, "validation")]
        booster = xgb.train(params, dtrain, rounds, evals=evals, early_stopping_rounds=patience, verbose_eval=False)
        model = booster[: booster.best_iteration + 1]
    elif name == "lightgbm":
        import lightgbm as lgb

        rounds = params.pop("n_estimators")
        dtrain = lgb.Dataset(xt, label=yt, params={"verbose": -1})
        dval = lgb.Dataset(xv, label=yv, reference=dtrain)
        sets, names = ([dtrain, dval], ["train", "validation"]) if with_train_eval else ([dval], ["validation"])
        model = lgb.train(params, dtrain, rounds, valid_sets=sets, valid_names=names,
                          callbacks=[lgb.early_stopping(patience, first_metric_only=True, verbose=False)])
    else:
        import catboost

        model = catboost.CatBoost(params)
        # CatBoost measures the training loss every round whatever is asked; nothing to switch off
        model.fit(catboost.Pool(xt, yt), eval_set=catboost.Pool(xv, yv), early_stopping_rounds=patience,
                  use_best_model=True)
    return model


def predict_direct(name: str, model: Any, arrays: dict[str, np.ndarray]) -> np.ndarray:
    x = np.concatenate([arrays["left"], arrays["right"]], axis=1)
    if name == "xgboost":
        return model.inplace_predict(x)
    if name == "lightgbm":
        return model.predict(x, num_iteration=model.best_iteration)
    return model.predict(x, prediction_type="Probability")


def timed(fn: Any) -> tuple[Any, float, float]:
    """``fn()``, its wall seconds and this process's CPU seconds."""
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=10000)
    parser.add_argument("--features", type=int, default=40)
    parser.add_argument("--classes", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--patience", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="library threads (default: the library's)")
    parser.add_argument("--libraries", nargs="*", default=list(LIBRARIES))
    parser.add_argument("--json", help="write the results here too")
    args = parser.parse_args()

    arrays, labels = make_data(args.rows + 5000, args.features, args.classes, seed=0)
    test = {m: a[args.rows:] for m, a in arrays.items()}
    dataset = MultimodalDataset.from_arrays({m: (a[: args.rows], "tabular") for m, a in arrays.items()},
                                            labels[: args.rows])
    targets, classes = encode_labels(dataset.labels, "classification")
    task = TaskInfo("classification", len(classes), classes, np.bincount(targets) / len(targets))
    rng = np.random.default_rng(1)
    rows = np.sort(rng.choice(args.rows, args.rows, replace=True))  # a bootstrap, like a generated bag
    bag = Bag(0, ("left", "right"), rows, np.setdiff1d(np.arange(args.rows), rows), seed=7)
    options = {"n_estimators": args.rounds} | ({"threads": args.threads} if args.threads else {})
    config = TrainingConfig.from_dict({"enable_denoising": False, "mixed_precision": False, "save_checkpoints": False,
                                       "early_stopping_patience": args.patience, **options})
    catalog = Catalog()
    train_rows, val_rows = split_validation(bag, config.validation_split, bag.seed)

    results = {"machine": platform.platform(), "python": platform.python_version(), "rows": args.rows,
               "features": args.features, "classes": args.classes, "rounds": args.rounds,
               "patience": args.patience, "threads": args.threads, "repeats": args.repeats, "libraries": {}}
    print(f"{args.rows} rows x {args.features} features, {args.classes} classes, <= {args.rounds} rounds, "
          f"patience {args.patience}, threads {args.threads or 'library default'}, {args.repeats} repeats")
    print(f"{'library':9} {'version':8} {'plugin s':>9} {'direct s':>9} {'wall ratio':>10} {'cpu ratio':>9} "
          f"{'val-only s':>10} {'rounds':>6} {'pred cpu ratio':>14} {'equal':>6} {'max |diff|':>10}")
    for name in args.libraries:
        if not library_available(name):
            print(f"{name:9} not installed: pip install modalbag[{name}]")
            continue
        keys = ("plugin", "direct", "direct_val_only", "plugin_predict", "direct_predict")
        wall: dict[str, list[float]] = {key: [] for key in keys}
        cpu: dict[str, list[float]] = {key: [] for key in keys}

        def measure(key: str, fn: Any) -> Any:
            out, seconds, cpu_seconds = timed(fn)
            wall[key].append(seconds)
            cpu[key].append(cpu_seconds)
            return out

        learner, _, fit = fit_plugin(name, catalog, config, dataset, targets, task, bag)
        fit()  # warm up: the first fit imports the library and loads the plugin
        fit_direct(name, learner.params, dataset.arrays, targets, train_rows, val_rows, args.patience, True)
        for _ in range(args.repeats):
            learner, state, fit = fit_plugin(name, catalog, config, dataset, targets, task, bag)
            measure("plugin", fit)
            direct = measure("direct", lambda: fit_direct(name, learner.params, dataset.arrays, targets, train_rows,
                                                          val_rows, args.patience, True))
            measure("direct_val_only", lambda: fit_direct(name, learner.params, dataset.arrays, targets, train_rows,
                                                          val_rows, args.patience, False))
            ours = measure("plugin_predict", lambda: learner.predict_output(test))
            theirs = measure("direct_predict", lambda: predict_direct(name, direct, test))
        theirs = np.asarray(theirs, dtype=np.float64).reshape(len(ours), -1)
        if theirs.shape[1] == 1:  # one probability per row for two classes
            theirs = np.column_stack([1.0 - theirs[:, 0], theirs[:, 0]])
        medians = {key: statistics.median(values) for key, values in wall.items()}

        def paired(a: str, b: str) -> float:
            return statistics.median(x / y for x, y in zip(cpu[a], cpu[b], strict=True))

        kept = learner.info.get("rounds_kept")
        row = {"version": __import__(name).__version__, "wall_seconds": wall, "cpu_seconds": cpu,
               "wall_ratio": medians["plugin"] / medians["direct"], "cpu_ratio": paired("plugin", "direct"),
               "predict_cpu_ratio": paired("plugin_predict", "direct_predict"),
               "rounds_recorded": len(state.records), "rounds_kept": kept,
               "equal_predictions": bool(np.array_equal(ours, theirs)),
               "max_abs_difference": float(np.max(np.abs(ours - theirs)))}
        results["libraries"][name] = row
        kept = kept[0] if isinstance(kept, list) else kept
        print(f"{name:9} {row['version']:8} {medians['plugin']:9.3f} {medians['direct']:9.3f} "
              f"{row['wall_ratio']:10.3f} {row['cpu_ratio']:9.3f} {medians['direct_val_only']:10.3f} "
              f"{kept:6} {row['predict_cpu_ratio']:14.3f} {str(row['equal_predictions']):>6} "
              f"{row['max_abs_difference']:10.2e}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(results, fh, indent=2)


if __name__ == "__main__":
    main()
