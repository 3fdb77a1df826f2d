"""Saving and loading a trained ``neural`` learner: weights as safetensors, the rest as JSON.

Not a plugin (no entry point): `NeuralLearner.save` and `NeuralLearner.load` call it. A saved
learner is a folder::

    learner.json        format, version, spec, task, sizes, options, modality types and shapes
    model.safetensors   the fusion network's weights and buffers (standardisation included), and
                        the regression target scaling; the denoising objectives' modules are
                        training-only and not saved here (they are in the training checkpoints)

Loading rebuilds the network with the trainer's own builder, from the modality shapes alone, then
loads the weights strictly (every tensor must match by name and shape). Nothing is unpickled.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import attrs
import numpy as np

from modalbag.errors import ArtifactError
from modalbag.io.artifacts import (
    atomic_write_json,
    check_format,
    load_safetensors,
    read_json,
    save_safetensors,
    to_json,
)

FORMAT = "modalbag.neural"
VERSION = 1
METADATA_FILE = "learner.json"
WEIGHTS_FILE = "model.safetensors"
_TARGET_MEAN, _TARGET_STD = "modalbag.target_mean", "modalbag.target_std"


def save(learner: Any, path: str | Path) -> Path:
    if learner.model is None:
        raise RuntimeError("this learner has not been fitted")
    import torch

    directory = Path(path)
    directory.mkdir(parents=True, exist_ok=True)
    tensors = {k: v for k, v in learner.model.state_dict().items() if not k.startswith("aux.")}
    if learner.target_mean is not None:
        tensors[_TARGET_MEAN], tensors[_TARGET_STD] = learner.target_mean, learner.target_std
    save_safetensors(tensors, directory / WEIGHTS_FILE, {"format": FORMAT, "version": str(VERSION)})
    model = learner.model
    meta = {"format": FORMAT, "version": VERSION, "trainer": "neural", "model_files": [WEIGHTS_FILE],
            "torch_version": torch.__version__, "spec": attrs.asdict(learner.spec), "task_type": learner.task_type,
            "n_outputs": model.n_outputs, "hidden_dim": learner.hidden_dim, "embedding_dim": learner.embedding_dim,
            "options": attrs.asdict(learner.options),
            "inputs": {m: {"shape": list(model.input_shapes[m]), "type": learner.spec.modality_types.get(m)}
                       for m in learner.spec.modalities}}
    atomic_write_json(directory / METADATA_FILE, to_json(meta))
    return directory


def load(cls: type, path: str | Path) -> Any:
    import torch

    from modalbag.config.training import TrainingConfig
    from modalbag.kernel.modalities import ModalitySpec
    from modalbag.kernel.records import LearnerSpec
    from modalbag.kernel.run import BagData

    directory = Path(path)
    meta_path = directory / METADATA_FILE
    meta = check_format(meta_path, read_json(meta_path, what="saved neural learner"), FORMAT, VERSION)
    try:
        spec_data = dict(meta["spec"])
        spec_data["modalities"] = tuple(spec_data["modalities"])
        spec = LearnerSpec(**spec_data)
        options = _options(meta["options"])
        learner = cls(spec, TrainingConfig.from_dict({"task_type": meta["task_type"]}), options)
        learner.hidden_dim, learner.embedding_dim = int(meta["hidden_dim"]), int(meta["embedding_dim"])
        specs = {m: ModalitySpec(m, meta["inputs"][m]["type"] or "tabular", tuple(meta["inputs"][m]["shape"]))
                 for m in spec.modalities}
        n_outputs = int(meta["n_outputs"])
    except ArtifactError:
        raise
    except Exception as exc:  # noqa: BLE001 - a field missing or of the wrong type: the file is damaged
        raise ArtifactError(meta_path, f"does not describe a neural learner ({type(exc).__name__}: {exc})") from exc
    none = np.zeros(0, dtype=np.int64)
    stub = BagData(arrays={m: np.zeros((1, *s.shape), np.float32) for m, s in specs.items()},
                   masks={m: np.zeros(1, dtype=bool) for m in specs}, specs=specs,
                   targets=np.zeros(0), train_rows=none, val_rows=none)
    with torch.random.fork_rng(devices=[]):  # building draws initial weights; keep the caller's RNG as it was
        model = learner._build(stub, none, n_outputs)
    tensors = load_safetensors(directory / WEIGHTS_FILE)
    mean, std = tensors.pop(_TARGET_MEAN, None), tensors.pop(_TARGET_STD, None)
    try:
        model.load_state_dict(tensors, strict=True)
    except RuntimeError as exc:
        raise ArtifactError(directory / WEIGHTS_FILE, f"does not match the network {METADATA_FILE} describes: "
                                                      f"{str(exc).splitlines()[0]}") from exc
    if learner.task_type == "regression" and (mean is None or std is None):
        raise ArtifactError(directory / WEIGHTS_FILE, "lacks the regression target scaling")
    learner.target_mean, learner.target_std = mean, std
    learner.model = model.eval()
    return learner


def _options(data: Any) -> Any:
    from modalbag.plugins.trainers.neural import NeuralOptions

    fields = attrs.fields_dict(NeuralOptions)
    return NeuralOptions(**{k: tuple(v) if isinstance(v, list) and isinstance(getattr(NeuralOptions(), k), tuple)
                            else v for k, v in dict(data).items() if k in fields})


__all__ = ["FORMAT", "METADATA_FILE", "VERSION", "WEIGHTS_FILE", "load", "save"]
