"""Optimizer plugins, chosen by ``optimizer_type``."""
