"""Training reports of a model (monitoring issue): measured from the run's epoch records."""

from __future__ import annotations


class TrainingReportsMixin:
    """Methods of `modalbag.MultiModalEnsembleModel`; kept here so model.py stays one workflow."""
