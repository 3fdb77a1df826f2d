"""The precision plugins: gradient accumulation matches a big batch, AMP keeps losses finite."""

from __future__ import annotations

import contextlib

import numpy as np
import pytest
import torch

import modalbag
from modalbag import TrainingConfig, hookimpl
from modalbag.data.bags import Bag
from modalbag.engine.engine import Engine
from modalbag.execution.fitting import fit_learner
from modalbag.kernel.records import LearnerSpec
from modalbag.kernel.registry import default_catalog
from modalbag.kernel.run import TaskInfo
from modalbag.plugins.precision import amp
from modalbag.plugins.precision.amp import choose
from tests.conftest import catalog_without, make_model

_NO_GPU = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def CUDA(test):  # noqa: N802 - reads as a marker
    """Marked ``cuda`` (benchmarks/gpu_check.py selects them) and skipped without a GPU."""
    return pytest.mark.cuda(_NO_GPU(test))

#: Exact-gradient settings: no dropout, schedule, clipping or validation rows, and SGD, whose step is
#: linear in the gradient (Adam would magnify rounding noise on parameters whose true gradient is
#: zero, such as the attention gate's last bias, into full-size steps).
EXACT = {"epochs": 2, "enable_denoising": False, "save_checkpoints": False, "early_stopping_patience": 0,
         "warmup_epochs": 0, "scheduler_type": "none", "gradient_clipping": None, "validation_split": 0.0,
         "dropout_rate": 0.0, "learning_rate": 5e-2, "threads_per_learner": 1, "optimizer_type": "sgd"}


def _fit_one(batch_size: int, steps: int, mixed_precision: bool = False, plugins=(), **extra):
    """Fit one neural learner on a 96-row bag of a fixed dataset; returns its state dict and record."""
    model = make_model(n_samples=200, seed=3)
    dataset = model.dataset
    from modalbag.data.dataset import encode_labels

    targets, classes = encode_labels(dataset.labels, "classification")
    task = TaskInfo("classification", len(classes), classes, np.bincount(targets) / len(targets))
    config = TrainingConfig.from_dict({**EXACT, "batch_size": batch_size, "gradient_accumulation_steps": steps,
                                       "mixed_precision": mixed_precision, **extra})
    engine = Engine(default_catalog(), list(plugins))
    run = engine.prepare(config, task)
    mods = ("text", "image", "meta")
    bag = Bag(0, mods, np.arange(96), np.arange(96, 200), seed=11)
    spec = LearnerSpec("bag_000", 0, "neural", mods, {m: dataset.specs[m].type for m in mods},
                       {"hidden_dim": 32, "embedding_dim": 16})
    result = fit_learner(spec, bag, dataset, targets, run, engine.catalog)
    assert result.ok, result.error
    return {k: v.detach().clone() for k, v in result.model.model.state_dict().items()}, result


def test_accumulating_k_batches_of_b_matches_one_batch_of_k_times_b():
    big, _ = _fit_one(batch_size=32, steps=1)
    small, small_result = _fit_one(batch_size=8, steps=4)
    assert any("one optimizer step per 4 batches" in n for n in small_result.notes)
    for name in big:
        torch.testing.assert_close(small[name], big[name], rtol=1e-4, atol=1e-5, msg=name)
    # and the comparison can fail: without accumulation, four small steps land elsewhere
    plain, _ = _fit_one(batch_size=8, steps=1)
    assert max((plain[k] - big[k]).abs().max().item() for k in big) > 1e-3


def test_accumulation_flushes_the_partial_group_at_the_end_of_an_epoch():
    # 96 rows in batches of 32 with k=2: steps 1-2 accumulate, step 3 is the epoch's last and steps alone
    state, result = _fit_one(batch_size=32, steps=2, epochs=1)
    assert result.records[0].train_loss > 0
    # a learner whose pending gradients leaked into the next epoch would differ from a fresh k=2 run of
    # one epoch followed by nothing: compare with the exact expectation built by hand below
    big3, _ = _fit_one(batch_size=64, steps=1, epochs=1)  # first optimizer step of 64 rows, then 32 alone
    for name in state:
        torch.testing.assert_close(state[name], big3[name], rtol=1e-4, atol=1e-5, msg=name)


@pytest.mark.parametrize("native", [False, True])
def test_cpu_precision_choice_follows_the_hardware(native, monkeypatch):
    # forced both ways: the suite must meet both paths whatever CPU it runs on
    monkeypatch.setattr(amp, "cpu_flags", lambda: frozenset({"avx512_bf16"} if native else {"avx2"}))
    choice = choose("cpu")
    assert choice.dtype is None  # fp32 until measured, or for good without native bf16
    assert (choice.reason == amp.MEASURE_ON_FIRST_STEPS) == native
    if not native:
        assert "no native bf16" in choice.reason
    forced = choose("cpu", "fp16")  # never picked by 'auto', but forced it runs loss-scaled
    assert forced.dtype == torch.float16 and forced.scaler is not None


class _TimedFit:
    """A stand-in fit whose trial step time depends on the precision the amp plugin is trying."""

    def __init__(self, fp32_seconds: float, bf16_seconds: float):
        self.model = torch.nn.Linear(3, 2)
        self.stash = amp.FitState(spec=None, bag=None).stash
        self.seconds = {None: fp32_seconds, torch.bfloat16: bf16_seconds}
        self.trials: list[str] = []
        self.trial_steps = self._trial

    def _trial(self, n: int) -> float:
        dtype = self.stash[amp._CHOICE].dtype
        self.trials.append("bf16" if dtype is not None else "fp32")
        return self.seconds[dtype]


@pytest.mark.parametrize(("fp32", "bf16", "kept"), [(0.010, 0.005, "bf16"), (0.010, 0.0099, "fp32"),
                                                    (0.010, 0.020, "fp32")])
def test_the_faster_step_is_kept_and_reused_without_measuring_again(fp32, bf16, kept, tmp_path, monkeypatch):
    monkeypatch.setenv("MODALBAG_CACHE_DIR", str(tmp_path))
    run = Engine(default_catalog()).prepare(TrainingConfig(), TaskInfo("classification", 2, np.arange(2),
                                                                        np.array([0.5, 0.5])))
    fit = _TimedFit(fp32, bf16)
    choice, how = amp.decide_cpu(run, fit, "cpu")
    assert ("bf16" if choice.dtype is not None else "fp32") == kept
    assert sorted(fit.trials) == ["bf16", "bf16", "fp32", "fp32"] and "kept for later runs" in how
    assert f"{fp32 * 1e3:.2f} ms in fp32" in choice.reason
    again = _TimedFit(1.0, 0.001)  # the machine's load changed: the kept decision holds
    choice2, how2 = amp.decide_cpu(run, again, "cpu")
    assert again.trials == [] and "reused" in how2 and choice2.dtype == choice.dtype
    other = _TimedFit(0.010, 0.005)
    other.model = torch.nn.Linear(5, 2)  # another network: its own decision
    amp.decide_cpu(run, other, "cpu")
    assert other.trials


def test_native_bf16_is_decided_on_the_real_step_and_a_rerun_trains_identically(tmp_path, monkeypatch):
    monkeypatch.setenv("MODALBAG_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(amp, "cpu_flags", lambda: frozenset({"avx512_bf16", "amx_bf16"}))
    first, result = _fit_one(batch_size=32, steps=1, mixed_precision=True, epochs=1)
    [note] = [n for n in result.notes if n.startswith("precision:")]
    assert "ms in fp32" in note and "measured now and kept" in note
    second, result2 = _fit_one(batch_size=32, steps=1, mixed_precision=True, epochs=1)
    [note2] = [n for n in result2.notes if n.startswith("precision:")]
    assert "reused the decision" in note2
    for name in first:
        torch.testing.assert_close(second[name], first[name], rtol=0, atol=0, msg=name)


def test_trial_steps_leave_the_fit_exactly_as_it_was():
    """A plugin that times steps before training changes nothing the fit then learns."""

    class Timer:
        seconds: list[float] = []

        @hookimpl
        def modalbag_fit_ready(self, run, fit):
            self.seconds.append(fit.trial_steps(3))

    plain, _ = _fit_one(batch_size=16, steps=1, epochs=2, dropout_rate=0.2, modality_dropout=0.3)
    timer = Timer()
    timed, _ = _fit_one(batch_size=16, steps=1, epochs=2, dropout_rate=0.2, modality_dropout=0.3, plugins=[timer])
    assert len(timer.seconds) == 1 and timer.seconds[0] > 0
    for name in plain:
        torch.testing.assert_close(timed[name], plain[name], rtol=0, atol=0, msg=name)


def test_default_mixed_precision_records_its_choice_and_trains():
    _, result = _fit_one(batch_size=32, steps=1, mixed_precision=True, epochs=1)
    notes = [n for n in result.notes if n.startswith("precision:")]
    assert len(notes) == 1
    assert ("bf16" in notes[0]) or ("fp32" in notes[0])


def test_bf16_autocast_on_cpu_keeps_losses_finite_and_learns():
    _, result = _fit_one(batch_size=16, steps=1, mixed_precision=True, amp_dtype="bf16", epochs=3)
    assert any("bf16 autocast forced" in n for n in result.notes)
    losses = [r.train_loss for r in result.records]
    assert all(np.isfinite(losses)) and losses[-1] < losses[0]


@CUDA
def test_cuda_fp16_with_grad_scaler_keeps_losses_finite():
    _, result = _fit_one(batch_size=16, steps=1, mixed_precision=True, amp_dtype="fp16", epochs=3, device="cuda")
    assert any("fp16 autocast with dynamic loss scaling" in n for n in result.notes)
    losses = [r.train_loss for r in result.records]
    assert all(np.isfinite(losses)) and losses[-1] < losses[0]


@CUDA
def test_cuda_bf16_autocast_keeps_losses_finite():
    if not torch.cuda.is_bf16_supported():
        pytest.skip("this GPU has no bf16")
    _, result = _fit_one(batch_size=16, steps=1, mixed_precision=True, amp_dtype="bf16", epochs=3, device="cuda")
    assert all(np.isfinite([r.train_loss for r in result.records]))


@CUDA
def test_cuda_accumulation_with_fp16_scaling_matches_a_big_batch():
    big, _ = _fit_one(batch_size=32, steps=1, mixed_precision=True, amp_dtype="fp16", device="cuda")
    small, _ = _fit_one(batch_size=8, steps=4, mixed_precision=True, amp_dtype="fp16", device="cuda")
    for name in big:  # fp16 forward passes: compare loosely
        torch.testing.assert_close(small[name], big[name], rtol=2e-2, atol=2e-3, msg=name)


class _CountingAmp:
    """A replacement ``amp``: runs the forward under a no-op context and counts the steps."""

    calls = 0

    def __init__(self, config, options):
        pass

    @modalbag.hookimpl
    def modalbag_autocast(self, run, fit):
        type(self).calls += 1
        return contextlib.nullcontext()


class _CountingAmpPlugin:
    @modalbag.hookimpl
    def modalbag_register_precisions(self, register):
        register("amp", _CountingAmp, summary="counts autocast calls")


def test_a_precision_component_can_come_from_a_third_party_plugin():
    catalog = catalog_without("precision.amp")  # a machine where the built-in is not installed
    catalog.register_plugin(_CountingAmpPlugin())
    model = make_model(n_samples=120, catalog=catalog)
    model.create_ensemble(n_bags=1)
    model.select_base_learners(trainers=["neural"], instantiate=False)
    model.train_ensemble(**{**EXACT, "epochs": 2, "batch_size": 32, "mixed_precision": True})
    assert "precision.amp" in model.get_training_summary()["active_plugins"]
    assert _CountingAmp.calls >= 2


def test_fp16_loss_scale_fixed_dynamic_or_off():
    """Forced fp16 on the CPU exercises the loss-scaled path anywhere: a fixed scale stays put, the
    dynamic one is a GradScaler's, and gradient_scaling=false trains without one."""
    from modalbag.plugins.precision.amp import AmpOptions, grad_scaler

    assert grad_scaler("cpu", AmpOptions(gradient_scaling=False)) is None
    assert grad_scaler("cpu", AmpOptions()).get_scale() == 2.0**16
    scales = []

    class Scale:
        @hookimpl(trylast=True)
        def modalbag_epoch_end(self, run, fit, record):
            scales.append(amp.scaler_of(fit).get_scale())

    _, result = _fit_one(batch_size=32, steps=1, mixed_precision=True, amp_dtype="fp16", loss_scale=256, epochs=2,
                         plugins=[Scale()])
    assert scales == [256.0, 256.0] and any("a fixed loss scale of 256" in n for n in result.notes)
    _, unscaled = _fit_one(batch_size=32, steps=1, mixed_precision=True, amp_dtype="fp16", gradient_scaling=False,
                           epochs=1)
    assert any("no loss scaling" in n for n in unscaled.notes)
    assert np.isfinite(unscaled.records[-1].train_loss)
    task = TaskInfo("classification", 2, np.arange(2), np.array([0.5, 0.5]))
    with pytest.raises(modalbag.ConfigError, match="loss_scale must be 'dynamic' or a positive number"):
        Engine(default_catalog()).prepare(TrainingConfig.from_dict({"loss_scale": -1}), task)
