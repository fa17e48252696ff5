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

from anyexec._worker.loops import is_async as _is_async
from anyexec._worker.tasks import Call, Chunk
from anyexec.contract import Backend, Option, PendingFutures
from anyexec.errors import BackendUnavailable


class PortalExecutor(cf.Executor):
    """A ``concurrent.futures.Executor`` whose tasks run in an anyio event loop thread."""

    def __init__(self, workers: int, anyio_backend: str = "asyncio") -> None:
        self._cm = anyio.from_thread.start_blocking_portal(anyio_backend)
        self._portal = self._cm.__enter__()
        self._limiter = self._portal.call(self._make_limiter, workers)
        self._lock = threading.Lock()
        self._pending = PendingFutures()
        self._shutdown = False

    @staticmethod
    async def _make_limiter(workers: int) -> anyio.CapacityLimiter:
        return anyio.CapacityLimiter(workers)

    async def _run(
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
        # Not under the lock: start_task_soon waits for the loop thread, whose done
        # callbacks take the lock.
        return self._pending.track(self._portal.start_task_soon(self._run, fn, args, kwargs))

    def cancel_running(self) -> None:
        """Cancel every task in the loop: coroutines stop at their next await; plain
        functions already in a worker thread finish, their results discarded."""
        self._pending.cancel_all()

    def grow(self, workers: int) -> None:
        def change() -> None:
            self._limiter.total_tokens += workers

        self._portal.call(change)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        with self._lock:
            if self._shutdown:
                return
            self._shutdown = True
        if cancel_futures:
            self._pending.cancel_all()
        if wait:
            self._cm.__exit__(None, None, None)
        else:
            threading.Thread(target=self._cm.__exit__, args=(None, None, None), daemon=True).start()


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
