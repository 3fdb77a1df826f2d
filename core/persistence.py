"""Saving, exporting and reloading a trained model."""

from __future__ import annotations


class PersistenceMixin:
    """Methods of `modalbag.MultiModalEnsembleModel`; kept here so model.py stays one workflow."""
