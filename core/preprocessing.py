"""Multimodal preprocessing options a model applies before training."""

from __future__ import annotations


class PreprocessingMixin:
    """Methods of `modalbag.MultiModalEnsembleModel`; kept here so model.py stays one workflow."""
