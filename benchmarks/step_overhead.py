"""The neural trainer's Python cost per training step, on a network too small to hide it.

Two 4-feature modalities, hidden width 8, batches of 16: a step's arithmetic takes microseconds, so
the median epoch time is mostly the loop's own per-step work (hook calls, batch indexing, the
optimizer and schedule bookkeeping). Compare two versions of modalbag by running this under each,
alternating, on an idle machine with one thread::

    OMP_NUM_THREADS=1 python benchmarks/step_overhead.py --repeats 3

`loop_overhead.py` compares the loop with a hand-written one on a realistic network; this one says
whether a change to the loop's structure added per-step work.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import numpy as np

from modalbag import TrainingConfig
from modalbag.data.bags import Bag
from modalbag.data.dataset import MultimodalDataset
from modalbag.engine.engine import Engine
from modalbag.kernel.records import LearnerSpec
from modalbag.kernel.run import TaskInfo

sys.path.insert(0, str(Path(__file__).resolve().parent))
from real_data import machine_info, print_machine  # noqa: E402 - the sibling benchmark's machine report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=4096)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print_machine(machine_info())
    rng = np.random.default_rng(0)
    n = args.samples
    arrays = {m: rng.normal(size=(n, 4)).astype("float32") for m in ("a", "b")}
    labels = (arrays["a"][:, 0] > 0).astype(np.int64)
    data = MultimodalDataset.from_arrays(arrays)
    task = TaskInfo("classification", 2, np.arange(2), np.bincount(labels) / n)
    spec = LearnerSpec("bag_000", 0, "neural", ("a", "b"), {m: data.specs[m].type for m in ("a", "b")},
                       {"hidden_dim": 8, "embedding_dim": 8})
    config = TrainingConfig.from_dict({
        "epochs": args.epochs, "batch_size": args.batch_size, "enable_denoising": False, "mixed_precision": False,
        "save_checkpoints": False, "early_stopping_patience": 0, "validation_split": 0.0})
    times: list[float] = []
    for _ in range(args.repeats):
        engine = Engine()
        run = engine.prepare(config, task)
        bag = Bag(0, ("a", "b"), np.arange(n), np.arange(0), 7)
        learner = engine.train(run, [spec], {0: bag}, data, labels)["bag_000"]
        if not learner.ok:
            raise SystemExit(f"the learner failed: {learner.error}")
        times += [r.training_time for r in learner.records[1:]]  # the first epoch warms up
    steps = -(-n // args.batch_size)
    median = statistics.median(times)
    print(f"median epoch {median:.4f} s over {len(times)} epochs: {1e6 * median / steps:.1f} us per step "
          f"({steps} steps of {args.batch_size} rows)")


if __name__ == "__main__":
    main()
