"""Precision plugins: mixed precision and gradient accumulation, turned on by config values."""
