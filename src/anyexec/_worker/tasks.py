"""What runs inside a worker: one call (``submit``) or one chunk of calls (``map``).

These objects are what the core hands to a backend's executor. They mark the running task
as "inside a worker" (so nested anyexec calls default to serial) and, for backends whose
workers are other processes, make sure an exception can travel back: one that would not
survive pickling is replaced by an :class:`~anyexec.errors.UnpicklableError` that keeps the
original type name, message and traceback text, instead of breaking the pool.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, NamedTuple

from anyexec._worker import context as _context
from anyexec._worker.args import ARGS, SINGLE, STAR, Args, remap, values
from anyexec._worker.failures import Failure, aborted, portable, unsendable_result
from anyexec._worker.init import Initializer
from anyexec._worker.loops import await_limited, is_async, run_async
from anyexec._worker.timer import in_main_thread, timed

__all__ = [
    "ARGS",
    "SINGLE",
    "STAR",
    "Args",
    "Call",
    "Chunk",
    "ChunkResult",
    "Failure",
    "Initializer",
]

# How a chunk's items are passed to its function (``Chunk.mode``): ``ARGS``, ``fn(*item)``
# (``map`` over several iterables); ``SINGLE``, ``fn(item)`` (one iterable: no 1-tuple per
# item); ``STAR``, ``starmap``'s ``fn(*item)`` for tuples and ``fn(*a.args, **a.kwargs)``
# for :class:`Args` items.


class ChunkResult(NamedTuple):
    """What a chunk returns to the caller."""

    #: One outcome per item, in input order: a result, or a :class:`Failure`.
    outcomes: list[Any]
    #: Seconds the chunk ran inside the worker (adaptive chunk sizes are judged by it).
    seconds: float
    #: Whether any outcome is a Failure (lets the caller skip the check per item).
    failed: bool

    def __reduce_ex__(self, protocol: Any) -> Any:
        """Pickled (to travel back from a worker process) as one block, so that a result
        that cannot be pickled fails only its own item, with an error naming its type,
        instead of the whole chunk; costs one extra copy of the pickled bytes."""
        try:
            data = _dumps(tuple(self), protocol)
        except Exception:
            data = _dumps(tuple(_sendable(self)), protocol)
        return _loads_result, (data,)


def _dumps(value: Any, protocol: Any) -> bytes:
    import pickle  # here: a thread or asyncio map never pickles

    try:
        return pickle.dumps(value, protocol)
    except Exception:
        try:  # loky and dask send results with cloudpickle where pickle fails
            import cloudpickle
        except ImportError:
            raise
        data: bytes = cloudpickle.dumps(value, protocol)
        return data


def _loads_result(data: bytes) -> ChunkResult:
    import pickle

    return ChunkResult(*pickle.loads(data))


def _sendable(result: ChunkResult) -> ChunkResult:
    """``result`` with every outcome that cannot be pickled replaced by its Failure."""
    out = list(result.outcomes)
    for i, value in enumerate(out):
        try:
            _dumps(value, None)
        except Exception as why:
            out[i] = Failure.capture(unsendable_result(value, why), True)
    return ChunkResult(out, result.seconds, True)


class _CallerInterrupt:
    """Tells a task's own ``KeyboardInterrupt`` from Ctrl-C in the caller.

    Where a task runs in the caller's main thread (``serial``), a real Ctrl-C raises
    KeyboardInterrupt inside the task too; that one must stop the caller, not become the
    task's outcome. While the chunk runs, a SIGINT handler notes that the signal came.
    Elsewhere (worker threads and processes) every BaseException belongs to the task.
    """

    __slots__ = ("came", "previous")

    def __init__(self) -> None:
        self.came = False
        self.previous: Any = None

    def __enter__(self) -> _CallerInterrupt:
        import signal  # here: its module builds enums, ~1 ms at import

        if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
            self.previous = signal.signal(signal.SIGINT, self._note)
        return self

    def _note(self, signum: int, frame: Any) -> None:
        self.came = True
        raise KeyboardInterrupt

    def __exit__(self, *exc: object) -> None:
        if self.previous is not None:
            import signal

            signal.signal(signal.SIGINT, self.previous)


def _watch_caller(crossing: bool) -> _CallerInterrupt | None:
    return _CallerInterrupt() if not crossing and in_main_thread() else None


def _fails(exc: BaseException, crossing: bool, guard: _CallerInterrupt | None) -> Failure:
    """A task's exception as its outcome; a real Ctrl-C in the caller is raised on."""
    if isinstance(exc, Exception):
        return Failure.capture(exc, crossing)
    if guard is not None and guard.came and isinstance(exc, KeyboardInterrupt):
        raise exc
    return Failure.capture(aborted(exc), crossing)


def _one_call(fn: Callable[..., Any], mode: int) -> Callable[[Any], Any]:
    """``fn`` as a function of one item, for each way items are passed."""
    if mode == SINGLE:
        return fn
    if mode == STAR:
        return lambda item: fn(*item.args, **item.kwargs) if type(item) is Args else fn(*item)
    return lambda args: fn(*args)


def run_items(
    fn: Callable[..., Any],
    items: Sequence[Any],
    mode: int,
    crossing: bool,
    guard: _CallerInterrupt | None = None,
) -> tuple[list[Any], bool]:
    """Every item's outcome, in order, and whether any failed. The calls run in C's
    ``map`` loop; a failure is stored at its position and the loop resumes after it."""
    out: list[Any] = []
    calls = map(fn, items) if mode == SINGLE else map(_one_call(fn, mode), items)
    failed = False
    while True:
        try:
            out.extend(calls)  # keeps what came before a failure
            return out, failed
        except BaseException as exc:
            out.append(_fails(exc, crossing, guard))
            failed = True


class Call:
    """One ``submit``: ``fn(*args, **kwargs)`` run as a worker task."""

    __slots__ = ("args", "crossing", "fn", "init", "kwargs", "timeout")

    def __init__(
        self,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        crossing: bool,
        timeout: float | None = None,
        init: Initializer | None = None,
    ) -> None:
        self.fn, self.args, self.kwargs, self.crossing = fn, args, kwargs, crossing
        self.timeout, self.init = timeout, init

    def __call__(self) -> Any:
        in_worker = _context.IN_WORKER.set(True)
        using = _context.USING.set(())
        guard = _watch_caller(self.crossing)
        try:
            if guard is None:
                return self._run()
            with guard:
                return self._run()
        except Exception as exc:
            if self.crossing:
                raise portable(exc) from None
            raise
        except BaseException as exc:
            if guard is not None and guard.came and isinstance(exc, KeyboardInterrupt):
                raise  # Ctrl-C in the caller, not the task's own
            error = aborted(exc)
            raise (portable(error) if self.crossing else error) from exc
        finally:
            _context.USING.reset(using)
            _context.IN_WORKER.reset(in_worker)

    def _run(self) -> Any:
        if self.init is not None:
            self.init.ensure()
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

    def _plain(self) -> Any:
        return self.fn(*self.args, **self.kwargs)

    async def _await(self) -> Any:
        return await await_limited(self.fn(*self.args, **self.kwargs), self.timeout)

    async def run_async(self, limiter: Any) -> Any:
        """Run inside an event loop (the asyncio backend): await coroutines there, send
        plain functions to a worker thread, at most ``limiter`` at once."""
        import anyio
        import anyio.to_thread

        if not is_async(self.fn):
            return await anyio.to_thread.run_sync(self, limiter=limiter)
        _context.IN_WORKER.set(True)
        _context.USING.set(())
        async with limiter:
            try:
                if self.init is not None:
                    self.init.ensure()
                return await await_limited(self.fn(*self.args, **self.kwargs), self.timeout)
            except anyio.get_cancelled_exc_class():
                raise
            except Exception:
                raise
            except BaseException as exc:
                raise aborted(exc) from exc


class Chunk:
    """Several calls of one function from ``map``, run one after another in one worker call.

    Returns a :class:`ChunkResult`. A failing call does not stop the chunk: its exception is
    stored at its position, so the caller sees it exactly when it reaches that result.
    """

    __slots__ = (
        "crossing",
        "fn",
        "init",
        "items",
        "mode",
        "original",
        "retries_left",
        "shared",
        "started",
        "timeout",
    )

    def __init__(
        self,
        fn: Callable[..., Any],
        items: Sequence[Any],
        crossing: bool,
        timeout: float | None = None,
        mode: int = ARGS,
        init: Initializer | None = None,
    ) -> None:
        self.fn, self.items, self.crossing, self.timeout = fn, items, crossing, timeout
        self.mode, self.init = mode, init
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

    def like(self, items: Sequence[Any]) -> Chunk:
        """A chunk of the same function and settings over other items (a retry's)."""
        return Chunk(self.fn, items, self.crossing, self.timeout, self.mode, self.init)

    def values(self) -> Iterator[Any]:
        """Every argument value of every item (a backend looks for large arrays)."""
        return values(self.items, self.mode)

    def remapped(self, f: Callable[[Any], Any]) -> Chunk:
        """This chunk with every argument value ``v`` replaced by ``f(v)`` (a backend
        swaps large arrays for handles and back)."""
        return self.like(remap(self.items, self.mode, f))

    def args_of(self, item: Any) -> tuple[Any, ...]:
        """The positional arguments one item stands for (error messages name them)."""
        if self.mode == SINGLE:
            return (item,)
        if type(item) is Args:
            return (*item.args, *item.kwargs.values())
        return tuple(item)

    # Only what the worker needs travels: ``original`` (the caller's items, large arrays
    # included), ``retries_left`` and ``started`` stay with the caller.
    def __getstate__(self) -> tuple[Any, ...]:
        return self.fn, self.items, self.crossing, self.shared, self.timeout, self.mode, self.init

    def __setstate__(self, state: tuple[Any, ...]) -> None:
        self.fn, self.items, self.crossing, self.shared, self.timeout, self.mode, self.init = state
        self.original, self.retries_left, self.started = self.items, None, None

    def __call__(self) -> ChunkResult:
        in_worker = _context.IN_WORKER.set(True)
        using = _context.USING.set(())
        self.started = time.monotonic()
        start = time.perf_counter()
        try:
            if self.init is not None:
                try:
                    self.init.ensure()
                except Exception as exc:
                    failure = Failure.capture(exc, self.crossing)
                    return ChunkResult([failure] * len(self.items), 0.0, True)
            if is_async(self.fn):
                result: ChunkResult = run_async(self._gather, None)
                return result
            fn, crossing = self.fn, self.crossing
            items = self.items
            if self.shared:
                from anyexec._worker.arrays import unshare

                items = unshare(items, self.mode)
            if self.timeout is not None:
                if not in_main_thread():
                    from anyexec._worker.watch import run_watched

                    call = _one_call(fn, self.mode)
                    outcomes, failed = run_watched(
                        call, [(i,) for i in items], self.timeout, crossing
                    )
                    return ChunkResult(outcomes, time.perf_counter() - start, failed)
                fn = timed(fn, self.timeout)
            guard = _watch_caller(crossing)
            if guard is None:
                out, failed = run_items(fn, items, self.mode, crossing)
            else:
                with guard:
                    out, failed = run_items(fn, items, self.mode, crossing, guard)
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

            items = unshare(items, self.mode)
        out: list[Any] = [None] * len(items)
        failed = False
        crossing, timeout = self.crossing, self.timeout
        call = _one_call(self.fn, self.mode)
        pending = iter(enumerate(items))
        cancelled = anyio.get_cancelled_exc_class()

        async def runner() -> None:
            nonlocal failed
            for i, item in pending:  # shared: each item is taken by exactly one runner
                try:
                    out[i] = await await_limited(call(item), timeout)
                except cancelled:
                    raise
                except BaseException as exc:
                    out[i] = _fails(exc, crossing, None)
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
        if self.init is not None:
            try:
                self.init.ensure()
            except Exception as exc:
                return ChunkResult(
                    [Failure.capture(exc, self.crossing)] * len(self.items), 0.0, True
                )
        return await self._gather(limiter)
