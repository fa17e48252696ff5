"""``thread``: a pool of threads in this process. Good for I/O and for code that releases
the GIL (numpy, most compression and hashing); the default backend.

The pool behaves as ``concurrent.futures.ThreadPoolExecutor`` does (closing it, or interpreter
exit, waits for the work submitted to it) except for one thing: a call that ``map`` abandoned
past its ``task_timeout`` is never waited for. Python cannot stop a thread, so such a call
runs on, detached: its worker threads are daemon threads, ``shutdown(wait=True)`` and
interpreter exit wait for every other call and leave it running, and
``anyexec.contract.abandoned_threads()`` counts it until it ends. When the program ends on
Ctrl-C, exit waits for no running call at all (``anyexec._exit``).
"""

from __future__ import annotations

import concurrent.futures as cf
import queue
import threading
from collections.abc import Callable
from typing import Any

from anyexec import _exit
from anyexec._worker import watch
from anyexec.contract import Backend, Option

__all__ = ["ThreadBackend", "ThreadPool", "WorkCount"]


class WorkCount:
    """Calls submitted and not finished, and how many of those were abandoned (``grow``):
    what ``shutdown(wait=True)`` and interpreter exit wait for. Shared by the thread and
    asyncio pools."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.outstanding = 0  # submitted, not finished nor cancelled
        self.running = 0
        self.abandoned = 0  # capacity given by grow() for abandoned calls still running

    def add(self, n: int = 1) -> None:
        with self.cond:
            self.outstanding += n
            self.cond.notify_all()

    def started(self, n: int = 1) -> None:
        with self.cond:
            self.running += n

    def finished(self, ran: bool = True) -> None:
        with self.cond:
            self.outstanding -= 1
            if ran:
                self.running -= 1
            self.cond.notify_all()

    def grow(self, workers: int) -> None:
        with self.cond:
            self.abandoned = max(0, self.abandoned + workers)
            self.cond.notify_all()

    def idle(self) -> bool:
        """Nothing submitted is left, abandoned calls included."""
        with self.cond:
            return self.outstanding == 0

    def detached(self) -> int:
        """Abandoned calls still running."""
        with self.cond:
            return min(self.abandoned, self.running)

    def wait(self, timeout: float | None = None) -> bool:
        """Until every call but the abandoned ones finished; False on ``timeout``."""
        with self.cond:
            return self.cond.wait_for(lambda: self.outstanding <= self.abandoned, timeout)


class _Item:
    __slots__ = ("args", "fn", "future", "kwargs")

    def __init__(
        self, future: cf.Future[Any], fn: Callable[..., Any], args: Any, kwargs: Any
    ) -> None:
        self.future, self.fn, self.args, self.kwargs = future, fn, args, kwargs


def _work(work: queue.SimpleQueue[_Item | None], count: WorkCount, idle: Any) -> None:
    """A worker thread: run items until the pool's sentinel (None), which it passes on."""
    while True:
        item = work.get()
        if item is None:
            work.put(None)
            return
        if item.future.set_running_or_notify_cancel():
            count.started()
            try:
                result = item.fn(*item.args, **item.kwargs)
            except BaseException as exc:
                item.future.set_exception(exc)
            else:
                item.future.set_result(result)
            finally:
                count.finished()
        else:
            count.finished(ran=False)
        del item
        idle.release()


class ThreadPool(cf.Executor):
    """A ``ThreadPoolExecutor`` whose threads are daemon threads, so that an abandoned call
    holds up neither ``shutdown`` nor interpreter exit (see the module docstring)."""

    def __init__(self, workers: int, thread_name_prefix: str = "anyexec") -> None:
        self._max_workers = workers
        self._prefix = thread_name_prefix
        self._work: queue.SimpleQueue[_Item | None] = queue.SimpleQueue()
        self._count = WorkCount()
        self._idle = threading.Semaphore(0)
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._shutdown = False
        _track(self)

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> cf.Future[Any]:
        with self._lock:
            if self._shutdown:
                raise RuntimeError("cannot schedule new futures after shutdown")
            _exit.check()
            fut: cf.Future[Any] = cf.Future()
            self._count.add()
            self._work.put(_Item(fut, fn, args, kwargs))
            if not self._idle.acquire(timeout=0) and len(self._threads) < self._max_workers:
                self._start_thread()
        return fut

    def _start_thread(self) -> None:
        thread = threading.Thread(
            target=_work,
            args=(self._work, self._count, self._idle),
            name=f"{self._prefix}_{len(self._threads)}",
            daemon=True,
        )
        thread.start()
        self._threads.append(thread)

    def grow(self, workers: int) -> None:
        """``workers`` calls were abandoned (or, negative, abandoned calls ended): raise the
        thread cap by as much, so the pool keeps its capacity, and wait for them nowhere."""
        with self._lock:
            self._max_workers += workers
            self._count.grow(workers)

    def detached(self) -> int:
        """Abandoned calls still running in this pool."""
        return self._count.detached()

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        with self._lock:
            self._shutdown = True
            if cancel_futures:
                self._cancel_queued()
            self._work.put(None)
        if wait:
            self._count.wait()

    def _cancel_queued(self) -> None:
        while True:
            try:
                item = self._work.get_nowait()
            except queue.Empty:
                return
            if item is not None:
                if item.future.cancel():
                    item.future.set_running_or_notify_cancel()  # tell the waiters
                self._count.finished(ran=False)

    def _at_exit(self, interrupted: bool) -> None:
        """Interpreter exit: wait for the calls submitted (not the abandoned ones), as the
        standard library's pools do; on Ctrl-C, cancel the queue and wait for nothing."""
        self.shutdown(wait=not interrupted, cancel_futures=interrupted)


#: Every pool that may still have work: interpreter exit waits for it. Held strongly, so
#: that a pool closed with ``shutdown(wait=False)`` still runs its queue before exit.
_POOLS: set[ThreadPool] = set()
_pools_lock = threading.Lock()


def _track(pool: ThreadPool) -> None:
    """Add ``pool``; drop the pools that are closed and have nothing left to run."""
    with _pools_lock:
        for old in [p for p in _POOLS if p._shutdown and p._count.idle()]:
            _POOLS.discard(old)
        _POOLS.add(pool)


def _close_pools() -> None:
    interrupted = _exit.interrupted()
    for pool in list(_POOLS):
        pool._at_exit(interrupted)


def _detached() -> int:
    return sum(pool.detached() for pool in list(_POOLS))


_exit.at_exit(_close_pools)
watch.count_also(_detached)


class ThreadBackend(Backend):
    """A pool of threads in this process (nothing is copied)."""

    crosses = "threads"
    timeout_mode = "abandon"
    options = {
        "thread_name_prefix": Option(str, "Prefix of the worker threads' names."),
    }

    def open(self, workers: int, **options: Any) -> cf.Executor:
        return ThreadPool(workers, options.get("thread_name_prefix", "anyexec"))

    def grow(self, executor: cf.Executor, workers: int) -> None:
        assert isinstance(executor, ThreadPool)
        executor.grow(workers)
