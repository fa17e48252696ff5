"""CPython's own ``concurrent.futures`` tests, held against ``anyexec.Executor``.

A port, in our own words, of the behaviours in CPython's ``Lib/test/test_concurrent_futures``
(executor.py, test_shutdown.py, test_wait.py, test_as_completed.py, test_thread_pool.py)
that any ``concurrent.futures.Executor`` must have. It runs on every installed backend
(``--anyexec-backend`` selects, as for the conformance suite).

Tasks come from :mod:`anyexec.testing.tasks` or the builtins, so process and cluster
workers can import them; a call that must stay "running" waits for a file the test writes
(``wait_for_go``), which works across processes where a ``threading.Event`` would not.

Where anyexec differs on purpose, the test is skipped with the reason docs/index.md gives.
Where it differs by a bug still being fixed, the test is marked ``xfail`` with the cause.
"""

from __future__ import annotations

import concurrent.futures as cf
import functools
import gc
import itertools
import operator
import os
import subprocess
import sys
import textwrap
import threading
import time
import weakref
from collections.abc import Iterator
from typing import Any

import pytest

from anyexec import Executor
from anyexec.testing import tasks
from anyexec.testing.suite import within

#: Seconds a step that could hang may take before it fails the test.
DEADLINE = 120.0

SERIAL_HAS_NO_PENDING = (
    "serial runs each call inside submit(), so nothing is ever pending or running on its "
    "own (docs/index.md: 'serial has no pending futures')"
)
LAZY_MAP = (
    "anyexec's map reads its input lazily, a bounded window at a time, unless "
    "buffersize=None (docs/index.md: where map differs from the standard library)"
)

# Known bugs, fixed elsewhere; each reason names the cause so the mark can go with the fix.
DASK_PROCESSING = (
    "{}: a call the scheduler has already handed to a worker counts as running (dask's "
    "'processing' state), so at times fewer queued calls can be cancelled than the test asks"
)


def xfail_on(request: pytest.FixtureRequest, backends: tuple[str, ...], reason: str) -> None:
    name = request.getfixturevalue("anyexec_backend_name")
    if name in backends:
        request.applymarker(pytest.mark.xfail(reason=reason.format(name), strict=False))


@pytest.fixture(scope="module")
def _shared() -> Iterator[dict[str, Executor]]:
    made: dict[str, Executor] = {}
    yield made
    for name, executor in made.items():
        within(DEADLINE, f"{name}: shutdown", executor.shutdown, wait=True)


@pytest.fixture
def ex(anyexec_backend_name: str, _shared: dict[str, Executor]) -> Executor:
    """One executor per backend for the tests that leave it open (a dask cluster takes
    seconds to start)."""
    executor = _shared.get(anyexec_backend_name)
    if executor is None or executor.closed:
        executor = _shared[anyexec_backend_name] = Executor(anyexec_backend_name, workers=2)
    return executor


@pytest.fixture
def fresh(anyexec_backend_name: str) -> Iterator[Executor]:
    """An executor of its own, for a test that shuts it down."""
    executor = Executor(anyexec_backend_name, workers=2)
    yield executor
    within(DEADLINE, f"{anyexec_backend_name}: shutdown", executor.shutdown, wait=True)


@pytest.fixture
def gate(tmp_path: Any) -> Iterator[Any]:
    """Calls that stay running until the test opens the gate (or the test ends)."""

    class Gate:
        directory = str(tmp_path)

        def call(self, x: Any = 0) -> Any:
            return functools.partial(tasks.wait_for_go, x, self.directory, DEADLINE)

        def started(self, x: Any = 0) -> bool:
            return tasks.await_file(os.path.join(self.directory, f"started-{x}"), DEADLINE)

        def open(self) -> None:
            open(os.path.join(self.directory, "go"), "w").close()

    g = Gate()
    yield g
    g.open()


def no_pending_on_serial(ex: Executor) -> None:
    if ex.settings.backend.crosses == "nothing":
        pytest.skip(SERIAL_HAS_NO_PENDING)


def made(state: str, value: Any = None) -> cf.Future[Any]:
    """A plain future in a given state, as CPython's tests build them."""
    fut: cf.Future[Any] = cf.Future()
    if state == "running":
        fut.set_running_or_notify_cancel()
    elif state == "cancelled":
        fut.cancel()
    elif state == "cancelled-and-notified":
        fut.cancel()
        fut.set_running_or_notify_cancel()
    elif state == "finished":
        fut.set_running_or_notify_cancel()
        fut.set_result(value)
    elif state == "failed":
        fut.set_running_or_notify_cancel()
        fut.set_exception(OSError("made to fail"))
    return fut


# -- submit and map (CPython executor.py) --------------------------------------------------


def test_submit(ex: Executor) -> None:
    assert ex.submit(pow, 2, 8).result(timeout=DEADLINE) == 256


def test_submit_passes_keywords_through(ex: Executor) -> None:
    assert ex.submit(tasks.add, 2, y=8).result(timeout=DEADLINE) == 10
    got = ex.submit(tasks.capture, 1, self=2, fn=3).result(timeout=DEADLINE)
    assert got == ((1,), {"self": 2, "fn": 3})
    with pytest.raises(TypeError):
        ex.submit(fn=tasks.capture, arg=1)  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        ex.submit(arg=1)  # type: ignore[call-arg]


def test_map(ex: Executor) -> None:
    want = list(map(pow, range(10), range(10)))
    assert list(ex.map(pow, range(10), range(10))) == want
    assert list(ex.map(pow, range(10), range(10), chunksize=3)) == want


def test_map_exception(ex: Executor) -> None:
    it = ex.map(divmod, [5, 5, 5, 5], [2, 3, 0, 5])
    assert next(it) == (2, 1)
    assert next(it) == (1, 2)
    with pytest.raises(ZeroDivisionError):
        next(it)


def test_map_timeout(ex: Executor) -> None:
    got = []
    with pytest.raises(TimeoutError):
        for r in ex.map(tasks.sleep_then, [0.01, 0.01, 5.0], timeout=1.5, chunksize=1):
            got.append(r)
    assert got in ([0.01, 0.01], [0.01], [])


def test_callables_own_timeout_error_is_not_maps_deadline(ex: Executor) -> None:
    for timeout in (None, DEADLINE):
        it = ex.map(tasks.raise_timeout_on, [0, 1, 2], timeout=timeout, chunksize=1)
        assert next(it) == 0
        with pytest.raises(TimeoutError, match="the task itself timed out on 1"):
            next(it)


def test_map_close(ex: Executor) -> None:
    for chunksize in (1, 3):
        it = ex.map(divmod, [5, 5, 5, 5], [2, 0, 3, 5], chunksize=chunksize)
        assert next(it) == (2, 1)
        it.close()  # type: ignore[attr-defined]
        with pytest.raises(StopIteration):
            next(it)
        with pytest.raises(StopIteration):
            next(it)


@pytest.mark.parametrize("buffersize", [0, -1])
def test_map_buffersize_must_be_positive(ex: Executor, buffersize: int) -> None:
    with pytest.raises(ValueError, match="buffersize"):
        ex.map(str, range(4), buffersize=buffersize)


@pytest.mark.parametrize("buffersize", [1, 2, 4, 8, None])
def test_map_buffersize(ex: Executor, buffersize: int | None) -> None:
    assert list(ex.map(str, range(4), buffersize=buffersize)) == ["0", "1", "2", "3"]
    assert list(ex.map(operator.add, range(4), range(4), buffersize=buffersize)) == [0, 2, 4, 6]


def test_map_buffersize_on_infinite_iterables(ex: Executor) -> None:
    it = ex.map(str, itertools.count(), buffersize=2)
    assert [next(it) for _ in range(3)] == ["0", "1", "2"]
    it.close()  # type: ignore[attr-defined]
    it = ex.map(operator.add, itertools.count(), itertools.count(), buffersize=2)
    assert [next(it) for _ in range(3)] == [0, 2, 4]
    it.close()  # type: ignore[attr-defined]


def test_map_buffersize_on_empty_iterable(ex: Executor) -> None:
    assert next(ex.map(str, [], buffersize=2), None) is None


def test_map_without_iterable(ex: Executor) -> None:
    assert next(ex.map(str, buffersize=2), None) is None
    assert list(ex.map(str)) == []


def test_map_reads_no_more_than_its_buffer(fresh: Executor) -> None:
    items = iter(range(10))
    fresh.map(str, items, buffersize=2, chunksize=1)
    within(DEADLINE, f"{fresh.backend}: shutdown", fresh.shutdown, wait=True)
    assert next(items) == 2, "map read more input than buffersize=2 chunks of 1"


def test_shutdown_right_after_map(fresh: Executor) -> None:
    fresh.map(str, [2] * (fresh.workers + 1))
    within(DEADLINE, f"{fresh.backend}: shutdown after map", fresh.shutdown)


def test_discarded_future_keeps_nothing_alive(ex: Executor) -> None:
    obj = tasks.Dummy()
    ref = weakref.ref(obj)
    # The stdlib frees the call by reference counting alone once it has run and its future
    # is dropped: with the cycle collector off, a reference cycle would keep it alive.
    gc.disable()
    try:
        fut = ex.submit(obj.method)
        del obj
        assert fut.result(timeout=DEADLINE) is None
        del fut
        deadline = time.monotonic() + 10  # a worker may still be letting go of it
        while ref() is not None and time.monotonic() < deadline:
            time.sleep(0.05)
        released = ref() is None
    finally:
        gc.enable()
    assert released, "the call of a dropped future was never released (a reference cycle holds it)"


def test_finished_future_keeps_no_call_alive(ex: Executor) -> None:
    obj = tasks.Dummy()
    ref = weakref.ref(obj)
    fut = ex.submit(obj.method)
    assert fut.result(timeout=DEADLINE) is None
    del obj
    gc.collect()
    assert ref() is None, "a finished future still holds its function and arguments"
    assert fut.done()


def test_map_iterator_keeps_no_result_alive(ex: Executor) -> None:
    for obj in ex.map(tasks.make_dummy, range(10)):
        ref = weakref.ref(obj)
        del obj
        gc.collect()
        assert ref() is None, "the map iterator still holds the result it yielded"


def test_workers_must_be_positive(anyexec_backend_name: str) -> None:
    # max_workers= keeps the standard library's rule; workers=-1 is joblib's "every CPU".
    with pytest.raises(ValueError):
        Executor(anyexec_backend_name, workers=0)
    for number in (0, -1):
        with pytest.raises(ValueError):
            Executor(anyexec_backend_name, max_workers=number)


def test_max_workers_is_accepted(anyexec_backend_name: str) -> None:
    with Executor(anyexec_backend_name, max_workers=2) as executor:
        cap = executor.settings.backend.max_workers  # serial runs one call at a time
        assert executor.workers == min(2, cap or 2)
    for number in (0, -1):
        with pytest.raises(ValueError):
            Executor(anyexec_backend_name, max_workers=number)


def _stdlib_future_swallows_falsey_exceptions() -> bool:
    fut: cf.Future[Any] = cf.Future()
    fut.set_exception(tasks.FalseyBoolError("probe"))
    try:
        fut.result()
    except tasks.FalseyBoolError:
        return False
    return True


@pytest.mark.skipif(
    _stdlib_future_swallows_falsey_exceptions(),
    reason="this Python's own concurrent.futures.Future.result() returns None for an "
    "exception that is false in a boolean context (fixed in later CPython releases)",
)
def test_falsey_exceptions_are_not_swallowed(ex: Executor) -> None:
    with pytest.raises(tasks.FalseyBoolError, match="boolbool"):
        ex.submit(tasks.raise_type, tasks.FalseyBoolError, "boolbool").result(timeout=DEADLINE)
    with pytest.raises(tasks.FalseyLenError, match="lenlen"):
        ex.submit(tasks.raise_type, tasks.FalseyLenError, "lenlen").result(timeout=DEADLINE)


def test_map_cancels_what_is_left_after_its_timeout(ex: Executor, gate: Any) -> None:
    """CPython's test_executor_map_current_future_cancel: a map that times out, once
    closed, runs none of its calls that were still waiting for a worker."""
    if ex.settings.backend.crosses != "threads":
        pytest.skip(
            "the standard library promises this for thread pools only: process pools hand "
            "queued calls to their workers ahead of time, after which they cannot be cancelled"
        )
    one = Executor(ex.settings.backend, workers=1)
    try:
        busy = one.submit(gate.call("busy"))
        assert gate.started("busy")
        it = one.map(
            functools.partial(tasks.record, directory=gate.directory),
            ["a", "b"],
            timeout=0,
            chunksize=1,
        )
        with pytest.raises((TimeoutError, cf.TimeoutError)):  # the builtin rule: test_map_timeout
            next(it)
        it.close()  # type: ignore[attr-defined]
        gate.open()
        assert busy.result(timeout=DEADLINE) == "released"
    finally:
        gate.open()
        within(DEADLINE, f"{ex.backend}: shutdown", one.shutdown, wait=True)
    assert tasks.runs_of(gate.directory, "a") == tasks.runs_of(gate.directory, "b") == 0


def test_map_with_no_buffer_limit_runs_everything_without_iterating(
    fresh: Executor, tmp_path: Any
) -> None:
    record = functools.partial(tasks.record, directory=str(tmp_path))
    fresh.map(record, range(100), buffersize=None)
    within(DEADLINE, f"{fresh.backend}: shutdown", fresh.shutdown, wait=True)
    ran = [x for x in range(100) if tasks.runs_of(str(tmp_path), x)]
    assert ran == list(range(100)), f"{len(ran)} of 100 calls ran"


def test_default_map_reads_its_input_lazily(fresh: Executor) -> None:
    """The deliberate difference (LAZY_MAP): by default a map that is never iterated
    reads a bounded window of its input, not all of it as the standard library does."""
    items = iter(range(10_000))
    fresh.map(str, items)
    within(DEADLINE, f"{fresh.backend}: shutdown", fresh.shutdown, wait=True)
    assert next(items, None) is not None, LAZY_MAP


# -- shutdown (CPython test_shutdown.py) ----------------------------------------------------


def test_submit_after_shutdown(fresh: Executor) -> None:
    fresh.shutdown()
    with pytest.raises(RuntimeError):
        fresh.submit(pow, 2, 5)


def run_script(backend: str, body: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run ``body`` (with ``{backend}`` filled in) in a fresh interpreter; a script still
    running after ``timeout`` seconds fails the test as a hang."""
    code = textwrap.dedent(body).format(backend=backend)
    try:
        return subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"{backend}: the script hangs at interpreter exit; its output: {exc.stdout!r}")


@pytest.mark.slow
def test_work_submitted_before_exit_runs(
    anyexec_backend_name: str, request: pytest.FixtureRequest
) -> None:
    done = run_script(
        anyexec_backend_name,
        """
        import anyexec
        from anyexec.testing.tasks import sleep_and_print
        if __name__ == "__main__":
            ex = anyexec.Executor({backend!r}, workers=5)
            ex.submit(sleep_and_print, 1.0, "apple")
        """,
    )
    assert not done.stderr, done.stderr
    assert done.stdout.strip() == "apple"


@pytest.mark.slow
def test_shutdown_without_wait_still_runs_running_work(
    anyexec_backend_name: str, request: pytest.FixtureRequest
) -> None:
    done = run_script(
        anyexec_backend_name,
        """
        import anyexec
        from anyexec.testing.tasks import sleep_and_print
        if __name__ == "__main__":
            ex = anyexec.Executor({backend!r}, workers=3)
            ex.submit(sleep_and_print, 1.0, "apple")
            ex.shutdown(wait=False)
        """,
    )
    assert not done.stderr, done.stderr
    assert done.stdout.strip() == "apple"


@pytest.mark.slow
def test_shutdown_without_wait_cancelling_futures_exits_cleanly(anyexec_backend_name: str) -> None:
    done = run_script(
        anyexec_backend_name,
        """
        import anyexec
        from anyexec.testing.tasks import sleep_and_print
        if __name__ == "__main__":
            ex = anyexec.Executor({backend!r})
            ex.submit(sleep_and_print, 0.1, "apple")
            ex.shutdown(wait=False, cancel_futures=True)
        """,
    )
    assert not done.stderr, done.stderr
    assert done.stdout.strip() in ("apple", "")


@pytest.mark.slow
def test_submit_after_interpreter_shutdown(anyexec_backend_name: str) -> None:
    done = run_script(
        anyexec_backend_name,
        """
        import atexit
        import anyexec

        @atexit.register
        def run_last():
            try:
                ex.submit(id, None)
            except RuntimeError:
                print("runtime-error")
                raise

        if __name__ == "__main__":
            ex = anyexec.Executor({backend!r}, workers=2)
        """,
        timeout=30,  # it hangs on some backends today; fail those sooner
    )
    assert "RuntimeError: cannot schedule new futures after interpreter shutdown" in done.stderr
    assert done.stdout.strip() == "runtime-error"


def test_shutdown_waits_for_many_short_calls(fresh: Executor) -> None:
    futures = [fresh.submit(time.sleep, 0.02) for _ in range(30)]
    within(DEADLINE, f"{fresh.backend}: shutdown", fresh.shutdown)
    assert [f.result(timeout=0) for f in futures] == [None] * 30


def test_shutdown_cancel_futures(fresh: Executor, request: pytest.FixtureRequest) -> None:
    no_pending_on_serial(fresh)
    xfail_on(request, ("dask",), DASK_PROCESSING)
    futures = [fresh.submit(time.sleep, 0.1) for _ in range(50)]
    within(DEADLINE, f"{fresh.backend}: shutdown", fresh.shutdown, cancel_futures=True)
    cancelled = [f for f in futures if f.cancelled()]
    others = [f for f in futures if not f.cancelled()]
    assert len(cancelled) > 20
    assert others, "not even the running calls finished"
    for f in others:
        assert f.done() and f.exception() is None


def test_shutdown_cancel_futures_spares_running_calls(
    fresh: Executor, gate: Any, request: pytest.FixtureRequest
) -> None:
    no_pending_on_serial(fresh)
    running = fresh.submit(gate.call())
    assert gate.started()
    stopper = threading.Thread(target=fresh.shutdown, kwargs={"cancel_futures": True})
    stopper.start()
    time.sleep(0.2)  # let shutdown cancel what it cancels; the call must stay running
    assert not running.cancelled(), "shutdown(cancel_futures=True) cancelled a running call"
    gate.open()
    stopper.join(DEADLINE)
    assert running.result(timeout=DEADLINE) == "released"


def test_shutdown_after_a_cancelled_submit_does_not_hang(anyexec_backend_name: str) -> None:
    one = Executor(anyexec_backend_name, workers=1)
    one.submit(int).result(timeout=DEADLINE)
    one.submit(int).cancel()
    within(DEADLINE, f"{anyexec_backend_name}: shutdown", one.shutdown, wait=True)


def test_context_manager_shutdown(anyexec_backend_name: str) -> None:
    with Executor(anyexec_backend_name, workers=5) as e:
        assert list(e.map(abs, range(-5, 5))) == [5, 4, 3, 2, 1, 0, 1, 2, 3, 4]
    assert e.closed


def test_map_results_survive_dropping_the_executor(anyexec_backend_name: str) -> None:
    e = Executor(anyexec_backend_name, workers=5)
    res = e.map(abs, range(-5, 5))
    del e
    gc.collect()
    assert list(res) == [abs(v) for v in range(-5, 5)]


def test_map_results_survive_shutdown_without_wait(
    anyexec_backend_name: str, request: pytest.FixtureRequest
) -> None:
    e = Executor(anyexec_backend_name, workers=5)
    res = e.map(abs, range(-100, 100), buffersize=None)
    e.shutdown(wait=False)
    assert list(res) == [abs(v) for v in range(-100, 100)]


# -- standard futures (CPython test_future.py, on the futures an executor hands out) -------


def test_running_call_is_running_and_cannot_be_cancelled(
    ex: Executor, gate: Any, request: pytest.FixtureRequest
) -> None:
    no_pending_on_serial(ex)
    fut = ex.submit(gate.call())
    assert gate.started()
    assert fut.running()
    assert not fut.cancel()
    gate.open()
    assert fut.result(timeout=DEADLINE) == "released"
    assert not fut.cancelled()


def test_done_callbacks(ex: Executor) -> None:
    seen: list[Any] = []
    fut = ex.submit(pow, 2, 3)
    fut.add_done_callback(lambda f: seen.append(f.result()))
    assert fut.result(timeout=DEADLINE) == 8
    deadline = time.monotonic() + DEADLINE  # the callback runs in the completing thread
    while seen != [8] and time.monotonic() < deadline:
        time.sleep(0.01)
    assert seen == [8]
    fut.add_done_callback(lambda f: seen.append("late"))  # runs at once, in this thread
    assert seen == [8, "late"]


def test_result_and_exception_with_timeouts(ex: Executor, gate: Any) -> None:
    no_pending_on_serial(ex)
    fut = ex.submit(gate.call())
    with pytest.raises(cf.TimeoutError):
        fut.result(timeout=0)
    with pytest.raises(cf.TimeoutError):
        fut.exception(timeout=0)
    gate.open()
    assert fut.exception(timeout=DEADLINE) is None
    failed = ex.submit(divmod, 1, 0)
    assert isinstance(failed.exception(timeout=DEADLINE), ZeroDivisionError)


# -- wait (CPython test_wait.py) ------------------------------------------------------------


def test_wait_on_the_same_future_twice(ex: Executor) -> None:
    fut = ex.submit(operator.mul, 1, 2)
    done, not_done = cf.wait([fut, fut], return_when=cf.ALL_COMPLETED)
    assert done == {fut} and not_done == set()


def test_wait_first_completed(ex: Executor, gate: Any) -> None:
    no_pending_on_serial(ex)
    cancelled = made("cancelled")
    quick = ex.submit(operator.mul, 21, 2)
    slow = ex.submit(gate.call())
    done, not_done = cf.wait([cancelled, quick, slow], return_when=cf.FIRST_COMPLETED)
    assert done == {quick}
    assert not_done == {cancelled, slow}
    gate.open()
    assert slow.result(timeout=DEADLINE) == "released"


def test_wait_first_completed_some_already_completed(ex: Executor, gate: Any) -> None:
    no_pending_on_serial(ex)
    notified, finished = made("cancelled-and-notified"), made("finished", 42)
    slow = ex.submit(gate.call())
    done, not_done = cf.wait([notified, finished, slow], return_when=cf.FIRST_COMPLETED)
    assert done == {notified, finished} and not_done == {slow}
    gate.open()
    slow.result(timeout=DEADLINE)


def test_wait_first_exception(ex: Executor, gate: Any, tmp_path: Any) -> None:
    no_pending_on_serial(ex)
    quick = ex.submit(operator.mul, 2, 21)
    assert quick.result(timeout=DEADLINE) == 42
    failing = ex.submit(divmod, 21, 0)
    slow = ex.submit(gate.call())
    done, not_done = cf.wait([quick, failing, slow], return_when=cf.FIRST_EXCEPTION)
    assert done == {quick, failing} and not_done == {slow}
    gate.open()
    slow.result(timeout=DEADLINE)


def test_wait_first_exception_some_already_complete(ex: Executor, gate: Any) -> None:
    no_pending_on_serial(ex)
    finished, cancelled = made("finished", 42), made("cancelled")
    notified = made("cancelled-and-notified")
    failing = ex.submit(divmod, 21, 0)
    slow = ex.submit(gate.call())
    done, not_done = cf.wait(
        [finished, cancelled, notified, failing, slow], return_when=cf.FIRST_EXCEPTION
    )
    assert done == {finished, notified, failing}
    assert not_done == {cancelled, slow}
    gate.open()
    slow.result(timeout=DEADLINE)


def test_wait_first_exception_one_already_failed(ex: Executor, gate: Any) -> None:
    no_pending_on_serial(ex)
    failed = made("failed")
    slow = ex.submit(gate.call())
    done, not_done = cf.wait([failed, slow], return_when=cf.FIRST_EXCEPTION)
    assert done == {failed} and not_done == {slow}
    gate.open()
    slow.result(timeout=DEADLINE)


def test_wait_all_completed(ex: Executor) -> None:
    given = [
        made("finished", 42),
        made("cancelled-and-notified"),
        made("failed"),
        ex.submit(divmod, 2, 0),
        ex.submit(operator.mul, 2, 21),
    ]
    done, not_done = cf.wait(given, return_when=cf.ALL_COMPLETED)
    assert done == set(given) and not_done == set()


def test_wait_timeout(ex: Executor, gate: Any) -> None:
    no_pending_on_serial(ex)
    ready = [made("cancelled-and-notified"), made("failed"), made("finished", 42)]
    slow = ex.submit(gate.call())
    done, not_done = cf.wait([*ready, slow], timeout=0.05, return_when=cf.ALL_COMPLETED)
    assert done == set(ready) and not_done == {slow}
    gate.open()
    slow.result(timeout=DEADLINE)


def test_wait_on_many_calls_released_at_once(ex: Executor, gate: Any) -> None:
    no_pending_on_serial(ex)
    futures = {ex.submit(gate.call(i)) for i in range(40)}
    gate.open()
    _done, not_done = cf.wait(futures, timeout=DEADLINE, return_when=cf.ALL_COMPLETED)
    assert not not_done


# -- as_completed (CPython test_as_completed.py) -----------------------------------------


def test_as_completed_without_timeout(ex: Executor) -> None:
    given = [
        made("cancelled-and-notified"),
        made("failed"),
        made("finished", 42),
        ex.submit(operator.mul, 2, 21),
        ex.submit(operator.mul, 7, 6),
    ]
    assert set(cf.as_completed(given, timeout=DEADLINE)) == set(given)


@pytest.mark.parametrize("timeout", [0, 0.1])
def test_as_completed_times_out(ex: Executor, gate: Any, timeout: float) -> None:
    no_pending_on_serial(ex)
    ready = {made("cancelled-and-notified"), made("failed"), made("finished", 42)}
    slow = ex.submit(gate.call())
    seen = set()
    with pytest.raises(cf.TimeoutError):
        for f in cf.as_completed(ready | {slow}, timeout):
            seen.add(f)
    assert seen == ready
    gate.open()
    slow.result(timeout=DEADLINE)


def test_as_completed_with_duplicates(ex: Executor) -> None:
    fut = ex.submit(time.sleep, 0.2)
    assert len(list(cf.as_completed(itertools.repeat(fut, 3), timeout=DEADLINE))) == 1


def test_submitted_call_survives_shutdown_without_wait(
    anyexec_backend_name: str, request: pytest.FixtureRequest
) -> None:
    e = Executor(anyexec_backend_name, workers=2)
    fut = e.submit(tasks.sleep_then, 1.0)
    e.shutdown(wait=False)
    assert fut.result(timeout=DEADLINE) == 1.0
