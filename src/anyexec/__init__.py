"""anyexec: one ``map``/``submit`` interface over every way Python runs work in parallel.

>>> import anyexec
>>> list(anyexec.map(abs, [-1, -2, 3]))
[1, 2, 3]

The backend (serial, thread, process, asyncio, loky, dask, or any installed plugin) is
chosen by argument, ``with anyexec.using(...)``, the environment or the config file, never
by changing the code that calls ``map``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from anyexec._current import amap, astarmap, current, map, starmap, submit, using
    from anyexec._shared import shared_array
    from anyexec._worker.args import Args
    from anyexec.contract import Backend, Option
    from anyexec.errors import (
        AnyexecError,
        BackendError,
        BackendNotFound,
        BackendUnavailable,
        ConfigError,
        InitializerError,
        MapTimeout,
        TaskAborted,
        TaskTimeout,
        UnpicklableError,
        Unsupported,
        WorkerLost,
    )
    from anyexec.executor import Executor
    from anyexec.registry import BackendInfo, backends
    from anyexec.tune import TuneResult, tune

    __version__: str

# The public names load on first use (PEP 562): a worker process that unpickles a task
# imports only what the task needs (anyexec._worker.tasks), not the configuration and registry
# machinery -- which made every new process worker pay ~0.1 s of imports.
_WHERE = {
    "amap": "_current",
    "astarmap": "_current",
    "starmap": "_current",
    "current": "_current",
    "map": "_current",
    "submit": "_current",
    "using": "_current",
    "shared_array": "_shared",
    "Args": "_worker.args",
    "Backend": "contract",
    "Option": "contract",
    "AnyexecError": "errors",
    "BackendError": "errors",
    "InitializerError": "errors",
    "MapTimeout": "errors",
    "TaskAborted": "errors",
    "BackendNotFound": "errors",
    "BackendUnavailable": "errors",
    "ConfigError": "errors",
    "TaskTimeout": "errors",
    "UnpicklableError": "errors",
    "Unsupported": "errors",
    "WorkerLost": "errors",
    "Executor": "executor",
    "BackendInfo": "registry",
    "backends": "registry",
    "tune": "tune",
    "TuneResult": "tune",
}


def __getattr__(name: str) -> Any:
    if name == "__version__":
        globals()[name] = value = _version()
        return value
    where = _WHERE.get(name)
    if where is None:
        raise AttributeError(f"module 'anyexec' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f"anyexec.{where}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_WHERE))


def _version() -> str:
    """The installed distribution's version; the one source is the file VERSION at the top
    of the repository, which hatch writes into the metadata (read on first use only: worker
    processes never pay for ``importlib.metadata``)."""
    from anyexec._dist import own_dist_info

    found = own_dist_info()
    if found is not None:
        return found[1]
    from importlib import metadata

    try:
        return metadata.version("anyexec")
    except metadata.PackageNotFoundError:  # imported from a source tree that was not installed
        return "0+unknown"


__all__ = [
    "AnyexecError",
    "Args",
    "Backend",
    "BackendError",
    "BackendInfo",
    "BackendNotFound",
    "BackendUnavailable",
    "ConfigError",
    "Executor",
    "InitializerError",
    "MapTimeout",
    "Option",
    "TaskAborted",
    "TaskTimeout",
    "TuneResult",
    "UnpicklableError",
    "Unsupported",
    "WorkerLost",
    "__version__",
    "amap",
    "astarmap",
    "backends",
    "current",
    "map",
    "shared_array",
    "starmap",
    "submit",
    "tune",
    "using",
]
