"""Configuration: `TrainingConfig` with its checks, and the run files (TOML/YAML/JSON) that hold one."""
