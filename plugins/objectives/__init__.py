"""Cross-modal denoising objective plugins, chosen by ``denoising_objectives``."""
