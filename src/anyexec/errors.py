"""The exceptions anyexec raises.

Each subclasses the builtin that callers already catch, so ``except LookupError`` or
``except TimeoutError`` keeps working, and each message says what happened, what is
available, and how to fix it.
"""

from __future__ import annotations

import concurrent.futures as _cf

__all__ = [
    "AnyexecError",
    "BackendError",
    "BackendNotFound",
    "BackendUnavailable",
    "ConfigError",
    "ConfigWarning",
    "InitializerError",
    "MapTimeout",
    "RemoteTraceback",
    "SchedulerLost",
    "SchedulerUnreachable",
    "TaskAborted",
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


class BackendError(AnyexecError, RuntimeError):
    """A backend broke the contract (``docs/writing-a-backend.md``), for example returned
    something other than what the submitted chunk returned; the message names it."""


class ConfigError(AnyexecError, ValueError):
    """A configuration value is invalid; the message names where it came from."""


class ConfigWarning(UserWarning):
    """A config file was skipped because it cannot be trusted (owned by another user, or
    writable by others); the message names the file and how to make it trusted."""


class Unsupported(AnyexecError, RuntimeError):
    """The backend cannot do what was asked (documented per backend in docs/reliability.md)."""


class UnpicklableError(AnyexecError, TypeError):
    """A function, argument, result or exception cannot cross into the backend's workers."""


# On 3.10 ``concurrent.futures.TimeoutError`` is not the builtin; inherit both so either
# ``except`` clause catches a task timeout.
_TIMEOUT_BASES: tuple[type, ...] = tuple(dict.fromkeys((_cf.TimeoutError, TimeoutError)))


class TaskTimeout(AnyexecError, *_TIMEOUT_BASES):  # type: ignore[misc]
    """One task ran past its ``task_timeout``; the other tasks are unaffected."""


class MapTimeout(AnyexecError, *_TIMEOUT_BASES):  # type: ignore[misc]
    """``map(timeout=...)`` passed before every result was in (the builtin ``TimeoutError``,
    and ``concurrent.futures.TimeoutError`` on 3.10, where the two differ)."""


class _Wraps(AnyexecError):
    """An error standing for another exception, kept as ``original`` and as ``__cause__``.

    The original travels in ``args`` so it survives pickling from a worker process (a
    pickled exception loses its ``__cause__``); it is None where it could not travel.
    """

    def __init__(self, message: str, original: BaseException | None = None) -> None:
        super().__init__(message, original)
        self.__cause__ = original

    @property
    def original(self) -> BaseException | None:
        return self.args[1] if len(self.args) > 1 else None

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class TaskAborted(_Wraps):
    """A task raised a ``BaseException`` that is not an ``Exception`` (``SystemExit``,
    ``KeyboardInterrupt``, ``GeneratorExit`` or a subclass): kept as that task's outcome,
    so it cannot stop a worker, an event loop or the caller's other results."""


class InitializerError(_Wraps):
    """The executor's ``initializer`` raised in a worker: every task of that worker fails
    with this error (the initializer is not run again there)."""


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
