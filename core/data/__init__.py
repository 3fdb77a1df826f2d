"""Data: modalities and their masks, readers' preprocessing, the synthetic generator, and bags."""
