"""Learning-rate scheduler plugins, chosen by ``scheduler_type``."""
