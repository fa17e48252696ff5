"""The worker process classes of the ``process`` backend, in a module of their own.

A forkserver or spawn child unpickles its Process object, which imports the module that
defines the class: kept to the standard library here, so a new worker does not import
anyexec's configuration machinery (that cost ~35 ms per worker). The worker initializers
live here too, for the same reason.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.context
import os
import signal
import threading
import time
from typing import Any

__all__ = ["ExitCodes", "init_worker", "note_exit", "watch_parent"]


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


#: Seconds between two looks of a worker at its parent (see :func:`watch_parent`).
WATCH_INTERVAL = 0.5


def _gone(pid: int) -> bool:
    """Whether process ``pid`` has ended: it no longer exists, or (Linux) it is a zombie
    whose parent has not collected it yet."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            state = fh.read().rsplit(b")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state in (b"Z", b"X")


def watch_parent(owner: int, interval: float = WATCH_INTERVAL) -> None:
    """Worker initializer (process and loky pools): end this worker soon after the process
    that owns the pool is gone, even when it was killed by SIGKILL or SIGTERM and could not
    stop its workers. A daemon thread looks every ``interval`` seconds whether this
    worker's parent changed (the owner, or for a forkserver worker the forkserver, which
    exits when the owner does) or ``owner`` ended, and then exits the process at once.
    Polling rather than Linux's ``PR_SET_PDEATHSIG``, which fires when the *thread* that
    started the worker ends (loky starts workers from a helper thread)."""
    parent = os.getppid()

    def watch() -> None:
        while True:
            time.sleep(interval)
            if os.getppid() != parent or _gone(owner):
                os._exit(1)

    threading.Thread(target=watch, name="anyexec-parent-watch", daemon=True).start()


def init_worker(threads: int, owner: int) -> None:
    """The process backend's worker initializer: native thread pools held to ``threads``
    (:func:`anyexec._worker.limits.limit_native_threads`) and the parent watched
    (:func:`watch_parent`)."""
    from anyexec._worker.limits import limit_native_threads

    limit_native_threads(threads)
    watch_parent(owner)
