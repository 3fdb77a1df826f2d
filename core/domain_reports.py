"""Report plugins reached from a model: robustness and the domain reports."""

from __future__ import annotations


class DomainReportsMixin:
    """Methods of `modalbag.MultiModalEnsembleModel`; kept here so model.py stays one workflow."""
