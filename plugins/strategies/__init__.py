"""Denoising weighting strategy plugins, chosen by ``denoising_strategy``."""
