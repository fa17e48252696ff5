"""anyexec: one ``map``/``submit`` interface over every way Python runs work in parallel.

>>> import anyexec
>>> list(anyexec.map(abs, [-1, -2, 3]))
[1, 2, 3]

The backend (serial, thread, process, asyncio, loky, dask, or any installed plugin) is
chosen by argument, ``with anyexec.using(...)``, the environment or the config file, never
by changing the code that calls ``map``.
"""

from __future__ import annotations

from anyexec._current import current, map, submit, using
from anyexec._shared import shared_array
from anyexec.contract import Backend, Option
from anyexec.errors import (
    AnyexecError,
    BackendNotFound,
    BackendUnavailable,
    ConfigError,
    TaskTimeout,
    UnpicklableError,
    Unsupported,
    WorkerLost,
)
from anyexec.executor import Executor
from anyexec.registry import BackendInfo, backends

__version__ = "0.1.0"

__all__ = [
    "AnyexecError",
    "Backend",
    "BackendInfo",
    "BackendNotFound",
    "BackendUnavailable",
    "ConfigError",
    "Executor",
    "Option",
    "TaskTimeout",
    "UnpicklableError",
    "Unsupported",
    "WorkerLost",
    "__version__",
    "backends",
    "current",
    "map",
    "shared_array",
    "submit",
    "using",
]
