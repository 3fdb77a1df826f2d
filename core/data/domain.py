"""Unlabelled rows of the target domain (``target_data=``) and the importance weights they give.

``domain_adaptation`` trains on labelled *source* rows for use on a *target* domain whose inputs
differ (another hospital's scanner, next year's customers). The user gives target rows without
labels, in the training data's modalities and shapes (`target_domain_inputs` checks them);
`AdaptedDataset` carries them beside the training data to every learner's fit, where the neural
trainer aligns its fused representation across the two domains. `importance_weights` estimates
``p(target | x) / p(source | x)`` for each source row with a logistic domain classifier (the density
ratio of covariate shift, Shimodaira 2000; Bickel et al., 2009): the ensemble's combination weighs
its out-of-fold rows by it, so the experts are weighted for the rows they will meet.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

import attrs
import numpy as np

from modalbag.data.dataset import MultimodalDataset
from modalbag.errors import DataError, close_matches
from modalbag.kernel.modalities import ModalitySpec

#: Importance weights are clipped to [1 / WEIGHT_CLIP, WEIGHT_CLIP] before they are normalised: a few
#: source rows that look like nothing but target would otherwise carry the whole fit.
WEIGHT_CLIP = 10.0
#: Rows of each domain the domain classifier is fitted on at most (a seeded sample beyond).
_CLASSIFIER_ROWS = 20000
#: A modality's summary features beyond this many are randomly projected down to it.
_MAX_FEATURES = 256


@attrs.define
class AdaptedDataset(MultimodalDataset):
    """The training data with the target domain's unlabelled rows beside it (``target_domain``)."""

    target_domain: MultimodalDataset | None = attrs.field(default=None, repr=False, eq=False, kw_only=True)

    @classmethod
    def of(cls, dataset: MultimodalDataset, target: MultimodalDataset) -> AdaptedDataset:
        """``dataset`` (its arrays shared, not copied) carrying ``target``."""
        fields = {f.name: getattr(dataset, f.name) for f in attrs.fields(type(dataset)) if f.init}
        fields.pop("target_domain", None)
        return cls(**fields, target_domain=target)


def target_domain(dataset: Any) -> MultimodalDataset | None:
    """The target-domain rows a dataset carries (an `AdaptedDataset`), else None."""
    return getattr(dataset, "target_domain", None)


def target_domain_inputs(data: Any, specs: Mapping[str, ModalitySpec]) -> MultimodalDataset:
    """``target_data=``: unlabelled target-domain rows, checked against the training modalities ``specs``.

    ``{modality: array}`` or ``{modality: (array, type)}`` as the training data; NaN rows and absent
    modalities are missing, as in training data. A modality the training data lacks, another
    per-sample shape, or fewer than 2 rows with any modality is a `DataError` saying what to change.
    """
    if isinstance(data, MultimodalDataset):
        data = {name: (array, data.specs[name].type) for name, array in data.arrays.items()}
    if not isinstance(data, Mapping) or not data:
        raise DataError(f"target_data must be a non-empty mapping {{modality: array}} like the training data "
                        f"(modalities {', '.join(specs)}), got {type(data).__name__}")
    typed = {}
    for name, value in data.items():
        if name not in specs:
            hint = close_matches(str(name), specs, n=1)
            raise DataError(f"target_data has modality {name!r}, which the training data lacks"
                            + (f" (did you mean {hint[0]!r}?)" if hint else "")
                            + f"; give target_data the training modalities: {', '.join(specs)}")
        array = np.asarray(value[0] if isinstance(value, tuple) else value)
        if array.ndim == 1:
            array = array[:, None]
        if tuple(array.shape[1:]) != specs[name].shape:
            raise DataError(f"target_data[{name!r}] has per-sample shape {tuple(array.shape[1:])}, but the "
                            f"training data's {name!r} has {specs[name].shape}; give target rows shaped like the "
                            f"training rows")
        typed[name] = (array, specs[name].type)
    try:
        ds = MultimodalDataset.from_arrays(typed)
    except DataError as exc:
        raise DataError(f"target_data: {exc}") from exc
    n = ds.n_samples
    usable = int(ds.presence().any(axis=1).sum())
    if usable < 2:
        raise DataError(f"target_data has {usable} rows with any modality present; domain adaptation compares the "
                        f"two domains' distributions and needs at least 2 target rows (a few hundred for a useful "
                        f"estimate)")
    for name, spec in specs.items():
        if name not in ds.arrays:
            ds.arrays[name] = np.zeros((n, *spec.shape), dtype=np.float32)
            ds.masks[name] = np.zeros(n, dtype=bool)
    ds.arrays = {name: ds.arrays[name] for name in specs}
    ds.masks = {name: ds.masks[name] for name in specs}
    ds.specs = dict(specs)
    return ds


# -- importance weights -------------------------------------------------------------------------------


@attrs.frozen
class DomainWeights:
    """Each source row's importance weight (mean 1) and how separable the two domains were."""

    weights: np.ndarray = attrs.field(eq=False)  #: (n_source,) p(target|x)/p(source|x), clipped, mean 1
    auc: float  #: the domain classifier's ROC AUC, out of fold (0.5: the domains look alike)
    clipped: float  #: share of source rows whose weight was clipped

    def summary(self) -> dict[str, float]:
        w = self.weights
        return {"domain_auc": self.auc, "weight_min": float(w.min()), "weight_max": float(w.max()),
                "effective_rows": float(w.sum() ** 2 / np.square(w).sum()), "clipped_share": self.clipped}


def domain_features(dataset: MultimodalDataset, seed: int = 0) -> np.ndarray:
    """(n, F) features for the domain classifier: vectors as they are, images as per-channel mean and
    standard deviation, sequences as per-feature mean and standard deviation over time; wide ones
    randomly projected to `_MAX_FEATURES`; a presence column per modality, zeros where it is missing."""
    rng = np.random.default_rng(seed)
    blocks = []
    for name in dataset.names:
        array, present = dataset.arrays[name], dataset.masks[name]
        x = np.asarray(array, dtype=np.float32)
        if x.ndim == 3:  # (T, F)
            x = np.concatenate([x.mean(axis=1), x.std(axis=1)], axis=1)
        elif x.ndim == 4:  # (C, H, W)
            x = np.concatenate([x.mean(axis=(2, 3)), x.std(axis=(2, 3))], axis=1)
        else:
            x = x.reshape(len(x), -1)
        if x.shape[1] > _MAX_FEATURES:
            x = x @ (rng.standard_normal((x.shape[1], _MAX_FEATURES)).astype(np.float32) / np.sqrt(_MAX_FEATURES))
        blocks.append(np.where(present[:, None], x, 0.0))
        blocks.append(present[:, None].astype(np.float32))
    return np.concatenate(blocks, axis=1)


def importance_weights(source: MultimodalDataset, target: MultimodalDataset, seed: int = 0,
                       clip: float = WEIGHT_CLIP) -> DomainWeights:
    """``p(target | x) / p(source | x)`` for every source row from an L2 logistic domain classifier
    (classes balanced, so the odds are the density ratio), clipped to [1/clip, clip], mean 1."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import cross_val_predict

    xs, xt = domain_features(source, seed), domain_features(target, seed)
    rng = np.random.default_rng(seed)
    fit_s = rng.choice(len(xs), _CLASSIFIER_ROWS, replace=False) if len(xs) > _CLASSIFIER_ROWS else np.arange(len(xs))
    fit_t = rng.choice(len(xt), _CLASSIFIER_ROWS, replace=False) if len(xt) > _CLASSIFIER_ROWS else np.arange(len(xt))
    x = np.concatenate([xs[fit_s], xt[fit_t]])
    mean, std = x.mean(axis=0), x.std(axis=0)
    std = np.where(std > 1e-8, std, 1.0)
    x = (x - mean) / std
    y = np.concatenate([np.zeros(len(fit_s)), np.ones(len(fit_t))])
    classifier = LogisticRegression(C=1.0, class_weight="balanced", max_iter=500)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # an unconverged last digit changes no weight that matters
        folds = min(5, len(fit_t), len(fit_s))
        auc = float("nan")
        if folds >= 2:
            oof = cross_val_predict(classifier, x, y, cv=folds, method="predict_proba")[:, 1]
            auc = float(roc_auc_score(y, oof))
        classifier.fit(x, y)
    logit = classifier.decision_function((xs - mean) / std)
    ratio = np.exp(np.clip(logit, -np.log(clip), np.log(clip)))
    clipped = float(np.mean(np.abs(logit) >= np.log(clip)))
    return DomainWeights(ratio / ratio.mean(), auc, clipped)


__all__ = ["WEIGHT_CLIP", "AdaptedDataset", "DomainWeights", "domain_features", "importance_weights",
           "target_domain", "target_domain_inputs"]
