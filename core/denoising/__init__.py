"""Cross-modal denoising: the objective and strategy contracts, the loss that combines them, and the
fused primitives objectives are built from (`modalbag.denoising.ops`).

``modalbag.denoising`` is the import path third-party objectives use; its names stay here.
"""

from modalbag.denoising.objectives import (
    AdvancedCrossModalDenoisingLoss,
    DenoisingContext,
    DenoisingHooks,
    FitWeighting,
    Objective,
    ObjectiveOutput,
    RepresentationSpec,
    Strategy,
    take_turns,
    warmup_scale,
)

__all__ = ["AdvancedCrossModalDenoisingLoss", "DenoisingContext", "DenoisingHooks", "FitWeighting", "Objective",
           "ObjectiveOutput", "RepresentationSpec", "Strategy", "take_turns", "warmup_scale"]
