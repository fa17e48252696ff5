"""Interpreter exit as anyexec sees it: has it begun, and is the program ending on Ctrl-C?

The standard pools learn that the interpreter is exiting from a hook that
``threading._shutdown`` runs before any ``atexit`` function (``_python_exit`` in
``concurrent.futures.thread`` and ``.process``, and loky's), and then wait for every piece of
work still queued or running. Two things must happen before they wait:

- on Ctrl-C (the program ends on an uncaught ``KeyboardInterrupt``), the shared executors
  of ``anyexec.map`` are aborted (queued work cancelled, process workers terminated), so the
  program exits at once instead of running the whole queue first;
- from then on, ``submit`` raises the standard library's ``RuntimeError``.

Those hooks run last-registered first, so :func:`arm` is called again by each backend
module right after it imported its pool library (``process``, ``loky``): one of anyexec's
hooks is then registered after theirs and runs before them. Only the first run does
anything. The thread and asyncio pools also wait here for the work submitted to them
(:func:`at_exit`), as the standard library's thread pool does.
"""

from __future__ import annotations

import concurrent.futures.thread  # noqa: F401  (registers its exit hook before anyexec's)
import sys
import threading
from collections.abc import Callable

from anyexec._worker.context import IN_WORKER

__all__ = ["arm", "at_exit", "begun", "check", "interrupted", "on_interrupt"]

_lock = threading.Lock()
_begun = False
_armed: set[str] = set()
_on_interrupt: list[Callable[[], None]] = []
_at_exit: list[Callable[[], None]] = []


def begun() -> bool:
    """Whether interpreter shutdown has begun (the hooks of ``threading._shutdown`` ran)."""
    return _begun


def check() -> None:
    """Called by ``anyexec.Executor`` before it submits anything: after interpreter
    shutdown began, refuse as ``concurrent.futures`` pools do. A task still running then
    (exit waits for it) may go on using nested calls, which run in its own worker."""
    if _begun and not IN_WORKER.get():
        raise RuntimeError("cannot schedule new futures after interpreter shutdown")


def interrupted() -> bool:
    """Whether the program is ending on an uncaught ``KeyboardInterrupt`` (Ctrl-C): the
    interpreter printed it and kept it in ``sys.last_exc`` / ``sys.last_value``. Never true
    in an interactive session, where that is only the last error shown."""
    if hasattr(sys, "ps1"):
        return False
    exc = getattr(sys, "last_exc", None) or getattr(sys, "last_value", None)
    return isinstance(exc, KeyboardInterrupt)


def on_interrupt(fn: Callable[[], None]) -> None:
    """Run ``fn`` at interpreter exit when the program ends on Ctrl-C, before the
    standard pools wait for their work."""
    with _lock:
        _on_interrupt.append(fn)


def at_exit(fn: Callable[[], None]) -> None:
    """Run ``fn`` at interpreter exit, before the standard pools wait for their work and
    before any ``atexit`` function (a pool that waits for its own work here)."""
    with _lock:
        _at_exit.append(fn)


def arm(key: str = "anyexec") -> None:
    """Register anyexec's exit hook once for ``key``; a backend calls this right after it
    imported the pool library whose own exit hook must run after anyexec's."""
    from anyexec import _compat

    with _lock:
        if key in _armed:
            return
        _armed.add(key)
    try:
        _compat.register_thread_exit(_run)
    except RuntimeError:  # registering while the interpreter already shuts down
        pass


def _run() -> None:
    global _begun
    with _lock:
        if _begun:
            return
        _begun = True
        hooks = (list(_on_interrupt) if interrupted() else []) + list(_at_exit)
    for fn in hooks:
        try:
            fn()
        except Exception as exc:  # one failing hook must not keep the others from running
            print(f"anyexec: error at interpreter exit in {fn!r}: {exc!r}", file=sys.stderr)


arm()
