"""Trainer plugins: the base learners that fit one bag."""
