"""Every numeric option, of the training config and of every built-in plugin, refuses NaN and the
infinities before training, with an error naming the option; seeds stay in numpy's range."""

from __future__ import annotations

import math

import attrs
import pytest

from modalbag import ConfigError, TrainingConfig, validate_training_config
from modalbag.kernel.kinds import KINDS
from modalbag.kernel.registry import Catalog

NON_FINITE = [math.nan, math.inf, -math.inf]


def _numeric(cls: type) -> list[attrs.Attribute]:
    """Fields whose default is a number (not a bool), or that are typed as an optional number."""
    out = []
    for field in attrs.fields(cls):
        default = field.default.factory() if isinstance(field.default, attrs.Factory) else field.default
        typed = str(field.type).replace(" ", "") in ("int|None", "float|None")
        if typed or (isinstance(default, (int, float)) and not isinstance(default, bool)):
            out.append(field)
    return out


CONFIG_FIELDS = [f.name for f in _numeric(TrainingConfig)]


def _plugin_fields() -> list[tuple[str, str, type, str]]:
    catalog = Catalog()
    found = []
    for kind in KINDS:
        for component in catalog.components(kind):
            if component.source.distribution == "modalbag" and component.options is not None:
                found += [(kind, component.name, component.options, f.name) for f in _numeric(component.options)]
    return found


PLUGIN_FIELDS = _plugin_fields()


def test_the_property_tests_see_the_numeric_options():
    assert {"learning_rate", "weight_decay", "denoising_weight", "random_state", "epochs"} <= set(CONFIG_FIELDS)
    assert len(PLUGIN_FIELDS) > 20


@pytest.mark.parametrize("value", NON_FINITE, ids=["nan", "inf", "-inf"])
@pytest.mark.parametrize("name", CONFIG_FIELDS)
def test_every_numeric_config_option_refuses_non_finite_values(name, value):
    with pytest.raises(ConfigError, match=name):
        TrainingConfig.from_dict({name: value})


@pytest.mark.parametrize("value", NON_FINITE, ids=["nan", "inf", "-inf"])
def test_optional_numbers_refuse_non_finite_values_too(value):
    with pytest.raises(ConfigError, match="gradient_clipping"):
        TrainingConfig.from_dict({"gradient_clipping": value})


@pytest.mark.parametrize("kind,name,options,field", PLUGIN_FIELDS,
                         ids=[f"{k}.{n}.{f}" for k, n, _, f in PLUGIN_FIELDS])
def test_every_numeric_plugin_option_refuses_non_finite_values(kind, name, options, field):
    for value in NON_FINITE:
        with pytest.raises((ValueError, TypeError), match=field):
            options(**{field: value})


@pytest.mark.parametrize("value", [-1, 2 ** 32, 2 ** 40])
def test_a_seed_outside_numpys_range_is_refused_by_validation(value):
    with pytest.raises(ConfigError, match="random_state"):
        TrainingConfig.from_dict({"random_state": value})
    assert TrainingConfig.from_dict({"random_state": 2 ** 32 - 1}).random_state == 2 ** 32 - 1


def test_validate_reports_non_finite_learning_rates_before_training():
    with pytest.raises(ConfigError) as caught:
        TrainingConfig.from_dict({"learning_rate": math.nan, "weight_decay": math.inf, "denoising_weight": math.inf})
    text = str(caught.value)
    assert all(name in text for name in ("learning_rate", "weight_decay", "denoising_weight"))
    assert validate_training_config({"learning_rate": 1e-3})["valid"] is True
