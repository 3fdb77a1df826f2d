"""Time to choose the bags' modality subsets as the number of modalities grows.

``choose_subsets`` (`modalbag.data.bags`) built and ordered every non-empty subset of the modalities
(2^M - 1) before keeping ``n_bags`` of them. It now does so only up to ``EAGER_SUBSETS_MAX`` candidates
(12 modalities), so a seed keeps drawing the same bags there, and beyond produces the first ``n_bags``
of each strategy's order lazily. For each strategy and number of modalities this prints the seconds of
``choose_subsets`` (``new``) and of the eager way (``eager``: every candidate built and ordered, as before
for every size; skipped past ``--eager-max-modalities``, 16 by default: uniform's eager way took 356 s at 20 modalities,
adaptive's 12 s; at 24 and more it takes hours or runs out of memory).
Median of ``--repeats``; informativeness drawn at random (seeded).

    python benchmarks/subset_choice.py [--modalities 8,16,20,24,30] [--bags 20] [--eager-max-modalities 16]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from modalbag.data.bags import EAGER_SUBSETS_MAX, EnsembleConfig, _eager_order, choose_subsets
from modalbag.io.machine import describe_machine, machine_line


def seconds(call, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--modalities", default="8,16,20,24,30")
    parser.add_argument("--bags", type=int, default=20)
    parser.add_argument("--strategies", default="adaptive,uniform,exhaustive")
    parser.add_argument("--eager-max-modalities", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    print(machine_line(describe_machine()))
    print(f"n_bags {args.bags}; eager path up to {EAGER_SUBSETS_MAX} candidate subsets; median of {args.repeats}")
    print(f"{'strategy':<11} {'modalities':>10} {'subsets':>14} {'new ms':>9} {'eager s':>9}")
    for strategy in args.strategies.split(","):
        config = EnsembleConfig(n_bags=args.bags, dropout_strategy=strategy)
        for m in (int(x) for x in args.modalities.split(",")):
            names = tuple(f"m{i:02d}" for i in range(m))
            info = {n: float(v) for n, v in zip(names, np.random.default_rng(0).random(m), strict=True)}
            new = seconds(lambda names=names, config=config, info=info: choose_subsets(
                names, config, info, np.random.default_rng(0)), args.repeats)
            if m <= args.eager_max_modalities:
                took = seconds(lambda names=names, config=config, m=m, info=info: _eager_order(
                    names, config, m, info, np.random.default_rng(0)), 1)
                eager = f"{took:9.3f}"
            else:
                eager = f"{'skipped':>9}"
            print(f"{strategy:<11} {m:>10} {2 ** m - 1:>14,} {new * 1e3:9.2f} {eager}", flush=True)


if __name__ == "__main__":
    main()
