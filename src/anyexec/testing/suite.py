"""The conformance suite: what every anyexec backend must do, checked against ``serial``.

This module is the contract, and it is intended for third-party backend authors as much as
for anyexec itself. Each section is a mixin of tests that use fixtures only;
:class:`ConformanceSuite` aggregates all of them so that no section can be left out. A
backend that declares it cannot do something (see :class:`anyexec.Backend`'s class
attributes) is checked for the documented behaviour instead of being skipped.

Fixtures a subclass may override:

- ``anyexec_backend``: a registered name or a :class:`anyexec.Backend` instance;
- ``anyexec_options``: the backend's options (default: ``--anyexec-option``);
- ``anyexec_workers``: the worker count (default: ``--anyexec-workers``, 2).
"""

from __future__ import annotations

import asyncio
import concurrent.futures as cf
import functools
import itertools
import os
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

import anyexec
from anyexec import Executor
from anyexec.contract import Backend
from anyexec.testing import tasks

__all__ = [
    "CleanupChecks",
    "ConcurrencyChecks",
    "ConformanceSuite",
    "ErrorChecks",
    "FaultChecks",
    "Fixtures",
    "FutureChecks",
    "LifecycleChecks",
    "MapChecks",
    "NestingChecks",
    "OutcomeChecks",
    "PicklingChecks",
    "RouteChecks",
    "ShutdownChecks",
    "SpeedupChecks",
    "StdlibChecks",
    "SubmitChecks",
    "WorkerLossChecks",
    "within",
]

#: Seconds any single wait in the suite may take before it counts as a hang.
WAIT = 120
#: Processes that start once per interpreter and are shared, not leaked workers.
HELPERS = ("forkserver", "resource_tracker", "semaphore_tracker")


def _diff(expected: list[Any], got: list[Any]) -> str:
    if len(expected) != len(got):
        return f"{len(got)} results, expected {len(expected)}"
    for i, (a, b) in enumerate(zip(expected, got)):
        if a != b:
            return f"first difference at index {i}: got {b!r}, serial gives {a!r}"
    return "no difference"


def _backend_of(ex: Executor) -> Backend:
    return ex.settings.backend


T = TypeVar("T")

#: What hung past its deadline in this run. A backend that hangs may also block the
#: interpreter's exit (a worker thread that never ends); the plugin then ends the pytest
#: process itself once the report is written (see ``anyexec.testing.pytest_unconfigure``).
HUNG: list[str] = []

#: The four ways work goes in. Every rule that applies to more than one is checked on each.
VIA_ALL = ("map", "amap", "submit", "asubmit")
VIA_MAP = ("map", "amap")
VIA_SUBMIT = ("submit", "asubmit")


def within(seconds: float, what: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``fn(*args, **kwargs)``, or a test failure saying that ``what`` hangs.

    The call runs in a daemon helper thread that is joined with a timeout, so a hang fails
    the check after ``seconds`` without pytest-timeout (and without the suite hanging too).
    An exception from ``fn`` is re-raised here.
    """
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["value"] = fn(*args, **kwargs)
        except BaseException as exc:
            box["error"] = exc

    helper = threading.Thread(target=run, daemon=True, name="anyexec-conformance-deadline")
    helper.start()
    helper.join(seconds)
    if helper.is_alive():
        HUNG.append(what)
        pytest.fail(
            f"{what} did not finish within {seconds:g} s (the conformance suite's own "
            f"deadline, --anyexec-deadline): it hangs",
            pytrace=False,
        )
    if "error" in box:
        raise box["error"]
    return box["value"]  # type: ignore[no-any-return]


async def _collect(ait: Any) -> list[Any]:
    return [x async for x in ait]


async def _gather_asubmit(ex: Executor, fn: Callable[..., Any], items: list[Any]) -> list[Any]:
    return list(await asyncio.gather(*(ex.asubmit(fn, *args) for args in items)))


def run_via(
    ex: Executor, via: str, fn: Callable[..., Any], items: list[Any], **map_kw: Any
) -> list[Any]:
    """``fn`` over one-argument ``items`` through ``map``, ``amap``, ``submit`` or
    ``asubmit``; the results in input order (an exception propagates as it came)."""
    if via == "map":
        return list(ex.map(fn, items, **map_kw))
    if via == "amap":
        return asyncio.run(_collect(ex.amap(fn, items, **map_kw)))
    if via == "submit":
        futures = [ex.submit(fn, x) for x in items]
        return [f.result() for f in futures]
    if via == "asubmit":
        return asyncio.run(_gather_asubmit(ex, fn, [(x,) for x in items]))
    raise ValueError(f"unknown route {via!r}")


def _name(exc: BaseException) -> str:
    return f"{type(exc).__module__}.{type(exc).__qualname__}: {exc}"


class Fixtures:
    """The fixtures every section uses."""

    @pytest.fixture(scope="class")
    @classmethod
    def anyexec_backend(cls, anyexec_backend_name: str) -> str | Backend:
        """The backend under test: a registered name or a Backend instance."""
        return anyexec_backend_name

    @pytest.fixture(scope="class")
    @classmethod
    def anyexec_options(cls, request: pytest.FixtureRequest) -> dict[str, Any]:
        from anyexec.testing import parse_options

        return parse_options(request.config.getoption("anyexec_option", default=[]) or [])

    @pytest.fixture(scope="class")
    @classmethod
    def anyexec_workers(cls, request: pytest.FixtureRequest) -> int:
        return int(request.config.getoption("anyexec_workers", default=2) or 2)

    @pytest.fixture(scope="class")
    @classmethod
    def anyexec_deadline(cls, request: pytest.FixtureRequest) -> float:
        """Seconds a check waits for something that may hang (``--anyexec-deadline``)."""
        return float(request.config.getoption("anyexec_deadline", default=60.0) or 60.0)

    @pytest.fixture
    def make_executor(
        self,
        anyexec_backend: str | Backend,
        anyexec_options: dict[str, Any],
        anyexec_workers: int,
        anyexec_deadline: float,
    ) -> Iterator[Any]:
        """A factory of executors on the backend under test, all shut down afterwards."""
        made: list[Executor] = []

        def make(workers: int | None = None) -> Executor:
            ex = Executor(anyexec_backend, workers or anyexec_workers, **anyexec_options)
            made.append(ex)
            return ex

        yield make
        for ex in made:
            within(
                anyexec_deadline,
                f"{ex.backend}: shutdown(wait=True, cancel_futures=True) after the check",
                ex.shutdown,
                wait=True,
                cancel_futures=True,
            )

    @pytest.fixture(scope="class")
    @classmethod
    def executor(
        cls,
        anyexec_backend: str | Backend,
        anyexec_options: dict[str, Any],
        anyexec_workers: int,
        anyexec_deadline: float,
    ) -> Iterator[Executor]:
        """One executor shared by a backend's tests that do not close it."""
        ex = Executor(anyexec_backend, anyexec_workers, **anyexec_options)
        yield ex
        within(
            anyexec_deadline,
            f"{ex.backend}: shutdown(wait=True, cancel_futures=True) of the shared executor",
            ex.shutdown,
            wait=True,
            cancel_futures=True,
        )

    @pytest.fixture
    def evidence(self, tmp_path: Path) -> str:
        """A fresh directory where tasks leave files (see ``anyexec.testing.tasks``)."""
        path = tmp_path / "evidence"
        path.mkdir()
        return str(path)

    @pytest.fixture(scope="class")
    @classmethod
    def serial(cls) -> Iterator[Executor]:
        with Executor("serial") as ex:
            yield ex


class MapChecks(Fixtures):
    """``map`` gives exactly what ``serial`` gives."""

    def check(self, executor: Executor, serial: Executor, fn: Any, *its: Any, **kw: Any) -> None:
        got = list(executor.map(fn, *its, **kw))
        want = list(serial.map(fn, *its, **kw))
        assert got == want, (
            f"{executor.backend}: map results differ from serial: {_diff(want, got)}"
        )

    def test_map_ordered(self, executor: Executor, serial: Executor) -> None:
        self.check(executor, serial, tasks.square, range(200))

    def test_map_unordered(self, executor: Executor, serial: Executor) -> None:
        got = sorted(executor.map(tasks.square, range(200), ordered=False))
        want = list(serial.map(tasks.square, range(200)))
        assert got == want, (
            f"{executor.backend}: unordered map lost or changed results: {_diff(want, got)}"
        )

    def test_map_several_iterables(self, executor: Executor, serial: Executor) -> None:
        self.check(executor, serial, tasks.add, range(50), range(100, 130))

    def test_map_generator(self, executor: Executor, serial: Executor) -> None:
        got = list(executor.map(tasks.square, (x for x in range(100))))
        assert got == [x * x for x in range(100)], (
            f"{executor.backend}: {_diff([x * x for x in range(100)], got)}"
        )

    def test_map_infinite_generator_read_partially(self, executor: Executor) -> None:
        it = executor.map(tasks.square, itertools.count())
        got = list(itertools.islice(it, 25))
        it.close()  # type: ignore[attr-defined]
        assert got == [x * x for x in range(25)]

    def test_map_empty(self, executor: Executor) -> None:
        assert list(executor.map(tasks.square, [])) == []

    def test_map_10000_items(self, executor: Executor, serial: Executor) -> None:
        self.check(executor, serial, tasks.square, range(10_000))

    def test_map_none_results(self, executor: Executor, serial: Executor) -> None:
        self.check(executor, serial, tasks.return_none, range(100))

    @pytest.mark.parametrize("chunksize", [1, 3, 64])
    def test_map_fixed_chunksize(
        self, executor: Executor, serial: Executor, chunksize: int
    ) -> None:
        self.check(executor, serial, tasks.square, range(100), chunksize=chunksize)

    def test_map_large_numpy_arrays(self, executor: Executor) -> None:
        import numpy as np  # the plugin refuses to start without it (a usage error)

        arrays = [np.full(7_000_000, float(i)) for i in range(2)]  # 56 MB each
        doubled = list(executor.map(tasks.array_double, arrays))
        for a, d in zip(arrays, doubled):
            np.testing.assert_array_equal(d, a * 2)
        sums = list(executor.map(tasks.array_sum, arrays))
        assert sums == [float(a.sum()) for a in arrays]


class SubmitChecks(Fixtures):
    """``submit`` returns standard futures that work with ``as_completed`` and ``wait``."""

    def test_submit_positional_and_keyword(self, executor: Executor) -> None:
        assert executor.submit(tasks.add, 1, 2, z=3).result(timeout=WAIT) == 6
        assert executor.submit(tasks.add, 4, y=1).result(timeout=WAIT) == 5

    def test_futures_are_standard(self, executor: Executor) -> None:
        fut = executor.submit(tasks.square, 3)
        assert isinstance(fut, cf.Future)
        assert fut.result(timeout=WAIT) == 9 and fut.done() and not fut.cancelled()

    def test_as_completed(self, executor: Executor) -> None:
        futs = [executor.submit(tasks.square, i) for i in range(20)]
        got = sorted(f.result() for f in cf.as_completed(futs, timeout=WAIT))
        assert got == [i * i for i in range(20)]

    def test_cancelled_futures_count_as_done(self, make_executor: Any) -> None:
        ex = make_executor(workers=1)
        busy = ex.submit(tasks.sleep_then, 0.5)
        queued = [ex.submit(tasks.square, i) for i in range(4)]
        cancelled = [f for f in queued if f.cancel()]
        _, not_done = cf.wait(queued, timeout=WAIT)
        assert not not_done, f"{ex.backend}: wait() does not see cancelled futures as done"
        assert all(f.cancelled() for f in cancelled)
        assert busy.result(timeout=WAIT) == 0.5

    def test_wait(self, executor: Executor) -> None:
        futs = [executor.submit(tasks.square, i) for i in range(10)]
        done, not_done = cf.wait(futs, timeout=WAIT)
        assert not not_done and len(done) == 10


class ErrorChecks(Fixtures):
    """A task's exception reaches the caller with its type, message and traceback."""

    def test_type_and_message(self, executor: Executor) -> None:
        with pytest.raises(tasks.TaskError, match="task failed on 3"):
            list(executor.map(tasks.fail_on, range(10)))
        with pytest.raises(tasks.TaskError, match="task failed on 3"):
            executor.submit(tasks.fail_on, 3).result(timeout=WAIT)

    def test_results_before_the_failure_arrive(self, executor: Executor) -> None:
        it = executor.map(tasks.fail_on, range(10), chunksize=2)
        assert [next(it) for _ in range(3)] == [0, 1, 2]
        with pytest.raises(tasks.TaskError):
            next(it)

    def test_swallowed_exceptions_are_caught(self, executor: Executor) -> None:
        it = executor.map(tasks.fail_on, [1, 2, 3, 4])
        raised = False
        got = []
        try:
            for x in it:
                got.append(x)
        except tasks.TaskError:
            raised = True
        assert raised, f"{executor.backend}: a failing task raised nothing; results were {got}"

    def test_function_name_in_traceback(self, executor: Executor) -> None:
        for attempt in (
            lambda: list(executor.map(tasks.fail_on, [3])),
            lambda: executor.submit(tasks.fail_on, 3).result(timeout=WAIT),
        ):
            try:
                attempt()
            except tasks.TaskError as exc:
                text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
                assert "fail_on" in text, f"{executor.backend}: traceback lacks the task:\n{text}"
            else:
                pytest.fail(f"{executor.backend}: no exception")

    def test_unpicklable_exception_is_a_clear_error(self, executor: Executor) -> None:
        errors = (tasks.UnpicklableTaskError, anyexec.UnpicklableError)
        with pytest.raises(errors, match="cannot travel 1"):
            list(executor.map(tasks.raise_unpicklable, [1]))
        with pytest.raises(errors, match="cannot travel 2"):
            executor.submit(tasks.raise_unpicklable, 2).result(timeout=WAIT)
        assert executor.submit(tasks.square, 2).result(timeout=WAIT) == 4  # still serving


class LifecycleChecks(Fixtures):
    """Timeouts, shutdown, cancellation and reopening behave as documented."""

    @pytest.mark.parametrize("via", VIA_MAP)
    def test_map_timeout(self, executor: Executor, via: str, anyexec_deadline: float) -> None:
        try:
            got = within(
                anyexec_deadline,
                f"{executor.backend}: {via}(timeout=0.1)",
                run_via,
                executor,
                via,
                tasks.sleep_then,
                [1.0] * 4,
                timeout=0.1,
                chunksize=1,
            )
        except TimeoutError:
            return
        except BaseException as exc:
            pytest.fail(
                f"{executor.backend}: {via}(timeout=0.1) raised {_name(exc)}, not the builtin "
                f"TimeoutError",
                pytrace=False,
            )
        pytest.fail(
            f"{executor.backend}: {via} ignores timeout=: {via}(timeout=0.1) over four 1 s "
            f"tasks returned {got} instead of raising TimeoutError",
            pytrace=False,
        )

    def test_submit_after_shutdown(self, make_executor: Any) -> None:
        ex = make_executor()
        ex.submit(tasks.square, 1).result(timeout=WAIT)
        ex.shutdown(wait=True)
        with pytest.raises(RuntimeError, match="shutdown"):
            ex.submit(tasks.square, 1)
        ex.shutdown()  # idempotent

    def test_cancel_futures(self, make_executor: Any, anyexec_deadline: float) -> None:
        ex = make_executor(workers=1)
        futs = [ex.submit(tasks.sleep_then, 0.3) for _ in range(8)]
        within(
            anyexec_deadline,
            f"{ex.backend}: shutdown(wait=True, cancel_futures=True)",
            ex.shutdown,
            wait=True,
            cancel_futures=True,
        )
        if _backend_of(ex).crosses == "nothing":  # ran at submit: nothing was pending
            assert all(f.done() and not f.cancelled() for f in futs)
            return
        cancelled = sum(f.cancelled() for f in futs)
        assert cancelled >= 1, (
            f"{ex.backend}: ignores cancel_futures: shutdown(cancel_futures=True) cancelled "
            f"none of 7 tasks queued behind one busy worker"
        )
        unfinished = [f for f in futs if not f.done()]
        assert not unfinished, (
            f"{ex.backend}: {len(unfinished)} futures neither ran nor were cancelled by "
            f"shutdown(wait=True, cancel_futures=True)"
        )

    def test_reopen_with_context_manager(self, make_executor: Any) -> None:
        ex = make_executor()
        with ex:
            assert ex.submit(tasks.square, 2).result(timeout=WAIT) == 4
        if not _backend_of(ex).reopenable:
            with pytest.raises(RuntimeError, match="cannot be reopened"):
                ex.__enter__()
            return
        with ex:
            assert ex.submit(tasks.square, 3).result(timeout=WAIT) == 9

    def test_closing_map_iterator_cancels_pending(self, make_executor: Any) -> None:
        ex = make_executor(workers=1)
        it = ex.map(tasks.sleep_then, [0.2] * 40, chunksize=1, buffersize=20)
        next(it)
        started = time.monotonic()
        it.close()
        ex.shutdown(wait=True)
        assert time.monotonic() - started < 0.2 * 19, (
            f"{ex.backend}: closing the iterator left the pending chunks running"
        )


class FaultChecks(Fixtures):
    """Per-task timeouts do what the backend declares (``timeout_mode``), or are refused
    with a ConfigError; never silently ignored."""

    @pytest.mark.parametrize("via", VIA_MAP)
    def test_coroutine_task_timeout(self, executor: Executor, via: str) -> None:
        got = run_via(
            executor,
            via,
            tasks.async_sleep_on,
            list(range(4)),
            task_timeout=0.5,
            return_exceptions=True,
        )
        assert isinstance(got[1], anyexec.TaskTimeout), (
            f"{executor.backend}: {via} ignores task_timeout on a coroutine: {got}"
        )
        assert [got[0], got[2], got[3]] == [0, 2, 3]

    @pytest.mark.parametrize("via", VIA_MAP)
    def test_plain_function_task_timeout(self, executor: Executor, via: str) -> None:
        backend = _backend_of(executor)
        stoppable = backend.timeout_mode != "none" or (
            backend.crosses == "nothing" and threading.current_thread() is threading.main_thread()
        )
        if not stoppable:
            with pytest.raises(anyexec.ConfigError, match="task_timeout"):
                run_via(executor, via, tasks.slow_on, list(range(4)), task_timeout=0.5)
            return
        # 5 s, ten times the limit: long enough to prove the task was stopped or
        # abandoned, short enough that an abandoned thread does not hold up shutdown long.
        slow = functools.partial(tasks.slow_on, seconds=5)
        got = run_via(executor, via, slow, list(range(4)), task_timeout=0.5, return_exceptions=True)
        assert isinstance(got[0], anyexec.TaskTimeout), (
            f"{executor.backend}: {via} ignores task_timeout: a 5 s task under "
            f"task_timeout=0.5 gave {got[0]!r}"
        )
        assert got[1:] == [1, 2, 3]

    def test_return_exceptions(self, executor: Executor) -> None:
        got = list(executor.map(tasks.fail_on, range(6), return_exceptions=True))
        assert isinstance(got[3], tasks.TaskError) and got[:3] + got[4:] == [0, 1, 2, 4, 5]


class NestingChecks(Fixtures):
    """``anyexec`` calls inside a task run serially: no deadlock, no oversubscription."""

    def test_nested_current_is_serial(self, executor: Executor) -> None:
        assert set(executor.map(tasks.nested_backend, range(4))) == {"serial"}

    def test_nested_map_does_not_deadlock(self, make_executor: Any) -> None:
        ex = make_executor(workers=1)
        fut = ex.submit(tasks.nested_map, 6)
        assert fut.result(timeout=WAIT) == [0, 1, 4, 9, 16, 25]
        assert list(ex.map(tasks.nested_map, [3, 4])) == [[0, 1, 4], [0, 1, 4, 9]]


def _skip_unless_pending_possible(ex: Executor) -> None:
    if _backend_of(ex).crosses == "nothing":
        pytest.skip(
            f"{ex.backend} runs every call inside submit (crosses='nothing'): nothing is "
            f"ever pending or running on its own"
        )


def _skip_unless_processes(ex: Executor, what: str) -> None:
    crosses = _backend_of(ex).crosses
    if crosses not in ("processes", "cluster"):
        pytest.skip(f"{ex.backend} has crosses={crosses!r}: {what}")


def _busy(ex: Executor, evidence: str, seconds: float) -> cf.Future[Any]:
    """A task that occupies the only worker until the caller writes ``go``."""
    busy = ex.submit(tasks.wait_for_go, "busy", evidence, seconds)
    started = os.path.join(evidence, "started-busy")
    if not tasks.await_file(started, seconds):
        pytest.fail(f"{ex.backend}: a submitted task did not start within {seconds:g} s")
    return busy


class RouteChecks(Fixtures):
    """The same rules through every way in: ``map``, ``amap``, ``submit`` and ``asubmit``.

    Each result arrives once, in order, ``None`` included; each task runs exactly once
    (counted by the files it leaves); a task's exception arrives with its own type, in
    bounded time.
    """

    @pytest.fixture(params=VIA_ALL)
    def via(self, request: pytest.FixtureRequest) -> str:
        return str(request.param)

    def test_results_in_order(self, executor: Executor, via: str, anyexec_deadline: float) -> None:
        items = list(range(40))
        got = within(
            anyexec_deadline,
            f"{executor.backend}: {via} of 40 tasks",
            run_via,
            executor,
            via,
            tasks.square,
            items,
        )
        want = [x * x for x in items]
        assert got == want, (
            f"{executor.backend}: {via} results differ from serial: {_diff(want, got)}"
        )

    def test_none_results(self, executor: Executor, via: str, anyexec_deadline: float) -> None:
        try:
            got = within(
                anyexec_deadline,
                f"{executor.backend}: {via} of a function returning None",
                run_via,
                executor,
                via,
                tasks.return_none,
                list(range(10)),
            )
        except pytest.fail.Exception:
            raise
        except Exception as exc:
            pytest.fail(
                f"{executor.backend}: {via} of a function returning None failed: {_name(exc)}",
                pytrace=False,
            )
        assert got == [None] * 10, (
            f"{executor.backend}: {via} of a function returning None gave {got!r}"
        )

    def test_each_task_runs_once(
        self, executor: Executor, via: str, evidence: str, anyexec_deadline: float
    ) -> None:
        items = list(range(12))
        got = within(
            anyexec_deadline,
            f"{executor.backend}: {via} of 12 tasks",
            run_via,
            executor,
            via,
            functools.partial(tasks.record, directory=evidence),
            items,
        )
        runs = {x: tasks.runs_of(evidence, x) for x in items}
        twice = {x: n for x, n in runs.items() if n > 1}
        never = [x for x, n in runs.items() if n == 0]
        assert not twice, (
            f"{executor.backend}: {via} ran tasks more than once (task: runs): {twice}"
        )
        assert not never, f"{executor.backend}: {via} never ran tasks {never}"
        assert got == items, f"{executor.backend}: {via}: {_diff(items, got)}"

    def test_exception_keeps_its_type(
        self, executor: Executor, via: str, anyexec_deadline: float
    ) -> None:
        try:
            got = within(
                anyexec_deadline,
                f"{executor.backend}: {via} of a failing task (its future never completes)",
                run_via,
                executor,
                via,
                tasks.fail_on,
                list(range(6)),
            )
        except tasks.TaskError as exc:
            assert "task failed on 3" in str(exc), (
                f"{executor.backend}: {via}: the task's message was changed to {str(exc)!r}"
            )
            return
        except pytest.fail.Exception:
            raise
        except BaseException as exc:
            pytest.fail(
                f"{executor.backend}: {via} changed the task's exception type: it raised "
                f"{_name(exc)}, not the task's own anyexec.testing.tasks.TaskError",
                pytrace=False,
            )
        pytest.fail(
            f"{executor.backend}: {via} swallowed a task's exception: a failing task raised "
            f"nothing; results were {got!r}",
            pytrace=False,
        )


class FutureChecks(Fixtures):
    """The futures ``submit`` returns are standard futures (docs/writing-a-backend.md):
    a queued call can be cancelled and then never runs, a running one cannot be cancelled
    and says it is running, each done callback runs exactly once."""

    @pytest.mark.parametrize("via", VIA_SUBMIT)
    def test_queued_call_can_be_cancelled(
        self, make_executor: Any, via: str, evidence: str, anyexec_deadline: float
    ) -> None:
        ex = make_executor(workers=1)
        _skip_unless_pending_possible(ex)
        busy = _busy(ex, evidence, anyexec_deadline / 2)
        queued = [ex.submit(tasks.record, i, evidence) for i in range(5)]
        if via == "submit":
            last = ex.submit(tasks.record, 5, evidence)
            assert last.cancel(), (
                f"{ex.backend}: futures cannot be cancelled: cancel() of a call queued "
                f"behind a busy worker returned False"
            )
            assert last.cancelled() and last.done()
        else:

            async def cancel_awaiting() -> None:
                task = asyncio.ensure_future(ex.asubmit(tasks.record, 5, evidence))
                for _ in range(5):
                    await asyncio.sleep(0)
                task.cancel()
                try:
                    await task
                except asyncio.CancelledError:
                    pass

            asyncio.run(cancel_awaiting())
        open(os.path.join(evidence, "go"), "w").close()
        assert within(anyexec_deadline, f"{ex.backend}: busy task", busy.result) == "released"
        within(anyexec_deadline, f"{ex.backend}: queued tasks", cf.wait, queued)
        within(anyexec_deadline, f"{ex.backend}: shutdown(wait=True)", ex.shutdown, wait=True)
        how = "cancel()" if via == "submit" else "cancelling the task awaiting asubmit()"
        assert tasks.runs_of(evidence, 5) == 0, (
            f"{ex.backend}: the call was cancelled ({how}) while queued, yet it ran"
        )

    def test_running_call_cannot_be_cancelled(
        self, make_executor: Any, evidence: str, anyexec_deadline: float
    ) -> None:
        ex = make_executor(workers=1)
        _skip_unless_pending_possible(ex)
        busy = _busy(ex, evidence, anyexec_deadline / 2)
        running, cancelled = busy.running(), busy.cancel()
        open(os.path.join(evidence, "go"), "w").close()
        assert running, f"{ex.backend}: running() is False for a call that has started"
        assert not cancelled, (
            f"{ex.backend}: cancel() returned True for a call that was already running "
            f"(a standard future returns False and lets it finish)"
        )
        assert not busy.cancelled()
        got = within(anyexec_deadline, f"{ex.backend}: running call", busy.result)
        assert got == "released", f"{ex.backend}: the running call returned {got!r}"

    def test_done_callbacks_run_once(self, executor: Executor, anyexec_deadline: float) -> None:
        calls: dict[int, int] = {}
        lock = threading.Lock()

        def seen(i: int, _: Any) -> None:
            with lock:
                calls[i] = calls.get(i, 0) + 1

        futures = [executor.submit(tasks.fail_on, i) for i in range(6)]
        for i, fut in enumerate(futures):
            fut.add_done_callback(functools.partial(seen, i))
        within(anyexec_deadline, f"{executor.backend}: futures", cf.wait, futures)
        # Callbacks run in the thread that completes the future, maybe just after wait().
        _settle(lambda: len(calls) == len(futures), anyexec_deadline)
        late = cf.Future()  # type: ignore[var-annotated]
        futures[0].add_done_callback(lambda f: late.set_result(True))
        assert late.done(), (
            f"{executor.backend}: a callback added to a done future did not run at once"
        )
        wrong = {i: n for i, n in calls.items() if n != 1}
        missing = [i for i in range(len(futures)) if i not in calls]
        assert not wrong and not missing, (
            f"{executor.backend}: done callbacks must run exactly once per future; "
            f"ran more than once: {wrong}; never ran: {missing}"
        )
        assert isinstance(futures[3].exception(), tasks.TaskError)


class ShutdownChecks(Fixtures):
    """``shutdown(wait=True)`` returns only when every submitted call has finished, and
    in bounded time."""

    def test_shutdown_waits_for_submitted_calls(
        self, make_executor: Any, anyexec_deadline: float
    ) -> None:
        ex = make_executor()
        futures = [ex.submit(tasks.sleep_then, 0.2) for _ in range(6)]
        within(anyexec_deadline, f"{ex.backend}: shutdown(wait=True)", ex.shutdown, wait=True)
        unfinished = sum(not f.done() for f in futures)
        assert not unfinished, (
            f"{ex.backend}: shutdown(wait=True) returned early: {unfinished} of 6 submitted "
            f"calls had not finished"
        )
        assert [f.result() for f in futures] == [0.2] * 6


class ConcurrencyChecks(Fixtures):
    """Work runs on the workers, not inside ``submit``, and on more than one at a time."""

    @pytest.mark.parametrize("via", VIA_SUBMIT)
    def test_submit_returns_before_the_call_runs(
        self, make_executor: Any, via: str, evidence: str, anyexec_deadline: float
    ) -> None:
        ex = make_executor()
        _skip_unless_pending_possible(ex)
        patience = anyexec_deadline / 3
        if via == "submit":
            fut = within(
                anyexec_deadline,
                f"{ex.backend}: submit",
                ex.submit,
                tasks.wait_for_go,
                0,
                evidence,
                patience,
            )
            open(os.path.join(evidence, "go"), "w").close()
            got = within(anyexec_deadline, f"{ex.backend}: submitted call", fut.result)
        else:

            async def start_then_release() -> Any:
                task = asyncio.ensure_future(ex.asubmit(tasks.wait_for_go, 0, evidence, patience))
                await asyncio.sleep(0)  # asubmit has submitted (or, inline, already run)
                open(os.path.join(evidence, "go"), "w").close()
                return await task

            got = within(
                anyexec_deadline, f"{ex.backend}: asubmit", asyncio.run, start_then_release()
            )
        assert got == "released", (
            f"{ex.backend}: runs tasks inline in {via}(): it returned only after the call "
            f"had given up waiting for the caller ({got!r})"
        )

    @pytest.mark.parametrize("via", VIA_ALL)
    def test_calls_run_at_the_same_time(
        self, make_executor: Any, via: str, evidence: str, anyexec_deadline: float
    ) -> None:
        ex = make_executor(workers=2)
        _skip_unless_pending_possible(ex)
        limit = _backend_of(ex).max_workers
        if limit is not None and limit < 2:
            pytest.skip(f"{ex.backend} has max_workers={limit}")
        meet = functools.partial(tasks.meet, directory=evidence, seconds=anyexec_deadline / 4)
        got = within(
            anyexec_deadline,
            f"{ex.backend}: {via} of two calls that wait for each other",
            run_via,
            ex,
            via,
            meet,
            [0, 1],
            chunksize=1,
        )
        assert got == [True, True], (
            f"{ex.backend}: two calls through {via} on 2 workers did not run at the same "
            f"time (each waited for the other in vain): tasks run inline in submit or on "
            f"one worker only"
        )


class WorkerLossChecks(Fixtures):
    """A worker that dies mid-task fails its futures with ``BrokenExecutor``: anyexec
    reports :class:`anyexec.WorkerLost` and ``retries`` re-run the task; the executor
    serves again afterwards. Only where workers are processes."""

    @pytest.mark.parametrize("via", VIA_ALL)
    def test_dead_worker_is_worker_lost(
        self, make_executor: Any, via: str, anyexec_deadline: float
    ) -> None:
        ex = make_executor()
        _skip_unless_processes(ex, "a worker cannot die without the caller")
        try:
            got = within(
                anyexec_deadline,
                f"{ex.backend}: {via} of a task that kills its worker",
                run_via,
                ex,
                via,
                tasks.exit_process,
                [1],
            )
        except anyexec.WorkerLost as exc:
            assert isinstance(exc, cf.BrokenExecutor)
        except pytest.fail.Exception:
            raise
        except BaseException as exc:
            pytest.fail(
                f"{ex.backend}: a worker killed mid-task surfaced through {via} as "
                f"{_name(exc)}, not as concurrent.futures.BrokenExecutor: the backend's "
                f"futures must fail with BrokenExecutor (or a subclass) when a worker dies, "
                f"or anyexec cannot report WorkerLost and retries do not act",
                pytrace=False,
            )
        else:
            pytest.fail(f"{ex.backend}: a task that killed its worker returned {got!r}")
        try:
            again = within(
                anyexec_deadline,
                f"{ex.backend}: submit after a worker died",
                lambda: ex.submit(tasks.square, 3).result(),
            )
        except pytest.fail.Exception:
            raise
        except BaseException as exc:
            pytest.fail(
                f"{ex.backend}: after a worker died the executor no longer serves: {_name(exc)}",
                pytrace=False,
            )
        assert again == 9

    @pytest.mark.parametrize("via", VIA_MAP)
    def test_retries_rerun_a_lost_task(
        self, make_executor: Any, via: str, evidence: str, anyexec_deadline: float
    ) -> None:
        ex = make_executor()
        _skip_unless_processes(ex, "a worker cannot die without the caller")
        try:
            got = within(
                anyexec_deadline,
                f"{ex.backend}: {via}(retries=1) over a task that kills its worker once",
                run_via,
                ex,
                via,
                functools.partial(tasks.exit_first_time, directory=evidence),
                [0, 1, 2, 3],
                chunksize=1,
                retries=1,
            )
        except pytest.fail.Exception:
            raise
        except BaseException as exc:
            pytest.fail(
                f"{ex.backend}: {via}(retries=1) did not re-run the task whose worker died: "
                f"{_name(exc)}",
                pytrace=False,
            )
        assert got == [0, 1, 2, 3]

    def test_kill_running_fails_what_it_stops_with_worker_lost(
        self, make_executor: Any, evidence: str, anyexec_deadline: float
    ) -> None:
        """``kill_running()`` while a task runs and short tasks stream their results: the
        running task fails with WorkerLost; every other future settles with its own result
        or WorkerLost (a result caught mid-delivery included), never another error; a
        result delivered before stays; the executor serves again."""
        ex = make_executor()
        _skip_unless_processes(ex, "no worker process for kill_running() to stop")
        before = ex.submit(tasks.square, 3)
        assert within(anyexec_deadline, f"{ex.backend}: submit", before.result) == 9
        busy = _busy(ex, evidence, anyexec_deadline)
        short = [ex.submit(tasks.sleep_then, 0.005, i) for i in range(60)]
        within(
            anyexec_deadline,
            f"{ex.backend}: short tasks beside a running one",
            cf.wait,
            short,
            return_when=cf.FIRST_COMPLETED,
        )
        try:
            ex.kill_running()
        except anyexec.Unsupported as exc:
            pytest.skip(f"{ex.backend}: kill_running() is not supported here: {exc}")

        def outcome(fut: cf.Future[Any]) -> Any:
            try:
                return fut.result()
            except BaseException as exc:
                return exc

        got = within(
            anyexec_deadline,
            f"{ex.backend}: the futures after kill_running()",
            lambda: [outcome(f) for f in [busy, *short]],
        )
        assert isinstance(got[0], anyexec.WorkerLost), (
            f"{ex.backend}: a task stopped by kill_running() gave {got[0]!r}, not WorkerLost"
        )
        lost = anyexec.WorkerLost
        wrong = [(i, g) for i, g in enumerate(got[1:]) if g != i and not isinstance(g, lost)]
        assert not wrong, (
            f"{ex.backend}: after kill_running() a future must hold its own result or "
            f"WorkerLost; {len(wrong)} did not, e.g. task {wrong[0][0]}: {wrong[0][1]!r}"
        )
        assert before.result() == 9
        again = within(
            anyexec_deadline,
            f"{ex.backend}: submit after kill_running()",
            lambda: ex.submit(tasks.square, 4).result(),
        )
        assert again == 16


def _unpicklable_function() -> Callable[[Any], Any]:
    lock = threading.Lock()
    return lambda x: (lock, x)[1]  # a closure over a lock: not even cloudpickle sends it


class PicklingChecks(Fixtures):
    """Where things cross into other processes, what cannot be pickled -- a function, an
    argument, a result -- raises :class:`anyexec.UnpicklableError` in bounded time, and the
    executor keeps serving."""

    @pytest.mark.parametrize("via", VIA_ALL)
    @pytest.mark.parametrize("what", ["function", "argument", "result"])
    def test_unpicklable_raises(
        self, executor: Executor, via: str, what: str, anyexec_deadline: float
    ) -> None:
        _skip_unless_processes(executor, "nothing is pickled")
        fn: Callable[[Any], Any] = tasks.identity
        items: list[Any] = [1]
        if what == "function":
            fn = _unpicklable_function()
        elif what == "argument":
            items = [threading.Lock()]
        else:
            fn = tasks.make_lock
        try:
            got = within(
                anyexec_deadline,
                f"{executor.backend}: {via} of an unpicklable {what} (the backend hangs on "
                f"pickling errors instead of failing the future or raising from submit)",
                run_via,
                executor,
                via,
                fn,
                items,
            )
        except anyexec.UnpicklableError as exc:
            named = what
            assert named in str(exc), (
                f"{executor.backend}: the UnpicklableError for an unpicklable {what} "
                f"through {via} does not name the {named}: {exc}"
            )
        except pytest.fail.Exception:
            raise
        except BaseException as exc:
            pytest.fail(
                f"{executor.backend}: an unpicklable {what} through {via} raised {_name(exc)}, "
                f"not anyexec.UnpicklableError",
                pytrace=False,
            )
        else:
            pytest.fail(f"{executor.backend}: an unpicklable {what} through {via} gave {got!r}")
        again = within(
            anyexec_deadline,
            f"{executor.backend}: submit after a pickling error",
            lambda: executor.submit(tasks.square, 4).result(),
        )
        assert again == 16


class StdlibChecks(Fixtures):
    """What ``concurrent.futures`` users rely on, from CPython's own tests, that a backend
    can break: ``buffersize=None`` submits everything at once; a finished future and the
    map iterator keep nothing alive; ``map`` with no iterable yields nothing; shutdown keeps
    running calls (``cancel_futures``) and submitted ones (``wait=False``)."""

    def test_map_with_no_iterable_is_empty(self, executor: Executor) -> None:
        try:
            got = list(executor.map(str))
        except TypeError as exc:
            pytest.fail(
                f"{executor.backend}: map(str) with no iterable raised {_name(exc)}; the "
                f"standard library returns an empty iterator",
                pytrace=False,
            )
        assert got == []

    def test_unbounded_map_submits_everything(
        self, make_executor: Any, evidence: str, anyexec_deadline: float
    ) -> None:
        ex = make_executor()
        ex.map(functools.partial(tasks.record, directory=evidence), range(100), buffersize=None)
        within(anyexec_deadline, f"{ex.backend}: shutdown(wait=True)", ex.shutdown, wait=True)
        ran = sum(1 for x in range(100) if tasks.runs_of(evidence, x))
        assert ran == 100, (
            f"{ex.backend}: map(buffersize=None), never iterated, ran {ran} of 100 calls "
            f"before shutdown(wait=True) returned; the standard library runs them all"
        )

    def test_finished_future_releases_its_call(
        self, executor: Executor, anyexec_deadline: float
    ) -> None:
        import gc
        import weakref

        obj = tasks.Dummy()
        ref = weakref.ref(obj)
        fut = executor.submit(obj.method)
        within(anyexec_deadline, f"{executor.backend}: submit", fut.result)
        del obj
        gc.collect()
        assert ref() is None, (
            f"{executor.backend}: a finished future still holds its function and arguments"
        )

    def test_map_iterator_releases_results(self, executor: Executor) -> None:
        import gc
        import weakref

        for obj in executor.map(tasks.make_dummy, range(6)):
            ref = weakref.ref(obj)
            del obj
            gc.collect()
            assert ref() is None, (
                f"{executor.backend}: the map iterator still holds the result it yielded"
            )

    def test_cancel_futures_spares_running_calls(
        self, make_executor: Any, evidence: str, anyexec_deadline: float
    ) -> None:
        ex = make_executor(workers=1)
        _skip_unless_pending_possible(ex)
        busy = _busy(ex, evidence, anyexec_deadline / 2)
        queued = ex.submit(tasks.square, 3)
        stopper = threading.Thread(
            target=ex.shutdown, kwargs={"wait": True, "cancel_futures": True}, daemon=True
        )
        stopper.start()
        _settle(queued.done, 2.0)  # time for shutdown to cancel what it cancels
        marked = busy.cancelled()
        open(os.path.join(evidence, "go"), "w").close()
        stopper.join(anyexec_deadline)
        assert not marked, (
            f"{ex.backend}: shutdown(cancel_futures=True) marked a running call cancelled"
        )
        got = within(anyexec_deadline, f"{ex.backend}: running call", busy.result)
        assert got == "released"

    def test_shutdown_without_wait_keeps_submitted_calls(
        self, make_executor: Any, anyexec_deadline: float
    ) -> None:
        ex = make_executor()
        fut = ex.submit(tasks.sleep_then, 0.5)
        ex.shutdown(wait=False)
        try:
            got = within(
                anyexec_deadline, f"{ex.backend}: a call after shutdown(wait=False)", fut.result
            )
        except cf.CancelledError:
            pytest.fail(
                f"{ex.backend}: shutdown(wait=False) cancelled a call already submitted",
                pytrace=False,
            )
        assert got == 0.5


def _children() -> dict[int, str]:
    """This process's descendants, ``{pid: command line}``.

    psutil where it is installed; otherwise ``/proc`` (Linux); otherwise the children
    ``multiprocessing`` knows of. A leak check never skips for want of psutil.
    """
    try:
        import psutil
    except ImportError:
        return _children_from_proc() if os.path.isdir("/proc/self") else _children_from_mp()
    out = {}
    for p in psutil.Process().children(recursive=True):
        try:
            out[p.pid] = " ".join(p.cmdline())
        except psutil.Error:
            pass
    return out


def _children_from_proc() -> dict[int, str]:
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read().decode(errors="replace")
        except OSError:
            continue  # ended meanwhile
        # The command name (field 2) is in parentheses and may hold spaces: split after it.
        fields = stat[stat.rfind(")") + 2 :].split()
        if fields and fields[0] != "Z":  # a zombie has ended; its parent only has to reap it
            parents[int(entry)] = int(fields[1])
    mine = {os.getpid()}
    found = True
    while found:
        found = False
        for pid, parent in parents.items():
            if parent in mine and pid not in mine:
                mine.add(pid)
                found = True
    mine.discard(os.getpid())
    out = {}
    for pid in mine:
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                out[pid] = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
    return out


def _children_from_mp() -> dict[int, str]:
    import multiprocessing

    return {p.pid: p.name for p in multiprocessing.active_children() if p.pid is not None}


def _settle(predicate: Any, seconds: float = 15.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return bool(predicate())


class CleanupChecks(Fixtures):
    """Nothing is left after ``shutdown``: no worker process, and no growth in threads or
    processes from one open/close cycle to the next (interpreter-wide helpers such as the
    forkserver or a resource tracker start once and are allowed)."""

    def cycle(self, make_executor: Any) -> None:
        ex = make_executor()
        assert list(ex.map(tasks.square, range(50))) == [x * x for x in range(50)]
        ex.submit(tasks.square, 2).result(timeout=WAIT)
        ex.shutdown(wait=True)

    def test_no_leftovers_after_shutdown(self, make_executor: Any) -> None:
        before = _children()
        self.cycle(make_executor)
        _settle(
            lambda: all(
                any(h in c for h in HELPERS) for p, c in _children().items() if p not in before
            )
        )
        leaked = {
            p: c
            for p, c in _children().items()
            if p not in before and not any(h in c for h in HELPERS)
        }
        assert not leaked, f"worker processes left after shutdown: {leaked}"
        after_one = set(_children())
        threads_one = threading.active_count()
        self.cycle(make_executor)
        assert _settle(lambda: set(_children()) <= after_one), (
            f"processes grew across open/close cycles: {set(_children()) - after_one}"
        )
        assert _settle(lambda: threading.active_count() <= threads_one), (
            f"threads grew across open/close cycles: {threading.active_count()} > "
            f"{threads_one}: {[t.name for t in threading.enumerate()]}"
        )


class SpeedupChecks(Fixtures):
    """Speedup is measured by the one harness, and its figures are consistent."""

    def test_sleep_workload_speeds_up(
        self, anyexec_backend: Any, anyexec_options: dict[str, Any]
    ) -> None:
        from anyexec.measure import measure

        m = measure(
            tasks.sleep_for,
            list(range(16)),
            backend=anyexec_backend,
            workers=4,
            repeat=2,
            chunksize=1,
            options=anyexec_options,
        )
        assert m.results_match, m.mismatch
        assert m.speedup == pytest.approx(m.ts / m.tp)
        assert m.efficiency == pytest.approx(m.speedup / m.workers)
        if m.workers > 1:
            # 16 sleeps of 50 ms on 4 workers: ideal S is 4; anything real clears 1.3.
            assert m.speedup > 1.3, f"{m.backend}: S = {m.speedup:.2f} with {m.workers} workers"
        else:
            assert m.speedup == pytest.approx(1.0, rel=0.5)


# Sections in their own modules build on Fixtures above (imported here, once it exists).
from anyexec.testing.outcomes import OutcomeChecks  # noqa: E402


class ConformanceSuite(
    MapChecks,
    OutcomeChecks,
    SubmitChecks,
    RouteChecks,
    FutureChecks,
    ErrorChecks,
    LifecycleChecks,
    ShutdownChecks,
    ConcurrencyChecks,
    WorkerLossChecks,
    PicklingChecks,
    StdlibChecks,
    FaultChecks,
    NestingChecks,
    CleanupChecks,
    SpeedupChecks,
):
    """Every section. Subclass it once (its name starting with ``Test``) to run them all."""
