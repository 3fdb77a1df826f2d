"""Shared fixtures: small synthetic tasks and one trained ensemble reused across tests."""

from __future__ import annotations

import numpy as np
import pytest

from modalbag import Catalog, create_synthetic_model

SMALL = {"text": (16, "text"), "image": (24, "image"), "meta": (6, "tabular")}

#: Fast training options for tests: no plugins that later issues add, few epochs, no files.
FAST = {"epochs": 12, "enable_denoising": False, "mixed_precision": False, "save_checkpoints": False,
        "warmup_epochs": 1, "early_stopping_patience": 5, "batch_size": 64}


def make_model(n_samples: int = 400, n_classes: int = 3, seed: int = 0, **kwargs):
    return create_synthetic_model(SMALL, n_samples=n_samples, n_classes=n_classes, random_state=seed, **kwargs)


@pytest.fixture(autouse=True, scope="session")
def _private_decision_cache(tmp_path_factory):
    """Kept precision decisions go to a folder of this session, not the user's cache: each test run
    starts without decisions, and leaves none behind."""
    import os

    folder = tmp_path_factory.mktemp("modalbag-cache")
    previous = os.environ.get("MODALBAG_CACHE_DIR")
    os.environ["MODALBAG_CACHE_DIR"] = str(folder)
    yield folder
    if previous is None:
        os.environ.pop("MODALBAG_CACHE_DIR", None)
    else:
        os.environ["MODALBAG_CACHE_DIR"] = previous


@pytest.fixture(scope="session")
def trained_model():
    """A 7-bag ensemble on a 3-modality task, trained once per session (about ten seconds)."""
    model = make_model(n_samples=600)
    model.create_ensemble(n_bags=7, dropout_strategy="adaptive", random_state=0)
    model.select_base_learners(trainers=["neural"], instantiate=False)
    model.train_ensemble(**FAST)
    return model


@pytest.fixture(scope="session")
def held_out(trained_model):
    """Fresh samples of the same synthetic task: (data, labels)."""
    return trained_model.synthetic_task.sample(600, random_state=99)


def with_missing(data: dict[str, np.ndarray], name: str, rows: np.ndarray | slice) -> dict[str, np.ndarray]:
    """A copy of ``data`` where modality ``name`` is missing (all-NaN) on ``rows``."""
    out = {k: v.copy() for k, v in data.items()}
    out[name][rows] = np.nan
    return out


def catalog_without(*entry_points: str) -> Catalog:
    """The installed plugins minus ``entry_points`` (``"precision.amp"``, ...): a machine lacking them."""
    catalog = Catalog()
    catalog._entry_points = [(ep, src) for ep, src in catalog._entry_points if src.entry_point not in entry_points]
    return catalog
