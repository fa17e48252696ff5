"""``map``, written once for every backend: chunking, ordering, bounded input, timeouts.

The caller's items are grouped into :class:`~anyexec._tasks.Chunk` objects, each one
submission to the backend's executor. At most ``buffersize`` chunks are in flight, so input
is read lazily (``map(f, itertools.count())`` works). Chunk sizes adapt to the measured run
time of earlier chunks (see :class:`ChunkSizer`). Results come back in input order, or in
completion order with ``ordered=False``.
"""

from __future__ import annotations

import concurrent.futures as cf
import itertools
import math
import operator
import queue
import time
import weakref
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence
from typing import Any, Protocol

from anyexec._tasks import Chunk, ChunkResult, Failure

__all__ = ["ChunkSizer", "Engine", "MapRun", "aiter_map", "iter_map"]

#: Largest adaptive chunk: bounds memory when the input length is unknown.
MAX_CHUNK = 8192
#: How much an adaptive chunk may grow per observation (shrinking is immediate).
GROWTH = 16


class Engine(Protocol):
    """What :func:`iter_map` needs from an executor (implemented by anyexec.Executor)."""

    @property
    def workers(self) -> int: ...

    def _submit_chunks(
        self, chunks: Sequence[Chunk], share_arrays: bool = ...
    ) -> list[cf.Future[ChunkResult]]: ...

    def _chunk_error(self, exc: BaseException, chunk: Chunk) -> BaseException: ...

    @property
    def _crossing(self) -> bool: ...

    @property
    def _target_chunk_seconds(self) -> float: ...

    @property
    def _in_caller(self) -> bool: ...


class ChunkSizer:
    """How many items the next chunk holds.

    With a fixed ``chunksize`` it always says that. Adaptive (``chunksize="auto"``), it
    starts at one item, then sizes chunks so each runs about ``target`` seconds inside the
    worker, judged from an exponentially weighted per-item time of finished chunks. It grows
    by at most ``GROWTH``× per observation and shrinks at once. When the input length is
    known, chunks are also kept small enough that each worker gets at least four of the
    remaining items' chunks, so the tail stays balanced -- but never split below a quarter
    of the target duration, where balance no longer matters and submissions would.
    """

    def __init__(
        self,
        fixed: int | None,
        workers: int,
        target: float,
        total: int | None,
        max_size: int = MAX_CHUNK,
    ) -> None:
        self.fixed = fixed
        self.workers = workers
        self.target = target
        self.total = total
        self.max_size = max_size
        self.size = fixed or 1
        self.per_item: float | None = None
        self.handed_out = 0

    def next_size(self) -> int:
        size = self.size
        if self.fixed is None and self.total is not None:
            remaining = self.total - self.handed_out
            balanced = math.ceil(remaining / (4 * self.workers))
            if self.per_item:
                balanced = max(balanced, math.ceil(self.target / 4 / self.per_item))
            size = max(1, min(size, balanced))
        self.handed_out += size
        return size

    def observe(self, items: int, seconds: float) -> None:
        if self.fixed is not None or items <= 0:
            return
        sample = seconds / items
        self.per_item = sample if self.per_item is None else 0.5 * self.per_item + 0.5 * sample
        ideal = self.target / self.per_item if self.per_item > 0 else float(self.max_size)
        grown = min(ideal, self.size * GROWTH)
        self.size = max(1, min(self.max_size, int(grown)))


def _length(iterables: Sequence[Iterable[Any]]) -> int | None:
    lengths = []
    for it in iterables:
        if not hasattr(it, "__len__"):
            return None
        lengths.append(operator.length_hint(it))
    return min(lengths)


class MapRun:
    """The state of one ``map``: what is in flight, what comes next, and the deadline.

    Both the blocking iterator (:func:`iter_map`) and the async one
    (:func:`aiter_map`) drive it; only how they wait for a chunk differs.
    """

    def __init__(
        self,
        engine: Engine,
        fn: Callable[..., Any],
        iterables: Sequence[Iterable[Any]],
        *,
        timeout: float | None,
        chunksize: int | None,
        ordered: bool,
        buffersize: int | None,
        progress: Any = None,
        share_arrays: bool = True,
    ) -> None:
        self.engine = engine
        self.share_arrays = share_arrays
        self.fn = fn
        self.ordered = ordered
        self.end = None if timeout is None else time.monotonic() + timeout
        self.items: Iterator[tuple[Any, ...]] = zip(*iterables)
        total = _length(iterables)
        if buffersize is None:  # the standard library's behaviour: submit everything now
            listed = list(self.items)
            total = len(listed)
            self.items = iter(listed)
            if chunksize is None:
                chunksize = max(1, math.ceil(total / (4 * engine.workers)))
        self.sizer = ChunkSizer(chunksize, engine.workers, engine._target_chunk_seconds, total)
        self.crossing = engine._crossing
        # A backend that runs tasks inside submit() (serial) cannot be interrupted; it still
        # honours the deadline: a result asked for after it raises TimeoutError.
        self.late_check = engine._in_caller and self.end is not None
        self.window = buffersize
        # Ordered: a FIFO of (future, chunk). Unordered: a dict plus a completion queue.
        self.fifo: deque[tuple[cf.Future[ChunkResult], Chunk]] = deque()
        self.live: dict[cf.Future[ChunkResult], Chunk] = {}
        self.done: queue.SimpleQueue[cf.Future[ChunkResult]] = queue.SimpleQueue()
        self.exhausted = False
        self.bar = _progress_bar(progress, total)

    def active(self) -> bool:
        return bool(self.fifo or self.live)

    def remaining(self) -> float | None:
        """Seconds left before the deadline (None: no deadline); raises once it passed."""
        if self.end is None:
            return None
        left = self.end - time.monotonic()
        if self.late_check and left < 0:
            raise cf.TimeoutError()
        return max(0.0, left)

    def refill(self) -> None:
        in_flight = len(self.fifo) if self.ordered else len(self.live)
        room = (self.window - in_flight) if self.window is not None else math.inf
        batch: list[Chunk] = []
        while room > 0 and not self.exhausted:
            part = list(itertools.islice(self.items, self.sizer.next_size()))
            if not part:
                self.exhausted = True
                break
            batch.append(Chunk(self.fn, part, self.crossing))
            room -= 1
        if not batch:
            return
        futures = self.engine._submit_chunks(batch, self.share_arrays)
        for fut, chunk in zip(futures, batch):
            if self.ordered:
                self.fifo.append((fut, chunk))
            else:
                self.live[fut] = chunk
                fut.add_done_callback(self.done.put)

    def candidates(self) -> list[cf.Future[ChunkResult]]:
        """The futures whose completion lets the map go on."""
        if self.ordered:
            return [self.fifo[0][0]]
        return list(self.live)

    def wait_next(self) -> tuple[cf.Future[ChunkResult], Chunk]:
        """Block until the next chunk to deliver is done (or the deadline passes)."""
        if self.ordered:
            fut, chunk = self.fifo[0]
            try:
                fut.result(timeout=self.remaining())
            except cf.TimeoutError:
                if not fut.done():
                    raise
            except Exception:
                pass  # a failed or cancelled chunk: take() raises it, shaped
            return fut, chunk
        try:
            fut = self.done.get(timeout=self.remaining())
        except queue.Empty:
            raise cf.TimeoutError() from None
        return fut, self.live[fut]

    def take(self, fut: cf.Future[ChunkResult], chunk: Chunk) -> ChunkResult:
        """Account for a finished chunk, refill, and return its outcomes."""
        if self.ordered:
            self.fifo.popleft()
        else:
            self.live.pop(fut, None)
        try:
            result = fut.result(timeout=0)
        except (cf.TimeoutError, cf.CancelledError):
            raise
        except BaseException as exc:
            raise self.engine._chunk_error(exc, chunk) from exc
        self.sizer.observe(len(chunk), result[1])
        self.refill()
        if self.bar is not None:
            self.bar.update(len(chunk))
        return result

    def cancel(self) -> None:
        _cancel_pending(self.fifo, self.live)
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _cancel_pending(
    fifo: deque[tuple[cf.Future[Any], Chunk]], live: dict[cf.Future[Any], Chunk]
) -> None:
    for fut in [f for f, _ in list(fifo)] + list(live):
        fut.cancel()


def _outcomes(result: ChunkResult) -> Iterator[Any]:
    outcomes, _, failed = result
    if not failed:
        yield from outcomes
        return
    for outcome in outcomes:
        if type(outcome) is Failure:
            outcome.reraise()
        yield outcome


def iter_map(
    engine: Engine, fn: Callable[..., Any], iterables: Sequence[Iterable[Any]], **kwargs: Any
) -> Iterator[Any]:
    """Submit the first chunks now and return a blocking iterator over the results.

    Chunks are submitted before the first result is asked for (as the standard library
    does), so work starts at once. Closing or dropping the iterator cancels every chunk
    not yet started.
    """
    run = MapRun(engine, fn, iterables, **kwargs)

    def results() -> Iterator[Any]:
        try:
            while run.active():
                run.remaining()
                yield from _outcomes(run.take(*run.wait_next()))
        finally:
            run.cancel()

    run.refill()
    gen = results()
    # A generator that is dropped before it starts never runs its finally: cancel then too.
    weakref.finalize(gen, _cancel_pending, run.fifo, run.live)
    return gen


async def aiter_map(
    engine: Engine, fn: Callable[..., Any], iterables: Sequence[Iterable[Any]], **kwargs: Any
) -> AsyncIterator[Any]:
    """The async form of :func:`iter_map`: awaits chunks without blocking the event loop.

    Cancelling the task that iterates (or closing the iterator) cancels pending chunks.
    """
    import anyio

    from anyexec._aio import await_first

    run = MapRun(engine, fn, iterables, **kwargs)
    try:
        run.refill()
        while run.active():
            left = run.remaining()
            with anyio.fail_after(left) if left is not None else _no_deadline():
                fut = await await_first(run.candidates())
            chunk = run.fifo[0][1] if run.ordered else run.live[fut]
            for value in _outcomes(run.take(fut, chunk)):
                yield value
    finally:
        run.cancel()


class _no_deadline:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def _progress_bar(progress: Any, total: int | None) -> Any:
    if not progress:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:
        raise ImportError(
            "map(..., progress=True) draws its bar with tqdm, which is not installed. "
            "Install it with: pip install 'anyexec[progress]'  (or: pip install tqdm)"
        ) from None
    kwargs = {"total": total, "unit": "task"}
    if isinstance(progress, dict):
        kwargs.update(progress)
    elif isinstance(progress, str):
        kwargs["desc"] = progress
    return tqdm(**kwargs)
