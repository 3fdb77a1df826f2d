"""How much faster `load_array` reads a CSV file than modalbag's hand-written CSV parser did.

Writes a ``--rows`` x ``--cols`` matrix of random numbers with a header row to a CSV file in a
temporary folder, then times, in one process and alternating ``--repeats`` times so machine noise
hits all alike:

- ``load_array`` (its fast path: pandas' C parser when pandas is installed),
- the same with pandas hidden, as on a machine without it (numpy's ``loadtxt``), and
- the hand-written parser it falls back to (``modalbag.io.files._parse_delimited``), which is what
  every CSV file went through before.

It checks that all three give the same array and prints the median times, the ratios and the
machine it ran on.

    python benchmarks/csv_reading.py [--rows 20000] [--cols 50] [--repeats 5] [--fmt %.7g]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from modalbag.io.files import _parse_delimited, load_array
from modalbag.io.machine import describe_machine, machine_line


def write_csv(folder: Path, rows: int, cols: int, fmt: str) -> Path:
    """A header row and `rows` rows of standard-normal numbers written with `fmt`."""
    values = np.random.default_rng(0).standard_normal((rows, cols))
    path = folder / "table.csv"
    header = ",".join(f"feature_{i}" for i in range(cols))
    np.savetxt(path, values, fmt=fmt, delimiter=",", header=header, comments="")
    return path


def without_pandas(read: Callable[[], np.ndarray]) -> Callable[[], np.ndarray]:
    """`read` as on a machine where pandas is not installed (`import pandas` raises ImportError)."""
    def hidden() -> np.ndarray:
        saved = sys.modules.get("pandas")
        sys.modules["pandas"] = None  # type: ignore[assignment]
        try:
            return read()
        finally:
            sys.modules["pandas"] = saved  # type: ignore[assignment]
    return hidden


def timed(read: Callable[[], np.ndarray]) -> tuple[float, np.ndarray]:
    start = time.perf_counter()
    result = read()
    return time.perf_counter() - start, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--cols", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--fmt", default="%.7g", help="number format of the file (numpy.savetxt)")
    args = parser.parse_args()

    import pandas  # imported before timing, so no reader is charged for the import

    with tempfile.TemporaryDirectory() as folder:
        path = write_csv(Path(folder), args.rows, args.cols, args.fmt)
        readers = {
            "load_array (pandas)": lambda: load_array(path, name="table"),
            "load_array (numpy, no pandas)": without_pandas(lambda: load_array(path, name="table")),
            "hand-written parser": lambda: _parse_delimited(path, "table"),
        }
        times: dict[str, list[float]] = {label: [] for label in readers}
        results: dict[str, np.ndarray] = {}
        for _ in range(args.repeats):
            for label, read in readers.items():
                seconds, results[label] = timed(read)
                times[label].append(seconds)
        size_mib = path.stat().st_size / 2**20

    reference = results["hand-written parser"]
    for label, result in results.items():
        np.testing.assert_array_equal(result, reference, err_msg=f"{label} differs")
    medians = {label: statistics.median(values) for label, values in times.items()}
    slow = medians["hand-written parser"]
    print(f"CSV file: {args.rows} x {args.cols} ({args.fmt}, header row), {size_mib:.1f} MiB; "
          f"median of {args.repeats} reads; all readers give the same float32 array")
    for label, seconds in medians.items():
        ratio = "(the reference)" if seconds == slow else f"{slow / seconds:.1f}x as fast"
        print(f"  {label:<30} {seconds:7.3f} s   {ratio}")
    print(f"machine: {machine_line(describe_machine())}, pandas {pandas.__version__}")


if __name__ == "__main__":
    main()
