"""The measured effect of denoising on one trained ensemble: a twin trained the other way.

`measure_denoising_impact` trains a twin of the model with ``enable_denoising`` flipped and
everything else equal (the same bags, learners, seeds and options), then scores both ensembles
on the same rows under the conditions that matter for multimodal models:

- ``all_present``: every modality as given;
- ``missing:<m>``: modality m absent from every sample;
- ``only:<m>``: m the only modality present;
- ``noisy``: every modality present with Gaussian noise of ``noise`` feature standard deviations.

Each condition reports the score with denoising, without it, and ``difference = with - without``
(the task's primary metric: accuracy, R^2, or F1 for multilabel). ``denoising_impact`` is the
``all_present`` difference and ``robustness_impact`` the mean difference over the degraded
conditions. This is a real second training run: it costs as much as the first.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from modalbag.errors import DataError, NotFittedError

PRIMARY = {"classification": "accuracy", "regression": "r2", "multilabel": "f1"}


def conditions(data: Mapping[str, np.ndarray], noise: float, seed: int) -> dict[str, dict[str, np.ndarray]]:
    """The views of ``data`` each model is scored on (see the module docstring)."""
    names = list(data)
    out: dict[str, dict[str, np.ndarray]] = {"all_present": dict(data)}
    if len(names) > 1:
        for m in names:
            out[f"missing:{m}"] = {k: v for k, v in data.items() if k != m}
        for m in names:
            out[f"only:{m}"] = {m: data[m]}
    if noise > 0:
        rng = np.random.default_rng(seed)
        noisy = {}
        for m, v in data.items():
            v = np.asarray(v, dtype=np.float32)
            scale = np.nanstd(v, axis=0, keepdims=True)
            noisy[m] = v + noise * scale * rng.standard_normal(v.shape).astype(np.float32)
        out["noisy"] = noisy
    return out


def measure_denoising_impact(model: Any, data: Mapping[str, np.ndarray], labels: Any, *, noise: float = 1.0,
                             seed: int = 0) -> dict[str, Any]:
    """Train ``model``'s twin with denoising flipped and compare both on ``(data, labels)``."""
    if model.ensemble is None or model.training_config is None:
        raise NotFittedError("measure_denoising_impact compares two trained ensembles: call train_ensemble() first")
    if not data:
        raise DataError("measure_denoising_impact needs held-out data: {modality: array} and labels")
    config = model.training_config
    twin = type(model)(model.dataset, task_type=model.task_type, catalog=model.catalog, plugins=model.plugins)
    twin.ensemble_config, twin.bags, twin.learner_specs = model.ensemble_config, model.bags, model.learner_specs
    with_denoising = config.enable_denoising
    twin.train_ensemble(**{**config.to_dict(), "enable_denoising": not with_denoising, "run_dir": None,
                           "save_checkpoints": False, "sinks": [], "tensorboard_logging": False, "wandb_logging": False,
                           "profile_training": False})
    denoised, plain = (model, twin) if with_denoising else (twin, model)
    metric = PRIMARY[model.task_type]
    table = {}
    for name, view in conditions(data, noise, seed).items():
        a = denoised.evaluate(view, labels)[metric]
        b = plain.evaluate(view, labels)[metric]
        table[name] = {"with_denoising": a, "without_denoising": b, "difference": a - b}
    degraded = [row["difference"] for name, row in table.items() if name != "all_present"]
    result = {
        "metric": metric,
        "conditions": table,
        "denoising_impact": table["all_present"]["difference"],
        "robustness_impact": float(np.mean(degraded)) if degraded else None,
        "objectives": list(config.denoising_objectives),
        "rows": len(np.asarray(labels)),
        "noise": noise,
    }
    model.denoising_impact = result
    return result


__all__ = ["conditions", "measure_denoising_impact"]
