"""Report plugins: analyses of a trained ensemble on held-out data, reached by ``model.report(name, ...)``."""
