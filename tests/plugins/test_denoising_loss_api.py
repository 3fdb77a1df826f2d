"""The spec's `AdvancedCrossModalDenoisingLoss` API: importable from ``modalbag``,
``forward(..., original_representations=...)`` as a dict by modality or one (B, M, E) tensor,
``information`` asking for the targets it trains on, and a clear error on an unfitted learner."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

import modalbag
from modalbag import DataError, NotFittedError, TrainingConfig
from modalbag.plugins.trainers.neural import FusionNetwork, Standardize, VectorEncoder
from tests.conftest import make_model

DIMS = {"a": 12, "b": 10, "c": 8}


def network():
    torch.manual_seed(0)
    enc = {m: VectorEncoder(d, 32, 16, 0.0) for m, d in DIMS.items()}
    sc = {m: Standardize(np.zeros(d, np.float32), np.ones(d, np.float32)) for m, d in DIMS.items()}
    return FusionNetwork(enc, sc, 16, 32, 2, 0.0, {m: (d,) for m, d in DIMS.items()})


def loss_fn(*objectives):
    config = TrainingConfig.from_dict({"denoising_objectives": list(objectives), "denoising_strategy": "fixed",
                                       "mixed_precision": False})
    return modalbag.AdvancedCrossModalDenoisingLoss(config)


def batch(seed=0, n=16):
    g = torch.Generator().manual_seed(seed)
    return {m: torch.randn(n, d, generator=g) for m, d in DIMS.items()}


def test_the_loss_is_exported_from_modalbag_without_importing_torch_until_used():
    from modalbag.denoising import AdvancedCrossModalDenoisingLoss

    assert modalbag.AdvancedCrossModalDenoisingLoss is AdvancedCrossModalDenoisingLoss
    code = "import sys, modalbag; assert 'torch' not in sys.modules; modalbag.AdvancedCrossModalDenoisingLoss; " \
           "assert 'torch' in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_clean_inputs_by_modality_replace_the_noised_view_under_reconstruction():
    net, loss = network(), loss_fn("reconstruction")
    clean = batch(0)
    noised = {m: x + torch.randn_like(x) for m, x in clean.items()}
    on_clean, _ = loss(net, clean, epoch=1)
    given, terms = loss(net, noised, epoch=1, original_representations=clean)
    assert torch.allclose(given, on_clean) and set(terms) == {"reconstruction"}
    assert not torch.allclose(loss(net, noised, epoch=1)[0], on_clean)


def test_embeddings_by_modality_or_as_one_tensor_replace_the_encodings():
    net, loss = network(), loss_fn("reconstruction", "alignment")
    x = batch(1)
    plain, _ = loss(net, x, epoch=1)
    embeddings, _ = net.embed(x)
    as_tensor, _ = loss(net, x, epoch=1, original_representations=embeddings)  # was a size mismatch
    as_dict, _ = loss(net, x, epoch=1, original_representations={"b": embeddings[:, 1]})
    assert torch.allclose(as_tensor, plain, atol=1e-6) and torch.allclose(as_dict, plain, atol=1e-6)
    moved, _ = loss(net, x, epoch=1, original_representations={"b": embeddings[:, 1] + 1.0})
    assert not torch.allclose(moved, plain)


def test_wrong_original_representations_name_the_shapes_expected():
    net, loss = network(), loss_fn("reconstruction")
    x = batch(2)
    with pytest.raises(DataError, match=r"\(16, 3, 16\)"):
        loss(net, x, original_representations=torch.zeros(16, 12))
    with pytest.raises(DataError, match=r"original_representations\['a'\] has shape \(16, 5\).*\(16, 16\).*\(16, 12\)"):
        loss(net, x, original_representations={"a": torch.zeros(16, 5)})
    with pytest.raises(DataError, match="'z'"):
        loss(net, x, original_representations={"z": torch.zeros(16, 16)})


def test_information_needs_the_targets_and_says_so():
    net, loss = network(), loss_fn("information")
    x = batch(3)
    with pytest.raises(DataError, match=r"\['information'\].*target=y"):
        loss(net, x, epoch=1)
    total, terms = loss(net, x, epoch=1, target=torch.randint(0, 2, (16,)))
    assert set(terms) == {"information"} and float(total.detach()) > 0


def test_an_unfitted_learner_is_a_clear_error():
    model = make_model(n_samples=60)
    model.create_ensemble(n_bags=1, random_state=0)
    learner = next(iter(model.select_base_learners(trainers=["neural"], instantiate=True).values()))
    with pytest.raises(NotFittedError, match="train it first"):
        loss_fn("reconstruction")(learner, {"text": torch.zeros(4, 16)})
