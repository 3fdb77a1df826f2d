"""modalbag.config.training and modalbag.kernel.components: defaults, parsing, validation and the active plugin set.

Most tests pass their own fresh `Catalog` (installed built-ins only), so nothing another test
registers into the process's default catalog can change what they see.
"""

from __future__ import annotations

import json
import re

import attrs
import numpy as np
import pytest

import modalbag
from modalbag import (
    Catalog,
    ConfigError,
    MissingPluginError,
    TrainingConfig,
    UnknownConfigKeyError,
    UnknownPluginError,
    validate_training_config,
)
from modalbag.engine.assembly import assemble
from modalbag.plugins.optimizers.adamw import AdamWOptions
from modalbag.plugins.optimizers.sgd import SGDOptions
from tests.conftest import catalog_without

REFERENCE_DEFAULTS = {
    "epochs": 100,
    "batch_size": 32,
    "learning_rate": 1e-3,
    "weight_decay": 1e-4,
    "task_type": "classification",
    "class_weights": None,
    "label_smoothing": 0.0,
    "enable_denoising": True,
    "denoising_weight": 0.1,
    "denoising_strategy": "adaptive",
    "denoising_objectives": ("reconstruction", "alignment"),
    "denoising_modalities": (),
    "optimizer_type": "adamw",
    "scheduler_type": "cosine_restarts",
    "warmup_epochs": 5,
    "gradient_clipping": 1.0,
    "mixed_precision": True,
    "gradient_accumulation_steps": 1,
    "early_stopping_patience": 15,
    "validation_split": 0.2,
    "cross_validation_folds": 0,
    "save_checkpoints": True,
}

# only installed built-ins: no denoising objectives, no amp plugin
BUILTIN_ONLY = {"enable_denoising": False, "mixed_precision": False}


@pytest.fixture(scope="module")
def catalog():
    return Catalog()


def _issue_with(issues: list[str], *parts: str) -> str:
    found = [i for i in issues if all(p in i for p in parts)]
    assert found, f"no issue mentions {parts}: {issues}"
    return found[0]


# --- defaults and parsing --------------------------------------------------------------------------


def test_defaults_equal_the_reference():
    config = TrainingConfig()
    actual = {key: getattr(config, key) for key in REFERENCE_DEFAULTS}
    assert actual == REFERENCE_DEFAULTS
    assert config.plugin_options == {}
    assert TrainingConfig.from_dict({}) == config


def test_unknown_key_is_named_with_the_closest_key(catalog):
    with pytest.raises(UnknownConfigKeyError) as info:
        TrainingConfig.from_dict({"learning_rat": 0.01}, catalog=catalog)
    assert info.value.key == "learning_rat"
    assert info.value.issues == ["unknown configuration key 'learning_rat'; did you mean 'learning_rate'?"]
    assert str(info.value).endswith("unknown configuration key 'learning_rat'; did you mean 'learning_rate'?")
    assert isinstance(info.value, ConfigError) and isinstance(info.value, KeyError)


def test_unknown_plugin_option_key_suggests_the_plugin_option(catalog):
    with pytest.raises(UnknownConfigKeyError, match="did you mean 'momentum'"):
        TrainingConfig.from_dict({"momentun": 0.5}, catalog=catalog)


def test_unknown_key_is_reported_together_with_bad_values(catalog):
    with pytest.raises(ConfigError) as info:
        TrainingConfig.from_dict({"learning_rat": 0.01, "epochs": 0}, catalog=catalog)
    assert len(info.value.issues) == 2
    _issue_with(info.value.issues, "learning_rat", "learning_rate")
    _issue_with(info.value.issues, "epochs", "> 0")


def test_unknown_key_issue_is_not_nested(catalog):
    expected = "unknown configuration key 'learning_rat'; did you mean 'learning_rate'?"
    with pytest.raises(ConfigError) as info:
        TrainingConfig.from_dict({"learning_rat": 0.01, "epochs": 0}, catalog=catalog)
    assert info.value.issues[0] == expected
    assert expected in validate_training_config({"learning_rat": 0.01}, catalog=catalog)["issues"]


def test_plugin_options_are_kept_in_plugin_options(catalog):
    options = {"betas": [0.8, 0.95], "momentum": 0.5, "T_mult": 3, "patience": 2, "max_lr": 0.1}
    config = TrainingConfig.from_dict({"epochs": 3, **options}, catalog=catalog)
    assert config.plugin_options == options
    assert config.epochs == 3
    assert not any(hasattr(config, key) for key in options)


def test_plugin_options_use_the_default_catalog_when_none_given():
    assert TrainingConfig.from_dict({"momentum": 0.3}).plugin_options == {"momentum": 0.3}


def test_every_bad_value_is_reported_at_once(catalog):
    bad = {"epochs": 0, "batch_size": -1, "learning_rate": "fast", "validation_split": 1.5, "task_type": "ranking"}
    with pytest.raises(ConfigError) as info:
        TrainingConfig.from_dict(bad, catalog=catalog)
    issues = info.value.issues
    assert len(issues) == len(bad)
    for key, issue in zip(bad, issues, strict=True):
        assert issue.startswith(f"{key}:"), issues
    assert "'fast'" in issues[2] and "1.5" in issues[3] and "'ranking'" in issues[4]
    assert all(f"  - {i}" in str(info.value) for i in issues)


def test_bad_choice_message_is_readable(catalog):
    with pytest.raises(ConfigError) as info:
        TrainingConfig.from_dict({"task_type": "ranking"}, catalog=catalog)
    (issue,) = info.value.issues
    assert "'ranking'" in issue and "regression" in issue
    assert "Attribute(" not in issue and "mappingproxy" not in issue


def test_cross_checks_catch_inconsistent_options(catalog):
    with pytest.raises(ConfigError) as info:
        TrainingConfig.from_dict({"task_type": "regression", "class_weights": [1, 2], "label_smoothing": 0.1,
                                  "denoising_weight": 0}, catalog=catalog)
    issues = info.value.issues
    assert len(issues) == 3
    _issue_with(issues, "class_weights", "classification only")
    _issue_with(issues, "label_smoothing", "classification and multilabel tasks only")
    _issue_with(issues, "denoising_weight", "enable_denoising")


def test_from_toml_reads_the_training_table(tmp_path, catalog):
    path = tmp_path / "run.toml"
    path.write_text(
        'name = "ignored, outside [training]"\n'
        "[training]\n"
        "epochs = 7\n"
        "learning_rate = 0.01\n"
        'optimizer_type = "sgd"\n'
        "momentum = 0.8\n"
        'denoising_objectives = ["reconstruction"]\n'
        "[ensemble]\n"
        "n_bags = 12\n",
        encoding="utf-8",
    )
    config = TrainingConfig.from_toml(path, catalog=catalog)
    assert (config.epochs, config.learning_rate, config.optimizer_type) == (7, 0.01, "sgd")
    assert config.denoising_objectives == ("reconstruction",)
    assert config.plugin_options == {"momentum": 0.8}
    assert config.batch_size == 32


def test_from_toml_reads_top_level_keys_and_named_tables(tmp_path, catalog):
    top = tmp_path / "top.toml"
    top.write_text("epochs = 4\nbatch_size = 8\nT_mult = 3\n", encoding="utf-8")
    config = TrainingConfig.from_toml(top, catalog=catalog)
    assert (config.epochs, config.batch_size, config.plugin_options) == (4, 8, {"T_mult": 3})

    named = tmp_path / "named.toml"
    named.write_text("[tuning]\nwarmup_epochs = 0\n[training]\nepochs = 2\n", encoding="utf-8")
    assert TrainingConfig.from_toml(named, table="tuning", catalog=catalog).warmup_epochs == 0
    assert TrainingConfig.from_toml(named, table="tuning", catalog=catalog).epochs == 100

    typo = tmp_path / "typo.toml"
    typo.write_text("[training]\nbatch_sise = 8\n", encoding="utf-8")
    with pytest.raises(UnknownConfigKeyError, match="did you mean 'batch_size'"):
        TrainingConfig.from_toml(typo, catalog=catalog)


def test_to_dict_round_trips_through_from_dict(catalog):
    config = TrainingConfig.from_dict({
        "epochs": 12, "task_type": "classification", "class_weights": {0: 1, 1: 2.5},
        "denoising_objectives": ["alignment"], "denoising_modalities": ["image", "text"],
        "gradient_clipping": None, "sinks": "jsonl", "validators": ["checkpoint"],
        "optimizer_type": "sgd", "momentum": 0.7, "scheduler_type": "plateau", "patience": 3,
    }, catalog=catalog)
    data = config.to_dict()
    assert "plugin_options" not in data and data["momentum"] == 0.7 and data["patience"] == 3
    assert data["denoising_modalities"] == ["image", "text"] and data["sinks"] == ["jsonl"]
    json.dumps(data)  # plain data
    assert TrainingConfig.from_dict(data, catalog=catalog) == config
    assert TrainingConfig.from_dict(TrainingConfig().to_dict(), catalog=catalog) == TrainingConfig()


def test_to_dict_round_trips_tuple_plugin_options(catalog):
    config = TrainingConfig.from_dict({"betas": (0.8, 0.9)}, catalog=catalog)
    assert TrainingConfig.from_dict(config.to_dict(), catalog=catalog) == config


def test_replace_validates_like_from_dict(catalog):
    config = TrainingConfig().replace(epochs=5)
    assert config.epochs == 5 and config.batch_size == 32
    with pytest.raises(ConfigError, match="batch_size"):
        config.replace(batch_size=0)


# --- validate_training_config ----------------------------------------------------------------------


@pytest.mark.parametrize("data", [
    BUILTIN_ONLY,
    {**BUILTIN_ONLY, "optimizer_type": "sgd", "momentum": 0.5, "scheduler_type": "plateau", "patience": 3},
    {**BUILTIN_ONLY, "optimizer_type": "radam", "betas": [0.8, 0.9], "scheduler_type": "onecycle", "max_lr": 0.05},
    {**BUILTIN_ONLY, "T_mult": 3, "eta_min": 0.0},
    {**BUILTIN_ONLY, "scheduler_type": "none", "gradient_clipping": None, "validators": ["checkpoint"]},
])
def test_valid_configs_are_valid(data, catalog):
    assert validate_training_config(data, catalog=catalog) == {"valid": True, "issues": []}


def test_validate_uses_the_default_catalog_when_none_given():
    assert validate_training_config(BUILTIN_ONLY) == {"valid": True, "issues": []}
    result = validate_training_config({**BUILTIN_ONLY, "optimizer_type": "sgdd"})
    assert result["valid"] is False
    _issue_with(result["issues"], "optimizer_type", "'sgdd'", "did you mean 'sgd'")


def test_validate_reports_non_positive_sizes_together(catalog):
    result = validate_training_config({**BUILTIN_ONLY, "epochs": 0, "batch_size": 0, "learning_rate": 0},
                                      catalog=catalog)
    assert result["valid"] is False
    assert len(result["issues"]) == 3
    for key in ("epochs", "batch_size", "learning_rate"):
        _issue_with(result["issues"], key, "> 0")


def test_validate_catches_zero_denoising_weight(catalog):
    result = validate_training_config({**BUILTIN_ONLY, "enable_denoising": True, "denoising_weight": 0},
                                      catalog=catalog)
    assert result["valid"] is False
    _issue_with(result["issues"], "denoising_weight", "enable_denoising")
    # the same weight is fine without denoising
    assert validate_training_config({**BUILTIN_ONLY, "denoising_weight": 0}, catalog=catalog)["valid"] is True


def test_validate_does_not_raise_on_unknown_keys(catalog):
    result = validate_training_config({**BUILTIN_ONLY, "learning_rat": 0.1, "epochs": -1}, catalog=catalog)
    assert result["valid"] is False
    assert len(result["issues"]) == 2
    _issue_with(result["issues"], "learning_rat", "did you mean 'learning_rate'")
    _issue_with(result["issues"], "epochs")


def test_validate_catches_unknown_optimizer_with_close_match(catalog):
    result = validate_training_config({**BUILTIN_ONLY, "optimizer_type": "adam"}, catalog=catalog)
    assert result["valid"] is False
    issue = _issue_with(result["issues"], "optimizer_type", "'adam' is not an optimizer plugin")
    assert "did you mean" in issue and issue.endswith("Available: adamw, radam, sgd")


BUILT: list[str] = []  # what the test plugins' components did, in order


class _Strict:
    def __init__(self, config, options):
        BUILT.append("strict")

    @modalbag.hookimpl
    def modalbag_validate_config(self, config):
        return [f"strict needs epochs >= 10, got {config.epochs}"] if config.epochs < 10 else None


class _StrictPlugin:
    @modalbag.hookimpl
    def modalbag_register_validators(self, register):
        register("strict", _Strict)


@pytest.fixture(scope="module")
def _plugged_catalog():
    catalog = Catalog()
    catalog.register_plugin(_StrictPlugin())
    return catalog


@pytest.fixture
def plugged(_plugged_catalog):
    """Installed built-ins plus a direct test plugin: a 'strict' validator."""
    BUILT.clear()
    return _plugged_catalog


def test_validate_catches_unknown_objective_with_close_match(plugged):
    catalog = plugged
    ok = {"mixed_precision": False, "denoising_objectives": ["alignment", "reconstruction"]}
    assert validate_training_config(ok, catalog=catalog) == {"valid": True, "issues": []}
    result = validate_training_config({**ok, "denoising_objectives": ["reconstructon"]}, catalog=catalog)
    assert result["valid"] is False
    issue = _issue_with(result["issues"], "denoising_objectives", "'reconstructon'")
    assert "did you mean 'reconstruction'?" in issue
    assert "Available: alignment, consistency, information, prediction, reconstruction" in issue


def test_validate_catches_option_of_an_unused_plugin(catalog):
    result = validate_training_config({**BUILTIN_ONLY, "optimizer_type": "adamw", "momentum": 0.9}, catalog=catalog)
    assert result["valid"] is False
    issue = _issue_with(result["issues"], "'momentum'", "'sgd'")
    assert "does not use" in issue


@pytest.mark.parametrize(("data", "parts"), [
    ({"optimizer_type": "adamw", "betas": (1.5, 0.9)}, ("optimizer 'adamw'", "betas", "1.5")),
    ({"scheduler_type": "cosine_restarts", "T_mult": 0}, ("scheduler 'cosine_restarts'", "T_mult", ">= 1")),
    ({"optimizer_type": "sgd", "momentum": 0.0}, ("optimizer 'sgd'", "nesterov")),
    ({"scheduler_type": "plateau", "patience": -2}, ("scheduler 'plateau'", "patience")),
])
def test_validate_catches_invalid_plugin_option_values(data, parts, catalog):
    result = validate_training_config({**BUILTIN_ONLY, **data}, catalog=catalog)
    assert result["valid"] is False
    assert len(result["issues"]) == 1, result["issues"]
    _issue_with(result["issues"], *parts)


# --- assembly --------------------------------------------------------------------------------------


def _without_executor(names):
    return [n for n in names if not n.startswith("executor.")]  # every run has one, whatever the config


def test_assemble_names_follow_config_order(catalog):
    active = assemble(TrainingConfig.from_dict(BUILTIN_ONLY, catalog=catalog), catalog)
    assert _without_executor(active.names()) == ["optimizer.adamw", "scheduler.cosine_restarts",
                              "validator.early_stopping", "validator.checkpoint"]
    assert isinstance(active.optimizer.options, AdamWOptions)
    assert [type(i).__name__ for i in active.instances][:2] == ["EarlyStopping", "Checkpoint"]
    registered = [active.plugin_manager.get_name(p) for p in active.plugin_manager.get_plugins()]
    assert {"validator.checkpoint", "validator.early_stopping"} <= set(registered)


def test_assemble_turns_components_on_and_off_from_options(catalog):
    config = TrainingConfig.from_dict({**BUILTIN_ONLY, "optimizer_type": "sgd", "momentum": 0.5,
                                       "scheduler_type": "none", "early_stopping_patience": 0,
                                       "save_checkpoints": False, "validators": ["checkpoint"]}, catalog=catalog)
    active = assemble(config, catalog)
    assert _without_executor(active.names()) == ["optimizer.sgd", "validator.checkpoint"]
    assert active.scheduler is None
    assert active.optimizer.options == SGDOptions(momentum=0.5)


def test_assemble_runs_objectives_inside_one_denoising_plugin(catalog):
    config = TrainingConfig.from_dict({"mixed_precision": False, "early_stopping_patience": 0,
                                       "save_checkpoints": False, "denoising_strategy": "curriculum",
                                       "denoising_objectives": ["alignment", "reconstruction"]}, catalog=catalog)
    active = assemble(config, catalog)
    assert _without_executor(active.names()) == ["optimizer.adamw", "scheduler.cosine_restarts", "objective.alignment",
                                                 "objective.reconstruction", "strategy.curriculum"]
    denoising = active.plugin_manager.get_plugin("denoising")
    assert list(denoising.objectives) == ["alignment", "reconstruction"]
    assert type(denoising.strategy).__name__ == "Curriculum"


def test_assemble_needs_amp_for_mixed_precision_before_building_anything():
    BUILT.clear()
    catalog = catalog_without("precision.amp")
    catalog.register_plugin(_StrictPlugin())
    config = TrainingConfig.from_dict({"mixed_precision": True, "validators": ["strict"]}, catalog=catalog)
    with pytest.raises(MissingPluginError) as info:
        assemble(config, catalog)
    assert (info.value.option, info.value.name) == ("mixed_precision", "amp")
    assert "mixed_precision=True" in str(info.value) and "'amp'" in str(info.value)
    assert BUILT == []  # nothing was instantiated, let alone trained


def test_missing_amp_suggests_turning_mixed_precision_off():
    catalog = catalog_without("precision.amp")
    with pytest.raises(MissingPluginError) as info:
        assemble(TrainingConfig.from_dict({"enable_denoising": False}, catalog=catalog), catalog)
    assert "set mixed_precision=False" in str(info.value)


def test_assemble_names_the_missing_objective(catalog):
    config = TrainingConfig.from_dict({"mixed_precision": False, "enable_denoising": True,
                                       "denoising_objectives": ["reconstruction", "telepathy"]}, catalog=catalog)
    with pytest.raises(UnknownPluginError) as info:
        assemble(config, catalog)
    assert (info.value.kind, info.value.name) == ("objective", "telepathy")
    assert "'telepathy' is not an objective plugin" in str(info.value)


def test_cross_validation_folds_run_inside_trainers_without_a_validator_plugin(catalog):
    config = TrainingConfig.from_dict({**BUILTIN_ONLY, "cross_validation_folds": 5}, catalog=catalog)
    assert "cross_validation_folds" not in [option for option, _, _ in config.active_requirements()]
    assert "validator.cross_validation" not in assemble(config, catalog).names()


def test_assemble_rejects_invalid_plugin_options_before_building(catalog):
    config = TrainingConfig.from_dict({**BUILTIN_ONLY, "T_mult": 0}, catalog=catalog)
    with pytest.raises(ConfigError) as info:
        assemble(config, catalog)
    assert len(info.value.issues) == 1 and "T_mult" in info.value.issues[0]


def test_plugin_validate_config_problems_stop_assembly(plugged):
    config = TrainingConfig.from_dict({**BUILTIN_ONLY, "epochs": 3, "validators": ["strict"]}, catalog=plugged)
    with pytest.raises(ConfigError) as info:
        assemble(config, plugged)
    assert info.value.issues == ["strict needs epochs >= 10, got 3"]
    assert "validator.strict" in assemble(attrs.evolve(config, epochs=10), plugged).names()


def test_assemble_needs_accumulation_plugin_for_accumulation_steps():
    catalog = catalog_without("precision.accumulation")
    config = TrainingConfig.from_dict({**BUILTIN_ONLY, "gradient_accumulation_steps": 4}, catalog=catalog)
    with pytest.raises(MissingPluginError) as info:
        assemble(config, catalog)
    assert (info.value.option, info.value.kind, info.value.name) == ("gradient_accumulation_steps", "precision",
                                                                     "accumulation")
    assert "gradient_accumulation_steps=1" in str(info.value)


def test_one_set_of_validators_each_check_meaning_one_thing():
    """The config and every plugin share them: a range name says which ends are open."""
    import attrs

    from modalbag.config import validators as v

    @attrs.frozen
    class Options:
        share: float = attrs.field(default=0.5, validator=v.strictly_between_0_and_1)
        rate: float = attrs.field(default=0.0, validator=v.at_least_0_below_1)
        count: int = attrs.field(default=1, validator=v.positive)

    Options(rate=0.0)  # 0 turns a rate off
    for bad, message in [({"share": 0.0}, "share must be strictly between 0 and 1, got 0.0"),
                         ({"share": 1.0}, "share must be strictly between 0 and 1"),
                         ({"rate": 1.0}, "rate must be in [0, 1), got 1.0"),
                         ({"count": 0}, "count must be > 0, got 0"),
                         ({"count": "3"}, "count must be a number, got '3'"),
                         ({"count": True}, "count must be a number, got True")]:
        with pytest.raises(ValueError, match=re.escape(message)):
            Options(**bad)
    from modalbag.kernel import options

    assert options.positive is v.positive and options.strictly_between_0_and_1 is v.strictly_between_0_and_1


# -- the spec's names (issue 21) --------------------------------------------------------------------------


def test_spec_names_become_the_options_they_mean():
    config = TrainingConfig.from_dict({
        "adaptive_weighting": False, "amp_optimization_level": "O0", "effective_batch_size": 128,
        "gradient_accumulation_steps": 4, "stratified_validation": True, "enable_data_augmentation": True,
        "augmentation_strategy": "multimodal", "noise_injection": 0.3, "safety_critical_validation": True,
        "num_gpus": 2})
    assert config.denoising_strategy == "fixed" and config.mixed_precision is False
    assert config.gradient_accumulation_steps == 4 and config.validation_strategy == "stratified"
    assert config.plugin_options["modality_dropout"] == 0.2  # from the preset ...
    assert config.plugin_options["noise_injection"] == 0.3  # ... but an explicit option wins
    assert config.adversarial_testing is True and config.worst_case_analysis is True
    assert config.num_processes == 2 and config.distributed_training is True
    assert config.plugin_options["device"] == "cuda"
    assert "adaptive_weighting" not in config.to_dict()  # one spelling of every setting


@pytest.mark.parametrize(("data", "message"), [
    ({"effective_batch_size": 100, "batch_size": 32}, "not a multiple of batch_size=32"),
    ({"effective_batch_size": 128, "batch_size": 32, "gradient_accumulation_steps": 2},
     "means gradient_accumulation_steps=4, but 2 was given"),
    ({"adaptive_weighting": True, "denoising_strategy": "fixed"}, "drop one of them"),
    ({"stratified_validation": True, "validation_strategy": "time_series"}, "cannot also balance the classes"),
    ({"amp_optimization_level": "O2"}, "modalbag trains with autocast, which is O1"),
    ({"augmentation_strategy": "multimodal"}, "set enable_data_augmentation=true"),
    ({"enable_data_augmentation": True, "augmentation_strategy": "wild"}, "choose one of"),
])
def test_spec_names_that_contradict_or_cannot_mean_anything_are_errors_that_say_why(data, message):
    with pytest.raises(ConfigError, match=message):
        TrainingConfig.from_dict(data)


#: Every key of issue 21's list, with a value from the spec's examples.
SPEC_KEYS = {
    "adaptive_weighting": True, "amp_optimization_level": "O1", "gradient_scaling": True, "loss_scale": "dynamic",
    "effective_batch_size": 128, "eval_interval": 5, "export_for_integration": True,
    "safety_critical_validation": True, "risk_adjusted_metrics": True, "online_validation": True,
    "cold_start_testing": True, "memory_cleanup_interval": 25, "num_gpus": 2, "modality_balancing": True,
    "modality_weights": {"text": 0.6, "image": 0.4}, "stratified_validation": True,
    "enable_data_augmentation": True, "augmentation_strategy": "multimodal", "cudnn_benchmark": True, "tf32": True,
    "drop_last": True, "shuffle": True, "min_performance": 0.8, "test_time_augmentation": True,
    "ensemble_diversity_weight": 0.1, "adversarial_training": True,
    "knowledge_distillation": True, "domain_adaptation": True,
}


@pytest.mark.parametrize("key", sorted(SPEC_KEYS))
def test_every_spec_key_is_accepted(key):
    data = {key: SPEC_KEYS[key]}
    if key == "augmentation_strategy":
        data["enable_data_augmentation"] = True
    if key in ("export_for_integration",):
        data["run_dir"] = "runs/x"
    TrainingConfig.from_dict(data)  # no UnknownConfigKeyError


def test_min_performance_is_checked_after_training_and_export_for_integration_writes_the_export(tmp_path):
    from tests.conftest import make_model

    model = make_model(n_samples=120)
    model.create_ensemble(n_bags=2, random_state=0)
    model.select_base_learners(trainers=["logistic"], instantiate=False)
    model.train_ensemble(epochs=1, enable_denoising=False, save_checkpoints=False, min_performance=0.99,
                         run_dir=str(tmp_path / "run"), export_for_integration=True)
    check = model.performance_check()
    assert check["metric"] == "accuracy" and 0 < check["score"] < 0.99 and check["met"] is False
    assert check["min_performance"] == 0.99
    import modalbag

    loaded = modalbag.load_ensemble(tmp_path / "run" / "export")
    data, _ = model.synthetic_task.sample(20, random_state=5)
    np.testing.assert_allclose(loaded.predict_proba(data), model.predict_proba(data))
    with pytest.raises(ConfigError, match="export_for_integration writes under the run directory"):
        TrainingConfig.from_dict({"export_for_integration": True})


def test_curriculum_stages_that_name_their_objectives_give_the_run_its_objectives():
    """The spec's curriculum names 'consistency' in its last stage and no denoising_objectives."""
    stages = [{"epochs": 20, "objectives": ["reconstruction"]},
              {"epochs": 30, "objectives": ["reconstruction", "alignment"]},
              {"epochs": 50, "objectives": ["reconstruction", "alignment", "consistency"]}]
    config = TrainingConfig.from_dict({"denoising_strategy": "curriculum", "curriculum_stages": stages})
    assert config.denoising_objectives == ("reconstruction", "alignment", "consistency")
    assert TrainingConfig.from_dict(config.to_dict()) == config
    # given objectives stay the user's, and a stage naming another one is still an error
    with pytest.raises(ConfigError, match=r"curriculum stage 2 names objectives \['consistency'\]"):
        TrainingConfig.from_dict({"curriculum_stages": stages, "denoising_objectives": ["reconstruction", "alignment"]})
    # a stage without objectives uses all of them: the default objectives stand
    config = TrainingConfig.from_dict({"curriculum_stages": [{"epochs": 5, "denoising_weight": 0.01}]})
    assert config.denoising_objectives == ("reconstruction", "alignment")


def test_progressive_learning_without_stages_runs_the_spec_stages_scaled_to_epochs():
    """The spec's medical example turns progressive learning on and gives no stages."""
    stages = TrainingConfig.from_dict({"enable_progressive_learning": True, "epochs": 200}).progressive_stages
    assert [s["epochs"] for s in stages] == [40, 60, 100]  # the spec's 20/30/50 of 100
    assert stages[0]["frozen_layers"] == ["encoder"] and stages[0]["lr_multiplier"] == 0.1
    assert stages[2]["fine_tuning"] is True and stages[2]["lr_multiplier"] == 0.01
    short = TrainingConfig.from_dict({"enable_progressive_learning": True, "epochs": 2}).progressive_stages
    assert [s["epochs"] for s in short] == [1, 1, 1]  # every stage at least one epoch


def test_a_progressive_stage_learning_rate_is_a_multiplier_of_the_run_learning_rate():
    stages = [{"epochs": 30, "learning_rate": 1e-4, "frozen_layers": ["encoder"]},
              {"epochs": 50, "learning_rate": 5e-4, "frozen_layers": []}]
    config = TrainingConfig.from_dict({"enable_progressive_learning": True, "learning_rate": 1e-3,
                                       "progressive_stages": stages})
    assert [s["lr_multiplier"] for s in config.progressive_stages] == pytest.approx([0.1, 0.5])
    assert all("learning_rate" not in s for s in config.progressive_stages)
