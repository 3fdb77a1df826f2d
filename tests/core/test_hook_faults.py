"""Fault injection: a plugin raising at each run-hook point, under the serial and local executors.

The policy (docs/hooks.md, "When a hook raises"): a hook that owns behaviour fails the learner it
runs for (every learner here, so the run ends in `TrainingFailedError` listing each one's error,
never a bare traceback from inside the engine); an observing hook's failure is recorded and the
trained run is kept; ``run_start`` raises before anything trains.
"""

from __future__ import annotations

import numpy as np
import pytest

from modalbag import TrainingFailedError, hookimpl
from tests.conftest import make_model

TRAINING = {"epochs": 2, "enable_denoising": False, "mixed_precision": False, "save_checkpoints": False,
            "early_stopping_patience": 0, "batch_size": 32, "log_interval": 1}

#: Hook -> what its failure ends: "learner" (that learner fails), "nothing" (the run is kept),
#: "run" (raised before training starts).
OUTCOME = {
    "modalbag_run_start": "run",
    "modalbag_fit_setup": "learner",
    "modalbag_fit_start": "learner",
    "modalbag_epoch_end": "learner",
    "modalbag_epoch_metrics": "learner",
    "modalbag_fit_end": "learner",
    "modalbag_checkpoint_state": "nothing",  # called only when a checkpoint is written (none here)
    "modalbag_autocast": "learner",
    "modalbag_auxiliary_losses": "learner",
    "modalbag_backward": "learner",
    "modalbag_optimizer_step": "learner",
    "modalbag_log_step": "nothing",
    "modalbag_run_end": "nothing",
}

SIGNATURES = {
    "modalbag_run_start": "run", "modalbag_run_end": "run, learners", "modalbag_fit_setup": "run, fit",
    "modalbag_fit_start": "run, fit", "modalbag_epoch_end": "run, fit, record", "modalbag_epoch_metrics": "run, fit",
    "modalbag_fit_end": "run, fit", "modalbag_checkpoint_state": "run, fit", "modalbag_autocast": "run, fit",
    "modalbag_auxiliary_losses": "run, fit, batch, output", "modalbag_backward": "run, fit, loss",
    "modalbag_optimizer_step": "run, fit", "modalbag_log_step": "run, fit, step, values",
}


def raising_plugin(hook: str) -> object:
    """An instance whose only hook implementation is ``hook``, raising every time it is called."""
    namespace: dict = {"hookimpl": hookimpl}
    exec(f"@hookimpl\ndef {hook}(self, {SIGNATURES[hook]}):\n    raise RuntimeError('injected in {hook}')\n",
         namespace)
    return type(f"Raises_{hook}", (), {hook: namespace[hook]})()


def _train(hook: str, executor: str):
    model = make_model(n_samples=160, plugins=[raising_plugin(hook)])
    model.create_ensemble(n_bags=2, random_state=0)
    model.select_base_learners(trainers=["neural"], instantiate=False)
    return model, model.train_ensemble(**TRAINING, executor=executor, n_jobs=2 if executor == "local" else 1)


def _check(hook: str, executor: str, held_out) -> None:
    outcome = OUTCOME[hook]
    if outcome == "run":
        with pytest.raises(RuntimeError, match=f"injected in {hook}"):
            _train(hook, executor)
    elif outcome == "learner":
        with pytest.raises(TrainingFailedError) as caught:
            _train(hook, executor)
        assert str(caught.value).count(f"injected in {hook}") == 2  # each learner, with its error
    else:
        model, trained = _train(hook, executor)
        assert len(trained) == 2
        assert np.isfinite(model.predict_proba(held_out[0])).all()


@pytest.mark.parametrize("hook", list(OUTCOME))
def test_a_hook_raising_ends_only_what_the_policy_says_serial(hook, held_out):
    _check(hook, "serial", held_out)


@pytest.mark.slow
@pytest.mark.parametrize("hook", ["modalbag_fit_start", "modalbag_epoch_end", "modalbag_optimizer_step",
                                  "modalbag_log_step", "modalbag_run_end"])
def test_a_hook_raising_ends_only_what_the_policy_says_local(hook, held_out):
    _check(hook, "local", held_out)
