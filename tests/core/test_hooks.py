"""The run hooks' contract: when each is called, with what, in which order, and what results do."""

from __future__ import annotations

import contextlib
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from modalbag import ConfigError, StashKey, hookimpl
from tests.conftest import FAST, make_model

FAST_RUN = {**FAST, "epochs": 3, "early_stopping_patience": 0}


class Recorder:
    """Records every run hook call it receives, in order."""

    def __init__(self, log: list, tag: str = "rec"):
        self.log, self.tag = log, tag

    @hookimpl
    def modalbag_validate_config(self, config):
        self.log.append((self.tag, "validate_config"))

    @hookimpl
    def modalbag_run_start(self, run):
        self.log.append((self.tag, "run_start"))

    @hookimpl
    def modalbag_fit_setup(self, run, fit):
        assert fit.model is not None and fit.optimizer is None  # before the optimizer exists
        self.log.append((self.tag, "fit_setup", fit.spec.learner_id))

    @hookimpl
    def modalbag_fit_start(self, run, fit):
        self.log.append((self.tag, "fit_start", fit.spec.learner_id))

    @hookimpl
    def modalbag_epoch_end(self, run, fit, record):
        self.log.append((self.tag, "epoch_end", fit.spec.learner_id, record.epoch))

    @hookimpl
    def modalbag_fit_end(self, run, fit):
        self.log.append((self.tag, "fit_end", fit.spec.learner_id))

    @hookimpl
    def modalbag_fit_error(self, run, learner_id, error):
        self.log.append((self.tag, "fit_error", learner_id, type(error).__name__))

    @hookimpl
    def modalbag_run_end(self, run, learners):
        self.log.append((self.tag, "run_end", sorted(learners)))


def _train(plugins, n_bags=2, **config):
    model = make_model(n_samples=200, plugins=plugins)
    model.create_ensemble(n_bags=n_bags, random_state=0)
    model.select_base_learners(trainers=["neural"], instantiate=False)
    model.train_ensemble(**{**FAST_RUN, **config})
    return model


def test_run_hooks_are_called_in_lifecycle_order():
    log: list = []
    _train([Recorder(log)])
    names = [entry[1] for entry in log]
    assert names[:2] == ["validate_config", "run_start"] and names[-1] == "run_end"
    per_learner = [e for e in log if len(e) > 2 and e[2] == "bag_000"]
    assert [e[1] for e in per_learner] == ["fit_start", "fit_setup", "epoch_end", "epoch_end", "epoch_end", "fit_end"]
    assert [e[3] for e in per_learner if e[1] == "epoch_end"] == [1, 2, 3]
    assert log[-1] == ("rec", "run_end", ["bag_000", "bag_001"])


def test_broadcast_hooks_follow_registration_order():
    log: list = []
    _train([Recorder(log, "first"), Recorder(log, "second")], n_bags=1)
    starts = [tag for tag, name, *_ in log if name == "run_start"]
    assert starts == ["first", "second"]


def test_fit_error_is_called_for_the_failing_learner_only():
    log: list = []

    class Fails(Recorder):
        @hookimpl
        def modalbag_fit_setup(self, run, fit):
            if fit.spec.learner_id == "bag_001":
                raise KeyError("missing piece")

    _train([Fails(log)])
    errors = [e for e in log if e[1] == "fit_error"]
    assert errors == [("rec", "fit_error", "bag_001", "KeyError")]
    assert ("rec", "fit_end", "bag_000") in log and ("rec", "fit_end", "bag_001") not in log


def test_validate_config_problems_stop_the_run_before_training():
    log: list = []

    class Picky(Recorder):
        @hookimpl
        def modalbag_validate_config(self, config):
            return [f"batch_size {config.batch_size} is not a power of two"] if config.batch_size & (config.batch_size - 1) else []

    model = make_model(n_samples=200, plugins=[Picky(log)])
    with pytest.raises(ConfigError, match="batch_size 48 is not a power of two"):
        model.train_ensemble(**{**FAST_RUN, "batch_size": 48})
    assert not any(e[1] == "run_start" for e in log)


def test_auxiliary_losses_are_added_and_recorded():
    class Penalty:
        @hookimpl
        def modalbag_auxiliary_losses(self, run, fit, batch, output):
            assert set(batch) == {"inputs", "masks", "target"}
            assert output["embeddings"].shape[:2] == (len(batch["target"]), len(fit.spec.modalities))
            return {"fused_l2": 0.01 * output["fused"].pow(2).mean()}

    model = _train([Penalty()], n_bags=1)
    records = model.learners["bag_000"].records
    assert all(r.loss_terms["fused_l2"] > 0 for r in records)


def test_fit_setup_modules_are_optimized_and_stashed():
    KEY = StashKey[torch.nn.Module]()

    class Head:
        @hookimpl
        def modalbag_fit_setup(self, run, fit):
            fit.aux_modules["probe"] = module = torch.nn.Linear(fit.model.norm.normalized_shape[0], 1)
            fit.stash[KEY] = module

        @hookimpl
        def modalbag_auxiliary_losses(self, run, fit, batch, output):
            return {"probe": fit.stash[KEY](output["fused"].detach()).pow(2).mean()}

        @hookimpl
        def modalbag_fit_end(self, run, fit):
            params = {id(p) for g in fit.optimizer.param_groups for p in g["params"]}
            assert all(id(p) in params for p in fit.stash[KEY].parameters())

    model = _train([Head()], n_bags=1)
    terms = [r.loss_terms["probe"] for r in model.learners["bag_000"].records]
    assert terms[-1] < terms[0]  # the probe's own parameters were trained


def test_firstresult_step_hooks_replace_the_defaults():
    calls = {"autocast": 0, "backward": 0, "step": 0}

    class Owner:
        @hookimpl
        def modalbag_autocast(self, run, fit):
            calls["autocast"] += 1
            return contextlib.nullcontext()

        @hookimpl
        def modalbag_backward(self, run, fit, loss):
            calls["backward"] += 1
            (loss * 0.5).backward()
            return True

        @hookimpl
        def modalbag_optimizer_step(self, run, fit):
            calls["step"] += 1
            if fit.step % 2 == 0:  # accumulate: step on every second batch only
                return True
            fit.default_step()
            return True

    model = _train([Owner()], n_bags=1)
    assert calls["autocast"] == calls["backward"] == calls["step"] > 0
    assert model.learners["bag_000"].ok


def test_hook_docs_are_generated_and_current():
    root = Path(__file__).resolve().parents[2]
    result = subprocess.run([sys.executable, "docs/gen_hooks.py", "--check"], cwd=root)
    assert result.returncode == 0, "docs/hooks.md is stale: run python docs/gen_hooks.py"


def test_epoch_metrics_are_merged_into_the_record():
    class Thermometer:
        @hookimpl
        def modalbag_epoch_metrics(self, run, fit):
            return {"thermometer.epoch": float(fit.epoch)}

    model = _train([Thermometer()], n_bags=1)
    assert [r.metrics["thermometer.epoch"] for r in model.learners["bag_000"].records] == [1.0, 2.0, 3.0]


def test_sinks_objectives_and_strategies_register_directly_and_activate_by_name():
    """Registration hooks of three families, through a directly registered plugin object."""
    from modalbag import Catalog
    from modalbag.denoising.objectives import ObjectiveOutput

    seen: list = []

    class Sink:
        def __init__(self, config, options):
            pass

        @hookimpl
        def modalbag_epoch_end(self, run, fit, record):
            seen.append(("sink", fit.spec.learner_id, record.epoch))

    class Zero:
        name, min_modalities = "zero", 1

        def __init__(self, config, options):
            pass

        def build(self, spec):
            return None

        def loss(self, module, ctx):
            return ObjectiveOutput(ctx.fused.pow(2).mean() * 0.0)

    class Half:
        def __init__(self, config, options):
            pass

        def for_fit(self, objectives):
            class Weighting:
                def scale(self, epoch):
                    return 1.0

                def active(self, epoch):
                    return None

                def weights(self, losses, task_loss):
                    seen.append(("strategy", sorted(losses)))
                    return dict.fromkeys(losses, 0.5)

            return Weighting()

    class Plugin:
        @hookimpl
        def modalbag_register_sinks(self, register):
            register("memory", Sink)

        @hookimpl
        def modalbag_register_objectives(self, register):
            register("zero", Zero)

        @hookimpl
        def modalbag_register_strategies(self, register):
            register("half", Half)

    catalog = Catalog()
    catalog.register_plugin(Plugin())
    model = make_model(n_samples=200, catalog=catalog)
    model.create_ensemble(n_bags=1, random_state=0)
    model.select_base_learners(trainers=["neural"], instantiate=False)
    model.train_ensemble(**{**FAST_RUN, "sinks": ["memory"], "enable_denoising": True,
                            "denoising_objectives": ["zero"], "denoising_strategy": "half"})
    assert [e for e in seen if e[0] == "sink"] == [("sink", "bag_000", e) for e in (1, 2, 3)]
    assert ("strategy", ["zero"]) in seen
    assert model.learners["bag_000"].records[-1].metrics["weight.zero"] == 0.5 * 0.1  # weight * denoising_weight


def test_trace_switch_logs_every_hook_call_with_its_plugins_and_result(monkeypatch):
    import structlog

    class Metrics:
        @hookimpl
        def modalbag_epoch_metrics(self, run, fit):
            return {"traced": 1.5}

    def train():
        model = make_model(n_samples=120, plugins=[Metrics()])
        model.create_ensemble(n_bags=1, random_state=0)
        model.select_base_learners(trainers=["neural"], instantiate=False)
        with structlog.testing.capture_logs() as logs:
            model.train_ensemble(**{**FAST_RUN, "epochs": 2})
        return [e for e in logs if e["event"] == "hook.called"]

    monkeypatch.delenv("MODALBAG_TRACE_HOOKS", raising=False)
    assert train() == []  # off by default
    monkeypatch.setenv("MODALBAG_TRACE_HOOKS", "1")
    calls = train()
    metrics = [e for e in calls if e["hook"] == "modalbag_epoch_metrics"]
    assert len(metrics) == 2  # one per epoch
    assert any("Metrics" in name for name in metrics[0]["plugins"])
    assert "'traced': 1.5" in metrics[0]["result"] and metrics[0]["seconds"] >= 0
    assert {"modalbag_run_start", "modalbag_fit_start", "modalbag_epoch_end", "modalbag_run_end"} <= {
        e["hook"] for e in calls}
