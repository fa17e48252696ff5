"""What runs inside a worker: one call (``submit``) or one chunk of calls (``map``).

These objects are what the core hands to a backend's executor. They mark the running task
as "inside a worker" (so nested anyexec calls default to serial) and, for backends whose
workers are other processes, make sure an exception can travel back: one that would not
survive pickling is replaced by an :class:`~anyexec.errors.UnpicklableError` that keeps the
original type name, message and traceback text, instead of breaking the pool.
"""

from __future__ import annotations

import inspect
import pickle
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from typing import Any

from anyexec import _context
from anyexec.errors import RemoteTraceback, TaskTimeout, UnpicklableError

__all__ = ["Call", "Chunk", "ChunkResult", "Failure"]

#: (outcomes in input order, seconds the chunk ran inside the worker, any failure?)
ChunkResult = tuple[list[Any], float, bool]


def _round_trips(exc: BaseException) -> Exception | None:
    """Return why ``exc`` cannot be sent back through pickle, or None if it can."""
    try:
        pickle.loads(pickle.dumps(exc))
        return None
    except Exception as plain_error:
        try:  # loky and dask send exceptions with cloudpickle
            import cloudpickle

            pickle.loads(cloudpickle.dumps(exc))
            return None
        except Exception:
            return plain_error


def _portable(exc: Exception) -> Exception:
    why = _round_trips(exc)
    if why is None:
        return exc
    tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    return UnpicklableError(
        f"the task raised {type(exc).__module__}.{type(exc).__qualname__}: {exc}; that "
        f"exception cannot be sent back from the worker ({type(why).__name__}: {why}). "
        f"Make it picklable (pass every __init__ argument to super().__init__). "
        f"Original traceback:\n{tb}"
    )


class Failure:
    """A task's exception, kept in a chunk's outcomes at the task's position."""

    __slots__ = ("exc", "tb")

    def __init__(self, exc: Exception, tb: str | None) -> None:
        self.exc = exc
        self.tb = tb

    @classmethod
    def capture(cls, exc: Exception, crossing: bool) -> Failure:
        if not crossing:
            return cls(exc, None)
        tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        return cls(_portable(exc), tb)

    def exception(self) -> Exception:
        """The task's exception, with the worker's traceback attached as its cause."""
        exc = self.exc
        if self.tb is not None and exc.__cause__ is None:
            exc.__cause__ = RemoteTraceback('\n"""\n' + self.tb + '"""')
        return exc

    def reraise(self) -> None:
        raise self.exception()


def _timed(fn: Callable[..., Any], seconds: float) -> Callable[..., Any]:
    """``fn`` stopped after ``seconds`` by a SIGALRM timer: for workers that run tasks in
    their main thread (process pools, serial in the main thread). The task gets a
    TaskTimeout raised where it is, and the worker lives on. Workers that run tasks in
    threads (dask) use :func:`anyexec._watch.run_watched` instead."""
    import signal

    def on_alarm(signum: int, frame: Any) -> None:
        raise TaskTimeout(f"the task ran past its task_timeout of {seconds:g} s and was stopped")

    def timed(*args: Any, **kwargs: Any) -> Any:
        previous = signal.signal(signal.SIGALRM, on_alarm)
        began = time.monotonic()
        earlier = signal.setitimer(signal.ITIMER_REAL, seconds)
        try:
            return fn(*args, **kwargs)
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)
            if earlier[0] > 0:  # someone else's timer was running: give it back
                left = earlier[0] - (time.monotonic() - began)
                signal.setitimer(signal.ITIMER_REAL, max(left, 0.001), earlier[1])

    return timed


def _in_main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


def _is_async(fn: Callable[..., Any]) -> bool:
    call = type(fn).__dict__.get("__call__")  # an object whose __call__ is async
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(call)


def _loop_running_here() -> bool:
    import asyncio

    try:
        asyncio.get_running_loop()
        return True
    except RuntimeError:
        pass
    trio = sys.modules.get("trio")
    if trio is not None:
        try:
            trio.lowlevel.current_trio_token()
            return True
        except RuntimeError:
            pass
    return False


def run_async(afn: Callable[..., Any], *args: Any) -> Any:
    """Run a coroutine function to completion from synchronous code. Where an event loop
    already runs in this thread (``serial`` called from async code), use a fresh thread."""
    import anyio

    if not _loop_running_here():
        return anyio.run(afn, *args)
    import concurrent.futures as cf

    with cf.ThreadPoolExecutor(1, thread_name_prefix="anyexec-serial-async") as one:
        return one.submit(anyio.run, afn, *args).result()


async def _await_limited(coro: Any, seconds: float | None) -> Any:
    """Await ``coro``; past ``seconds`` it is cancelled and TaskTimeout raised."""
    if seconds is None:
        return await coro
    import anyio

    try:
        with anyio.fail_after(seconds):
            return await coro
    except TimeoutError:
        raise TaskTimeout(
            f"the coroutine ran past its task_timeout of {seconds:g} s and was cancelled"
        ) from None


class Call:
    """One ``submit``: ``fn(*args, **kwargs)`` run as a worker task."""

    __slots__ = ("args", "crossing", "fn", "kwargs", "timeout")

    def __init__(
        self,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        crossing: bool,
        timeout: float | None = None,
    ) -> None:
        self.fn, self.args, self.kwargs, self.crossing = fn, args, kwargs, crossing
        self.timeout = timeout

    def __call__(self) -> Any:
        in_worker = _context.IN_WORKER.set(True)
        using = _context.USING.set(())
        try:
            if _is_async(self.fn):
                return run_async(self._await)
            if self.timeout is None:
                return self.fn(*self.args, **self.kwargs)
            if _in_main_thread():
                return _timed(self.fn, self.timeout)(*self.args, **self.kwargs)
            from anyexec._watch import run_watched

            (outcome,), failed = run_watched(self._plain, [()], self.timeout, False)
            if failed:
                raise outcome.exc
            return outcome
        except Exception as exc:
            if self.crossing:
                raise _portable(exc) from None
            raise
        finally:
            _context.USING.reset(using)
            _context.IN_WORKER.reset(in_worker)

    def _plain(self) -> Any:
        return self.fn(*self.args, **self.kwargs)

    async def _await(self) -> Any:
        return await _await_limited(self.fn(*self.args, **self.kwargs), self.timeout)

    async def run_async(self, limiter: Any) -> Any:
        """Run inside an event loop (the asyncio backend): await coroutines there, send
        plain functions to a worker thread, at most ``limiter`` at once."""
        import anyio.to_thread

        if not _is_async(self.fn):
            return await anyio.to_thread.run_sync(self, limiter=limiter)
        _context.IN_WORKER.set(True)
        _context.USING.set(())
        async with limiter:
            return await _await_limited(self.fn(*self.args, **self.kwargs), self.timeout)


class Chunk:
    """Several calls of one function from ``map``, run one after another in one worker call.

    Returns a :data:`ChunkResult`. A failing call does not stop the chunk: its exception is
    stored at its position, so the caller sees it exactly when it reaches that result.
    """

    __slots__ = (
        "crossing",
        "fn",
        "items",
        "original",
        "retries_left",
        "shared",
        "started",
        "timeout",
    )

    def __init__(
        self,
        fn: Callable[..., Any],
        items: Sequence[tuple[Any, ...]],
        crossing: bool,
        timeout: float | None = None,
    ) -> None:
        self.fn, self.items, self.crossing, self.timeout = fn, items, crossing, timeout
        #: The items as the caller gave them, before arrays were swapped for handles.
        self.original = items
        #: Re-runs left after losing a worker (None: the map's ``retries``); parent-side.
        self.retries_left: int | None = None
        #: time.monotonic() when it began running; seen by the caller only where the
        #: worker shares its memory (threads), to abandon a task past its task_timeout.
        self.started: float | None = None
        #: Some items hold SharedArray handles (set by the parent, see anyexec._shared).
        self.shared = False

    def __len__(self) -> int:
        return len(self.items)

    # Only what the worker needs travels: ``original`` (the caller's items, large arrays
    # included), ``retries_left`` and ``started`` stay with the caller.
    def __getstate__(self) -> tuple[Any, ...]:
        return self.fn, self.items, self.crossing, self.shared, self.timeout

    def __setstate__(self, state: tuple[Any, ...]) -> None:
        self.fn, self.items, self.crossing, self.shared, self.timeout = state
        self.original, self.retries_left, self.started = self.items, None, None

    def __call__(self) -> ChunkResult:
        in_worker = _context.IN_WORKER.set(True)
        using = _context.USING.set(())
        self.started = time.monotonic()
        start = time.perf_counter()
        try:
            if _is_async(self.fn):
                result: ChunkResult = run_async(self._gather, None)
                return result
            fn, crossing = self.fn, self.crossing
            items = self.items
            if self.shared:
                from anyexec._shared import unshare

                items = unshare(items)
            if self.timeout is not None:
                if not _in_main_thread():
                    from anyexec._watch import run_watched

                    outcomes, failed = run_watched(fn, items, self.timeout, crossing)
                    return outcomes, time.perf_counter() - start, failed
                fn = _timed(fn, self.timeout)
            out: list[Any] = []
            append = out.append
            failed = False
            for args in items:
                try:
                    append(fn(*args))
                except Exception as exc:
                    append(Failure.capture(exc, crossing))
                    failed = True
            return out, time.perf_counter() - start, failed
        finally:
            _context.USING.reset(using)
            _context.IN_WORKER.reset(in_worker)

    async def _gather(self, limiter: Any) -> ChunkResult:
        """Await the chunk's coroutines concurrently, in one task group.

        With a limiter (the asyncio backend) as many runners as it has tokens each hold one
        and await items one after another from a shared iterator: no task per item, so the
        cost per coroutine is about one await. Without one (a worker's own event loop),
        every item runs at once.
        """
        import anyio

        start = time.perf_counter()
        items = self.items
        if self.shared:
            from anyexec._shared import unshare

            items = unshare(items)
        out: list[Any] = [None] * len(items)
        failed = False
        fn, crossing, timeout = self.fn, self.crossing, self.timeout
        pending = iter(enumerate(items))

        async def runner() -> None:
            nonlocal failed
            for i, args in pending:  # shared: each item is taken by exactly one runner
                try:
                    out[i] = await _await_limited(fn(*args), timeout)
                except Exception as exc:
                    out[i] = Failure.capture(exc, crossing)
                    failed = True

        async def limited() -> None:
            async with limiter:
                await runner()

        width = len(items) if limiter is None else min(len(items), int(limiter.total_tokens))
        body = runner if limiter is None else limited
        if width <= 1:
            await body()
        else:
            async with anyio.create_task_group() as tg:
                for _ in range(width):
                    tg.start_soon(body)
        return out, time.perf_counter() - start, failed

    async def run_async(self, limiter: Any) -> ChunkResult:
        """Run inside an event loop (the asyncio backend): one portal call per chunk."""
        import anyio.to_thread

        if not _is_async(self.fn):
            return await anyio.to_thread.run_sync(self, limiter=limiter)
        _context.IN_WORKER.set(True)
        _context.USING.set(())
        return await self._gather(limiter)
