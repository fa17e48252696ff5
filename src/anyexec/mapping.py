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
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, Protocol

from anyexec._tasks import Chunk, ChunkResult, Failure

__all__ = ["ChunkSizer", "Engine", "iter_map"]

#: Largest adaptive chunk: bounds memory when the input length is unknown.
MAX_CHUNK = 8192
#: How much an adaptive chunk may grow per observation (shrinking is immediate).
GROWTH = 16


class Engine(Protocol):
    """What :func:`iter_map` needs from an executor (implemented by anyexec.Executor)."""

    @property
    def workers(self) -> int: ...

    def _submit_chunks(self, chunks: Sequence[Chunk]) -> list[cf.Future[ChunkResult]]: ...

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


def _cancel_pending(
    fifo: deque[tuple[cf.Future[Any], Chunk]], live: dict[cf.Future[Any], Chunk]
) -> None:
    for fut in [f for f, _ in list(fifo)] + list(live):
        fut.cancel()


def iter_map(
    engine: Engine,
    fn: Callable[..., Any],
    iterables: Sequence[Iterable[Any]],
    *,
    timeout: float | None,
    chunksize: int | None,
    ordered: bool,
    buffersize: int | None,
    progress: Any = None,
) -> Iterator[Any]:
    """Submit the first chunks now and return an iterator over the results.

    Chunks are submitted before the first result is asked for (as the standard library
    does), so work starts at once. Closing or dropping the iterator cancels every chunk
    not yet started.
    """
    end = None if timeout is None else time.monotonic() + timeout
    items: Iterator[tuple[Any, ...]] = zip(*iterables)
    total = _length(iterables)
    if buffersize is None:  # the standard library's behaviour: submit everything now
        listed = list(items)
        total = len(listed)
        items = iter(listed)
        if chunksize is None:
            chunksize = max(1, math.ceil(total / (4 * engine.workers)))
    sizer = ChunkSizer(chunksize, engine.workers, engine._target_chunk_seconds, total)
    crossing = engine._crossing
    # A backend that runs tasks inside submit() (serial) cannot be interrupted; it still
    # honours the deadline: a result asked for after it raises TimeoutError.
    late_check = engine._in_caller and end is not None
    window = buffersize
    # Ordered: a FIFO of (future, chunk). Unordered: a dict plus a completion queue.
    fifo: deque[tuple[cf.Future[ChunkResult], Chunk]] = deque()
    live: dict[cf.Future[ChunkResult], Chunk] = {}
    done: queue.SimpleQueue[cf.Future[ChunkResult]] = queue.SimpleQueue()
    exhausted = False

    def refill() -> None:
        nonlocal exhausted
        in_flight = len(fifo) if ordered else len(live)
        room = (window - in_flight) if window is not None else math.inf
        batch: list[Chunk] = []
        while room > 0 and not exhausted:
            part = list(itertools.islice(items, sizer.next_size()))
            if not part:
                exhausted = True
                break
            batch.append(Chunk(fn, part, crossing))
            room -= 1
        if not batch:
            return
        futures = engine._submit_chunks(batch)
        for fut, chunk in zip(futures, batch):
            if ordered:
                fifo.append((fut, chunk))
            else:
                live[fut] = chunk
                fut.add_done_callback(done.put)

    def wait_result(fut: cf.Future[ChunkResult], chunk: Chunk) -> ChunkResult:
        try:
            if end is None:
                return fut.result()
            return fut.result(timeout=max(0.0, end - time.monotonic()))
        except cf.TimeoutError:
            raise
        except cf.CancelledError:
            raise
        except BaseException as exc:
            raise engine._chunk_error(exc, chunk) from exc

    def next_done() -> tuple[cf.Future[ChunkResult], Chunk]:
        if ordered:
            return fifo[0]  # popped once its result is in, so a timeout still cancels it
        try:
            fut = done.get(timeout=None if end is None else max(0.0, end - time.monotonic()))
        except queue.Empty:
            raise cf.TimeoutError() from None
        return fut, live.pop(fut)

    def results() -> Iterator[Any]:
        try:
            while fifo or live:
                if late_check and time.monotonic() > end:  # type: ignore[operator]
                    raise cf.TimeoutError()
                fut, chunk = next_done()
                outcomes, seconds, failed = wait_result(fut, chunk)
                if ordered:
                    fifo.popleft()
                sizer.observe(len(chunk), seconds)
                refill()
                if bar is not None:
                    bar.update(len(chunk))
                if not failed:
                    yield from outcomes
                    continue
                for outcome in outcomes:
                    if type(outcome) is Failure:
                        outcome.reraise()
                    yield outcome
        finally:
            _cancel_pending(fifo, live)
            if bar is not None:
                bar.close()

    bar = _progress_bar(progress, total)
    refill()
    gen = results()
    # A generator that is dropped before it starts never runs its finally: cancel then too.
    weakref.finalize(gen, _cancel_pending, fifo, live)
    return gen


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
