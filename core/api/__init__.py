"""The spec's Python API: `MultiModalEnsembleModel` and the workflows built on it (the top of the layers)."""
