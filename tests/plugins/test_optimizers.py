"""Optimizer plugins build the right torch optimizer from the config and their own options,
and reject inconsistent options before any training starts."""

from __future__ import annotations

import pytest
import torch

from modalbag import TrainingConfig
from modalbag.errors import ConfigError, UnknownConfigKeyError
from modalbag.kernel.components import build_options
from modalbag.kernel.registry import Catalog
from modalbag.plugins.optimizers.sgd import SGDOptions


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return Catalog()


def _build(catalog, name: str, options: dict):
    config = TrainingConfig.from_dict(options, catalog=catalog)
    component = catalog.get("optimizer", name)
    param = torch.nn.Parameter(torch.ones(3))
    optimizer = component.factory([param], config, build_options(component, config))
    return optimizer, param


def _group(optimizer) -> dict:
    assert len(optimizer.param_groups) == 1
    return optimizer.param_groups[0]


def test_adamw_defaults(catalog):
    opt, param = _build(catalog, "adamw", {})
    assert type(opt) is torch.optim.AdamW
    group = _group(opt)
    assert group["lr"] == pytest.approx(1e-3)
    assert group["weight_decay"] == pytest.approx(1e-4)
    assert tuple(group["betas"]) == (0.9, 0.999)
    assert group["eps"] == pytest.approx(1e-8)
    assert group["amsgrad"] is False
    assert group["params"][0] is param
    assert group["fused"] is True  # a fused kernel exists for CPU tensors


def test_adamw_fused_and_foreach_take_the_same_steps(catalog):
    torch.manual_seed(0)
    start = [torch.randn(5, 4), torch.randn(4)]
    grads = [[torch.randn_like(t) for t in start] for _ in range(5)]
    finals = {}
    for fused in (True, False):
        config = TrainingConfig.from_dict({"fused": fused}, catalog=catalog)
        component = catalog.get("optimizer", "adamw")
        params = [torch.nn.Parameter(t.clone()) for t in start]
        opt = component.factory(params, config, build_options(component, config))
        assert bool(opt.param_groups[0]["fused"]) is fused and bool(opt.param_groups[0]["foreach"]) is not fused
        for step in grads:
            for p, g in zip(params, step, strict=True):
                p.grad = g.clone()
            opt.step()
        finals[fused] = params
    for a, b in zip(finals[True], finals[False], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_adamw_configured(catalog):
    opt, _ = _build(catalog, "adamw", {"learning_rate": 0.02, "weight_decay": 0.05, "betas": [0.8, 0.95],
                                       "eps": 1e-6, "amsgrad": True})
    group = _group(opt)
    assert type(opt) is torch.optim.AdamW
    assert group["lr"] == pytest.approx(0.02)
    assert group["weight_decay"] == pytest.approx(0.05)
    assert tuple(group["betas"]) == pytest.approx((0.8, 0.95))
    assert group["eps"] == pytest.approx(1e-6)
    assert group["amsgrad"] is True


def test_radam_configured(catalog):
    opt, _ = _build(catalog, "radam", {"learning_rate": 0.003, "weight_decay": 0.01, "betas": (0.85, 0.99),
                                       "decoupled_weight_decay": False})
    assert type(opt) is torch.optim.RAdam
    group = _group(opt)
    assert group["lr"] == pytest.approx(0.003)
    assert group["weight_decay"] == pytest.approx(0.01)
    assert tuple(group["betas"]) == pytest.approx((0.85, 0.99))
    assert group["decoupled_weight_decay"] is False


def test_radam_defaults_to_decoupled_weight_decay(catalog):
    opt, _ = _build(catalog, "radam", {})
    assert _group(opt)["decoupled_weight_decay"] is True


def test_sgd_defaults_to_nesterov_momentum(catalog):
    opt, _ = _build(catalog, "sgd", {"learning_rate": 0.1, "weight_decay": 0.0})
    assert type(opt) is torch.optim.SGD
    group = _group(opt)
    assert group["lr"] == pytest.approx(0.1)
    assert group["weight_decay"] == 0.0
    assert group["momentum"] == pytest.approx(0.9)
    assert group["nesterov"] is True
    assert group["dampening"] == 0.0


def test_sgd_configured(catalog):
    opt, _ = _build(catalog, "sgd", {"learning_rate": 0.05, "weight_decay": 0.001, "momentum": 0.5,
                                     "nesterov": False, "dampening": 0.1})
    group = _group(opt)
    assert group["lr"] == pytest.approx(0.05)
    assert group["weight_decay"] == pytest.approx(0.001)
    assert group["momentum"] == pytest.approx(0.5)
    assert group["nesterov"] is False
    assert group["dampening"] == pytest.approx(0.1)


def test_sgd_plain_without_momentum(catalog):
    opt, _ = _build(catalog, "sgd", {"momentum": 0.0, "nesterov": False})
    assert _group(opt)["momentum"] == 0.0


def test_built_optimizer_steps_with_configured_rate(catalog):
    opt, param = _build(catalog, "sgd", {"learning_rate": 0.5, "weight_decay": 0.0, "momentum": 0.0,
                                         "nesterov": False})
    param.grad = torch.full_like(param, 2.0)
    opt.step()
    torch.testing.assert_close(param.detach(), torch.zeros(3))  # 1 - 0.5 * 2


@pytest.mark.parametrize("options", [
    {"momentum": 0.0},  # nesterov defaults to True
    {"momentum": 0.0, "nesterov": True},
    {"momentum": 0.9, "nesterov": True, "dampening": 0.1},
])
def test_sgd_nesterov_needs_momentum_and_no_dampening(catalog, options):
    with pytest.raises(ConfigError, match=r"optimizer 'sgd' rejected its options.*nesterov=True needs momentum > 0"):
        _build(catalog, "sgd", options)
    with pytest.raises(ValueError, match=r"nesterov=True needs momentum > 0 and dampening = 0"):
        SGDOptions(**options)


@pytest.mark.parametrize(("name", "options", "match"), [
    ("sgd", {"momentum": -0.5, "nesterov": False}, r"momentum must be >= 0"),
    ("adamw", {"betas": [0.9, 1.0]}, r"betas must be two numbers in \[0, 1\)"),
    ("adamw", {"betas": [0.9]}, r"betas must be two numbers"),
    ("radam", {"eps": 0.0}, r"eps must be > 0"),
])
def test_invalid_options_raise(catalog, name, options, match):
    with pytest.raises(ConfigError, match=match):
        _build(catalog, name, options)


def test_misspelled_optimizer_option_is_caught_by_the_config(catalog):
    with pytest.raises(UnknownConfigKeyError, match=r"unknown configuration key 'momentm'; did you mean 'momentum'"):
        TrainingConfig.from_dict({"momentm": 0.5}, catalog=catalog)


def test_optimizer_plugins_are_registered(catalog):
    assert {"adamw", "radam", "sgd"} <= set(catalog.names("optimizer"))
    for name in ("adamw", "radam", "sgd"):
        comp = catalog.get("optimizer", name)
        assert comp.kind == "optimizer" and comp.options is not None
