"""The torch training toolkit trainers share: checkpoints, schedules, progressive stages, profiling, DDP."""
