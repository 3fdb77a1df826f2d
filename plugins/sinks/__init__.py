"""Metrics sink plugins, chosen by ``sinks`` (and ``tensorboard_logging`` / ``wandb_logging``)."""
