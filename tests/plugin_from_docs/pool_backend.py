"""A third-party backend written from docs/writing-a-backend.md alone.

It runs calls on ``multiprocessing.pool.ThreadPool``, an engine without standard futures,
so it has to follow every rule the page states: make a ``concurrent.futures.Future`` per
call, call ``set_running_or_notify_cancel()`` when the engine starts it (and skip a
cancelled one), cancel queued calls on ``shutdown(cancel_futures=True)`` with
``PendingFutures``, wait for every call on ``shutdown(wait=True)``, and leave no thread.
"""

from __future__ import annotations

import concurrent.futures as cf
import threading
from collections.abc import Callable
from multiprocessing.pool import ThreadPool
from typing import Any

from anyexec import Backend, Option
from anyexec.contract import PendingFutures


class PoolExecutor(cf.Executor):
    """``concurrent.futures.Executor`` over a ``multiprocessing.pool.ThreadPool``."""

    def __init__(self, workers: int) -> None:
        self._pool = ThreadPool(workers)
        self._pending = PendingFutures()
        self._lock = threading.Lock()
        self._closed = False

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> cf.Future[Any]:
        with self._lock:
            if self._closed:
                raise RuntimeError("cannot schedule new futures after shutdown")
            fut: cf.Future[Any] = self._pending.track(cf.Future())
            self._pool.apply_async(_run, (fut, fn, args, kwargs))
        return fut

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        with self._lock:
            first, self._closed = not self._closed, True
        if cancel_futures:
            self._pending.cancel_all()
        if first:
            self._pool.close()  # no new calls; the threads end once the queue is empty
        if wait:
            self._pool.join()


def _run(fut: cf.Future[Any], fn: Callable[..., Any], args: Any, kwargs: Any) -> None:
    """Run in a pool thread: skip a call cancelled while queued, else complete its future."""
    if not fut.set_running_or_notify_cancel():
        return
    try:
        result = fn(*args, **kwargs)
    except BaseException as exc:
        fut.set_exception(exc)
    else:
        fut.set_result(result)


class PoolBackend(Backend):
    """Threads of a multiprocessing.pool.ThreadPool."""

    crosses = "threads"
    options = {"label": Option(str, "A name shown nowhere; proves options reach open().")}

    def open(self, workers: int, **options: Any) -> cf.Executor:
        options.get("label", "pool")  # only set options arrive: the default is ours
        return PoolExecutor(workers)
