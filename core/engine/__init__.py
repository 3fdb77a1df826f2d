"""Training a run: the engine, executors, learner selection, the portfolio measurement, pipelines."""
