"""The worker process classes of the ``process`` backend, in a module of their own.

A forkserver or spawn child unpickles its Process object, which imports the module that
defines the class: kept to the standard library here, so a new worker does not import
anyexec's configuration machinery (that cost ~35 ms per worker).
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.context
import signal
from typing import Any

__all__ = ["ExitCodes", "note_exit"]


class _Tracks:
    """Mixed into the worker Process class: remember how a worker ended when the pool
    joins it (a pool broken by a dead worker does not say which one, or how)."""

    _sink: dict[int, int]

    def join(self, timeout: float | None = None) -> None:
        super().join(timeout)  # type: ignore[misc]
        note_exit(self, self._sink)


def note_exit(proc: Any, sink: dict[int, int]) -> None:
    code = proc.exitcode  # polls the process: known as soon as it has died
    if code not in (None, 0, -signal.SIGTERM):  # the pool's own SIGTERMs are not news
        sink[proc.pid] = code


_TRACKED: dict[type, type] = {}
for _name in ("ForkServerProcess", "SpawnProcess", "ForkProcess"):
    _base = getattr(multiprocessing.context, _name, None)
    if _base is not None:  # module-level classes: worker processes are pickled by reference
        _cls = type(f"Tracked{_name}", (_Tracks, _base), {"__module__": __name__})
        globals()[_cls.__name__] = _TRACKED[_base] = _cls


class ExitCodes:
    """A start-method context whose worker processes record how they ended."""

    def __init__(self, ctx: Any) -> None:
        self._ctx = ctx
        self.ended: dict[int, int] = {}

    def Process(self, *args: Any, **kwargs: Any) -> Any:
        proc = _TRACKED.get(self._ctx.Process, self._ctx.Process)(*args, **kwargs)
        proc._sink = self.ended
        return proc

    def __getattr__(self, name: str) -> Any:
        return getattr(self._ctx, name)
