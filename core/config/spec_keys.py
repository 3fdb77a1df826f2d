"""Options the product spec's examples pass under other names: each becomes the options that do it.

The spec writes ``adaptive_weighting=True`` where modalbag says ``denoising_strategy='adaptive'``,
``effective_batch_size=128`` where it says ``gradient_accumulation_steps``, and so on. Rather than
rejecting those examples, `translate` rewrites each such key into modalbag's own options before the
config is parsed, so a config holds one spelling of every setting (``to_dict`` gives modalbag's).
A key whose value contradicts an option given beside it is an error naming both, and a key that
cannot mean anything here gets an error that says why and what to use instead.

Every key below is listed in docs/configuration.md ("Spec names").
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

#: ``augmentation_strategy`` presets: the neural trainer's augmentation options each one sets.
AUGMENTATION_STRATEGIES: Mapping[str, Mapping[str, Any]] = {
    "light": {"noise_injection": 0.02, "feature_dropout": 0.05},
    "balanced": {"noise_injection": 0.05, "feature_dropout": 0.1, "image_augmentation": True},
    "multimodal": {"noise_injection": 0.05, "feature_dropout": 0.1, "image_augmentation": True,
                   "modality_dropout": 0.2},
    "strong": {"noise_injection": 0.1, "feature_dropout": 0.2, "image_augmentation": True,
               "modality_dropout": 0.3, "mixup_alpha": 0.2},
}

#: Keys refused with the reason and what to use instead.
REFUSED: Mapping[str, str] = {}


class SpecKeyError(ValueError):
    """A spec key whose value cannot be translated (or contradicts an option given beside it)."""


def _bool(key: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise SpecKeyError(f"{key} must be true or false, got {value!r}")
    return value


def _adaptive_weighting(value: Any, data: Mapping[str, Any]) -> dict[str, Any]:
    return {"denoising_strategy": "adaptive" if _bool("adaptive_weighting", value) else "fixed"}


def _amp_level(value: Any, data: Mapping[str, Any]) -> dict[str, Any]:
    level = str(value).upper()
    if level == "O0":
        return {"mixed_precision": False}
    if level == "O1":
        return {"mixed_precision": True}
    raise SpecKeyError(f"amp_optimization_level={value!r}: apex's O2/O3 cast the model's weights to half "
                       f"precision; modalbag trains with autocast, which is O1. Use 'O1' (or mixed_precision=true, "
                       f"and amp_dtype='bf16'/'fp16' to force a type) or 'O0' for full fp32")


def _effective_batch_size(value: Any, data: Mapping[str, Any]) -> dict[str, Any]:
    batch = data.get("batch_size", 32)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise SpecKeyError(f"effective_batch_size must be a positive integer, got {value!r}")
    if not isinstance(batch, int) or batch < 1 or value % batch:
        raise SpecKeyError(f"effective_batch_size={value} is not a multiple of batch_size={batch}: the "
                           f"accumulation steps are effective_batch_size / batch_size")
    steps = value // batch
    given = data.get("gradient_accumulation_steps")
    if given is not None and given != steps:
        raise SpecKeyError(f"effective_batch_size={value} with batch_size={batch} means "
                           f"gradient_accumulation_steps={steps}, but {given} was given: drop one of them")
    return {"gradient_accumulation_steps": steps}


def _stratified(value: Any, data: Mapping[str, Any]) -> dict[str, Any]:
    if not _bool("stratified_validation", value):
        return {}
    if data.get("validation_strategy") == "time_series":
        raise SpecKeyError("stratified_validation=true with validation_strategy='time_series': time-ordered "
                           "folds keep the rows in order and cannot also balance the classes; keep one")
    return {"validation_strategy": "stratified"}


def _num_gpus(value: Any, data: Mapping[str, Any]) -> dict[str, Any]:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise SpecKeyError(f"num_gpus must be a positive integer, got {value!r}")
    given = data.get("num_processes")
    if given is not None and given != value:
        raise SpecKeyError(f"num_gpus={value} is the DDP world size, but num_processes={given} was given: drop one")
    out: dict[str, Any] = {"num_processes": value, "device": "cuda"}
    if value > 1 and "distributed_training" not in data:
        out["distributed_training"] = True  # more than one GPU per learner is what DDP is for
    return out


def _augmentation(value: Any, data: Mapping[str, Any]) -> dict[str, Any]:
    if not _bool("enable_data_augmentation", value):
        return {}
    name = data.get("augmentation_strategy", "balanced")
    if name not in AUGMENTATION_STRATEGIES:
        raise SpecKeyError(f"augmentation_strategy={name!r}: choose one of {sorted(AUGMENTATION_STRATEGIES)}")
    return {k: v for k, v in AUGMENTATION_STRATEGIES[name].items() if k not in data}  # explicit options win


def _augmentation_strategy(value: Any, data: Mapping[str, Any]) -> dict[str, Any]:
    if value not in AUGMENTATION_STRATEGIES:
        raise SpecKeyError(f"augmentation_strategy={value!r}: choose one of {sorted(AUGMENTATION_STRATEGIES)}")
    if not data.get("enable_data_augmentation", False):
        raise SpecKeyError("augmentation_strategy is given but enable_data_augmentation is not true: set "
                           "enable_data_augmentation=true to apply it")
    return {}  # applied by enable_data_augmentation


def _safety(value: Any, data: Mapping[str, Any]) -> dict[str, Any]:
    if not _bool("safety_critical_validation", value):
        return {}
    return {k: True for k in ("adversarial_testing", "worst_case_analysis") if k not in data}


#: Spec key -> translation: (value, the whole config) -> modalbag options it sets.
TRANSLATIONS: Mapping[str, Callable[[Any, Mapping[str, Any]], dict[str, Any]]] = {
    "adaptive_weighting": _adaptive_weighting,
    "amp_optimization_level": _amp_level,
    "effective_batch_size": _effective_batch_size,
    "stratified_validation": _stratified,
    "num_gpus": _num_gpus,
    "enable_data_augmentation": _augmentation,
    "augmentation_strategy": _augmentation_strategy,
    "safety_critical_validation": _safety,
}

#: What each translated key becomes, for the configuration reference.
DOCUMENTED: Mapping[str, str] = {
    "adaptive_weighting": "`denoising_strategy`: true is 'adaptive', false 'fixed'",
    "amp_optimization_level": "`mixed_precision`: 'O0' is false, 'O1' true (autocast); 'O2'/'O3' (half-precision "
                              "weights) are refused with the reason",
    "effective_batch_size": "`gradient_accumulation_steps` = effective_batch_size / batch_size (a multiple of it)",
    "stratified_validation": "`validation_strategy='stratified'` (an error beside 'time_series')",
    "num_gpus": "the DDP world size: `num_processes`, with `device='cuda'` (and `distributed_training=true` to "
                "use more than one)",
    "enable_data_augmentation": "the neural trainer's augmentation options, from `augmentation_strategy`'s preset "
                                "(default 'balanced'); options given explicitly win",
    "augmentation_strategy": "a preset of `noise_injection`, `feature_dropout`, `image_augmentation`, "
                             "`modality_dropout`, `mixup_alpha`: " + "; ".join(
                                 f"'{k}': {dict(v)}" for k, v in AUGMENTATION_STRATEGIES.items()),
    "safety_critical_validation": "`adversarial_testing=true` and `worst_case_analysis=true` in the safety "
                                  "(autonomous) report, unless given",
}


def translate(data: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """``data`` with every spec key replaced by the options it means, and the problems found."""
    out = {k: v for k, v in data.items() if k not in TRANSLATIONS and k not in REFUSED}
    issues = [f"{key}: {REFUSED[key]}" for key in data if key in REFUSED]
    for key, value in data.items():
        if key not in TRANSLATIONS:
            continue
        try:
            options = TRANSLATIONS[key](value, data)
        except SpecKeyError as exc:
            issues.append(str(exc))
            continue
        for option, meant in options.items():
            if option in data and data[option] != meant:
                issues.append(f"{key}={value!r} means {option}={meant!r}, but {option}={data[option]!r} was "
                              f"given: drop one of them")
            else:
                out[option] = meant
    return out, issues


__all__ = ["AUGMENTATION_STRATEGIES", "DOCUMENTED", "REFUSED", "TRANSLATIONS", "translate"]
