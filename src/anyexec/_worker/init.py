"""Per-worker set-up: ``Executor(initializer=fn, initargs=...)`` runs ``fn(*initargs)`` once
in each worker, before that worker's first task.

The core, not the backend, does this, so it works the same on every backend: each task
carries a small :class:`Initializer` (the function is pickled by reference), and the worker
runs it the first time it sees its token. "Once per worker" means once per thread where
workers are threads (thread, asyncio) and once per process where they are processes
(process, loky, dask) -- so a replacement process after a crash, or a dask worker that
joins later, runs it too. If it raises, every task of that worker fails with
:class:`~anyexec.errors.InitializerError`, and the initializer is not tried again there.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from anyexec.errors import InitializerError

__all__ = ["Initializer"]

#: token -> None (ran) or the exception it raised, for this process.
_PROCESS: dict[str, BaseException | None] = {}
_PROCESS_LOCK = threading.Lock()
_THREAD = threading.local()


class Initializer:
    """``fn(*args)`` to run once per worker; ``token`` names one executor's initializer."""

    __slots__ = ("args", "fn", "per_thread", "token")

    def __init__(
        self, token: str, fn: Callable[..., Any], args: tuple[Any, ...], per_thread: bool
    ) -> None:
        self.token, self.fn, self.args, self.per_thread = token, fn, args, per_thread

    def __getstate__(self) -> tuple[Any, ...]:
        return self.token, self.fn, self.args, self.per_thread

    def __setstate__(self, state: tuple[Any, ...]) -> None:
        self.token, self.fn, self.args, self.per_thread = state

    def ensure(self) -> None:
        """Run the initializer if this worker has not; raise InitializerError if it failed
        here (now or before)."""
        if self.per_thread:
            ran: dict[str, BaseException | None] | None = getattr(_THREAD, "ran", None)
            if ran is None:
                ran = _THREAD.ran = {}
            if self.token not in ran:
                ran[self.token] = self._run()
            error = ran[self.token]
        else:
            if self.token not in _PROCESS:
                with _PROCESS_LOCK:
                    if self.token not in _PROCESS:
                        _PROCESS[self.token] = self._run()
            error = _PROCESS[self.token]
        if error is not None:
            name = getattr(self.fn, "__qualname__", repr(self.fn))
            raise InitializerError(
                f"the executor's initializer {name}() raised {type(error).__name__}: {error}; "
                f"tasks cannot run in this worker",
                error,
            )

    def _run(self) -> BaseException | None:
        try:
            self.fn(*self.args)
            return None
        except (Exception, SystemExit) as exc:
            return exc
