"""The ``neural`` trainer: a PyTorch fusion network per bag.

One encoder per modality, chosen by type (an MLP for vectors, a small CNN for raw images, a 1-D
convolution or a small transformer for sequences), an attention fusion that only attends to the
modalities a sample has (missing ones are masked, never zero-filled), and a head per task.

The loop batches in-memory tensors by indexing (no per-sample Dataset on the hot path), keeps the
running loss on the device (one host sync per epoch) and calls four per-step hooks: autocast,
auxiliary losses, backward and optimizer step.

The package's parts: `_options` (the trainer's options), `_network` (encoders, fusion, head),
`_batches` (in-memory and streamed batches), `_mixing` (modality dropout, mixup, CutMix), `_ncl`
(negative correlation learning among member heads), `_loop`
(the training loop), `_learner` (`NeuralLearner`: build, fit, predict) and `_io` (save and load,
safetensors and JSON).
"""

from __future__ import annotations

from modalbag import hookimpl
from modalbag.kernel import Register
from modalbag.plugins.trainers.neural._learner import NeuralLearner
from modalbag.plugins.trainers.neural._network import (
    FusionNetwork,
    ImageEncoder,
    L2Normalize,
    SequenceEncoder,
    Standardize,
    TrainAugment,
    VectorEncoder,
)
from modalbag.plugins.trainers.neural._options import NeuralOptions


@hookimpl
def modalbag_register_trainers(register: Register) -> None:
    register("neural", NeuralLearner, options=NeuralOptions,
             summary="PyTorch fusion network: an encoder per modality, masked attention fusion, a task head")


__all__ = ["FusionNetwork", "ImageEncoder", "L2Normalize", "NeuralLearner", "NeuralOptions", "SequenceEncoder",
           "Standardize", "TrainAugment", "VectorEncoder"]
