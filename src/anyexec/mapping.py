"""``map``, written once for every backend: chunking, ordering, bounded input, timeouts.

The caller's items are grouped into :class:`~anyexec._worker.tasks.Chunk` objects, each one
submission to the backend's executor. At most ``buffersize`` chunks are in flight, so input
is read lazily (``map(f, itertools.count())`` works). Chunk sizes adapt to the measured run
time of earlier chunks (see :class:`ChunkSizer`). Results come back in input order, or in
completion order with ``ordered=False``.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import itertools
import math
import operator
import queue
import time
import weakref
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence
from typing import Any, Protocol

from anyexec._worker.tasks import Chunk, ChunkResult, Failure
from anyexec.errors import TaskTimeout, WorkerLost

__all__ = ["ChunkSizer", "Engine", "MapRun", "aiter_map", "iter_map"]

#: Largest adaptive chunk: bounds memory when the input length is unknown.
MAX_CHUNK = 8192
#: How much an adaptive chunk may grow per observation (shrinking is immediate).
GROWTH = 16
#: How often (seconds) the caller looks for tasks to abandon past their task_timeout.
POLL = 0.05


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

    def _grow(self, workers: int) -> None: ...


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
        #: False while adaptive sizes are still growing towards the target.
        self.settled = fixed is not None

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
        self.settled = grown >= ideal or grown >= self.max_size
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
        task_timeout: float | None = None,
        abandon_after: float | None = None,
        retries: int = 0,
        return_exceptions: bool = False,
    ) -> None:
        self.engine = engine
        #: Seconds after which a task the worker cannot stop is abandoned (threads): one
        #: task per chunk then, so abandoning one discards no other result.
        self.abandon_after = abandon_after
        if abandon_after is not None:
            chunksize = 1
        self.share_arrays = share_arrays
        self.task_timeout = task_timeout
        self.retries = retries
        self.return_exceptions = return_exceptions
        #: Retries left per chunk that lost its worker; while any is being re-run, nothing
        #: else is submitted, so a task that kills its worker cannot take others with it.
        self.retrying: set[cf.Future[ChunkResult]] = set()
        self.requeue: deque[Chunk] = deque()  # unordered: one-item chunks to re-run alone
        self.recovering = False
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
        # Refill once a quarter of the window is free, so each submission carries several
        # chunks (one client.map call on dask instead of one per chunk).
        self.refill_at = 1 if buffersize is None else max(1, buffersize // 4)
        # Ordered: a FIFO of (future, chunk), where a None future is a one-item chunk
        # waiting to be re-run alone (``retries``). Unordered: a dict and a done queue.
        self.fifo: deque[tuple[cf.Future[ChunkResult] | None, Chunk]] = deque()
        self.live: dict[cf.Future[ChunkResult], Chunk] = {}
        self.done: queue.SimpleQueue[cf.Future[ChunkResult]] = queue.SimpleQueue()
        self.exhausted = False
        self.bar = _progress_bar(progress, total)

    def active(self) -> bool:
        return bool(self.fifo or self.live or self.requeue)

    def remaining(self) -> float | None:
        """Seconds left before the deadline (None: no deadline); raises once it passed."""
        if self.end is None:
            return None
        left = self.end - time.monotonic()
        if self.late_check and left < 0:
            raise cf.TimeoutError()
        return max(0.0, left)

    def refill(self) -> None:
        if self.recovering:
            return
        in_flight = len(self.fifo) if self.ordered else len(self.live)
        window = self.window
        if window is not None and not self.sizer.settled:
            # Sizes still growing from one item: keep few chunks in flight, so the window
            # is not filled with chunks far smaller than the next measurement allows.
            window = min(window, 2 * self.engine.workers)
        room = (window - in_flight) if window is not None else math.inf
        if room < self.refill_at and in_flight:
            return
        batch: list[Chunk] = []
        while room > 0 and not self.exhausted:
            part = list(itertools.islice(self.items, self.sizer.next_size()))
            if not part:
                self.exhausted = True
                break
            batch.append(Chunk(self.fn, part, self.crossing, self.task_timeout))
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

    def _running_besides_head(self) -> list[cf.Future[ChunkResult]]:
        later = itertools.islice(self.fifo, 1, None)
        return [f for f, _ in later if f is not None and not f.done()]

    def _launch_retry(self) -> None:
        """Submit the next chunk waiting to be re-run when its turn has come and nothing
        else runs: on a pool that a worker's death breaks (process, loky) everything in
        flight has failed by then; on dask, chunks on other workers run on, and a retry
        running beside one that kills its worker would be hit again."""
        if self.ordered:
            fut, chunk = self.fifo[0]
            if fut is None and not self._running_besides_head():
                self.fifo[0] = (self._resubmit(chunk), chunk)
            return
        if self.requeue and all(f.done() for f in self.live):
            chunk = self.requeue.popleft()
            new = self._resubmit(chunk)
            self.live[new] = chunk
            new.add_done_callback(self.done.put)

    def _resubmit(self, chunk: Chunk) -> cf.Future[ChunkResult]:
        (new,) = self.engine._submit_chunks([chunk], self.share_arrays)
        self.retrying.add(new)
        return new

    def candidates(self) -> list[cf.Future[ChunkResult]]:
        """The futures whose completion lets the map go on."""
        self._launch_retry()
        if self.ordered:
            head = self.fifo[0][0]
            return [head] if head is not None else self._running_besides_head()
        return list(self.live)

    def wait_next(self) -> tuple[cf.Future[ChunkResult], Chunk]:
        """Block until the next chunk to deliver is done (or the deadline passes)."""
        self._launch_retry()
        while True:
            left = self.remaining()
            wait = left if self.abandon_after is None else min(POLL if left is None else left, POLL)
            if self.ordered:
                fut, chunk = self.fifo[0]
                if fut is None:  # a retry waits for the chunks still running to end
                    if left is not None and left <= 0:
                        raise cf.TimeoutError()
                    cf.wait(self._running_besides_head(), wait, cf.FIRST_COMPLETED)
                    self._launch_retry()
                    continue
                try:
                    fut.result(timeout=wait)
                    return fut, chunk
                except cf.TimeoutError:
                    if fut.done():
                        return fut, chunk
                except Exception:
                    return fut, chunk  # a failed or cancelled chunk: take() raises it, shaped
            else:
                try:
                    fut = self.done.get(timeout=wait)
                    return fut, self.live[fut]
                except queue.Empty:
                    pass
            if self.abandon_after is None or (left is not None and left <= POLL):
                raise cf.TimeoutError()
            overdue = self._overdue()
            if overdue is not None:
                return overdue

    def _overdue(self) -> tuple[cf.Future[ChunkResult], Chunk] | None:
        """The first task running past ``abandon_after``, replaced by its TaskTimeout."""
        now = time.monotonic()
        entries = list(self.fifo)[:1] if self.ordered else list(self.live.items())
        for fut, chunk in entries:
            if fut is None or fut.done() or chunk.started is None:
                continue
            if now - chunk.started < self.abandon_after:  # type: ignore[operator]
                continue
            error = TaskTimeout(
                f"the task ran past its task_timeout of {self.abandon_after:g} s; backend "
                f"threads cannot be stopped, so it was abandoned (it runs on, its result "
                f"discarded) and the pool was given a replacement worker"
            )
            stand_in: cf.Future[ChunkResult] = cf.Future()
            stand_in.set_result(ChunkResult([Failure(error, None)] * len(chunk), 0.0, True))
            self.engine._grow(1)
            fut.add_done_callback(lambda _: self.engine._grow(-1))  # capacity back when done
            if self.ordered:
                self.fifo[0] = (stand_in, chunk)
            else:
                del self.live[fut]
                self.live[stand_in] = chunk
            return stand_in, chunk
        return None

    def take(self, fut: cf.Future[ChunkResult], chunk: Chunk) -> ChunkResult | None:
        """Account for a finished chunk, refill, and return its outcomes -- or None when
        the chunk lost its worker and was submitted again (``retries``)."""
        try:
            result = fut.result(timeout=0)
        except (cf.TimeoutError, cf.CancelledError):
            raise
        except BaseException as exc:
            error = self.engine._chunk_error(exc, chunk)
            if isinstance(error, WorkerLost) and self._retry(fut, chunk):
                return None
            self._forget(fut)
            if not self.return_exceptions or not isinstance(error, Exception):
                raise error from exc
            return ChunkResult([error] * len(chunk), 0.0, False)
        self._forget(fut)
        if self.recovering:
            self.recovering = self._lost_pending()
        self.sizer.observe(len(chunk), result[1])
        self.refill()
        if self.bar is not None:
            self.bar.update(len(chunk))
        return result

    def _forget(self, fut: cf.Future[ChunkResult]) -> None:
        self.retrying.discard(fut)
        if self.ordered:
            self.fifo.popleft()
        else:
            self.live.pop(fut, None)

    def _retry(self, fut: cf.Future[ChunkResult], chunk: Chunk) -> bool:
        """A chunk lost its worker: split it into one-item chunks that are re-run one at a
        time with nothing else in flight, so the task that kills its worker is found and
        fails alone while its neighbours' results arrive. False when no retries are left."""
        left = self.retries if chunk.retries_left is None else chunk.retries_left
        if left <= 0:
            return False
        self.recovering = True
        self.retrying.discard(fut)
        subs = [Chunk(self.fn, [item], self.crossing, self.task_timeout) for item in chunk.original]
        for sub in subs:
            sub.retries_left = left - 1
        if self.ordered:
            self.fifo.popleft()
            self.fifo.extendleft((None, sub) for sub in reversed(subs))
        else:
            self.live.pop(fut, None)
            self.requeue.extend(subs)
        return True

    def _lost_pending(self) -> bool:
        """Is a chunk still waiting to be re-run, or being re-run, after a worker died?"""
        if self.requeue:
            return True
        for f in [f for f, _ in self.fifo] + list(self.live):
            if f is None or (f in self.retrying and not f.done()):
                return True
            if f.done() and not f.cancelled() and isinstance(f.exception(), cf.BrokenExecutor):
                return True
        return False

    def cancel(self) -> None:
        _cancel_pending(self.fifo, self.live)
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _cancel_pending(
    fifo: deque[tuple[cf.Future[Any] | None, Chunk]], live: dict[cf.Future[Any], Chunk]
) -> None:
    for fut in [f for f, _ in list(fifo)] + list(live):
        if fut is not None:
            fut.cancel()


def _outcomes(result: ChunkResult | None, return_exceptions: bool = False) -> Iterator[Any]:
    if result is None:  # re-submitted after its worker died: nothing to deliver yet
        return
    outcomes, _, failed = result
    if not failed:
        yield from outcomes
        return
    for outcome in outcomes:
        if type(outcome) is Failure:
            if return_exceptions:
                yield outcome.exception()
                continue
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
                yield from _outcomes(run.take(*run.wait_next()), run.return_exceptions)
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
            with anyio.fail_after(left) if left is not None else contextlib.nullcontext():
                fut = await await_first(run.candidates())
            if run.ordered and run.fifo[0][0] is not fut:
                continue  # a chunk ran out beside a retry waiting to run alone: now it can
            chunk = run.fifo[0][1] if run.ordered else run.live[fut]
            for value in _outcomes(run.take(fut, chunk), run.return_exceptions):
                yield value
    finally:
        run.cancel()


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
