"""The exceptions anyexec raises.

Each subclasses the builtin that callers already catch, so ``except LookupError`` or
``except TimeoutError`` keeps working, and each message says what happened, what is
available, and how to fix it.
"""

from __future__ import annotations

import concurrent.futures as _cf

__all__ = [
    "AnyexecError",
    "BackendNotFound",
    "BackendUnavailable",
    "ConfigError",
    "RemoteTraceback",
    "SchedulerLost",
    "SchedulerUnreachable",
    "TaskTimeout",
    "UnpicklableError",
    "Unsupported",
    "WorkerLost",
]


class AnyexecError(Exception):
    """Base class of every error anyexec itself raises."""


class BackendNotFound(AnyexecError, LookupError):
    """No backend of that name is registered; the message lists the installed ones."""


class BackendUnavailable(AnyexecError, ImportError):
    """The backend is known or registered but cannot load; the message says what to install."""


class ConfigError(AnyexecError, ValueError):
    """A configuration value is invalid; the message names where it came from."""


class Unsupported(AnyexecError, RuntimeError):
    """The backend cannot do what was asked (documented per backend in docs/reliability.md)."""


class UnpicklableError(AnyexecError, TypeError):
    """A function, argument, result or exception cannot cross into the backend's workers."""


# On 3.10 ``concurrent.futures.TimeoutError`` is not the builtin; inherit both so either
# ``except`` clause catches a task timeout.
_TIMEOUT_BASES: tuple[type, ...] = tuple(dict.fromkeys((_cf.TimeoutError, TimeoutError)))


class TaskTimeout(AnyexecError, *_TIMEOUT_BASES):  # type: ignore[misc]
    """One task ran past its ``task_timeout``; the other tasks are unaffected."""


class WorkerLost(AnyexecError, _cf.BrokenExecutor):
    """A worker died while running the task: names the backend and the exit code or signal."""


class SchedulerUnreachable(AnyexecError, ConnectionError):
    """No scheduler (dask) answered at the configured address within the connect timeout."""


class SchedulerLost(AnyexecError, ConnectionError):
    """The connection to the scheduler (dask) went away while the task was pending."""


class RemoteTraceback(Exception):
    """Carries the formatted traceback of an exception raised in another process.

    Set as ``__cause__`` of the re-raised exception, the way ``concurrent.futures`` does, so
    the task function's frames show in the printed traceback.
    """

    def __init__(self, tb: str) -> None:
        super().__init__(tb)
        self.tb = tb

    def __str__(self) -> str:
        return self.tb
