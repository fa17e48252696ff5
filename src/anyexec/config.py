"""Who decides the backend: explicit arguments, ``using()``, the environment, a config file.

Highest wins, value by value:

1. explicit arguments to :class:`anyexec.Executor`;
2. the innermost ``with anyexec.using(...)`` (a context variable: each thread and async
   task sees its own);
3. the environment: ``ANYEXEC_BACKEND``, ``ANYEXEC_WORKERS``, ``ANYEXEC_PROFILE`` and
   ``ANYEXEC_<BACKEND>_<OPTION>`` (``ANYEXEC_DASK_ADDRESS``);
4. the nearest config file, searched from the working directory upward: ``anyexec.toml``
   or ``[tool.anyexec]`` in ``pyproject.toml``, with named profiles;
5. the default: ``thread`` with one worker per CPU this process may use.

Inside a worker, layers 3 and 4 (inherited from the parent) are skipped and the default is
``serial``, so nested calls never oversubscribe; ``using()`` or arguments inside the task
still choose.

Config files are data: they are parsed as TOML and never executed.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from anyexec import registry
from anyexec._worker import context as _context
from anyexec.contract import Backend
from anyexec.errors import BackendNotFound, BackendUnavailable, ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

__all__ = [
    "ENV_BACKEND",
    "ENV_PROFILE",
    "ENV_WORKERS",
    "Layer",
    "Settings",
    "available_cpus",
    "clear_cache",
    "find_config_file",
    "resolve",
    "using_layer",
]

ENV_BACKEND = "ANYEXEC_BACKEND"
ENV_WORKERS = "ANYEXEC_WORKERS"
ENV_PROFILE = "ANYEXEC_PROFILE"
DEFAULT_BACKEND = "thread"
NESTED_BACKEND = "serial"
_FILE_KEYS = ("backend", "workers", "profiles")


def available_cpus() -> int:
    """CPUs this process may use (affinity-aware), at least 1."""
    count = getattr(os, "process_cpu_count", None)
    if count is not None:
        return int(count() or 1)
    try:
        return len(os.sched_getaffinity(0)) or 1
    except AttributeError:  # pragma: no cover - not on Linux
        return os.cpu_count() or 1


@dataclass(frozen=True)
class Layer:
    """What one source says. ``options`` apply to whichever backend wins, unless
    ``backend`` is set in the same layer, in which case only to that backend; ``tables``
    hold per-backend options (``[tool.anyexec.dask]``) that apply only to their backend."""

    source: str
    backend: str | Backend | None = None
    workers: Any = None
    options: Mapping[str, Any] = field(default_factory=dict)
    tables: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)


@dataclass(frozen=True)
class Settings:
    """The resolved choice, and where each value came from (for ``anyexec config``)."""

    backend: Backend
    workers: int
    options: Mapping[str, Any]
    sources: Mapping[str, str]
    config_file: Path | None = None

    @property
    def name(self) -> str:
        return self.backend.name

    def key(self) -> tuple[Any, ...]:
        """Hashable identity: one shared executor per distinct key (``anyexec.current``)."""
        opts = tuple(sorted((k, _hashable(v)) for k, v in self.options.items()))
        return (self.backend.name, id(self.backend), self.workers, opts)


def _hashable(value: Any) -> Any:
    try:
        hash(value)
        return value
    except TypeError:
        return ("unhashable", id(value))


# -- value parsing ---------------------------------------------------------------------


def parse_workers(value: Any, source: str) -> int:
    """A worker count from any layer: a positive int, a numeric string, or ``"auto"``."""
    if isinstance(value, str):
        text = value.strip().lower()
        if text == "auto":
            return available_cpus()
        try:
            value = int(text)
        except ValueError:
            raise ConfigError(
                f"{source}: workers must be a positive integer or 'auto', got {value!r}"
            ) from None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(
            f"{source}: workers must be a positive integer or 'auto', got {value!r} "
            f"({type(value).__name__})"
        )
    if value < 1:
        raise ConfigError(f"{source}: workers must be at least 1, got {value}")
    return value


# -- the config file -------------------------------------------------------------------

_file_cache: dict[Path, tuple[Path, dict[str, Any]] | None] = {}
_file_lock = threading.Lock()


def clear_cache() -> None:
    """Forget parsed config files (they are read once per working directory)."""
    with _file_lock:
        _file_cache.clear()


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            data: dict[str, Any] = tomllib.load(fh)
            return data
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot be read: {exc}") from None


def find_config_file(start: Path | None = None) -> tuple[Path, dict[str, Any]] | None:
    """The nearest ``anyexec.toml``, or ``pyproject.toml`` with ``[tool.anyexec]``, from
    ``start`` (the working directory) upward, and its anyexec table; cached per directory."""
    start = (start or Path.cwd()).resolve()
    with _file_lock:
        if start in _file_cache:
            return _file_cache[start]
    found: tuple[Path, dict[str, Any]] | None = None
    for folder in (start, *start.parents):
        own = folder / "anyexec.toml"
        if own.is_file():
            found = (own, _read_toml(own))
            break
        pyproject = folder / "pyproject.toml"
        if pyproject.is_file():
            table = _read_toml(pyproject).get("tool", {}).get("anyexec")
            if table is not None:
                if not isinstance(table, dict):
                    raise ConfigError(f"{pyproject}: [tool.anyexec] must be a table")
                found = (pyproject, table)
                break
    with _file_lock:
        _file_cache[start] = found
    return found


def _file_label(path: Path) -> str:
    return f"{path} [tool.anyexec]" if path.name == "pyproject.toml" else str(path)


def _file_layer(found: tuple[Path, dict[str, Any]], profile: str | None) -> Layer:
    path, table = found
    label = _file_label(path)
    _check_file_table(table, label)
    values = {k: v for k, v in table.items() if k != "profiles"}
    if profile is not None:
        profiles = table.get("profiles", {})
        if profile not in profiles:
            known = ", ".join(sorted(profiles)) or "none defined"
            raise ConfigError(
                f"environment variable {ENV_PROFILE}={profile!r}: no profile {profile!r} in "
                f"{label} (profiles: {known})"
            )
        chosen = profiles[profile]
        _check_file_table(chosen, f"{label} profiles.{profile}")
        for key, value in chosen.items():
            if isinstance(value, dict) and isinstance(values.get(key), dict):
                values[key] = {**values[key], **value}
            else:
                values[key] = value
        label = f"{label} profile {profile!r}"
    backend = values.pop("backend", None)
    if backend is not None and not isinstance(backend, str):
        raise ConfigError(f"{label}: backend must be a string, got {backend!r}")
    workers = values.pop("workers", None)
    if workers is not None:
        parse_workers(workers, f"{label}: workers")
    return Layer(label, backend, workers, {}, values)


def _check_file_table(table: Mapping[str, Any], label: str) -> None:
    if not isinstance(table, dict):
        raise ConfigError(f"{label}: expected a table, got {table!r}")
    for key, value in table.items():
        if key == "profiles":
            if not isinstance(value, dict) or not all(isinstance(v, dict) for v in value.values()):
                raise ConfigError(f"{label}: 'profiles' must hold tables ([...profiles.NAME])")
        elif key not in _FILE_KEYS and not isinstance(value, dict):
            raise ConfigError(
                f"{label}: unknown key {key!r}; expected backend, workers, profiles, or a "
                f"table of options for one backend (such as [tool.anyexec.{key}])"
            )


# -- the environment -------------------------------------------------------------------


def _env(name: str) -> str | None:
    value = os.environ.get(name)
    return value if value not in (None, "") else None


def _env_layer() -> Layer:
    return Layer("environment", _env(ENV_BACKEND), _env(ENV_WORKERS))


def _env_options(backend: Backend) -> dict[str, tuple[Any, str]]:
    prefix = f"ANYEXEC_{backend.name.upper().replace('-', '_')}_"
    found = {}
    for option in backend.options:
        var = prefix + option.upper()
        value = _env(var)
        if value is not None:
            found[option] = (value, f"environment variable {var}={value!r}")
    return found


# -- using() ---------------------------------------------------------------------------


def using_layer(backend: str | Backend | None, workers: Any, options: Mapping[str, Any]) -> Layer:
    shown = ", ".join(
        [f"backend={_backend_label(backend)!r}"] * (backend is not None)
        + [f"workers={workers!r}"] * (workers is not None)
        + [f"{k}={v!r}" for k, v in options.items()]
    )
    return Layer(f"using({shown})", backend, workers, dict(options))


@contextlib.contextmanager
def push(layer: Layer) -> Iterator[None]:
    token = _context.USING.set((*_context.USING.get(), layer))
    try:
        yield
    finally:
        _context.USING.reset(token)


# -- resolution ------------------------------------------------------------------------


def _backend_label(backend: str | Backend | None) -> str:
    if isinstance(backend, Backend):
        return backend.name or type(backend).__name__
    return str(backend)


def _lookup(backend: str | Backend, source: str) -> Backend:
    if isinstance(backend, Backend):
        if not backend.name:
            backend.name = type(backend).__name__
        return backend
    if not isinstance(backend, str) or not backend.strip():
        raise ConfigError(f"{source}: backend must be a backend name, got {backend!r}")
    try:
        return registry.get(backend.strip())
    except BackendNotFound as exc:
        raise BackendNotFound(f"{source}: {exc}") from None
    except BackendUnavailable as exc:
        raise BackendUnavailable(f"{source}: {exc}") from exc.__cause__


def resolve(
    backend: str | Backend | None = None,
    workers: Any = None,
    options: Mapping[str, Any] | None = None,
    *,
    cwd: Path | None = None,
) -> Settings:
    """Resolve every layer into :class:`Settings`; raises ConfigError naming the source."""
    layers: list[Layer] = [Layer("argument", backend, workers, dict(options or {}))]
    layers.extend(reversed(_context.USING.get()))
    nested = _context.IN_WORKER.get()
    found = None
    if not nested:
        layers.append(_env_layer())
        found = find_config_file(cwd)
        if found is not None:
            layers.append(_file_layer(found, _env(ENV_PROFILE)))
        elif _env(ENV_PROFILE) is not None:
            raise ConfigError(
                f"environment variable {ENV_PROFILE}={_env(ENV_PROFILE)!r}, but no anyexec.toml "
                f"or pyproject.toml with [tool.anyexec] was found from {cwd or Path.cwd()} upward"
            )

    sources: dict[str, str] = {}
    chosen = next((layer for layer in layers if layer.backend is not None), None)
    if chosen is None:
        name = NESTED_BACKEND if nested else DEFAULT_BACKEND
        why = "default inside a worker (nested call)" if nested else "default"
        the_backend, sources["backend"] = _lookup(name, why), why
    else:
        label = (
            f"environment variable {ENV_BACKEND}"
            if chosen.source == "environment"
            else f"{chosen.source}"
        )
        the_backend = _lookup(chosen.backend, label)  # type: ignore[arg-type]
        sources["backend"] = label

    worker_layer = next((layer for layer in layers if layer.workers is not None), None)
    if worker_layer is None:
        count = 1 if nested else available_cpus()
        sources["workers"] = (
            "default (CPUs this process may use)" if not nested else sources["backend"]
        )
    else:
        label = (
            f"environment variable {ENV_WORKERS}={worker_layer.workers!r}"
            if worker_layer.source == "environment"
            else f"{worker_layer.source}: workers"
        )
        count = parse_workers(worker_layer.workers, label)
        sources["workers"] = label
    if the_backend.max_workers is not None:
        count = min(count, the_backend.max_workers)

    raw: dict[str, tuple[Any, str]] = {}
    name = the_backend.name
    for layer in reversed(layers):  # lowest first, so higher layers overwrite
        applies = layer.backend is None or _backend_label(layer.backend) == name
        if applies:
            for key, value in layer.options.items():
                raw[key] = (value, f"{layer.source}: option {key}")
        for key, value in layer.tables.get(name, {}).items():
            raw[key] = (value, f"{layer.source}: [{name}] {key}")
        if layer.source == "environment":
            raw.update(_env_options(the_backend))
    options_out: dict[str, Any] = {}
    for key, (value, source) in raw.items():
        spec = the_backend.options.get(key)
        if spec is None:
            takes = ", ".join(sorted(the_backend.options)) or "no options"
            raise ConfigError(
                f"{source}: backend {name!r} does not take option {key!r} (it takes: {takes})"
            )
        options_out[key] = spec.coerce(key, value, source)
        sources[f"option {key}"] = source
    return Settings(the_backend, count, options_out, sources, found[0] if found else None)
