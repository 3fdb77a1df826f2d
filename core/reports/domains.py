"""Report plugins reached from a model: robustness and the domain reports.

A report is a component of kind ``report`` (see `modalbag_register_reports`): looked up by name in
the model's catalog, built with its own options, and run on data the user held out. Reports never
train and never score the training data: every call needs ``(data, labels)``. With a ``run_dir``
in the training config, each report is also written to ``<run_dir>/reports/<name>.json``.
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

if TYPE_CHECKING:
    from modalbag.config.training import TrainingConfig
    from modalbag.kernel.registry import Catalog

log = get_logger("modalbag.domain_reports")


class DomainReportsMixin:
    """Methods of `modalbag.MultiModalEnsembleModel`; kept here so model.py stays one workflow."""

    catalog: Catalog
    training_config: TrainingConfig | None

    def report(self, name: str, data: Mapping[str, Any] | None = None, labels: Any = None,
               **inputs: Any) -> dict[str, Any]:
        """Run the report plugin ``name`` on held-out ``(data, labels)``.

        Keyword arguments that name a field of the report's options class configure it; the others
        are the report's own inputs (``returns=``, ``cold_start=`` ...). Unknown names fail with the
        valid ones listed. Returns the report's dict; values that could not be measured are ``None``
        with the reason under ``"notes"``.
        """
        component = self.catalog.get("report", name)  # UnknownPluginError with close matches
        if data is None or labels is None:
            raise DataError(f"the {name!r} report scores held-out data: call it with (data, labels) of samples "
                            f"the ensemble did not train on, e.g. model.report({name!r}, data, labels)")
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
        result = reporter.generate(self, data, labels, **rest)
        self._write_report(name, result)
        return result

    def _write_report(self, name: str, result: Mapping[str, Any]) -> None:
        run_dir = self.training_config.run_dir if self.training_config is not None else None
        if not run_dir:
            return

        folder = os.path.join(run_dir, "reports")
        os.makedirs(folder, exist_ok=True)
        path = os.path.join(folder, f"{name}.json")
        atomic_write_bytes(path, json.dumps(to_json(result), indent=2).encode("utf-8"))
        log.info("report.written", report=name, path=path)

    def get_robustness_report(self, data: Mapping[str, Any] | None = None, labels: Any = None,
                              **inputs: Any) -> dict[str, Any]:
        """Scores over modality subsets, missing shares and noise; MultiBench robustness (``robustness``)."""
        return self.report("robustness", data, labels, **inputs)

    def get_medical_validation_report(self, data: Mapping[str, Any] | None = None, labels: Any = None,
                                      **inputs: Any) -> dict[str, Any]:
        """Clinical rates, AUROC, calibration, intervals, robustness, importance (``medical``)."""
        return self.report("medical", data, labels, **inputs)

    def get_safety_validation_report(self, data: Mapping[str, Any] | None = None, labels: Any = None,
                                     **inputs: Any) -> dict[str, Any]:
        """Sensor-failure scenarios, redundancy, latency, throughput, memory, power (``autonomous_vehicle``)."""
        return self.report("autonomous_vehicle", data, labels, **inputs)

    def get_financial_performance_report(self, data: Mapping[str, Any] | None = None, labels: Any = None,
                                         **inputs: Any) -> dict[str, Any]:
        """Predictions as trading signals on the user's returns (``finance``)."""
        return self.report("finance", data, labels, **inputs)

    def get_recommendation_report(self, data: Mapping[str, Any] | None = None, labels: Any = None,
                                  **inputs: Any) -> dict[str, Any]:
        """Ranking metrics, coverage, diversity, cold start and modality contributions (``recommendation``)."""
        return self.report("recommendation", data, labels, **inputs)
