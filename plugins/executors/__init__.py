"""Executor plugins: where and how the learners of a run train, chosen by ``executor``."""
