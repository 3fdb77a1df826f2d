"""Report plugins reached from a model: robustness and the domain reports.

A report is a component of kind ``report`` (see `modalbag_register_reports`): looked up by name in
the model's catalog, built with its own options, and run on data the user held out. Reports never
train. Without ``(data, labels)`` a report scores the ensemble's out-of-fold predictions of the
training rows instead (`modalbag.reports.robustness.OutOfFoldScorer`): its ``measured_on`` says
which, and figures that need changed inputs (noise, adversarial steps) are None with the reason in
its notes. With a ``run_dir`` in the training config, each report is also written to
``<run_dir>/reports/<name>.json``.
"""

from __future__ import annotations

import inspect
import json
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import attrs

from modalbag.errors import ConfigError, DataError, close_matches
from modalbag.io.artifacts import atomic_write_bytes, to_json
from modalbag.logs import get_logger
from modalbag.reports.values import as_report

if TYPE_CHECKING:
    from modalbag.kernel.registry import Catalog

log = get_logger("modalbag.domain_reports")


class ReportRunner:
    """Runs report plugins by name: looks the report up in ``catalog``, builds it with its options, runs
    it on a trained model and held-out data, and (with a ``run_dir``) writes ``reports/<name>.json``."""

    def __init__(self, catalog: Catalog, run_dir: str | os.PathLike[str] | None = None):
        self.catalog, self.run_dir = catalog, run_dir

    def run(self, name: str, model: Any, data: Mapping[str, Any] | None = None, labels: Any = None,
            **inputs: Any) -> dict[str, Any]:
        """Run the report plugin ``name`` on ``model`` and held-out ``(data, labels)`` (neither: on the
        ensemble's out-of-fold predictions of the training rows; the report's ``measured_on`` says which).

        Keyword arguments that name a field of the report's options class configure it; the others
        are the report's own inputs (``returns=``, ``cold_start=`` ...). Unknown names fail with the
        valid ones listed. Returns the report's dict; values that could not be measured are ``None``
        with the reason under ``"notes"``, as a `modalbag.reports.values.Report`: ``report[key]`` on
        such a value gives an `Unmeasured` that formats as ``"n/a (reason)"``.
        """
        component = self.catalog.get("report", name)  # UnknownPluginError with close matches
        if (data is None) != (labels is None):
            raise DataError(f"the {name!r} report scores held-out (data, labels) of samples the ensemble did not "
                            f"train on, or, with neither, its out-of-fold predictions of the training rows; "
                            f"give both or neither, e.g. model.report({name!r}, data, labels)")
        fields = {f.name for f in attrs.fields(component.options)} if component.options else set()
        chosen = {k: v for k, v in inputs.items() if k in fields}
        try:
            options = component.options(**chosen) if component.options else None
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"report {name!r} rejected its options {chosen}: {exc}") from exc
        reporter = component.factory(options)
        params = inspect.signature(reporter.generate).parameters
        accepted = {p for p, spec in params.items() if spec.kind is inspect.Parameter.KEYWORD_ONLY}
        rest = {k: v for k, v in inputs.items() if k not in fields}
        for key in rest:
            if key not in accepted:
                hint = close_matches(key, accepted | fields, n=1)
                raise ConfigError(f"report {name!r} has no option or input {key!r}"
                                  + (f"; did you mean {hint[0]!r}?" if hint else "")
                                  + f" It accepts: {', '.join(sorted(accepted | fields))}")
        result = reporter.generate(model, data, labels, **rest)
        self._write(name, result)
        return as_report(result)  # unmeasured values print "n/a (reason)"

    def _write(self, name: str, result: Mapping[str, Any]) -> None:
        if not self.run_dir:
            return
        folder = os.path.join(self.run_dir, "reports")
        os.makedirs(folder, exist_ok=True)
        path = os.path.join(folder, f"{name}.json")
        atomic_write_bytes(path, json.dumps(to_json(result), indent=2).encode("utf-8"))
        log.info("report.written", report=name, path=path)




__all__ = ["ReportRunner"]
