"""Every error modalbag raises on purpose: each message says what was wrong and how to fix it."""

from __future__ import annotations

import difflib
import os
from collections.abc import Iterable


def close_matches(name: str, candidates: Iterable[str], n: int = 3) -> list[str]:
    """Candidates that look like `name`, best first (for 'did you mean' hints).

    Ties in similarity go to the candidate sharing the longest prefix ('adam' -> 'adamw', not 'radam').
    """
    def prefix(candidate: str) -> int:
        return len(os.path.commonprefix([name.lower(), candidate.lower()]))

    scored = []
    for candidate in set(candidates):
        ratio = difflib.SequenceMatcher(None, name.lower(), candidate.lower()).ratio()
        if len(name) >= 3 and candidate.lower().startswith(name.lower()):
            ratio = max(ratio, 0.8)  # an abbreviation ('recon' for 'reconstruction') is a strong hint
        if ratio >= 0.6:
            scored.append((-ratio, -prefix(candidate), candidate))
    return [c for _, _, c in sorted(scored)[:n]]


def _did_you_mean(name: str, candidates: Iterable[str]) -> str:
    matches = close_matches(name, candidates, n=1)
    return f"; did you mean {matches[0]!r}?" if matches else ""


class ModalbagError(Exception):
    """Base class: catch this to handle any error modalbag raises deliberately."""


class PluginError(ModalbagError):
    """A plugin could not be found, loaded or used."""


class UnknownPluginError(PluginError, KeyError):
    """A config or API call names a component that no installed plugin provides."""

    def __init__(self, kind: str, name: str, available: Iterable[str]):
        self.kind, self.name = kind, name
        self.available = sorted(set(available))
        listed = ", ".join(self.available) or "none installed"
        article = "an" if kind[0] in "aeiou" else "a"
        hint = _did_you_mean(name, self.available) or "."
        super().__init__(f"{name!r} is not {article} {kind} plugin{hint} Available: {listed}")

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0])


class PluginLoadError(PluginError):
    """A plugin's module failed to import or to register; runs that do not use it are unaffected."""

    def __init__(self, entry_point: str, distribution: str, cause: BaseException):
        self.entry_point, self.distribution, self.cause = entry_point, distribution, cause
        super().__init__(
            f"plugin {entry_point!r} from distribution {distribution!r} failed to load: "
            f"{type(cause).__name__}: {cause}. Fix or uninstall {distribution!r}, or choose "
            f"another component in the config."
        )


class DuplicatePluginError(PluginError):
    """Two plugins claim the same component name."""

    def __init__(self, qualified_name: str, sources: Iterable[str]):
        self.qualified_name, self.sources = qualified_name, sorted(sources)
        super().__init__(
            f"{qualified_name!r} is provided by more than one plugin: "
            f"{' and '.join(self.sources)}. Uninstall one of them."
        )


class MissingPluginError(PluginError):
    """A config option asks for a component that is not installed (yet)."""

    def __init__(self, option: str, value: object, kind: str, name: str, fix: str):
        self.option, self.kind, self.name = option, kind, name
        super().__init__(
            f"{option}={value!r} needs the {kind} plugin {name!r}, which is not installed. {fix}"
        )


class ConfigError(ModalbagError, ValueError):
    """A training or ensemble configuration is invalid."""

    def __init__(self, issues: list[str] | str):
        self.issues = [issues] if isinstance(issues, str) else list(issues)
        super().__init__("invalid configuration:\n  - " + "\n  - ".join(self.issues))


class UnknownConfigKeyError(ConfigError, KeyError):
    """A configuration key that no field and no installed plugin option accepts."""

    def __init__(self, key: str, valid: Iterable[str]):
        self.key = key
        self.message = f"unknown configuration key {key!r}{_did_you_mean(key, valid)}"
        super().__init__(self.message)

    def __str__(self) -> str:
        return self.message


class DataError(ModalbagError, ValueError):
    """Input data is malformed: the message names the modality (or file) and the fix."""


class NotFittedError(ModalbagError, RuntimeError):
    """A method needs a trained ensemble (or generated bags) that does not exist yet."""


class TrainingDivergedError(ModalbagError, FloatingPointError):
    """A learner's loss became NaN or infinite."""


class ArtifactError(ModalbagError, ValueError):
    """A file modalbag wrote (checkpoint, run record, export) is missing, tampered with, truncated, of
    another format version, or unsafe to load. ``path`` names the file; the message says what to do."""

    def __init__(self, path: object, problem: str | None = None):
        self.path = str(path)  # (with one argument, as when unpickled: the whole message)
        super().__init__(self.path if problem is None else f"{self.path}: {problem}")


class StorageError(ModalbagError, OSError):
    """A place modalbag must write to cannot take it: read-only, full, no permission, or missing.

    The message names the path, the operating system's reason and what to do; ``errno`` is the
    operating system's error number when there is one."""

    def __init__(self, path: object, problem: str, cause: OSError | None = None):
        self.path = str(path)
        reason = f" ({cause.strerror or cause})" if cause is not None else ""
        super().__init__(f"{self.path}{reason}: {problem}")
        if cause is not None:
            self.errno = cause.errno


class RunDirectoryBusyError(ModalbagError, RuntimeError):
    """Another run holds the run directory's lock: two runs must not write one directory."""


class MissingExtraError(PluginError, ImportError):
    """A plugin's optional library is not installed; the message gives the ``pip install`` that fixes it."""

    def __init__(self, trainer: str, library: str, extra: str | None):
        self.trainer, self.library, self.extra = trainer, library, extra
        fix = f"pip install modalbag[{extra}]" if extra else f"pip install {library}"
        super().__init__(f"trainer {trainer!r} needs the {library} library, which is not installed: {fix}")


class WorkerLostError(ModalbagError, RuntimeError):
    """The process running a learner died (killed, out of memory, ``os._exit``) or did not answer.

    Only that learner fails; the message names the exit code or signal.
    """


class NotPicklableError(ModalbagError, TypeError):
    """A component of the run cannot be copied to worker processes."""

