"""The generalisation remedies, each on and off, on clean and shifted test data.

One synthetic task (the spec's three kinds of modality at small sizes, 3 classes), an ensemble of
``--bags`` neural learners trained ``--epochs`` epochs per setting, the same seed and bags for all:

- ``baseline``: the defaults;
- ``adversarial``: ``adversarial_training=True`` (FGSM, epsilon 0.1 standard deviations, ratio 0.5);
- ``tta``: ``test_time_augmentation=True`` (8 copies);
- ``diversity``: ``ensemble_diversity_weight=0.5``;
- ``heads``: ``ncl_members=4, ncl_lambda=0``: four task heads per learner on shared encoders,
  trained together without the negative correlation penalty (the control for ``ncl``);
- ``ncl``: ``ncl_members=4`` at the default ``ncl_lambda`` (0.5): the same heads trained with
  negative correlation learning; the heads' disagreement on the clean test rows is printed for both;
- ``student``: ``model.distill()`` of the baseline ensemble, one network (its prediction latency
  is printed beside the ensemble's).

Domain adaptation is scored apart, on a covariate shift of every modality (each feature rescaled
by 0.5x to 2x and moved by up to one standard deviation, the same draw for all target rows): the
``baseline`` (source only) against ``domain_adaptation='coral'`` and ``'dann'``, each given ``--test``
unlabelled target rows (another draw than the test rows) as ``target_data``; printed: accuracy on
clean held-out rows and on shifted ones, the domain classifier's AUC and the training time.

Test conditions on ``--test`` held-out samples: ``clean``; ``noise`` (Gaussian noise of 0.5 standard
deviations on every feature); ``shift`` (every feature of the ``meta`` modality moved by one standard
deviation: a covariate shift); ``missing`` (the ``image`` modality absent); ``fgsm`` (the
autonomous-vehicle safety report's attack, ``adversarial_testing=True``: every feature of the clean
rows moved by ``--epsilon`` standard deviations along the sign of the ensemble's neural learners'
summed loss gradient, each model attacked with its own gradients; the student, not an ensemble, is
not attacked). Printed: accuracy per
setting and condition, its change against the baseline, and the training time against the
baseline's. Every figure is measured in the run; the machine is printed first.

    python benchmarks/generalisation.py [--samples 1000] [--test 1000] [--bags 4] [--epochs 15] [--epsilon 0.1]
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import numpy as np

import modalbag
from modalbag.io.machine import describe_machine, machine_line

MODALITIES = {"text": (64, "text"), "image": (96, "image"), "meta": (12, "tabular")}
SETTINGS: dict[str, dict[str, Any]] = {
    "baseline": {},
    "adversarial": {"adversarial_training": True, "adversarial_epsilon": 0.1, "adversarial_ratio": 0.5},
    "tta": {"test_time_augmentation": True, "tta_samples": 8},
    "diversity": {"ensemble_diversity_weight": 0.5},
    "heads": {"ncl_members": 4, "ncl_lambda": 0.0},
    "ncl": {"ncl_members": 4},
}


def conditions(data: dict[str, np.ndarray], seed: int) -> dict[str, dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    sd = {m: x.std(axis=0) for m, x in data.items()}
    noisy = {m: (x + 0.5 * sd[m] * rng.normal(size=x.shape)).astype(np.float32) for m, x in data.items()}
    shifted = dict(data, meta=(data["meta"] + sd["meta"]).astype(np.float32))
    missing = {m: x for m, x in data.items() if m != "image"}
    return {"clean": data, "noise": noisy, "shift": shifted, "missing": missing}


DOMAIN_SETTINGS: dict[str, dict[str, Any]] = {"coral": {"domain_adaptation": "coral"},
                                               "dann": {"domain_adaptation": "dann"}}


def domain_shift(seed: int, reference: dict[str, np.ndarray]) -> Any:
    """One covariate shift of every feature (scale 0.5x-2x, offset up to one standard deviation of
    ``reference``), drawn once, as a function applied alike to target and test rows."""
    rng = np.random.default_rng(seed)
    scale = {m: rng.uniform(0.5, 2.0, x.shape[1:]) for m, x in reference.items()}
    offset = {m: rng.uniform(-1.0, 1.0, x.shape[1:]) * x.std(axis=0) for m, x in reference.items()}
    return lambda data: {m: (x * scale[m] + offset[m]).astype(np.float32) for m, x in data.items()}


def fgsm_accuracy(model: Any, data: dict[str, np.ndarray], labels: np.ndarray, epsilon: float) -> float:
    """Accuracy under the safety report's FGSM attack at ``epsilon`` standard deviations (the report's
    other measurements kept as cheap as it allows)."""
    report = model.get_safety_validation_report(data, labels, adversarial_testing=True, adversarial_epsilon=epsilon,
                                                worst_case_analysis=False, noise_levels=(0.5,), latency_samples=1,
                                                throughput_batch=1, throughput_seconds=0.0)
    return float(report["adversarial"]["adversarial_accuracy"])


def head_spread(model: Any, data: dict[str, np.ndarray]) -> float | None:
    """Mean squared distance of the heads' probability vectors from their mean, over the rows and the
    learners with ``ncl_members`` (None without any)."""
    spreads = []
    for record in model.learners.values():
        outputs = getattr(record.model, "member_outputs", None)
        if outputs is None or record.model.options.ncl_members < 2:
            continue
        members = outputs({m: data[m] for m in record.spec.modalities})
        spreads.append(float(np.square(members - members.mean(axis=0)).sum(axis=-1).mean()))
    return float(np.mean(spreads)) if spreads else None


def train(options: dict[str, Any], args: argparse.Namespace) -> tuple[Any, float]:
    model = modalbag.create_synthetic_model(MODALITIES, n_samples=args.samples, n_classes=3, random_state=0)
    model.create_ensemble(n_bags=args.bags, random_state=0)
    model.select_base_learners(trainers=["neural"], instantiate=False)
    started = time.perf_counter()
    model.train_ensemble(epochs=args.epochs, enable_denoising=False, save_checkpoints=False, threads_per_learner=1,
                         random_state=0, **options)
    return model, time.perf_counter() - started


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--test", type=int, default=1000)
    parser.add_argument("--bags", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--epsilon", type=float, default=0.1,
                        help="FGSM step in standard deviations of each feature (the safety report's default)")
    args = parser.parse_args(argv)
    print(machine_line(describe_machine()))
    train({}, argparse.Namespace(**{**vars(args), "epochs": 1}))  # untimed: imports and first-fit costs
    accuracy: dict[str, dict[str, float]] = {}
    seconds: dict[str, float] = {}
    spread: dict[str, float | None] = {}
    baseline = None
    tests = None
    for name, options in SETTINGS.items():
        model, seconds[name] = train(options, args)
        if tests is None:
            data, labels = model.synthetic_task.sample(args.test, random_state=99)
            tests = (conditions(data, 7), labels)
        inputs, labels = tests
        accuracy[name] = {c: float(np.mean(model.predict(x) == labels)) for c, x in inputs.items()}
        accuracy[name]["fgsm"] = fgsm_accuracy(model, inputs["clean"], labels, args.epsilon)
        spread[name] = head_spread(model, inputs["clean"])
        if name == "baseline":
            baseline = model
    assert baseline is not None and tests is not None
    inputs, labels = tests
    started = time.perf_counter()
    student = baseline.distill(epochs=args.epochs * 2)
    seconds["student"] = seconds["baseline"] + time.perf_counter() - started
    classes = baseline.classes_
    accuracy["student"] = {}
    for c, x in inputs.items():
        full = {m: x.get(m, np.zeros((len(labels), *baseline.dataset.specs[m].shape), np.float32))
                for m in baseline.dataset.specs}
        masks = {m: np.full(len(labels), m in x) for m in baseline.dataset.specs}
        predicted = classes[student.model.predict_output(full, masks).argmax(axis=1)]
        accuracy["student"][c] = float(np.mean(predicted == labels))
    accuracy["student"]["fgsm"] = None  # the report attacks an ensemble; the student is one learner
    clean = inputs["clean"]
    shifted = domain_shift(5, baseline.dataset.arrays)
    target_rows = shifted(baseline.synthetic_task.sample(args.test, random_state=98)[0])
    domain_tests = {"clean": clean, "target": shifted(clean)}
    domain = {"source-only": {c: float(np.mean(baseline.predict(x) == labels)) for c, x in domain_tests.items()}}
    domain_seconds = {"source-only": seconds["baseline"]}
    domain_auc = {}
    for name, options in DOMAIN_SETTINGS.items():
        model, domain_seconds[name] = train({**options, "target_data": target_rows}, args)
        domain[name] = {c: float(np.mean(model.predict(x) == labels)) for c, x in domain_tests.items()}
        domain_auc[name] = model.domain_weights.summary()["domain_auc"]
    t0 = time.perf_counter()
    baseline.predict(clean)
    ensemble_ms = (time.perf_counter() - t0) * 1e3
    t0 = time.perf_counter()
    student.model.predict_output(clean)
    student_ms = (time.perf_counter() - t0) * 1e3

    conds = [*inputs, "fgsm"]
    print(f"\n{args.samples} training samples, {args.test} test, {args.bags} neural bags, {args.epochs} epochs\n")
    print("| setting | " + " | ".join(conds) + " | train time / baseline |")
    print("|---|" + "---|" * (len(conds) + 1))
    for name in accuracy:
        cells = []
        for c in conds:
            if accuracy[name][c] is None:
                cells.append("n/a")
                continue
            delta = accuracy[name][c] - accuracy["baseline"][c]
            cells.append(f"{accuracy[name][c]:.3f}" + ("" if name == "baseline" else f" ({delta:+.3f})"))
        print(f"| {name} | " + " | ".join(cells) + f" | {seconds[name] / seconds['baseline']:.2f}x |")
    print(f"\nfgsm: the safety report's attack at epsilon {args.epsilon:g} standard deviations per feature")
    for name, value in spread.items():
        if value is not None:
            print(f"{name}: the heads' probability vectors lie {value:.4f} (mean squared distance) from their mean "
                  f"on the clean test rows")
    print(f"\nprediction of {args.test} clean rows: ensemble {ensemble_ms:.1f} ms, student {student_ms:.1f} ms; "
          f"student agrees with the ensemble on {student.validation['teacher_agreement']:.1%} of training rows")
    print(f"\ndomain adaptation to a shift of every feature ({args.test} unlabelled target rows; the domain "
          f"classifier's AUC {next(iter(domain_auc.values()), float('nan')):.3f})\n")
    print("| setting | clean | target | train time / source-only |")
    print("|---|---|---|---|")
    for name, scores in domain.items():
        cells = [f"{scores[c]:.3f}" + ("" if name == "source-only" else f" ({scores[c] - domain['source-only'][c]:+.3f})")
                 for c in ("clean", "target")]
        print(f"| {name} | " + " | ".join(cells) + f" | {domain_seconds[name] / domain_seconds['source-only']:.2f}x |")
    return {"accuracy": accuracy, "seconds": seconds, "head_spread": spread, "ensemble_ms": ensemble_ms, "student_ms": student_ms,
            "domain": domain, "domain_seconds": domain_seconds, "domain_auc": domain_auc}


if __name__ == "__main__":
    main()
