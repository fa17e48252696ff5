"""``asyncio``: an anyio event loop in a dedicated thread, reached through a blocking portal.

Coroutine functions are awaited concurrently inside the loop; plain functions run in anyio's
worker threads; both at most ``workers`` at once (one ``CapacityLimiter``). A ``map`` chunk
crosses into the loop once, and its coroutines are awaited together in one task group, so
the ~175 µs cost of a thread crossing is paid per chunk, not per task.
``anyio_backend="trio"`` runs the loop on trio where it is installed.
"""

from __future__ import annotations

import concurrent.futures as cf
import threading
from collections.abc import Callable
from functools import partial
from typing import Any

import anyio
import anyio.from_thread
import anyio.to_thread

from anyexec import _exit
from anyexec._worker import watch
from anyexec._worker.loops import is_async as _is_async
from anyexec._worker.tasks import Call, Chunk
from anyexec.builtin.thread import WorkCount
from anyexec.contract import Backend, Option
from anyexec.errors import BackendUnavailable


class PortalExecutor(cf.Executor):
    """A ``concurrent.futures.Executor`` whose tasks run in an anyio event loop thread.

    Its futures are standard ones: a submission is *running* once one of the ``workers``
    slots is its (until then ``cancel()`` succeeds and it never runs); a running call
    cannot be cancelled (``cancel()`` returns False and it goes on), and
    ``shutdown(cancel_futures=True)`` cancels only the calls not running yet. Only
    :meth:`cancel_running` (``kill_running``) stops running coroutines. Closing it, and
    interpreter exit, wait for the calls submitted, except those ``map`` abandoned past
    their ``task_timeout`` (:meth:`grow`), as the thread backend does.
    """

    def __init__(self, workers: int, anyio_backend: str = "asyncio") -> None:
        self._cm = anyio.from_thread.start_blocking_portal(anyio_backend)
        self._portal = self._cm.__enter__()
        self._loop_thread: threading.Thread | None = None
        # Slots for whole submissions (a submission holds one from start to end), and the
        # tokens its calls run under (a chunk of coroutines runs several at once).
        self._slots, self._limiter = self._portal.call(self._make_limiters, workers)
        self._lock = threading.Lock()
        self._count = WorkCount()
        self._tasks: dict[cf.Future[Any], cf.Future[Any]] = {}  # ours -> the portal's
        self._shutdown = False
        _track(self)

    async def _make_limiters(
        self, workers: int
    ) -> tuple[anyio.CapacityLimiter, anyio.CapacityLimiter]:
        self._loop_thread = threading.current_thread()
        return anyio.CapacityLimiter(workers), anyio.CapacityLimiter(workers)

    async def _run(
        self,
        fut: cf.Future[Any],
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> None:
        ran = notified = False
        try:
            async with self._slots:
                notified = True
                if not fut.set_running_or_notify_cancel():
                    return
                ran = True
                self._count.started()
                try:
                    result = await self._call(fn, args, kwargs)
                except anyio.get_cancelled_exc_class():
                    fut.set_exception(cf.CancelledError("cancelled by kill_running()"))
                    raise
                except BaseException as exc:  # its outcome, whatever it is; never the loop's
                    fut.set_exception(exc)
                else:
                    fut.set_result(result)
        finally:
            if not notified and fut.cancelled():
                fut.set_running_or_notify_cancel()  # cancelled while waiting: tell waiters
            self._count.finished(ran=ran)

    async def _call(
        self, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        if isinstance(fn, (Call, Chunk)):
            return await fn.run_async(self._limiter)
        if _is_async(fn):
            async with self._limiter:
                return await fn(*args, **kwargs)
        return await anyio.to_thread.run_sync(partial(fn, *args, **kwargs), limiter=self._limiter)

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> cf.Future[Any]:
        if self._shutdown:
            raise RuntimeError("cannot schedule new futures after shutdown")
        _exit.check()
        fut: cf.Future[Any] = cf.Future()
        self._count.add()
        # Not under the lock: start_task_soon waits for the loop thread.
        task = self._portal.start_task_soon(self._run, fut, fn, args, kwargs)
        with self._lock:
            self._tasks[fut] = task
        fut.add_done_callback(self._forget)
        # Cancelled before it started: stop waiting for a slot at once.
        fut.add_done_callback(lambda f: f.cancelled() and task.cancel())
        return fut

    def _forget(self, fut: cf.Future[Any]) -> None:
        with self._lock:
            self._tasks.pop(fut, None)

    def cancel_running(self) -> None:
        """Cancel every task in the loop: coroutines stop at their next await (their futures
        fail with CancelledError); plain functions already in a worker thread finish, their
        results discarded."""
        with self._lock:
            tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()

    def grow(self, workers: int) -> None:
        """``workers`` calls were abandoned (or, negative, abandoned calls ended): that
        many more slots, and nobody waits for them. Called from any thread, the loop's own
        included (a done callback of an abandoned call)."""
        self._count.grow(workers)

        def change() -> None:
            self._slots.total_tokens += workers
            self._limiter.total_tokens += workers

        if threading.current_thread() is self._loop_thread:
            change()
        else:
            try:
                self._portal.call(change)
            except RuntimeError:  # the portal is closed: nothing runs any more
                pass

    def detached(self) -> int:
        """Abandoned calls still running here."""
        return self._count.detached()

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        with self._lock:
            if self._shutdown:
                return
            self._shutdown = True
            pending = list(self._tasks)
        if cancel_futures:
            for fut in pending:
                fut.cancel()  # False for a running call, which goes on
        if wait:
            self._count.wait()
        if wait and not self._count.detached():
            self._cm.__exit__(None, None, None)
        else:  # the loop ends once the calls still running (abandoned ones) are done
            threading.Thread(target=self._cm.__exit__, args=(None, None, None), daemon=True).start()

    def _at_exit(self, interrupted: bool) -> None:
        """Interpreter exit: run what was submitted (not the abandoned calls), as the
        standard pools do; on Ctrl-C, cancel everything and wait for nothing."""
        if interrupted:
            self.shutdown(wait=False, cancel_futures=True)
            self.cancel_running()
        else:
            self._count.wait()
            self.shutdown(wait=True)


#: Every pool that may still have work: interpreter exit waits for it. Held strongly, so
#: that a pool closed with ``shutdown(wait=False)`` still runs its queue before exit.
_PORTALS: set[PortalExecutor] = set()
_portals_lock = threading.Lock()


def _track(pool: PortalExecutor) -> None:
    """Add ``pool``; drop the pools that are closed and have nothing left to run."""
    with _portals_lock:
        for old in [p for p in _PORTALS if p._shutdown and p._count.idle()]:
            _PORTALS.discard(old)
        _PORTALS.add(pool)


def _close_portals() -> None:
    interrupted = _exit.interrupted()
    for portal in list(_PORTALS):
        portal._at_exit(interrupted)


def _detached() -> int:
    return sum(portal.detached() for portal in list(_PORTALS))


_exit.at_exit(_close_portals)
watch.count_also(_detached)


class AsyncioBackend(Backend):
    """An anyio event loop thread: coroutines awaited, plain functions in worker threads."""

    crosses = "threads"
    timeout_mode = "abandon"

    def kill(self, executor: cf.Executor) -> None:
        assert isinstance(executor, PortalExecutor)
        executor.cancel_running()

    def grow(self, executor: cf.Executor, workers: int) -> None:
        assert isinstance(executor, PortalExecutor)
        executor.grow(workers)

    options = {
        "anyio_backend": Option(
            str,
            "Event loop: 'asyncio' (default) or 'trio' (needs trio installed).",
            choices=("asyncio", "trio"),
        ),
    }

    def open(self, workers: int, **options: Any) -> cf.Executor:
        loop = options.get("anyio_backend", "asyncio")
        if loop == "trio":
            try:
                import trio  # noqa: F401
            except ImportError:
                raise BackendUnavailable(
                    "option anyio_backend='trio' needs trio. Install it with: "
                    "pip install 'anyexec[trio]'  (or: pip install trio)"
                ) from None
        return PortalExecutor(workers, loop)
