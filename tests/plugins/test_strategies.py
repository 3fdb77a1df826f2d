"""Weighting strategies produce the weights their docstrings promise."""

from __future__ import annotations

import pytest
import torch

from modalbag import Catalog, TrainingConfig
from modalbag.kernel.components import build_options
from tests.conftest import FAST, make_model


@pytest.fixture(scope="module")
def catalog():
    return Catalog()


def weighting(catalog, name, objectives=("reconstruction", "alignment"), **config):
    cfg = TrainingConfig.from_dict({"denoising_objectives": list(objectives), "denoising_strategy": name,
                                    "mixed_precision": False, **config}, catalog=catalog)
    comp = catalog.get("strategy", name)
    return comp.factory(cfg, build_options(comp, cfg)).for_fit(list(objectives))


def test_fixed_weights_are_one_at_every_epoch(catalog):
    w = weighting(catalog, "fixed", warmup_epochs=5)
    losses = {"reconstruction": torch.tensor(7.0), "alignment": torch.tensor(0.1)}
    assert w.weights(losses, torch.tensor(1.0)) == {"reconstruction": 1.0, "alignment": 1.0}
    assert w.scale(1) == w.scale(50) == 1.0 and w.active(3) is None


def adaptive_weights(w, losses, task_loss):
    """The vector the adaptive strategy returns, by name."""
    return dict(zip(losses, w.weights(losses, task_loss).tolist(), strict=True))


def test_adaptive_balances_each_objective_to_a_share_of_the_task_loss(catalog):
    w = weighting(catalog, "adaptive", warmup_epochs=0, adaptive_momentum=0.5)
    first = adaptive_weights(w, {"reconstruction": torch.tensor(4.0), "alignment": torch.tensor(0.5)},
                             torch.tensor(2.0))
    # T / (K * L): 2 / (2 * 4) and 2 / (2 * 0.5)
    assert float(first["reconstruction"]) == pytest.approx(0.25) and float(first["alignment"]) == pytest.approx(2.0)
    second = adaptive_weights(w, {"reconstruction": torch.tensor(2.0), "alignment": torch.tensor(0.5)},
                              torch.tensor(2.0))
    # moving averages with momentum 0.5: L_rec = 0.5*4 + 0.5*2 = 3 -> 2 / (2 * 3)
    assert float(second["reconstruction"]) == pytest.approx(1 / 3)
    contribution = sum(float(second[k]) * v for k, v in {"reconstruction": 3.0, "alignment": 0.5}.items())
    assert contribution == pytest.approx(2.0)  # together about the task loss (times denoising_weight)


def test_adaptive_weights_are_bounded(catalog):
    w = weighting(catalog, "adaptive", warmup_epochs=0, adaptive_min_weight=0.1, adaptive_max_weight=5.0)
    out = adaptive_weights(w, {"reconstruction": torch.tensor(1e-9), "alignment": torch.tensor(1e6)},
                           torch.tensor(1.0))
    assert out["reconstruction"] == 5.0 and out["alignment"] == pytest.approx(0.1)


def test_adaptive_keeps_each_objectives_average_when_the_set_changes(catalog):
    w = weighting(catalog, "adaptive", warmup_epochs=0, adaptive_momentum=0.5)
    adaptive_weights(w, {"reconstruction": torch.tensor(4.0), "alignment": torch.tensor(1.0)}, torch.tensor(2.0))
    # alignment skipped this step (e.g. a batch without two modalities), consistency new
    out = adaptive_weights(w, {"reconstruction": torch.tensor(2.0), "consistency": torch.tensor(1.0)},
                           torch.tensor(2.0))
    assert out["reconstruction"] == pytest.approx(2 / (2 * 3.0))  # average (4 + 2) / 2 carried over
    assert out["consistency"] == pytest.approx(2 / (2 * 1.0))  # starts at its own loss


def test_adaptive_and_curriculum_ramp_up_over_warmup(catalog):
    for name in ("adaptive", "curriculum"):
        w = weighting(catalog, name, warmup_epochs=3, epochs=10)
        assert [w.scale(e) for e in (1, 2, 3, 4, 9)] == pytest.approx([0.25, 0.5, 0.75, 1.0, 1.0])


def test_curriculum_default_stages_add_objectives_one_by_one(catalog):
    w = weighting(catalog, "curriculum", objectives=("reconstruction", "alignment", "consistency"),
                  epochs=30, warmup_epochs=0)
    assert w.active(1) == {"reconstruction"} and w.active(10) == {"reconstruction"}
    assert w.active(11) == {"reconstruction", "alignment"}
    assert w.active(30) == w.active(99) == {"reconstruction", "alignment", "consistency"}


def test_curriculum_stages_from_config_set_objectives_and_weight(catalog):
    stages = [{"epochs": 2, "objectives": ["reconstruction"], "denoising_weight": 0.01},
              {"epochs": 4, "denoising_weight": 0.05},
              {"epochs": 6, "objectives": ["alignment"]}]
    w = weighting(catalog, "curriculum", curriculum_stages=stages, denoising_weight=0.1, warmup_epochs=0)
    assert w.active(2) == {"reconstruction"} and w.scale(2) == pytest.approx(0.1)
    assert w.active(3) is None and w.scale(4) == pytest.approx(0.5)
    assert w.active(7) == {"alignment"} and w.scale(7) == pytest.approx(1.0)


def test_curriculum_stage_errors_are_clear(catalog):
    from modalbag import ConfigError

    with pytest.raises(ConfigError, match="last epoch"):
        TrainingConfig.from_dict({"curriculum_stages": [{"epochs": 5}, {"epochs": 3}]}, catalog=catalog)
    with pytest.raises(ConfigError, match="not in denoising_objectives"):  # given, and the stage strays from it
        TrainingConfig.from_dict({"denoising_objectives": ["reconstruction"],
                                  "curriculum_stages": [{"epochs": 5, "objectives": ["consistency"]}]},
                                 catalog=catalog)


def test_training_records_carry_every_objective_diagnostic_and_weight():
    model = make_model(n_samples=240)
    model.create_ensemble(n_bags=1)
    model.select_base_learners(trainers=["neural"], instantiate=False)
    model.train_ensemble(**{**FAST, "epochs": 3, "enable_denoising": True, "denoising_strategy": "adaptive",
                            "denoising_objectives": ["reconstruction", "alignment", "consistency", "information",
                                                     "prediction"]})
    record = model.learners["bag_000"].records[-1]
    assert model.learners["bag_000"].spec.modalities == ("text", "image", "meta")
    for key in ("reconstruction.text", "reconstruction.image", "reconstruction.meta", "alignment.score",
                "consistency.score", "information.kl", "prediction.similarity", "weight.reconstruction",
                "weight.prediction"):
        assert key in record.metrics and record.metrics[key] == record.metrics[key], key  # present, not NaN
    assert 0 <= record.metrics["alignment.score"] <= 1 and 0 <= record.metrics["consistency.score"] <= 1
    assert set(record.loss_terms) == {f"denoising.{n}" for n in
                                      ("reconstruction", "alignment", "consistency", "information", "prediction")}


def test_adaptive_keeps_the_average_of_an_objective_waiting_for_its_turn(catalog):
    objectives = ("reconstruction", "alignment", "consistency")
    w = weighting(catalog, "adaptive", objectives=objectives, warmup_epochs=0, adaptive_momentum=0.5)
    first = adaptive_weights(w, {"reconstruction": torch.tensor(4.0)}, torch.tensor(3.0))
    assert first["reconstruction"] == pytest.approx(3 / 4.0)  # the one that ran takes all of T
    adaptive_weights(w, {"alignment": torch.tensor(1.0)}, torch.tensor(3.0))
    again = adaptive_weights(w, {"reconstruction": torch.tensor(2.0)}, torch.tensor(3.0))
    # reconstruction's average rested while alignment ran: (4 + 2) / 2, not restarted at 2
    assert again["reconstruction"] == pytest.approx(3 / 3.0)


@pytest.mark.parametrize("strategy", ["fixed", "adaptive"])
def test_taking_turns_keeps_each_steps_expected_denoising_loss(catalog, strategy):
    """fixed: the objective that runs is weighted x n; adaptive: the objectives that ran share the
    task loss T anyway, so every step's total is denoising_weight * T with or without turns."""
    from modalbag.denoising.objectives import AdvancedCrossModalDenoisingLoss, DenoisingContext
    from tests.plugins.test_objectives import network, toy

    data, y = toy(32)
    net = network()
    masks = torch.ones(32, 3, dtype=torch.bool)
    out = net(data, masks)
    task = torch.tensor(0.7)
    names = ["reconstruction", "alignment", "prediction"]
    totals = {}
    for per_step in (0, 1):
        cfg = TrainingConfig.from_dict({"denoising_objectives": names, "denoising_strategy": strategy,
                                        "denoising_objectives_per_step": per_step, "warmup_epochs": 0,
                                        "adaptive_max_weight": 1e6, "mixed_precision": False}, catalog=catalog)
        torch.manual_seed(3)
        loss_fn = AdvancedCrossModalDenoisingLoss(cfg, catalog=catalog)
        loss_fn.setup(net, "classification", 2)
        totals[per_step] = []
        for step in range(3):
            ctx = DenoisingContext(net, ("a", "b", "c"), out["embeddings"], masks, out["hidden"], out["fused"],
                                   out["logits"], y, "classification", 1, step=step)
            totals[per_step].append(float(loss_fn.compute(ctx, task)[0].detach()))
    if strategy == "adaptive":  # first step of each: averages equal the losses, so w_k L_k = T / K
        assert totals[0][0] == pytest.approx(0.1 * 0.7) and totals[1][0] == pytest.approx(0.1 * 0.7)
    else:  # over a cycle, turns give the every-step total on average
        assert sum(totals[1]) / 3 == pytest.approx(totals[0][0], rel=1e-5)
