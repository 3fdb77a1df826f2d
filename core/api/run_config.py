"""Run-config files: one TOML file names a run's data, ensemble, learner choice and training options.

The file is what ``modalbag train`` and ``modalbag validate`` read. Its tables::

    [data]                 labels = "labels.npy" and one [data.modalities.<name>] table per file
                           (path, type, key), or [data.synthetic] to generate a task
    [ensemble]             create_ensemble options (n_bags, dropout_strategy, ...)
    [learners]             select_base_learners options (optimization_strategy, trainers)
    [training]             every TrainingConfig option and plugin option (task_type, epochs, ...)

Paths inside the file (data files, ``run_dir``, ``checkpoint_dir``) are relative to the file, so a
config and its data move together. Problems are collected, not raised one by one: `check_run_config`
returns every issue, each prefixed with the dotted key it is about (``data.modalities.scans.path``).
Overrides (``--set training.epochs=2``) are TOML values; a bare key means a ``[training]`` key; paths
given by an override are relative to the config file too.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from os import PathLike
from pathlib import Path
from typing import Any

import attrs

from modalbag.api.model import create_model_from_arrays, create_synthetic_model
from modalbag.config.training import CONFIG_KEYS, TrainingConfig
from modalbag.data.bags import DROPOUT_STRATEGIES, EnsembleConfig
from modalbag.data.dataset import encode_training_labels
from modalbag.data.synthetic import SyntheticTask
from modalbag.engine.selection import OPTIMIZATION_STRATEGIES
from modalbag.errors import ConfigError, ModalbagError, close_matches
from modalbag.io.files import load_array
from modalbag.kernel.components import validate_training_config
from modalbag.kernel.modalities import MODALITY_TYPES, resolve_modalities
from modalbag.kernel.registry import default_catalog

#: The tables a run-config file may hold, with the help text the configuration reference shows.
TABLES: dict[str, str] = {
    "data": "Where the samples come from: files ([data.modalities.<name>] + labels) or [data.synthetic].",
    "ensemble": "How bags are drawn: the arguments of create_ensemble.",
    "learners": "How a learner is chosen per bag: the arguments of select_base_learners.",
    "training": "Every TrainingConfig option (see the tables below) and plugin-owned options.",
}

#: Keys of each part of the file, with help (the configuration reference is generated from these).
DATA_KEYS: dict[str, str] = {
    "labels": "Labels file (.npy, .npz, .csv, .h5, .parquet), one label per sample; or a table "
              "{path, key}. Not used with [data.synthetic].",
    "modalities": "One table per modality: {path = file, type = tabular|text|image|sequence (optional: "
                  "inferred from the array's shape), key = array name inside .npz/.h5/.parquet (optional)}.",
    "synthetic": "Generate a synthetic task instead of reading files (see [data.synthetic] keys).",
}
MODALITY_FILE_KEYS: dict[str, str] = {
    "path": "The modality's file, relative to the config file; row i is sample i.",
    "type": "tabular, text, image or sequence (optional: inferred from the array's shape).",
    "key": "Array name inside a .npz/.h5 file or column prefix of a .parquet file (optional).",
}
SYNTHETIC_KEYS: dict[str, str] = {
    "modalities": "{name = {shape = dim or [C, H, W] or [T, F], type = tabular|text|image|sequence}}.",
    "n_samples": "Samples to generate (default 1000).",
    "random_state": "Seed of the generated task and samples (default: training.random_state).",
    "noise": "Observation noise of every modality (default 0.5).",
}
LEARNER_KEYS: dict[str, str] = {
    "optimization_strategy": "balanced, accuracy or speed: how trainers score their proposals per bag.",
    "trainers": "Trainer plugins allowed to learn bags, in preference order (default: every installed one).",
}
ENSEMBLE_KEYS: dict[str, str] = {
    "n_bags": "Number of bags (one learner each).",
    "dropout_strategy": f"How modality subsets are chosen: {', '.join(DROPOUT_STRATEGIES)}.",
    "sample_ratio": "Bootstrap sample size as a fraction of the samples, in (0, 1].",
    "modality_keep_prob": "Chance of keeping each modality in a 'uniform' bag.",
    "max_modalities": "At most this many modalities per bag (default: no limit).",
    "allow_repeats": "Whether two bags may use the same modality subset.",
    "random_state": "Seed of the bags (default: training.random_state).",
}

_PATH_OPTIONS = ("run_dir", "checkpoint_dir")  # training options that are paths: relative to the file


@attrs.frozen
class ModalityFile:
    """One modality read from a file."""

    name: str
    path: Path
    type: str | None = None
    key: str | None = None


@attrs.frozen
class SyntheticData:
    """A generated task (`modalbag.create_synthetic_model`'s arguments)."""

    modalities: Mapping[str, tuple[Any, str]]
    n_samples: int = 1000
    random_state: int = 0
    noise: float = 0.5


@attrs.frozen
class RunConfig:
    """A parsed, validated run-config file; `build_model` and `train` act on it."""

    path: Path | None
    training: TrainingConfig
    ensemble: Mapping[str, Any]
    learners: Mapping[str, Any]
    files: tuple[ModalityFile, ...] = ()
    labels: ModalityFile | None = None
    synthetic: SyntheticData | None = None

    @property
    def name(self) -> str:
        """The config's name: its file stem, used to name run directories."""
        return self.path.stem if self.path is not None else "run"

    def build_model(self) -> Any:
        """The model over this config's data (files read, or the synthetic task sampled)."""
        cfg = self.training
        if self.synthetic is not None:
            syn = self.synthetic
            n_classes = cfg.num_classes or (1 if cfg.task_type == "regression" else 2)
            return create_synthetic_model(dict(syn.modalities), n_samples=syn.n_samples, n_classes=n_classes,
                                          task_type=cfg.task_type, random_state=syn.random_state, noise=syn.noise)
        data: dict[str, Any] = {}
        for entry in self.files:
            array = load_array(entry.path, name=entry.name, key=entry.key)
            data[entry.name] = (array, entry.type) if entry.type else array
        labels = None
        if self.labels is not None:
            import numpy as np

            labels = np.asarray(load_array(self.labels.path, name="labels", key=self.labels.key))
            if labels.ndim == 2 and labels.shape[1] == 1:
                labels = labels[:, 0]
        return create_model_from_arrays(data, labels, task_type=cfg.task_type)

    def training_options(self, **changes: Any) -> dict[str, Any]:
        """The ``train_ensemble`` keyword arguments: every training option, with ``changes`` applied."""
        return {**self.training.to_dict(), **changes}

    def prepare(self, model: Any) -> Any:
        """Draw the bags and choose the learners of ``model`` as the config says."""
        cfg = self.training
        model.create_ensemble(**{"random_state": cfg.random_state, **self.ensemble})
        model.generate_bags()
        model.select_base_learners(task_type=cfg.task_type, num_classes=cfg.num_classes, instantiate=False,
                                   **self.learners)
        return model

    def train(self, *, run_dir: str | PathLike[str] | None = None, resume: bool = False, **changes: Any) -> Any:
        """Build the model, draw bags, choose learners and train; returns the trained model.

        ``run_dir`` replaces the config's own; ``resume=True`` continues the run recorded there.
        """
        model = self.prepare(self.build_model())
        options = self.training_options(**changes)
        if run_dir is not None:
            options["run_dir"] = str(run_dir)
        if resume:
            options["resume"] = True
        model.train_ensemble(**options)
        return model


# -- overrides ------------------------------------------------------------------------------------


def parse_override(text: str) -> tuple[tuple[str, ...], Any]:
    """``"training.epochs=3"`` -> ``(("training", "epochs"), 3)``.

    The value is read as a TOML value (``3``, ``1e-3``, ``true``, ``["a", "b"]``, ``{k = 1}``); text
    that is not valid TOML is taken as a string, so ``optimizer_type=sgd`` needs no quotes. A key
    without a table (``epochs=3``) is a ``[training]`` key.
    """
    key, eq, raw = text.partition("=")
    key = key.strip()
    if not eq or not key:
        raise ConfigError(f"--set {text!r}: expected KEY=VALUE, for example training.epochs=3")
    parts = tuple(p.strip() for p in key.split("."))
    if any(not p for p in parts):
        raise ConfigError(f"--set {text!r}: {key!r} is not a dotted key like training.epochs")
    if parts[0] not in TABLES:
        parts = ("training", *parts)
    raw = raw.strip()
    try:
        value = tomllib.loads(f"value = {raw}")["value"]
    except tomllib.TOMLDecodeError:
        value = raw
    return parts, value


def apply_overrides(data: Mapping[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """A deep copy of ``data`` with each ``KEY=VALUE`` override set (tables created as needed)."""
    out = _deep_copy(data)
    for text in overrides:
        parts, value = parse_override(text)
        node = out
        for i, part in enumerate(parts[:-1]):
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"--set {text!r}: {'.'.join(parts[:i + 1])} is a value, not a table")
            node = child
        node[parts[-1]] = value
    return out


def _deep_copy(data: Mapping[str, Any]) -> dict[str, Any]:
    return {k: _deep_copy(v) if isinstance(v, Mapping) else v for k, v in data.items()}


# -- loading --------------------------------------------------------------------------------------


def read_toml(path: str | PathLike[str]) -> dict[str, Any]:
    """The file's tables; a missing or malformed file is a `ConfigError` naming it."""
    p = Path(path)
    try:
        with p.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {p}") from None
    except IsADirectoryError:
        raise ConfigError(f"{p} is a directory; give the path of a .toml config file") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{p} is not valid TOML: {exc}") from None


def check_run_config(source: str | PathLike[str] | Mapping[str, Any], overrides: Sequence[str] = (), *,
                     base_dir: str | PathLike[str] | None = None, check_data: bool = True,
                     run_dir: str | PathLike[str] | None = None,
                     catalog: Any = None) -> tuple[RunConfig | None, list[str]]:
    """Parse and check a run config; returns ``(config or None, every issue)``.

    ``source`` is a path to a TOML file or its already-parsed tables (then paths are relative to
    ``base_dir``, default the working directory). With ``check_data`` the data files are read
    (``.npy`` memory-mapped) and their row counts, shapes and labels checked too. ``run_dir`` is
    the run directory a caller will set when the config has none (``modalbag train`` always sets
    one): the options are checked with it, so the plugins a run directory activates are checked too.
    """
    if isinstance(source, Mapping):
        path, data = None, dict(source)
        base = Path(base_dir) if base_dir is not None else Path.cwd()
    else:
        path = Path(source)
        data = read_toml(path)
        base = path.resolve().parent
    data = apply_overrides(data, overrides)
    issues: list[str] = []
    for table in data:
        if table not in TABLES:
            issues.append(_unknown(table, TABLES, "table"))
        elif not isinstance(data[table], Mapping):
            issues.append(f"{table}: must be a table ([{table}]), got {data[table]!r}")
    section = {t: data.get(t) if isinstance(data.get(t), Mapping) else {} for t in TABLES}
    training_table = dict(section["training"])
    if run_dir is not None and training_table.get("run_dir") is None:
        training_table["run_dir"] = str(Path(run_dir).resolve())
    training, training_issues = _training(training_table, base, catalog)
    issues += training_issues
    seed = training.random_state if training is not None else 0
    ensemble = _ensemble(section["ensemble"], seed, issues)
    learners = _learners(section["learners"], catalog, issues)
    files, labels, synthetic = _data(section["data"], base, seed, issues)
    config = None
    if not issues and training is not None:
        config = RunConfig(path=path, training=training, ensemble=ensemble, learners=learners, files=files,
                           labels=labels, synthetic=synthetic)
        if check_data and synthetic is None:
            issues += _data_issues(config)
    return (config if not issues else None), issues


def load_run_config(source: str | PathLike[str] | Mapping[str, Any], overrides: Sequence[str] = (), *,
                    base_dir: str | PathLike[str] | None = None, check_data: bool = False,
                    catalog: Any = None, run_dir: str | PathLike[str] | None = None) -> RunConfig:
    """A validated `RunConfig`; raises one `ConfigError` listing every issue.

    ``run_dir``: the run directory the caller will train in when the file names none, so that options
    needing one (the TensorBoard, W&B and jsonl sinks) are checked as they will run.
    """
    config, issues = check_run_config(source, overrides, base_dir=base_dir, check_data=check_data, catalog=catalog,
                                      run_dir=run_dir)
    if issues or config is None:
        raise ConfigError(issues)
    return config


def _unknown(key: str, valid: Iterable[str], what: str = "key", prefix: str = "") -> str:
    valid = list(valid)
    hint = close_matches(key, valid, n=1)
    did = f"; did you mean {hint[0]!r}?" if hint else f"; valid: {', '.join(valid)}"
    return f"{prefix}{key}: unknown {what}{did}"


def _training(table: Mapping[str, Any], base: Path, catalog: Any) -> tuple[Any, list[str]]:

    options = dict(table)
    for key in _PATH_OPTIONS:
        if isinstance(options.get(key), str):
            options[key] = str(base / options[key])
    if "resume" in options:
        return None, ["training.resume: resume is not a config option; pass --resume to `modalbag train`"]
    result = validate_training_config(options, catalog=catalog)
    issues = [_training_issue(issue) for issue in result["issues"]]
    if issues:
        return None, issues
    return TrainingConfig.from_dict(options, catalog=catalog), []


def _training_issue(issue: str) -> str:
    """Prefix a TrainingConfig issue with the dotted key it names (``training.epochs: ...``)."""

    key, colon, _ = issue.partition(":")
    if colon and key in CONFIG_KEYS:
        return f"training.{issue}"
    unknown = re.match(r"unknown configuration key '([^']+)'|'([^']+)' is an option of", issue)
    if unknown:
        return f"training.{unknown.group(1) or unknown.group(2)}: {issue}"
    return f"training: {issue}"


def _ensemble(table: Mapping[str, Any], seed: int, issues: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in table.items():
        if key not in ENSEMBLE_KEYS:
            issues.append(_unknown(key, ENSEMBLE_KEYS, prefix="ensemble."))
            continue
        try:
            EnsembleConfig(**{key: value})
        except (TypeError, ValueError) as exc:
            message = exc.args[0] if len(exc.args) > 1 else exc
            issues.append(f"ensemble.{key}: {message}")
            continue
        out[key] = value
    return out


def _learners(table: Mapping[str, Any], catalog: Any, issues: list[str]) -> dict[str, Any]:

    out: dict[str, Any] = {}
    for key, value in table.items():
        if key not in LEARNER_KEYS:
            issues.append(_unknown(key, LEARNER_KEYS, prefix="learners."))
        elif key == "optimization_strategy":
            if value not in OPTIMIZATION_STRATEGIES:
                issues.append(f"learners.optimization_strategy: must be one of {', '.join(OPTIMIZATION_STRATEGIES)}, "
                              f"got {value!r}")
            else:
                out[key] = value
        else:
            names = [value] if isinstance(value, str) else value
            if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
                issues.append(f"learners.trainers: must be a non-empty list of trainer names, got {value!r}")
                continue
            if catalog is None:

                catalog = default_catalog()
            known = catalog.names("trainer")  # entry-point metadata: imports nothing
            for name in names:
                if name not in known:
                    issues.append(_unknown(name, known, "trainer", prefix="learners.trainers: "))
            out[key] = list(names)
    return out


def _data(table: Mapping[str, Any], base: Path, seed: int,
          issues: list[str]) -> tuple[tuple[ModalityFile, ...], ModalityFile | None, SyntheticData | None]:
    for key in table:
        if key not in DATA_KEYS:
            issues.append(_unknown(key, DATA_KEYS, prefix="data."))
    has_files, has_synthetic = "modalities" in table, "synthetic" in table
    if has_files == has_synthetic:
        issues.append("data: give either [data.modalities.<name>] tables naming files, or [data.synthetic]"
                      + (" (not both)" if has_files else ""))
        return (), None, None
    if has_synthetic:
        if "labels" in table:
            issues.append("data.labels: synthetic data makes its own labels; remove data.labels")
        return (), None, _synthetic(table["synthetic"], seed, issues)
    modalities = table["modalities"]
    if not isinstance(modalities, Mapping) or not modalities:
        issues.append("data.modalities: needs one table per modality, e.g. [data.modalities.text] path = \"x.npy\"")
        return (), None, None
    files = []
    for name, entry in modalities.items():
        if isinstance(entry, str):
            entry = {"path": entry}
        parsed = _file_entry(f"data.modalities.{name}", name, entry, base, issues)
        if parsed is not None:
            files.append(parsed)
    labels = None
    if "labels" not in table:
        issues.append("data.labels: missing; name the labels file, e.g. labels = \"labels.npy\"")
    else:
        entry = table["labels"]
        labels = _file_entry("data.labels", "labels", {"path": entry} if isinstance(entry, str) else entry,
                             base, issues, typed=False)
    return tuple(files), labels, None


def _file_entry(where: str, name: str, entry: Any, base: Path, issues: list[str],
                typed: bool = True) -> ModalityFile | None:

    if not isinstance(entry, Mapping):
        issues.append(f"{where}: must be a file path or a table {{path = ...}}, got {entry!r}")
        return None
    allowed = MODALITY_FILE_KEYS if typed else {k: v for k, v in MODALITY_FILE_KEYS.items() if k != "type"}
    ok = True
    for key in entry:
        if key not in allowed:
            issues.append(_unknown(key, allowed, prefix=f"{where}."))
            ok = False
    raw = entry.get("path")
    if not isinstance(raw, str) or not raw:
        issues.append(f"{where}.path: missing; name the file (relative to the config file)")
        return None
    path = base / raw
    if not path.is_file():
        issues.append(f"{where}.path: file not found: {path} (paths are relative to the config file)")
        ok = False
    kind = entry.get("type")
    if kind is not None and kind not in MODALITY_TYPES:
        issues.append(f"{where}.type: must be one of {', '.join(MODALITY_TYPES)}, got {kind!r}")
        ok = False
    key = entry.get("key")
    if key is not None and not isinstance(key, str):
        issues.append(f"{where}.key: must be a string, got {key!r}")
        ok = False
    return ModalityFile(name, path, kind, key) if ok else None


def _synthetic(table: Any, seed: int, issues: list[str]) -> SyntheticData | None:

    if not isinstance(table, Mapping):
        issues.append(f"data.synthetic: must be a table, got {table!r}")
        return None
    start = len(issues)
    for key in table:
        if key not in SYNTHETIC_KEYS:
            issues.append(_unknown(key, SYNTHETIC_KEYS, prefix="data.synthetic."))
    modalities: dict[str, tuple[Any, str]] = {}
    entries = table.get("modalities")
    if not isinstance(entries, Mapping) or not entries:
        issues.append("data.synthetic.modalities: needs one entry per modality, e.g. text = {shape = 768, "
                      "type = \"text\"}")
        entries = {}
    for name, entry in entries.items():
        where = f"data.synthetic.modalities.{name}"
        if not isinstance(entry, Mapping) or set(entry) != {"shape", "type"}:
            issues.append(f"{where}: must be {{shape = dim or [dims], type = ...}}, got {entry!r}")
            continue
        shape, kind = entry["shape"], entry["type"]
        dims = [shape] if isinstance(shape, int) else shape
        if (not isinstance(dims, list) or not dims
                or not all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in dims)):
            issues.append(f"{where}.shape: must be a positive integer or a list of them, got {shape!r}")
            continue
        if kind not in MODALITY_TYPES:
            issues.append(f"{where}.type: must be one of {', '.join(MODALITY_TYPES)}, got {kind!r}")
            continue
        modalities[name] = (dims[0] if len(dims) == 1 else tuple(dims), kind)
    n_samples = table.get("n_samples", 1000)
    if isinstance(n_samples, bool) or not isinstance(n_samples, int) or n_samples < 10:
        issues.append(f"data.synthetic.n_samples: must be an integer >= 10, got {n_samples!r}")
    random_state = table.get("random_state", seed)
    if isinstance(random_state, bool) or not isinstance(random_state, int):
        issues.append(f"data.synthetic.random_state: must be an integer, got {random_state!r}")
    noise = table.get("noise", 0.5)
    if isinstance(noise, bool) or not isinstance(noise, (int, float)) or noise < 0:
        issues.append(f"data.synthetic.noise: must be a number >= 0, got {noise!r}")
    if len(issues) > start:
        return None
    try:  # the generator's own shape rules (a sequence needs [T, F], an image [C, H, W] or a dim)

        SyntheticTask.create(modalities, n_classes=2, random_state=0)
    except ModalbagError as exc:
        issues.append(f"data.synthetic.modalities: {exc}")
        return None
    return SyntheticData(modalities, n_samples, random_state, float(noise))


def _data_issues(config: RunConfig) -> list[str]:
    """Read the files and check what only the data can tell: counts, shapes, label values."""

    try:
        model = config.build_model()
    except ModalbagError as exc:
        return [f"data: {exc}"]
    issues = []
    if model.dataset.labels is not None:
        try:
            encode_training_labels(model.dataset.labels, config.training.task_type, config.training.num_classes,
                                   model.dataset.n_samples)
        except ModalbagError as exc:
            issues.append(f"data.labels: {exc}")
    try:
        resolve_modalities("denoising_modalities", config.training.denoising_modalities, model.dataset.specs)
    except ConfigError as exc:
        issues.extend(f"training.{issue}" for issue in exc.issues)
    return issues


__all__ = ["ModalityFile", "RunConfig", "SyntheticData", "apply_overrides", "check_run_config",
           "load_run_config", "parse_override", "read_toml"]
