"""``map``, written once for every backend: one engine drives ``map``, ``amap``,
``starmap``, ``anyexec.map`` and the retry path.

The caller's items are grouped into :class:`~anyexec._worker.tasks.Chunk` objects, each one
submission to the backend's executor (sizes: ``anyexec._chunking``). At most a window of
chunks is in flight, so input is read lazily (``map(f, itertools.count())`` works). Results
come back in input order, or in completion order with ``ordered=False``
(``anyexec._inflight``).

:meth:`MapRun.step` does everything that can be done without blocking -- deliver a
finished chunk, refill the window, re-run a chunk that lost its worker, abandon a task past
its ``task_timeout``, check the deadline -- and otherwise says how long to wait. The
blocking iterator (:func:`iter_map`) and the async one (:func:`aiter_map`) differ only in
how they wait, so every rule holds on both.
"""

from __future__ import annotations

import concurrent.futures as cf
import itertools
import threading
import time
import weakref
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol, TypedDict, cast

from anyexec import _inflight
from anyexec._chunking import ChunkSizer, Window
from anyexec._record import frozen
from anyexec._worker.tasks import Chunk, ChunkResult, Failure, Initializer
from anyexec.errors import BackendError, MapTimeout, TaskTimeout, WorkerLost

if TYPE_CHECKING:
    pass

__all__ = ["MapOptions", "MapPlan", "MapRun", "Port", "Wait", "aiter_map", "iter_map"]

#: How often (seconds) the caller looks for tasks to abandon past their task_timeout.
POLL = 0.05


class MapOptions(TypedDict, total=False):
    """The keyword arguments of every ``map``: ``Executor.map``/``amap``/``starmap``/
    ``astarmap`` and ``anyexec.map``/``amap``/``starmap``.

    - ``timeout``: seconds from the call until every result must be in, else
      :class:`~anyexec.errors.MapTimeout` (a ``TimeoutError``), as ``concurrent.futures``.
    - ``chunksize``: items per submission; ``"auto"`` (default) adapts to measured task time.
    - ``ordered``: input order (default) or completion order.
    - ``buffersize``: chunks in flight; ``"auto"`` (default) is a few per worker, so input
      is read lazily; ``None`` submits everything at once, as the standard library does.
    - ``progress``: True (or a description, or tqdm keyword arguments) shows a bar.
    - ``share_arrays``: numpy arrays of 1 MiB or more reach workers that are processes on
      this machine (process, loky, dask's embedded cluster) through shared memory (one
      copy, no pickling); False pickles them.
    - ``task_timeout``: seconds one task may run; past it that task fails with
      ``TaskTimeout`` and the others go on (``docs/reliability.md``).
    - ``retries``: re-run a chunk whose worker died up to this many times, one task at a
      time with nothing else in flight, so a task that kills its worker takes no other
      task with it (for idempotent work).
    - ``return_exceptions``: yield a failed task's exception as its result instead of
      raising it, so every task's outcome arrives.
    """

    timeout: float | None
    chunksize: int | str
    ordered: bool
    buffersize: int | str | None
    progress: bool | str | dict[str, Any]
    share_arrays: bool
    task_timeout: float | None
    retries: int | None
    return_exceptions: bool


@frozen
class MapPlan:
    """One map's checked settings (built by the executor from :class:`MapOptions`)."""

    window: Window
    sizer: ChunkSizer
    ordered: bool
    deadline: float | None
    progress: Any
    share_arrays: bool
    task_timeout: float | None
    abandon_after: float | None
    retries: int
    return_exceptions: bool
    mode: int
    init: Initializer | None


class Port(Protocol):
    """What the map engine needs from an executor (``anyexec.Executor`` hands one over).

    ``crossing``: items and results must pickle; ``in_caller``: chunks run inside
    ``submit`` (serial), so a deadline can only be checked between them.
    """

    backend: str
    workers: int
    crossing: bool
    in_caller: bool

    def submit_chunks(
        self, chunks: Sequence[Chunk], share_arrays: bool
    ) -> list[cf.Future[ChunkResult]]: ...

    def chunk_error(self, exc: BaseException, chunk: Chunk) -> BaseException: ...

    def grow(self, workers: int) -> None: ...


class Wait(NamedTuple):
    """Nothing to deliver yet: wait for a chunk to finish, at most ``seconds`` (None:
    without limit)."""

    seconds: float | None


class MapRun:
    """The state of one map, advanced by :meth:`step`."""

    def __init__(
        self, port: Port, fn: Callable[..., Any], items: Iterator[Any], plan: MapPlan
    ) -> None:
        self.port = port
        self.fn = fn
        self.items = items
        self.plan = plan
        self.sizer = plan.sizer
        self.flight = _inflight.make(plan.ordered)
        self.exhausted = False
        #: An exception the input raised: delivered after everything read before it.
        self.input_error: BaseException | None = None
        #: While a lost chunk's tasks are re-run, nothing new is submitted.
        self.recovering = False
        #: Set on every chunk's completion; waited on by the blocking iterator.
        self.bell = threading.Event()
        #: Called on every chunk's completion; set by the async iterator to wake its loop.
        self.waker: Callable[[], None] | None = None
        #: Whether the outcomes :meth:`step` just returned hold failures.
        self.mixed = False
        #: An outcome was raised: the map is over.
        self.stopped = False
        # Where chunks run inside submit() (serial) nothing can be interrupted; the
        # deadline is still honoured: a result asked for after it raises.
        self.late_check = port.in_caller and plan.deadline is not None
        self.bar = _progress_bar(plan.progress, plan.sizer.total)

    # -- the step ---------------------------------------------------------------------

    def step(self) -> list[Any] | Wait | None:
        """Advance without blocking: the next chunk's outcomes, reversed (pop them to
        deliver in order; :attr:`mixed` says whether some are :class:`Failure`); a
        :class:`Wait`; or None when every outcome was delivered."""
        self.bell.clear()
        if self.late_check:
            self._left()
        flight = self.flight
        while True:
            rerun = flight.next_rerun()
            if rerun is not None:
                (rerun[0],) = self._submit([rerun[1]])
                flight.resubmitted(rerun)
            entry = flight.take()
            if entry is not None:
                outcomes = self._outcomes(entry[0], entry[1])
                if outcomes is None:
                    continue  # re-submitted after its worker died: look again
                return outcomes
            if not flight:
                if self.input_error is not None:
                    error, self.input_error = self.input_error, None
                    raise error
                return None
            left = self._left()
            if self.plan.abandon_after is None:
                return Wait(left)
            if not self._abandon_overdue():
                return Wait(POLL if left is None else min(left, POLL))

    def _left(self) -> float | None:
        """Seconds before the deadline (None: no deadline); raises once it passed."""
        deadline = self.plan.deadline
        if deadline is None:
            return None
        left = deadline - time.monotonic()
        if left <= 0:
            raise MapTimeout(
                "map(timeout=...) passed before every result was in; the tasks not yet "
                "started were cancelled"
            )
        return left

    def _outcomes(self, fut: cf.Future[ChunkResult], chunk: Chunk) -> list[Any] | None:
        """A finished chunk's outcomes, reversed; None if it was queued to re-run."""
        try:
            result = fut.result(timeout=0)
        except BaseException as exc:
            return self._failed(exc, chunk)
        if type(result) is not ChunkResult or len(result.outcomes) != len(chunk):
            result = self._checked(result, chunk)
        if self.recovering:
            self.recovering = self._lost_pending()
        self.sizer.observe(len(chunk), result.seconds)
        self.refill()
        if self.bar is not None:
            self.bar.update(len(chunk))
        outcomes = result.outcomes
        outcomes.reverse()
        self.mixed = result.failed
        return outcomes

    def _failed(self, exc: BaseException, chunk: Chunk) -> list[Any] | None:
        """The whole chunk failed (its worker died, it was cancelled by the backend, it
        could not be sent): one shaped error for each of its items, re-run if allowed."""
        if isinstance(exc, cf.CancelledError):
            error: BaseException = cf.CancelledError(
                f"backend {self.port.backend!r} cancelled a chunk of this map"
            )
        else:
            error = self.port.chunk_error(exc, chunk)
        if isinstance(error, WorkerLost) and self._rerun(chunk):
            return None
        if not isinstance(error, Exception):
            raise error
        if self.recovering:
            self.recovering = self._lost_pending()
        self.refill()
        self.mixed = True
        return [Failure(error, None)] * len(chunk)

    def _checked(self, result: Any, chunk: Chunk) -> ChunkResult:
        """A chunk result from a backend that changed it: accepted if it still has the
        shape, else an error naming the backend and what it returned."""
        if (
            isinstance(result, tuple)
            and len(result) == 3
            and isinstance(result[0], list)
            and len(result[0]) == len(chunk)
        ):
            return ChunkResult(*result)
        got = f"{type(result).__name__}"
        if isinstance(result, tuple) and result and isinstance(result[0], list):
            got += f" with {len(result[0])} outcomes"
        raise BackendError(
            f"backend {self.port.backend!r} returned {got} for a chunk of {len(chunk)} "
            f"tasks, where a ChunkResult with one outcome per task was expected; the backend "
            f"must return what the submitted chunk returns (docs/writing-a-backend.md)"
        )

    # -- submitting -------------------------------------------------------------------

    def refill(self) -> None:
        """Submit chunks while the window has room (and nothing is being re-run)."""
        if self.recovering or self.exhausted:
            return
        plan, flight, sizer = self.plan, self.flight, self.sizer
        running = flight.running()
        size = plan.window.size
        if size is not None and not sizer.settled:
            # Sizes still growing from one item: keep few chunks in flight, so the window
            # is not filled with chunks far smaller than the next measurement allows.
            size = min(size, 2 * self.port.workers)
        if size is not None:
            room = size - running
            if room < plan.window.refill_at and running:
                return
        else:
            room = -1  # no bound
        batch: list[Chunk] = []
        fn, crossing, timeout, mode, init = (
            self.fn,
            self.port.crossing,
            plan.task_timeout,
            plan.mode,
            plan.init,
        )
        items, islice = self.items, itertools.islice
        while room != 0:
            part: list[Any] = []
            try:
                part.extend(islice(items, sizer.next_size()))
            except (KeyboardInterrupt, SystemExit):
                raise
            except BaseException as exc:  # the input failed: deliver what came before
                self.input_error = exc
                self.exhausted = True
            if part:
                batch.append(Chunk(fn, part, crossing, timeout, mode, init))
                room -= 1
            else:
                self.exhausted = True
            if self.exhausted:
                break
        if batch:
            for fut, chunk in zip(self._submit(batch), batch):
                flight.add(fut, chunk)

    def _submit(self, chunks: list[Chunk]) -> list[cf.Future[ChunkResult]]:
        futures = self.port.submit_chunks(chunks, self.plan.share_arrays)
        arrived = self._arrived
        for fut in futures:
            fut.add_done_callback(arrived)
        return futures

    def _arrived(self, fut: cf.Future[Any]) -> None:
        self.flight.arrived(fut)
        self.bell.set()
        waker = self.waker
        if waker is not None:
            waker()

    # -- faults -----------------------------------------------------------------------

    def _rerun(self, chunk: Chunk) -> bool:
        """A chunk lost its worker: split it into one-item chunks re-run one at a time
        with nothing else in flight, so the task that kills its worker is found and fails
        alone while its neighbours' results arrive. False when no retries are left."""
        left = self.plan.retries if chunk.retries_left is None else chunk.retries_left
        if left <= 0:
            return False
        self.recovering = True
        subs = [chunk.like([item]) for item in chunk.original]
        for sub in subs:
            sub.retries_left = left - 1
        self.flight.rerun_alone(subs)
        return True

    def _lost_pending(self) -> bool:
        """Is a chunk still waiting to be re-run, or running, after a worker died?"""
        for fut in self.flight.futures():
            if not fut.done():
                return True
            if not fut.cancelled() and isinstance(fut.exception(), cf.BrokenExecutor):
                return True
        return len(self.flight) > len(self.flight.futures())

    def _abandon_overdue(self) -> bool:
        """Give up on the first task running past ``abandon_after`` (threads cannot be
        stopped): its outcome becomes TaskTimeout, the pool gets a replacement worker
        until the task ends. True if one was abandoned."""
        limit = self.plan.abandon_after
        assert limit is not None
        now = time.monotonic()
        for entry in self.flight.watched():
            fut, chunk = entry
            if fut.done() or chunk.started is None or now - chunk.started < limit:
                continue
            error = TaskTimeout(
                f"the task ran past its task_timeout of {limit:g} s; backend threads cannot "
                f"be stopped, so it was abandoned (it runs on, its result discarded) and the "
                f"pool was given a replacement worker"
            )
            stand_in: cf.Future[ChunkResult] = cf.Future()
            stand_in.set_result(ChunkResult([Failure(error, None)] * len(chunk), 0.0, True))
            self.port.grow(1)
            fut.add_done_callback(self._give_back)  # capacity back once it ends
            self.flight.replace(entry, stand_in)
            return True
        return False

    def _give_back(self, _: object) -> None:
        self.port.grow(-1)

    # -- the end ----------------------------------------------------------------------

    def close(self) -> None:
        """Cancel every chunk not yet started (the iterator was closed or dropped)."""
        _cancel(self.flight)
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def deliver_mixed(self, outcomes: list[Any]) -> Iterator[Any]:
        """Pop outcomes that include failures: each raised at its position, or yielded
        as the exception with ``return_exceptions``."""
        pop, keep = outcomes.pop, self.plan.return_exceptions
        while outcomes:
            value = pop()
            if type(value) is Failure:
                if keep:
                    yield value.exception()
                    continue
                self.stopped = True  # a raised outcome ends the map, as in the stdlib
                self.close()
                value.reraise()
            yield value


def _cancel(flight: _inflight.InFlight) -> None:
    for fut in flight.futures():
        fut.cancel()


class Results(itertools.chain):  # type: ignore[type-arg]
    """The iterator ``map`` returns: each chunk's outcomes in turn, taken off the chunk's
    list by C code (no Python frame per item) and dropped as they are delivered, so the
    iterator keeps no delivered result alive. ``close()`` cancels what has not started."""

    _chunks: Iterator[Any]

    def close(self) -> None:
        """Cancel what has not started; the iterator then yields nothing more (the chunk
        it was delivering is dropped, already computed)."""
        self._chunks.close()  # type: ignore[attr-defined]
        while True:  # drop what is left of the chunk being delivered
            try:
                for _ in self:
                    pass
                return
            except Exception:  # a task's error, raised by the dropped chunk: ignored
                continue


def _popping(outcomes: list[Any]) -> Iterator[Any]:
    """The items of a reversed list, in order, each removed as it is taken: ``list.pop``
    called from C (``starmap``), with no comparison of the items (they may be arrays)."""
    return itertools.starmap(outcomes.pop, itertools.repeat((), len(outcomes)))


def iter_map(
    port: Port, fn: Callable[..., Any], items: Iterator[Any], plan: MapPlan
) -> Iterator[Any]:
    """Submit the first chunks now and return a blocking iterator over the outcomes.

    Chunks are submitted before the first result is asked for (as the standard library
    does), so work starts at once. Closing the iterator cancels every chunk not yet
    started; so does dropping it -- except with ``buffersize=None``, where, as in the
    standard library, an iterator that was never started cancels nothing.
    """
    run = MapRun(port, fn, items, plan)

    def chunks() -> Iterator[Iterator[Any]]:
        step, bell = run.step, run.bell
        try:
            while not run.stopped:
                got = step()
                if type(got) is list:
                    yield run.deliver_mixed(got) if run.mixed else _popping(got)
                elif got is None:
                    return
                else:
                    bell.wait(got.seconds)  # type: ignore[union-attr]
        finally:
            run.close()

    run.refill()
    each = chunks()
    results = cast(Results, Results.from_iterable(each))
    results._chunks = each
    if plan.window.size is not None:
        # A generator dropped before it starts never runs its finally: cancel then too.
        weakref.finalize(results, _cancel, run.flight)
    return results


async def aiter_map(
    port: Port, fn: Callable[..., Any], items: Iterator[Any], plan: MapPlan
) -> AsyncIterator[Any]:
    """The async form of :func:`iter_map`: waits for chunks without blocking the event
    loop. Cancelling the task that iterates (or closing the iterator) cancels pending
    chunks."""
    import anyio

    from anyexec._aio import waker

    run = MapRun(port, fn, items, plan)
    try:
        run.refill()
        while True:
            event = anyio.Event()
            run.waker = waker(event)
            got = run.step()
            if type(got) is list:
                for value in run.deliver_mixed(got) if run.mixed else _popping(got):
                    yield value
            elif got is None:
                return
            else:
                with anyio.move_on_after(got.seconds):  # type: ignore[union-attr]
                    await event.wait()
    finally:
        run.close()


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
