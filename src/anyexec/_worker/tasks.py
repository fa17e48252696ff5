"""What runs inside a worker: one call (``submit``) or one chunk of calls (``map``).

These objects are what the core hands to a backend's executor. They mark the running task
as "inside a worker" (so nested anyexec calls default to serial) and, for backends whose
workers are other processes, make sure an exception can travel back: one that would not
survive pickling is replaced by an :class:`~anyexec.errors.UnpicklableError` that keeps the
original type name, message and traceback text, instead of breaking the pool.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

from anyexec._worker import context as _context
from anyexec._worker.failures import Failure, portable
from anyexec._worker.loops import await_limited, is_async, run_async
from anyexec._worker.timer import in_main_thread, timed

__all__ = ["Call", "Chunk", "ChunkResult", "Failure"]


class ChunkResult(NamedTuple):
    """What a chunk returns to the caller."""

    #: One outcome per item, in input order: a result, or a :class:`Failure`.
    outcomes: list[Any]
    #: Seconds the chunk ran inside the worker (adaptive chunk sizes are judged by it).
    seconds: float
    #: Whether any outcome is a Failure (lets the caller skip the check per item).
    failed: bool


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
            if is_async(self.fn):
                return run_async(self._await)
            if self.timeout is None:
                return self.fn(*self.args, **self.kwargs)
            if in_main_thread():
                return timed(self.fn, self.timeout)(*self.args, **self.kwargs)
            from anyexec._worker.watch import run_watched

            (outcome,), failed = run_watched(self._plain, [()], self.timeout, False)
            if failed:
                raise outcome.exc
            return outcome
        except Exception as exc:
            if self.crossing:
                raise portable(exc) from None
            raise
        finally:
            _context.USING.reset(using)
            _context.IN_WORKER.reset(in_worker)

    def _plain(self) -> Any:
        return self.fn(*self.args, **self.kwargs)

    async def _await(self) -> Any:
        return await await_limited(self.fn(*self.args, **self.kwargs), self.timeout)

    async def run_async(self, limiter: Any) -> Any:
        """Run inside an event loop (the asyncio backend): await coroutines there, send
        plain functions to a worker thread, at most ``limiter`` at once."""
        import anyio.to_thread

        if not is_async(self.fn):
            return await anyio.to_thread.run_sync(self, limiter=limiter)
        _context.IN_WORKER.set(True)
        _context.USING.set(())
        async with limiter:
            return await await_limited(self.fn(*self.args, **self.kwargs), self.timeout)


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
            if is_async(self.fn):
                result: ChunkResult = run_async(self._gather, None)
                return result
            fn, crossing = self.fn, self.crossing
            items = self.items
            if self.shared:
                from anyexec._worker.arrays import unshare

                items = unshare(items)
            if self.timeout is not None:
                if not in_main_thread():
                    from anyexec._worker.watch import run_watched

                    outcomes, failed = run_watched(fn, items, self.timeout, crossing)
                    return ChunkResult(outcomes, time.perf_counter() - start, failed)
                fn = timed(fn, self.timeout)
            out: list[Any] = []
            append = out.append
            failed = False
            for args in items:
                try:
                    append(fn(*args))
                except Exception as exc:
                    append(Failure.capture(exc, crossing))
                    failed = True
            return ChunkResult(out, time.perf_counter() - start, failed)
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
            from anyexec._worker.arrays import unshare

            items = unshare(items)
        out: list[Any] = [None] * len(items)
        failed = False
        fn, crossing, timeout = self.fn, self.crossing, self.timeout
        pending = iter(enumerate(items))

        async def runner() -> None:
            nonlocal failed
            for i, args in pending:  # shared: each item is taken by exactly one runner
                try:
                    out[i] = await await_limited(fn(*args), timeout)
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
        return ChunkResult(out, time.perf_counter() - start, failed)

    async def run_async(self, limiter: Any) -> ChunkResult:
        """Run inside an event loop (the asyncio backend): one portal call per chunk."""
        import anyio.to_thread

        if not is_async(self.fn):
            return await anyio.to_thread.run_sync(self, limiter=limiter)
        _context.IN_WORKER.set(True)
        _context.USING.set(())
        return await self._gather(limiter)
