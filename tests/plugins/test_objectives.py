"""The five denoising objectives: finite, learnable, gradients reach the encoders, clean skips."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from modalbag import Catalog, TrainingConfig
from modalbag.denoising.objectives import AdvancedCrossModalDenoisingLoss, DenoisingContext
from modalbag.kernel.components import build_options
from modalbag.plugins.trainers.neural import FusionNetwork, Standardize, VectorEncoder

OBJECTIVES = ["reconstruction", "alignment", "consistency", "information", "prediction"]
DIMS = {"a": 12, "b": 10, "c": 8}


@pytest.fixture(scope="module")
def catalog():
    return Catalog()


def toy(n=256, seed=0):
    """Three modalities that are noisy linear views of one latent: each predictable from the others."""
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, 4, generator=g)
    data = {m: z @ torch.randn(4, d, generator=g) + 0.1 * torch.randn(n, d, generator=g) for m, d in DIMS.items()}
    y = (z[:, 0] > 0).long()
    return data, y


def network(seed=0):
    torch.manual_seed(seed)
    enc = {m: VectorEncoder(d, 32, 16, 0.0) for m, d in DIMS.items()}
    sc = {m: Standardize(np.zeros(d, np.float32), np.ones(d, np.float32)) for m, d in DIMS.items()}
    return FusionNetwork(enc, sc, 16, 32, 2, 0.0, {m: (d,) for m, d in DIMS.items()})


def make_loss(catalog, name, **options):
    config = TrainingConfig.from_dict({"denoising_objectives": [name], "denoising_strategy": "fixed",
                                       "mixed_precision": False, **options}, catalog=catalog)
    return AdvancedCrossModalDenoisingLoss(config, catalog=catalog)


@pytest.mark.parametrize("name", OBJECTIVES)
def test_objective_is_finite_decreases_and_reaches_the_encoders(catalog, name):
    data, y = toy()
    net = network()
    loss_fn = make_loss(catalog, name)
    assert loss_fn.setup(net, "classification", 2) == []
    params = list(net.parameters()) + list(loss_fn.parameters())
    opt = torch.optim.Adam(params, lr=3e-3)
    history = []
    for step in range(80):
        idx = torch.randint(0, len(y), (64,), generator=torch.Generator().manual_seed(step))
        loss, terms = loss_fn(net, {m: x[idx] for m, x in data.items()}, epoch=1, target=y[idx])
        assert torch.isfinite(loss) and set(terms) == {name}
        opt.zero_grad()
        loss.backward()
        if step == 0:
            grads = {m: net.encoders[m].body[0].weight.grad for m in DIMS}
            assert all(g is not None and g.abs().sum() > 0 for g in grads.values()), name
        opt.step()
        history.append(float(loss.detach()))
    assert np.mean(history[-10:]) < np.mean(history[:10]), (name, history[:3], history[-3:])


@pytest.mark.parametrize("name", OBJECTIVES)
def test_objective_handles_missing_rows_and_modalities(catalog, name):
    data, y = toy(64)
    net = network()
    loss_fn = make_loss(catalog, name)
    loss_fn.setup(net, "classification", 2)
    partial = {m: x.clone() for m, x in data.items() if m != "c"}  # 'c' absent from the batch
    partial["a"][::2] = float("nan")  # and 'a' missing on half the rows
    loss, _ = loss_fn(net, partial, epoch=1, target=y)
    assert torch.isfinite(loss)
    loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in net.parameters() if p.grad is not None)


@pytest.mark.parametrize("name", ["reconstruction", "alignment", "consistency", "prediction"])
def test_multimodal_objectives_skip_single_modality_learners_with_a_note(catalog, name):
    torch.manual_seed(0)
    single = FusionNetwork({"a": VectorEncoder(12, 32, 16, 0.0)},
                           {"a": Standardize(np.zeros(12, np.float32), np.ones(12, np.float32))}, 16, 32, 2, 0.0,
                           {"a": (12,)})
    loss_fn = make_loss(catalog, name)
    notes = loss_fn.setup(single, "classification", 2)
    assert notes == [f"objective {name!r} skipped: it needs 2 modalities and this learner has 1"]
    loss, terms = loss_fn(single, {"a": torch.randn(8, 12)}, target=torch.zeros(8, dtype=torch.long))
    assert terms == {} and float(loss.detach()) == 0.0


def test_denoising_modalities_restricts_targets(catalog):
    data, y = toy(32)
    net = network()
    loss_fn = make_loss(catalog, "reconstruction", denoising_modalities=["b"])
    loss_fn.setup(net, "classification", 2)
    out = net(data, torch.ones(32, 3, dtype=torch.bool))
    ctx = DenoisingContext(net, ("a", "b", "c"), out["embeddings"], torch.ones(32, 3, dtype=torch.bool),
                           out["hidden"], out["fused"], out["logits"], y, "classification", 1)
    _, _, metrics = loss_fn.compute(ctx)
    assert "reconstruction.b" in metrics and "reconstruction.a" not in metrics


def test_alignment_temperature_and_hard_negatives_change_the_loss(catalog):
    data, y = toy(64)
    net = network()
    values = []
    for options in ({"contrastive_temperature": 0.1}, {"contrastive_temperature": 1.0},
                    {"contrastive_temperature": 0.1, "hard_negative_beta": 5.0}):
        torch.manual_seed(1)
        loss_fn = make_loss(catalog, "alignment", **options)
        loss_fn.setup(net, "classification", 2)
        values.append(float(loss_fn(net, data, target=y)[0].detach()))
    assert len({round(v, 6) for v in values}) == 3


def test_alignment_weight_scales_the_alignment_term(catalog):
    data, y = toy(64)
    net = network()
    out = []
    for weight in (1.0, 3.0):
        torch.manual_seed(2)
        loss_fn = make_loss(catalog, "alignment", alignment_weight=weight)
        loss_fn.setup(net, "classification", 2)
        out.append(float(loss_fn(net, data, target=y)[0].detach()))
    assert out[1] == pytest.approx(3 * out[0], rel=1e-5)


def test_consistency_drop_rate_follows_a_curriculum(catalog):
    config = TrainingConfig.from_dict({"denoising_objectives": ["consistency"], "denoising_strategy": "curriculum",
                                       "epochs": 20, "consistency_drop_rate": 0.6, "mixed_precision": False},
                                      catalog=catalog)
    comp = catalog.get("objective", "consistency")
    objective = comp.factory(config, build_options(comp, config))
    assert [objective.drop_rate(e) for e in (0, 5, 10, 20)] == pytest.approx([0.0, 0.3, 0.6, 0.6])
    fixed = comp.factory(config.replace(denoising_strategy="fixed"), build_options(comp, config))
    assert fixed.drop_rate(1) == 0.6


def test_objective_options_are_validated_by_their_plugin(catalog):
    from modalbag import validate_training_config

    result = validate_training_config({"denoising_objectives": ["alignment"], "projection_dim": 0,
                                       "mixed_precision": False}, catalog=catalog)
    assert not result["valid"] and any("projection_dim" in issue for issue in result["issues"])
    result = validate_training_config({"denoising_objectives": ["recon"], "mixed_precision": False}, catalog=catalog)
    assert any("did you mean 'reconstruction'" in issue for issue in result["issues"])


def test_take_turns_cycles_through_every_objective_and_weighs_them_up():
    from modalbag.denoising.objectives import take_turns

    names = ["r", "a", "c", "i", "p"]
    assert take_turns(names, 0, 7) == (names, 1.0) and take_turns(names, 5, 7) == (names, 1.0)
    one = [take_turns(names, 1, step) for step in range(10)]
    assert [chosen for chosen, _ in one] == [[n] for n in names] * 2 and {share for _, share in one} == {5.0}
    two = [take_turns(names, 2, step)[0] for step in range(5)]
    assert sorted(n for chosen in two for n in chosen) == sorted(names * 2)  # each twice in five steps
    assert take_turns(names, 2, 0)[1] == 2.5


def test_objectives_taking_turns_give_the_every_step_loss_in_expectation(catalog):
    """One objective a step, weighted by the number of objectives: over a cycle the terms sum to
    the every-step total (deterministic objectives, so the same batch gives the same losses)."""
    data, y = toy(32)
    net = network()
    names = ["reconstruction", "alignment", "prediction"]
    masks = torch.ones(32, 3, dtype=torch.bool)
    totals = {}
    for per_step in (0, 1):
        config = TrainingConfig.from_dict({"denoising_objectives": names, "denoising_strategy": "fixed",
                                           "denoising_objectives_per_step": per_step, "mixed_precision": False},
                                          catalog=catalog)
        torch.manual_seed(3)
        loss_fn = AdvancedCrossModalDenoisingLoss(config, catalog=catalog)
        loss_fn.setup(net, "classification", 2)
        out = net(data, masks)
        runs = []
        for step in range(len(names) if per_step else 1):
            ctx = DenoisingContext(net, ("a", "b", "c"), out["embeddings"], masks, out["hidden"], out["fused"],
                                   out["logits"], y, "classification", 1, step=step)
            total, terms, metrics = loss_fn.compute(ctx)
            runs.append((float(total.detach()), {k: float(v.detach()) for k, v in terms.items()}, metrics))
        totals[per_step] = runs
    (every_total, every_terms, _), = totals[0]
    turns = totals[1]
    assert [list(terms) for _, terms, _ in turns] == [[n] for n in names]
    for (_, terms, metrics), name in zip(turns, names, strict=True):
        assert terms[name] == pytest.approx(len(names) * every_terms[name], rel=1e-5)
        assert float(metrics[f"weight.{name}"]) == pytest.approx(len(names) * 0.1)  # denoising_weight 0.1
    assert sum(t for t, _, _ in turns) / len(names) == pytest.approx(every_total, rel=1e-5)


def test_objectives_take_turns_by_training_step_when_trained(catalog):
    from tests.conftest import FAST, make_model

    model = make_model(n_samples=160)
    model.create_ensemble(n_bags=1)
    model.select_base_learners(trainers=["neural"], instantiate=False)
    model.train_ensemble(**{**FAST, "epochs": 3, "enable_denoising": True, "denoising_strategy": "adaptive",
                            "denoising_objectives": OBJECTIVES, "denoising_objectives_per_step": 1})
    learner = model.learners["bag_000"]
    assert learner.ok, learner.error
    # two batches an epoch: the turn passes on across epochs (by fit step), two objectives per epoch
    ran = [sorted(k[: -len(".loss")] for k in record.metrics if k.endswith(".loss")) for record in learner.records]
    assert ran == [["alignment", "reconstruction"], ["consistency", "information"], ["prediction", "reconstruction"]]
