"""Accuracy as modalities go missing: the ensemble vs its best eligible learner vs one fusion network.

Trains an ensemble on a synthetic task, then scores held-out samples drawn from the same task:
with every modality present, with each modality subset present, and with a growing share of
modalities missing per sample (0 to 0.9). Two baselines, measured in the same run on the same rows:

- ``best_learner``: for each sample, the ensemble learner with the best held-out accuracy among
  those that can see what the sample has (an oracle choice: an upper bound for picking one learner);
- ``fusion``: the learner trained on the full modality set alone, fed only the modalities the sample
  has (its fusion masks the rest), i.e. plain fusion without modality-dropout bagging.

    python benchmarks/missing_modalities.py [--quick] [--json results.json]
"""

from __future__ import annotations

import argparse
import itertools
import json
import time

import numpy as np

from modalbag import create_synthetic_model

MODALITIES = {"text_embeddings": (768, "text"), "image_features": (2048, "image"), "user_metadata": (50, "tabular")}
QUICK = {"text_embeddings": (64, "text"), "image_features": (96, "image"), "user_metadata": (12, "tabular")}


def drop(data: dict[str, np.ndarray], keep: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Copy of ``data`` with rows where ``keep[name]`` is False set to NaN (missing)."""
    out = {}
    for name, array in data.items():
        arr = array.astype(np.float32, copy=True)
        arr[~keep[name]] = np.nan
        out[name] = arr
    return out


def random_missing(names: list[str], n: int, share: float, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Each sample loses round(share * M) modalities at random, always keeping at least one."""
    m = len(names)
    k_missing = min(m - 1, int(round(share * m)))
    keep = np.ones((n, m), dtype=bool)
    for i in range(n):
        keep[i, rng.choice(m, k_missing, replace=False)] = False
    return {name: keep[:, j] for j, name in enumerate(names)}


def learner_scores(model, data, y) -> dict[str, np.ndarray]:
    """Per-learner correctness (1/0/NaN where it cannot see the sample) on held-out rows."""
    out = {}
    for lid, rec in model.learners.items():
        if not rec.ok:
            continue
        mods = rec.spec.modalities
        ok = np.all([~np.isnan(data[m].reshape(len(y), -1)).any(axis=1) for m in mods], axis=0)
        correct = np.full(len(y), np.nan)
        if ok.any():
            proba = rec.model.predict_output({m: data[m][ok] for m in mods})
            correct[ok] = (model.task.classes[proba.argmax(axis=1)] == y[ok]).astype(float)
        out[lid] = correct
    return out


def fusion_accuracy(model, data, y) -> float:
    """The full-set learner alone, fed whatever modalities each sample has (masked fusion)."""
    full = [r for r in model.learners.values() if r.ok and len(r.spec.modalities) == len(model.dataset.names)]
    rec = full[0]
    masks = {m: ~np.isnan(data[m].reshape(len(y), -1)).any(axis=1) for m in rec.spec.modalities}
    inputs = {m: np.nan_to_num(data[m]) for m in rec.spec.modalities}
    has_any = np.any(list(masks.values()), axis=0)
    proba = rec.model.predict_output({m: inputs[m][has_any] for m in inputs}, {m: masks[m][has_any] for m in masks})
    return float(np.mean(model.task.classes[proba.argmax(axis=1)] == y[has_any]))


def best_learner_accuracy(model, data, y, reference: dict[str, np.ndarray]) -> float:
    """Per sample, the learner with the best *all-present* held-out accuracy among those that see it."""
    scores = learner_scores(model, data, y)
    rank = sorted(scores, key=lambda lid: -np.nanmean(reference[lid]))
    result = np.full(len(y), np.nan)
    for lid in reversed(rank):  # best last, so it overwrites
        seen = ~np.isnan(scores[lid])
        result[seen] = scores[lid][seen]
    return float(np.nanmean(result))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small dimensions and epochs (about a minute)")
    parser.add_argument("--json", help="also write the results here")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    mods = QUICK if args.quick else MODALITIES
    model = create_synthetic_model(mods, n_samples=1000 if args.quick else 2000, n_classes=5, random_state=args.seed)
    model.create_ensemble(n_bags=14 if args.quick else 20, dropout_strategy="adaptive", random_state=args.seed)
    started = time.perf_counter()
    model.train_ensemble(epochs=30 if args.quick else 50, enable_denoising=False, mixed_precision=False,
                         save_checkpoints=False, random_state=args.seed)
    train_seconds = time.perf_counter() - started
    data, y = model.synthetic_task.sample(3000, random_state=args.seed + 1000)
    names = list(mods)
    reference = learner_scores(model, data, y)
    rows = []
    for k in range(len(names), 0, -1):
        for subset in itertools.combinations(names, k):
            keep = {n: np.full(len(y), n in subset) for n in names}
            view = drop(data, keep)
            ens = model.evaluate(view, y)["accuracy"]
            rows.append({"present": list(subset), "ensemble": ens, "best_learner": best_learner_accuracy(model, view, y, reference),
                         "fusion": fusion_accuracy(model, view, y)})
    rng = np.random.default_rng(args.seed)
    shares = []
    for share in (0.0, 0.3, 0.5, 0.7, 0.9):
        view = drop(data, random_missing(names, len(y), share, rng))
        shares.append({"missing_share": share, "ensemble": model.evaluate(view, y)["accuracy"],
                       "best_learner": best_learner_accuracy(model, view, y, reference),
                       "fusion": fusion_accuracy(model, view, y)})
    print(f"trained {len(model.learners)} learners in {train_seconds:.1f}s; held-out n={len(y)}, chance=0.20")
    print(f"{'present':55s} {'ensemble':>9s} {'best_lrn':>9s} {'fusion':>9s}")
    for r in rows:
        print(f"{'+'.join(r['present']):55s} {r['ensemble']:9.3f} {r['best_learner']:9.3f} {r['fusion']:9.3f}")
    print(f"\n{'missing share per sample':55s} {'ensemble':>9s} {'best_lrn':>9s} {'fusion':>9s}")
    for r in shares:
        print(f"{r['missing_share']:<55.1f} {r['ensemble']:9.3f} {r['best_learner']:9.3f} {r['fusion']:9.3f}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"train_seconds": train_seconds, "subsets": rows, "missing_share": shares}, fh, indent=2)


if __name__ == "__main__":
    main()
