"""Learning-rate trajectories of the scheduler plugins and of the engine's linear warmup,
driven through a real torch optimizer the way the neural trainer drives them."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from modalbag import TrainingConfig
from modalbag.errors import ConfigError
from modalbag.kernel.components import build_options
from modalbag.kernel.registry import Catalog
from modalbag.kernel.schedules import ConstantSchedule, LinearWarmup

BASE_LR = 0.1
STEPS_PER_EPOCH = 10


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return Catalog()


def _optimizer(lr: float = BASE_LR, extra_group_lr: float | None = None) -> torch.optim.SGD:
    groups = [{"params": [torch.nn.Parameter(torch.zeros(1))]}]
    if extra_group_lr is not None:
        groups.append({"params": [torch.nn.Parameter(torch.zeros(1))], "lr": extra_group_lr})
    return torch.optim.SGD(groups, lr=lr)


def _schedule(catalog, name: str, options: dict, optimizer=None, steps_per_epoch: int = STEPS_PER_EPOCH):
    config = TrainingConfig.from_dict({"learning_rate": BASE_LR, **options}, catalog=catalog)
    optimizer = optimizer or _optimizer(config.learning_rate)
    component = catalog.get("scheduler", name)
    return optimizer, component.factory(optimizer, config, build_options(component, config), steps_per_epoch)


def _lr(optimizer, group: int = 0) -> float:
    return optimizer.param_groups[group]["lr"]


def _run_batches(optimizer, schedule, n: int) -> list[float]:
    """The rate used by each of ``n`` batches (optimizer step, then the schedule is told)."""
    used = []
    for _ in range(n):
        used.append(_lr(optimizer))
        optimizer.step()
        schedule.after_batch()
    return used


class _Recorder:
    def __init__(self):
        self.batches = 0
        self.epochs: list[float | None] = []

    def after_batch(self):
        self.batches += 1

    def after_epoch(self, val_loss):
        self.epochs.append(val_loss)


# --- LinearWarmup --------------------------------------------------------------------------------


@pytest.mark.parametrize("warmup_steps", [1, 4, 25])
def test_warmup_ramps_linearly_to_the_base_rate(warmup_steps):
    opt = _optimizer()
    inner = _Recorder()
    warm = LinearWarmup(opt, inner, warmup_steps)
    used = _run_batches(opt, warm, warmup_steps)
    expected = [BASE_LR * (k + 1) / warmup_steps for k in range(warmup_steps)]
    np.testing.assert_allclose(used, expected, rtol=1e-9)
    assert used[-1] == pytest.approx(BASE_LR)
    assert inner.batches == 0  # the inner schedule has not started counting yet
    assert _lr(opt) == pytest.approx(BASE_LR)


def test_warmup_hands_over_to_the_inner_schedule():
    opt = _optimizer()
    inner = _Recorder()
    warm = LinearWarmup(opt, inner, 5)
    _run_batches(opt, warm, 5)
    warm.after_epoch(0.7)  # end of the warmup epoch: warmup is over, the inner schedule hears it
    assert not warm.warming_up
    _run_batches(opt, warm, 3)
    assert inner.batches == 3
    warm.after_epoch(0.5)
    assert inner.epochs == [0.7, 0.5]


def test_warmup_hides_epochs_during_warmup_from_the_inner_schedule():
    opt = _optimizer()
    inner = _Recorder()
    warm = LinearWarmup(opt, inner, 20)
    _run_batches(opt, warm, 10)
    warm.after_epoch(1.0)
    assert inner.epochs == [] and inner.batches == 0


def test_warmup_scales_every_param_group_from_its_own_base():
    opt = _optimizer(BASE_LR, extra_group_lr=0.01)
    warm = LinearWarmup(opt, ConstantSchedule(), 4)
    assert _lr(opt, 0) == pytest.approx(BASE_LR / 4)
    assert _lr(opt, 1) == pytest.approx(0.01 / 4)
    _run_batches(opt, warm, 2)
    assert _lr(opt, 0) == pytest.approx(BASE_LR * 3 / 4)
    assert _lr(opt, 1) == pytest.approx(0.01 * 3 / 4)
    _run_batches(opt, warm, 10)
    assert _lr(opt, 0) == pytest.approx(BASE_LR)
    assert _lr(opt, 1) == pytest.approx(0.01)


def test_cosine_after_warmup_starts_its_own_timeline(catalog):
    opts = {"T_max": 2, "eta_min": 0.0, "warmup_epochs": 1}
    opt, inner = _schedule(catalog, "cosine_restarts", opts)
    warm = LinearWarmup(opt, inner, STEPS_PER_EPOCH)
    warm_used = _run_batches(opt, warm, STEPS_PER_EPOCH + 40)
    ref_opt, ref = _schedule(catalog, "cosine_restarts", opts)
    ref_used = _run_batches(ref_opt, ref, 40)
    np.testing.assert_allclose(warm_used[:STEPS_PER_EPOCH], BASE_LR * np.arange(1, 11) / 10, rtol=1e-9)
    # after warmup, the very same cosine curve as without warmup, starting from its beginning
    np.testing.assert_allclose(warm_used[STEPS_PER_EPOCH:], ref_used, rtol=1e-9, atol=1e-12)


def test_plateau_after_warmup_reduces_from_the_base_rate(catalog):
    opt, inner = _schedule(catalog, "plateau", {"patience": 0})
    warm = LinearWarmup(opt, inner, 2 * STEPS_PER_EPOCH)
    for _ in range(2):  # two warmup epochs with a worsening loss: ignored
        _run_batches(opt, warm, STEPS_PER_EPOCH)
    assert _lr(opt) == pytest.approx(BASE_LR)
    warm.after_epoch(1.0)
    warm.after_epoch(2.0)
    assert _lr(opt) == pytest.approx(BASE_LR / 2)


# --- cosine_restarts -----------------------------------------------------------------------------


def test_cosine_decays_to_eta_min_and_restarts_at_period_boundary(catalog):
    opt, sched = _schedule(catalog, "cosine_restarts", {"T_max": 2, "eta_min": 0.001})
    used = _run_batches(opt, sched, 100)
    period = 2 * STEPS_PER_EPOCH
    first = used[:period]
    assert first[0] == pytest.approx(BASE_LR)
    assert all(b < a for a, b in zip(first, first[1:]))  # smooth decay, every batch
    assert used[period // 2] == pytest.approx((BASE_LR + 0.001) / 2)  # half way: the cosine midpoint
    assert 0.001 <= first[-1] < 0.001 + 0.01 * BASE_LR
    assert min(used) >= 0.001 - 1e-12
    assert used[period] == pytest.approx(BASE_LR)  # restart


def test_cosine_periods_multiply_by_t_mult(catalog):
    opt, sched = _schedule(catalog, "cosine_restarts", {"T_max": 2, "T_mult": 2, "eta_min": 0.0})
    used = np.array(_run_batches(opt, sched, 150))
    restarts = [i for i in range(1, len(used)) if used[i] > used[i - 1]]
    # periods of 2, 4, 8 epochs: restarts after 20, 60 and 140 batches
    assert restarts == [20, 60, 140]
    assert used[restarts] == pytest.approx([BASE_LR] * 3)
    assert used[59] < 0.01 * BASE_LR and used[139] < 0.01 * BASE_LR
    # second period: half way at 2 of its 4 epochs
    assert used[40] == pytest.approx(BASE_LR / 2)


def test_cosine_t_mult_three_and_t0_alias(catalog):
    opt, sched = _schedule(catalog, "cosine_restarts", {"T_0": 1, "T_mult": 3, "eta_min": 0.0})
    used = np.array(_run_batches(opt, sched, 140))
    restarts = [i for i in range(1, len(used)) if used[i] > used[i - 1]]
    assert restarts == [10, 40, 130]  # periods 1, 3, 9 epochs


def test_cosine_default_period_is_a_third_of_post_warmup_epochs(catalog):
    opt, sched = _schedule(catalog, "cosine_restarts", {"epochs": 30, "warmup_epochs": 6, "eta_min": 0.0})
    used = np.array(_run_batches(opt, sched, 90))
    restarts = [i for i in range(1, len(used)) if used[i] > used[i - 1]]
    assert restarts == [8 * STEPS_PER_EPOCH]  # (30 - 6) // 3 = 8 epochs


def test_cosine_ignores_epochs(catalog):
    opt, sched = _schedule(catalog, "cosine_restarts", {"T_max": 2})
    sched.after_epoch(1.0)
    sched.after_epoch(None)
    assert _lr(opt) == pytest.approx(BASE_LR)


@pytest.mark.parametrize("options", [{"T_max": 2, "T_0": 3}, {"T_max": 0}, {"T_mult": 1.5}, {"eta_min": -1.0}])
def test_cosine_invalid_options(catalog, options):
    with pytest.raises(ConfigError, match=r"scheduler 'cosine_restarts' rejected its options"):
        _schedule(catalog, "cosine_restarts", options)


# --- onecycle ------------------------------------------------------------------------------------


def test_onecycle_peaks_at_max_lr_around_pct_start_and_ends_far_below(catalog):
    epochs = 10
    total = epochs * STEPS_PER_EPOCH
    opt, sched = _schedule(catalog, "onecycle", {"epochs": epochs, "learning_rate": 0.05, "pct_start": 0.3})
    used = np.array(_run_batches(opt, sched, total))
    peak = int(np.argmax(used))
    assert abs(peak - 0.3 * total) <= 2
    assert used.max() == pytest.approx(0.05)
    assert used[0] == pytest.approx(0.05 / 25)  # div_factor
    assert all(np.diff(used[: peak + 1]) > 0) and all(np.diff(used[peak:]) < 0)
    assert used[-1] < 1e-3 * 0.05
    # more batches than planned must not raise, and the rate stays at its floor
    _run_batches(opt, sched, 5)
    assert _lr(opt) == pytest.approx(used[-1])


def test_onecycle_max_lr_option_and_own_warmup(catalog):
    opt, sched = _schedule(catalog, "onecycle", {"epochs": 4, "max_lr": 0.3, "pct_start": 0.5})
    used = np.array(_run_batches(opt, sched, 4 * STEPS_PER_EPOCH))
    assert used.max() == pytest.approx(0.3)
    assert abs(int(np.argmax(used)) - 20) <= 2
    assert catalog.get("scheduler", "onecycle").factory.handles_warmup is True
    assert not getattr(catalog.get("scheduler", "cosine_restarts").factory, "handles_warmup", False)


# --- plateau -------------------------------------------------------------------------------------


def test_plateau_halves_after_patience_epochs_without_improvement(catalog):
    opt, sched = _schedule(catalog, "plateau", {"patience": 2})
    _run_batches(opt, sched, 30)  # batches never change the rate
    assert _lr(opt) == pytest.approx(BASE_LR)
    history = []
    for loss in [1.0, 0.8, 0.8, 0.8, 0.8, 0.8, 0.8, 0.8]:
        sched.after_epoch(loss)
        history.append(_lr(opt))
    # best 0.8 at epoch 2; two epochs of patience, halved on the third without improvement
    assert history == pytest.approx([0.1, 0.1, 0.1, 0.1, 0.05, 0.05, 0.05, 0.025])


def test_plateau_improvement_resets_patience_and_none_is_ignored(catalog):
    opt, sched = _schedule(catalog, "plateau", {"patience": 1})
    for loss in [1.0, 1.0, 0.5, 0.5, 0.4, 0.4]:  # never two bad epochs in a row
        sched.after_epoch(loss)
    assert _lr(opt) == pytest.approx(BASE_LR)
    for _ in range(5):
        sched.after_epoch(None)  # no validation data: nothing to judge
    assert _lr(opt) == pytest.approx(BASE_LR)
    sched.after_epoch(0.4)
    sched.after_epoch(0.4)
    assert _lr(opt) == pytest.approx(BASE_LR / 2)


def test_plateau_factor_and_min_lr(catalog):
    opt, sched = _schedule(catalog, "plateau", {"patience": 0, "factor": 0.1, "min_lr": 0.002})
    for loss in [1.0, 1.0, 1.0, 1.0]:
        sched.after_epoch(loss)
    assert _lr(opt) == pytest.approx(0.002)


@pytest.mark.parametrize("options", [{"factor": 1.0}, {"patience": -1}, {"patience": 1.5}])
def test_plateau_invalid_options(catalog, options):
    with pytest.raises(ConfigError, match=r"scheduler 'plateau' rejected its options"):
        _schedule(catalog, "plateau", options)


def test_every_scheduler_plugin_is_registered(catalog):
    assert {"cosine_restarts", "onecycle", "plateau"} <= set(catalog.names("scheduler"))
    for name in ("cosine_restarts", "onecycle", "plateau"):
        comp = catalog.get("scheduler", name)
        assert comp.kind == "scheduler" and callable(comp.factory) and comp.options is not None

