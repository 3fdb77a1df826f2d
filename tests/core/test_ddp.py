"""``distributed_training``: one learner over torch DDP ranks launched by torchrun (gloo on CPU).

Two ranks sharing each global batch train the same model as one process seeing the whole batch;
a rank that crashes is recovered by relaunching from the last checkpoint.
"""

from __future__ import annotations

import os
import time
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
import torch

from modalbag import TrainingConfig, hookimpl
from modalbag.data.bags import Bag
from modalbag.engine.engine import Engine
from modalbag.kernel.records import LearnerSpec
from modalbag.kernel.run import TaskInfo
from modalbag.training.distributed import DistributedContext, init_distributed
from tests.conftest import make_model

# One full bag of 256 rows, no validation split and batches of 32: every batch splits evenly
# over 2 ranks, and without dropout the two runs compute the same gradients.
BASE = {"epochs": 3, "batch_size": 32, "enable_denoising": False, "mixed_precision": False,
        "save_checkpoints": False, "early_stopping_patience": 0, "validation_split": 0.0,
        "dropout_rate": 0.0, "warmup_epochs": 1}


def _fit(config: dict, plugins=()):
    model = make_model(n_samples=300)
    data = model.dataset
    targets = np.asarray(data.labels).astype(np.int64)
    task = TaskInfo("classification", 3, np.arange(3), np.bincount(targets) / len(targets))
    mods = tuple(data.names)
    spec = LearnerSpec("bag_000", 0, "neural", mods, {m: data.specs[m].type for m in mods},
                       {"hidden_dim": 32, "embedding_dim": 16})
    bag = Bag(0, mods, np.arange(256), np.arange(256, 300), 7)
    engine = Engine(plugins=plugins)
    run = engine.prepare(TrainingConfig.from_dict({**BASE, **config}), task)
    learner = engine.train(run, [spec], {0: bag}, data, targets)["bag_000"]
    held_out = {m: data.arrays[m][256:] for m in mods}
    return learner, held_out


class CrashRankOnce:
    """Rank 1 dies at the end of ``epoch`` the first time (rank 0 has saved that epoch by then)."""

    def __init__(self, marker: Path, epoch: int, always: bool = False):
        self.marker, self.epoch, self.always = str(marker), epoch, always

    @hookimpl
    def modalbag_epoch_end(self, run, fit, record):
        if run.distributed is not None and run.distributed.rank == 1 and record.epoch == self.epoch:
            if self.always or not os.path.exists(self.marker):
                Path(self.marker).touch()
                time.sleep(3)  # let rank 0 write this epoch's checkpoint
                os._exit(7)


def test_shard_gives_every_rank_as_many_rows_covering_the_batch():
    batch = torch.arange(10)
    shards = [DistributedContext(rank, 4).shard(batch) for rank in range(4)]
    assert [len(s) for s in shards] == [3, 3, 3, 3]
    assert set(torch.cat(shards).tolist()) == set(range(10))
    even = [DistributedContext(rank, 2).shard(torch.arange(6)).tolist() for rank in range(2)]
    assert even == [[0, 2, 4], [1, 3, 5]]
    assert DistributedContext(1, 4).shard(torch.arange(2)).tolist() == [1]  # fewer rows than ranks


def test_joining_the_group_always_passes_a_timeout(monkeypatch):
    import torch.distributed as dist

    seen = {}
    monkeypatch.setattr(dist, "is_initialized", lambda: False)
    monkeypatch.setattr(dist, "init_process_group", lambda **kwargs: seen.update(kwargs))
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    context = init_distributed(12.5)
    assert seen["timeout"] == timedelta(seconds=12.5)
    assert seen["backend"] in ("gloo", "cpu:gloo,cuda:nccl")
    assert (context.rank, context.world_size, context.is_main) == (1, 2, False)


def test_two_ranks_match_one_process_on_the_same_global_batch():
    single, held_out = _fit({})
    ddp, _ = _fit({"distributed_training": True, "num_processes": 2})
    assert single.ok and ddp.ok, ddp.error
    assert "trained with DDP over 2 ranks" in ddp.notes
    np.testing.assert_allclose(ddp.model.predict_output(held_out), single.model.predict_output(held_out),
                               atol=1e-5)
    single_state = single.model.model.state_dict()
    for name, value in ddp.model.model.state_dict().items():
        if name != "gate.2.bias":  # softmax ignores a shared shift: its gradient is rounding noise
            torch.testing.assert_close(value, single_state[name], atol=1e-5, rtol=1e-4)


@pytest.mark.slow
def test_a_crashed_rank_is_relaunched_from_the_full_training_state(tmp_path):
    """Optimizer moments, schedule and data order resume too: the learner is the uninterrupted one."""
    ddp = {"distributed_training": True, "num_processes": 2, "epochs": 4}  # adamw, cosine restarts
    learner, held_out = _fit(ddp, plugins=[CrashRankOnce(tmp_path / "crashed", epoch=2)])
    assert learner.ok, learner.error
    assert [r.epoch for r in learner.records] == [1, 2, 3, 4]
    assert "resumed from the checkpoint of epoch 2" in learner.notes
    assert any(n.startswith("launched 2 times") for n in learner.notes)
    uninterrupted, _ = _fit(ddp)
    np.testing.assert_allclose(learner.model.predict_output(held_out),
                               uninterrupted.model.predict_output(held_out), atol=1e-6)
    assert [r.train_loss for r in learner.records] == pytest.approx(
        [r.train_loss for r in uninterrupted.records], rel=1e-6)


@pytest.mark.slow
def test_a_rank_that_always_crashes_fails_the_learner_with_torchruns_output(tmp_path):
    learner, _ = _fit({"distributed_training": True, "num_processes": 2, "distributed_max_restarts": 0},
                      plugins=[CrashRankOnce(tmp_path / "crashed", epoch=1, always=True)])
    assert learner.status == "failed"
    assert learner.error.startswith("WorkerLostError: torchrun exited with code")
    assert "after 1 launch(es)" in learner.error


def _average_on_rank(rank: int, port: int, results) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", rank=rank, world_size=2, init_method=f"tcp://127.0.0.1:{port}",
                            timeout=timedelta(seconds=60))
    try:
        both, one, neither = (torch.nn.Parameter(torch.zeros(2, 3)) for _ in range(3))
        both.grad = torch.full((2, 3), float(rank + 1))  # 1 and 2: averages to 1.5
        if rank == 0:
            one.grad = torch.full((2, 3), 4.0)  # a zero on rank 1: averages to 2
        DistributedContext(rank, 2).average_gradients([both, one, neither])
        results.put((rank, both.grad.tolist(), one.grad.tolist(), neither.grad))
    finally:
        dist.destroy_process_group()


def test_auxiliary_gradients_are_averaged_over_ranks_and_unused_ones_stay_none():
    import multiprocessing
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    ranks = [context.Process(target=_average_on_rank, args=(rank, port, results)) for rank in range(2)]
    for process in ranks:
        process.start()
    got = {r[0]: r[1:] for r in (results.get(timeout=120) for _ in ranks)}
    for process in ranks:
        process.join(timeout=60)
    for rank in (0, 1):
        both, one, neither = got[rank]
        assert both == [[1.5] * 3] * 2 and one == [[2.0] * 3] * 2 and neither is None


def test_denoising_objectives_that_take_turns_train_over_two_ranks():
    """Each step runs one objective, so most heads get no gradient on a given step: DDP leaves the
    heads out and their gradients are averaged apart (a DDP reducer would stop at the next step)."""
    config = {"distributed_training": True, "num_processes": 2, "epochs": 2, "enable_denoising": True,
              "denoising_objectives": ["reconstruction", "alignment", "prediction"],
              "denoising_objectives_per_step": 1}
    learner, _ = _fit(config)
    assert learner.ok, learner.error
    ran = {k.split(".")[0] for record in learner.records for k in record.metrics if k.endswith(".loss")}
    assert ran == {"reconstruction", "alignment", "prediction"}
