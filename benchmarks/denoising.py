"""The measured effect of cross-modal denoising: accuracy by condition, and the cost per step.

Trains the same ensemble (same seed, same bags) without denoising, with all five objectives (every
step, and taking turns one per step: ``denoising_objectives_per_step=1``), and with each objective
alone, on a synthetic task whose modalities share a latent factor. Scores
held-out samples of the same task:

- ``all``: every modality present;
- ``-<m>``: modality m missing for every sample;
- ``only <m>``: just modality m present;
- ``noisy``: every modality present, with Gaussian noise of one feature standard deviation added.

Two columns per condition: the ensemble (routing + out-of-bag weights) and the full-set fusion
learner alone, fed what is present (its masked fusion), which shows the objectives' direct effect.
``step ms`` is the median time of one training step (batch 32) of the full-set fusion network, the
settings interleaved in one process, and ``cost`` its ratio to no denoising. A second table gives
the step cost of no denoising, the default pair and all five (every step and one per step) for this model and for the spec's
Quick Start dimensions (768-, 2048- and 50-d inputs), at batch sizes 32, 64 and 256.

    python benchmarks/denoising.py [--quick] [--json out.json] [--steps-only] [--only SETTING ...]
    python benchmarks/denoising.py --op-count    # why the step costs what it does: operators x cost
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from modalbag import create_synthetic_model

MODALITIES = {"text_embeddings": (128, "text"), "image_features": (256, "image"), "user_metadata": (24, "tabular")}
OBJECTIVES = ["reconstruction", "alignment", "consistency", "information", "prediction"]
QUICK_START_DIMS = {"text_embeddings": 768, "image_features": 2048, "user_metadata": 50}  # the spec's example
TAKING_TURNS = {"denoising_objectives_per_step": 1}

Setting = tuple[str, list[str], dict]  # name, objectives, extra training options
SETTINGS: list[Setting] = ([("none", [], {}), ("all five", OBJECTIVES, {}),
                            ("all five, turns", OBJECTIVES, TAKING_TURNS)]
                           + [(o, [o], {}) for o in OBJECTIVES])


def conditions(data: dict[str, np.ndarray], rng: np.random.Generator) -> dict[str, dict[str, np.ndarray]]:
    names = list(data)
    out = {"all": data}
    for m in names:
        out[f"-{m.split('_')[0]}"] = {k: v for k, v in data.items() if k != m}
    for m in names:
        out[f"only {m.split('_')[0]}"] = {m: data[m]}
    out["noisy"] = {k: v + rng.normal(0, 1, v.shape).astype(np.float32) * v.std(axis=0) for k, v in data.items()}
    return out


def fusion_accuracy(model, view: dict[str, np.ndarray], y: np.ndarray) -> float:
    record = next(r for r in model.learners.values() if r.ok and len(r.spec.modalities) == len(model.dataset.names))
    n = len(y)
    inputs = {m: view.get(m, np.zeros((n, *model.dataset.specs[m].shape), np.float32)) for m in record.spec.modalities}
    masks = {m: np.full(n, m in view) for m in record.spec.modalities}
    proba = record.model.predict_output(inputs, masks)
    return float(np.mean(model.task.classes[proba.argmax(axis=1)] == y))


def step_setups(settings: list[Setting], dims: dict[str, int] | None = None, batch_size: int = 32):
    """One full-set fusion network, denoising loss and fused AdamW per setting, and ``step(*parts)``,
    which runs one training step of them on a fixed random batch (forward, objectives, backward,
    clipping, optimizer step, zero_grad), as the neural trainer's loop does."""
    import torch

    from modalbag import Catalog, TrainingConfig
    from modalbag.denoising.objectives import AdvancedCrossModalDenoisingLoss, DenoisingContext
    from modalbag.plugins.trainers.neural import (
        FusionNetwork,
        Standardize,
        VectorEncoder,
    )

    catalog = Catalog()
    torch.manual_seed(0)
    dims = dims or {m: d for m, (d, _) in MODALITIES.items()}
    batch = {m: torch.randn(batch_size, d) for m, d in dims.items()}
    masks = torch.ones(batch_size, len(dims), dtype=torch.bool)
    y = torch.randint(0, 5, (batch_size,))
    setups = {}
    for name, objectives, extra in settings:
        net = FusionNetwork({m: VectorEncoder(d, 128, 64, 0.1) for m, d in dims.items()},
                            {m: Standardize(np.zeros(d, np.float32), np.ones(d, np.float32)) for m, d in dims.items()},
                            64, 128, 5, 0.1, {m: (d,) for m, d in dims.items()})
        loss_fn = None
        if objectives:
            config = TrainingConfig.from_dict({"denoising_objectives": objectives, "mixed_precision": False, **extra},
                                              catalog=catalog)
            loss_fn = AdvancedCrossModalDenoisingLoss(config, catalog=catalog)
            loss_fn.setup(net, "classification", 5)
            net.aux["denoising"] = loss_fn
        # fused, as the adamw plugin builds it on CPU and CUDA
        setups[name] = (net, loss_fn, torch.optim.AdamW(net.parameters(), 1e-3, fused=True))

    def step(net, loss_fn, opt):
        out = net(batch, masks)
        loss = torch.nn.functional.cross_entropy(out["logits"], y)
        if loss_fn is not None:
            ctx = DenoisingContext(net, tuple(dims), out["embeddings"], masks, out["hidden"], out["fused"],
                                   out["logits"], y, "classification", 10, fusion_scores=out["fusion_scores"])
            total, _, _ = loss_fn.compute(ctx, loss)
            loss = loss + total
        loss.backward()
        # as FitState.clip_gradients: the optimizer's parameter list, no module traversal per step
        torch.nn.utils.clip_grad_norm_(opt.param_groups[0]["params"], 1.0, foreach=True)
        opt.step()
        opt.zero_grad(set_to_none=True)

    return setups, step


def step_costs(settings: list[Setting], rounds: int = 7, steps: int = 20,
               dims: dict[str, int] | None = None, batch_size: int = 32) -> dict[str, float]:
    """Median ms per training step of one full-set fusion network, per setting, settings interleaved.

    Interleaving rounds (A B C ... A B C ...) makes every setting see the same machine load, so the
    ratios hold even when the absolute times drift.
    """
    setups, step = step_setups(settings, dims, batch_size)
    times: dict[str, list[float]] = {name: [] for name in setups}
    for name, parts in setups.items():  # warm-up
        for _ in range(5):
            step(*parts)
    for _ in range(rounds):
        for name, parts in setups.items():
            started = time.perf_counter()
            for _ in range(steps):
                step(*parts)
            times[name].append(1000 * (time.perf_counter() - started) / steps)
    return {name: float(np.median(t)) for name, t in times.items()}


def count_step(step, parts) -> dict:
    """What one training step executes, counted deterministically (no clock): aten operator calls in
    forward, objectives, backward, clipping, optimizer step and zero_grad (a ``TorchDispatchMode``
    sees every call that reaches a kernel, autograd's backward included, on the calling thread),
    those calls by operator name, the matmul FLOPs (``FlopCounterMode``: mm, bmm, addmm, baddbmm and
    their backward; elementwise work is not counted), how many of the calls only make views or
    detach (`VIEW_OPS`: no kernel runs) and the parameter tensors the optimizer updates.
    Run it after a warm-up step, so that optimizer state and cached index tensors already exist."""
    import collections

    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils.flop_counter import FlopCounterMode

    class Calls(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.by_op: collections.Counter[str] = collections.Counter()


        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            self.by_op[str(func.overloadpacket)] += 1
            return func(*args, **(kwargs or {}))

    calls = Calls()
    with calls:
        step(*parts)
    flops = FlopCounterMode(display=False)
    with flops:
        step(*parts)
    opt = parts[2]
    return {"ops": sum(calls.by_op.values()), "by_op": dict(calls.by_op), "flops": int(flops.get_total_flops()),
            "view_ops": sum(n for op, n in calls.by_op.items() if op in VIEW_OPS),
            "params": sum(len(g["params"]) for g in opt.param_groups)}


def op_counts(settings: list[Setting], dims: dict[str, int] | None = None, batch_size: int = 32,
              steps: int = 1) -> dict[str, dict]:
    """`count_step` per setting; with ``steps`` > 1, the mean over that many consecutive steps (when
    objectives take turns, each step runs a different one: pass a multiple of their number)."""
    setups, step = step_setups(settings, dims, batch_size)
    found = {}
    for name, parts in setups.items():
        step(*parts)  # warm-up: optimizer state, cached index tensors
        counts = [count_step(step, parts) for _ in range(steps)]
        found[name] = {key: (sum(c[key] for c in counts) / steps if key != "by_op" else counts[0][key])
                       for key in counts[0]}
    return found


def fit_step_times(points: list[dict], terms: tuple[str, ...] = ("ops", "flops")) -> dict[str, float]:
    """Least squares of ``ms ~ sum_k c_k * point[k]`` over ``points`` (no intercept: a step with no
    operators costs nothing), weighted by 1/ms so every point counts by its relative error."""
    a = np.array([[p[k] for k in terms] for p in points], dtype=float)
    t = np.array([p["ms"] for p in points], dtype=float)
    coef, *_ = np.linalg.lstsq(a / t[:, None], np.ones_like(t), rcond=None)
    return dict(zip(terms, coef.tolist(), strict=True))


VIEW_OPS = frozenset(f"aten.{n}" for n in (
    "detach", "view", "_unsafe_view", "t", "transpose", "unsqueeze", "squeeze", "select", "expand", "permute",
    "diagonal", "split", "split_with_sizes", "unbind", "slice", "alias", "as_strided", "reshape", "narrow"))


def trivial_op_cost(length: int = 50, repeats: int = 200) -> float:
    """Median us per aten call of ``length`` multiplications of a 1-element tensor and their backward:
    what an operator costs in eager PyTorch on this CPU when its arithmetic is nothing."""
    import torch

    x = torch.ones(1, requires_grad=True)

    def chain():
        y = x
        for _ in range(length):
            y = y * 1.0001
        y.sum().backward()
        x.grad = None

    calls = op_total(chain)
    times = []
    for i in range(repeats + 10):
        started = time.perf_counter()
        chain()
        if i >= 10:
            times.append(1e6 * (time.perf_counter() - started))
    return float(np.median(times)) / calls


def op_total(fn) -> int:
    """The aten operator calls ``fn()`` makes."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class Total(TorchDispatchMode):
        calls = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            Total.calls += 1
            return func(*args, **(kwargs or {}))

    with Total():
        fn()
    return Total.calls


def optimizer_cost(n_tensors: int, numel: int = 64, repeats: int = 200) -> float:
    """Median us of clipping (foreach), fused AdamW and zero_grad over ``n_tensors`` small parameter
    tensors (``numel`` elements each, so that only the per-tensor bookkeeping counts)."""
    import torch

    params = [torch.nn.Parameter(torch.randn(numel)) for _ in range(n_tensors)]
    opt = torch.optim.AdamW(params, 1e-3, fused=True)
    times = []
    for i in range(repeats + 10):
        for p in params:
            p.grad = torch.ones_like(p)
        started = time.perf_counter()
        torch.nn.utils.clip_grad_norm_(params, 1.0, foreach=True)
        opt.step()
        opt.zero_grad(set_to_none=True)
        if i >= 10:
            times.append(1e6 * (time.perf_counter() - started))
    return float(np.median(times))


def op_cost_report(settings: list[Setting], batch_sizes=(1, 64, 256), rounds: int = 7, steps: int = 20) -> dict:
    """Counts (`op_counts`) and timings (`step_costs`) per setting and batch size, the fitted cost per
    operator call and per matmul FLOP, each point's prediction, and the floor of every objective every
    step: its operators at the fitted cost with the base step's arithmetic only."""
    points = []
    for b in batch_sizes:
        counts = op_counts(settings, batch_size=b, steps=5)
        times = step_costs(settings, rounds=rounds, steps=steps, batch_size=b)
        for name in counts:
            points.append({"setting": name, "batch": b, "ms": times[name], "ratio": times[name] / times["none"],
                           **{k: v for k, v in counts[name].items() if k != "by_op"}})
    coef = fit_step_times(points)
    for p in points:
        p["kernel_ops"] = p["ops"] - p["view_ops"]
    coef3 = fit_step_times(points, ("kernel_ops", "view_ops", "flops"))
    for p in points:
        p["predicted_ms"] = coef["ops"] * p["ops"] + coef["flops"] * p["flops"]
    for p in points:
        base = next(q for q in points if q["batch"] == p["batch"] and q["setting"] == "none")
        p["predicted_ratio"] = p["predicted_ms"] / base["predicted_ms"]
        # the objectives' arithmetic free, their operator calls (and the base step's arithmetic) kept
        p["floor_ratio"] = ((coef["ops"] * p["ops"] + coef["flops"] * base["flops"])
                            / (coef["ops"] * base["ops"] + coef["flops"] * base["flops"]))
    return {"points": points, "us_per_op": 1000 * coef["ops"], "gflops_per_s": 1e-6 / coef["flops"],
            "three_terms": {"us_per_kernel_op": 1000 * coef3["kernel_ops"], "us_per_view_op": 1000 * coef3["view_ops"],
                            "gflops_per_s": 1e-6 / coef3["flops"]},
            "trivial_op_us": trivial_op_cost(),
            "optimizer_us": {n: optimizer_cost(n) for n in (22, 43, 86)}}


def print_op_costs(report: dict) -> None:
    print("what one training step executes, the benchmark's model (aten operator calls in forward, objectives, "
          "backward, clipping, AdamW and zero_grad; matmul FLOPs; parameter tensors)")
    print(f"{'setting':16s} {'batch':>5s} {'ops':>6s} {'params':>6s} {'MFLOP':>7s} {'ms':>7s} {'ratio':>6s} "
          f"{'pred ms':>7s} {'pred':>6s} {'resid':>6s} {'floor':>6s}")
    for p in report["points"]:
        print(f"{p['setting']:16s} {p['batch']:5d} {p['ops']:6.0f} {p['params']:6.0f} {p['flops'] / 1e6:7.1f} "
              f"{p['ms']:7.2f} {p['ratio']:5.2f}x {p['predicted_ms']:7.2f} {p['predicted_ratio']:5.2f}x "
              f"{p['ms'] / p['predicted_ms'] - 1:+6.0%} {p['floor_ratio']:5.2f}x")
    t = report["three_terms"]
    print(f"fit ms = ops x {report['us_per_op']:.2f} us + FLOPs / {report['gflops_per_s']:.1f} GFLOP/s "
          f"(weighted least squares over every row; resid = measured / predicted - 1; floor = the ratio with "
          f"the objectives' arithmetic free and their operators kept)")
    print(f"with views apart: {t['us_per_kernel_op']:.2f} us per kernel call, {t['us_per_view_op']:.2f} us per "
          f"view or detach, {t['gflops_per_s']:.1f} GFLOP/s")
    print(f"a chain of 1-element multiplications with its backward, in a loop: {report['trivial_op_us']:.2f} us "
          f"per aten call (the dispatcher and autograd alone, no nn.Module)")
    print("clipping + fused AdamW + zero_grad over n small parameter tensors: "
          + ", ".join(f"{n}: {us:.0f} us" for n, us in report["optimizer_us"].items()))


def run(setting: str, objectives: list[str], extra: dict, args: argparse.Namespace, test, rng_seed: int) -> dict:
    model = create_synthetic_model(MODALITIES, n_samples=args.n_samples, n_classes=5, random_state=args.seed,
                                   noise=args.noise)
    model.create_ensemble(n_bags=7, dropout_strategy="adaptive", random_state=args.seed)
    started = time.perf_counter()
    model.train_ensemble(epochs=args.epochs, enable_denoising=bool(objectives),
                         denoising_objectives=objectives or ["reconstruction"], denoising_strategy="adaptive",
                         denoising_weight=args.weight, mixed_precision=False, save_checkpoints=False,
                         early_stopping_patience=10, random_state=args.seed, **extra)
    seconds = time.perf_counter() - started
    data, y = test
    views = conditions(data, np.random.default_rng(rng_seed))
    row = {"setting": setting, "train_seconds": seconds}
    for name, view in views.items():
        row[name] = {"ensemble": model.evaluate(view, y)["accuracy"], "fusion": fusion_accuracy(model, view, y)}
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer epochs and samples")
    parser.add_argument("--json", help="also write the results here")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--weight", type=float, default=0.1, help="denoising_weight")
    parser.add_argument("--noise", type=float, default=0.8, help="synthetic modality noise")
    parser.add_argument("--no-step-table", action="store_true",
                        help="skip the step-cost table by model and batch size")
    parser.add_argument("--steps-only", action="store_true",
                        help="only the step costs (no training): timings want an otherwise idle machine")
    parser.add_argument("--op-count", action="store_true",
                        help="only the operator-count model of the step cost: counts, timings at batch 1, 64 "
                             "and 256, the fitted cost per operator and per FLOP, and the floor it implies")
    parser.add_argument("--only", nargs="+", metavar="SETTING",
                        help=f"just these settings (and 'none'), from {[s[0] for s in SETTINGS]}")
    args = parser.parse_args()
    args.epochs = 12 if args.quick else 30
    args.n_samples = 600 if args.quick else 1500
    probe = create_synthetic_model(MODALITIES, n_samples=10, n_classes=5, random_state=args.seed, noise=args.noise)
    test = probe.synthetic_task.sample(3000, random_state=args.seed + 1000)
    settings = [s for s in SETTINGS if not args.only or s[0] in args.only or s[0] == "none"]
    if args.op_count:
        report = op_cost_report(settings)
        print_op_costs(report)
        if args.json:
            with open(args.json, "w") as fh:
                json.dump(report, fh, indent=2)
        return
    rows = [] if args.steps_only else [run(*setting, args, test, rng_seed=args.seed + 7) for setting in settings]
    costs = step_costs(settings)
    base = costs["none"]
    if rows:
        conds = [k for k in rows[0] if k not in ("setting", "train_seconds")]
        header = f"{'setting':15s} " + " ".join(f"{c:>15s}" for c in conds) + f" {'step ms':>8s} {'cost':>6s}"
        print(f"accuracy on {len(test[1])} held-out samples, ensemble / full-set fusion learner (chance 0.20)")
        print(header)
        for r in rows:
            r["step_ms"] = costs[r["setting"]]
            cells = " ".join(f"{r[c]['ensemble']:7.3f}/{r[c]['fusion']:.3f}" for c in conds)
            print(f"{r['setting']:15s} {cells} {r['step_ms']:8.2f} {r['step_ms'] / base:6.2f}x")
    else:
        for name, ms in costs.items():
            print(f"{name:15s} {ms:8.2f} ms {ms / base:6.2f}x")
    costs_by_model = {}
    if not args.no_step_table:
        cost_settings = [("none", [], {}), ("reconstruction + alignment", ["reconstruction", "alignment"], {}),
                         ("all five", OBJECTIVES, {}), ("all five, turns", OBJECTIVES, TAKING_TURNS)]
        print("\nstep cost by model and batch size (ms per step; ratio to no denoising)")
        for model_name, dims in (("benchmark", None), ("quick start", QUICK_START_DIMS)):
            for batch_size in (32, 64, 256):
                found = step_costs(cost_settings, dims=dims, batch_size=batch_size)
                costs_by_model[f"{model_name} b{batch_size}"] = found
                cells = "  ".join(f"{name} {ms:6.2f} ({ms / found['none']:.2f}x)" for name, ms in found.items())
                print(f"{model_name:11s} batch {batch_size:3d}  {cells}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"accuracy": rows, "step_costs": costs_by_model}, fh, indent=2)


if __name__ == "__main__":
    main()
