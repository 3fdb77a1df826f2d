"""Validator plugins: early stopping, checkpointing and other checks on a fit."""
