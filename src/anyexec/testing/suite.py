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

import concurrent.futures as cf
import functools
import itertools
import threading
import time
import traceback
from collections.abc import Iterator
from typing import Any

import pytest

import anyexec
from anyexec import Executor
from anyexec.contract import Backend
from anyexec.testing import tasks

__all__ = [
    "CleanupChecks",
    "ConformanceSuite",
    "ErrorChecks",
    "FaultChecks",
    "Fixtures",
    "LifecycleChecks",
    "MapChecks",
    "NestingChecks",
    "SpeedupChecks",
    "SubmitChecks",
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

    @pytest.fixture
    def make_executor(
        self, anyexec_backend: str | Backend, anyexec_options: dict[str, Any], anyexec_workers: int
    ) -> Iterator[Any]:
        """A factory of executors on the backend under test, all shut down afterwards."""
        made: list[Executor] = []

        def make(workers: int | None = None) -> Executor:
            ex = Executor(anyexec_backend, workers or anyexec_workers, **anyexec_options)
            made.append(ex)
            return ex

        yield make
        for ex in made:
            ex.shutdown(wait=True, cancel_futures=True)

    @pytest.fixture(scope="class")
    @classmethod
    def executor(
        cls, anyexec_backend: str | Backend, anyexec_options: dict[str, Any], anyexec_workers: int
    ) -> Iterator[Executor]:
        """One executor shared by a backend's tests that do not close it."""
        ex = Executor(anyexec_backend, anyexec_workers, **anyexec_options)
        yield ex
        ex.shutdown(wait=True, cancel_futures=True)

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
        np = pytest.importorskip("numpy")
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

    def test_map_timeout(self, executor: Executor) -> None:
        it = executor.map(tasks.sleep_then, [1.0] * 4, timeout=0.1, chunksize=1)
        with pytest.raises(TimeoutError):
            list(it)

    def test_submit_after_shutdown(self, make_executor: Any) -> None:
        ex = make_executor()
        ex.submit(tasks.square, 1).result(timeout=WAIT)
        ex.shutdown(wait=True)
        with pytest.raises(RuntimeError, match="shutdown"):
            ex.submit(tasks.square, 1)
        ex.shutdown()  # idempotent

    def test_cancel_futures(self, make_executor: Any) -> None:
        ex = make_executor(workers=1)
        futs = [ex.submit(tasks.sleep_then, 0.3) for _ in range(8)]
        ex.shutdown(wait=True, cancel_futures=True)
        if _backend_of(ex).crosses == "nothing":  # ran at submit: nothing was pending
            assert all(f.done() and not f.cancelled() for f in futs)
            return
        cancelled = sum(f.cancelled() for f in futs)
        assert cancelled >= 1, f"{ex.backend}: cancel_futures=True cancelled no pending task"
        assert all(f.done() for f in futs)

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

    def test_coroutine_task_timeout(self, executor: Executor) -> None:
        got: list[Any] = list(
            executor.map(tasks.async_sleep_on, range(4), task_timeout=0.5, return_exceptions=True)
        )
        assert isinstance(got[1], anyexec.TaskTimeout), got
        assert [got[0], got[2], got[3]] == [0, 2, 3]

    def test_plain_function_task_timeout(self, executor: Executor) -> None:
        import threading

        backend = _backend_of(executor)
        stoppable = (
            backend.timeout_mode != "none"
            or (
                backend.crosses == "nothing"
                and threading.current_thread() is threading.main_thread()
            )
        )
        if not stoppable:
            with pytest.raises(anyexec.ConfigError, match="task_timeout"):
                executor.map(tasks.slow_on, range(4), task_timeout=0.5)
            return
        # 5 s, ten times the limit: long enough to prove the task was stopped or
        # abandoned, short enough that an abandoned thread does not hold up shutdown long.
        slow = functools.partial(tasks.slow_on, seconds=5)
        got = list(executor.map(slow, range(4), task_timeout=0.5, return_exceptions=True))
        assert isinstance(got[0], anyexec.TaskTimeout), got
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


def _children() -> dict[int, str]:
    psutil = pytest.importorskip("psutil")
    out = {}
    for p in psutil.Process().children(recursive=True):
        try:
            out[p.pid] = " ".join(p.cmdline())
        except psutil.Error:
            pass
    return out


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


class ConformanceSuite(
    MapChecks,
    SubmitChecks,
    ErrorChecks,
    LifecycleChecks,
    FaultChecks,
    NestingChecks,
    CleanupChecks,
    SpeedupChecks,
):
    """Every section. Subclass it once (its name starting with ``Test``) to run them all."""
