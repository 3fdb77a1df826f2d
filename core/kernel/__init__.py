"""The plugin kernel: what plugins are written against. Markers, hook specs, the registry and
assembly of a run's active plugin set, the records hooks receive, option helpers."""
