"""The Executor on every built-in backend: results equal a plain loop."""

from __future__ import annotations

import asyncio
import concurrent.futures as cf
import itertools
import time

import pytest

import anyexec
from anyexec.builtin.thread import ThreadBackend
from anyexec.testing import tasks


@pytest.fixture
def ex(builtin: str):
    with anyexec.Executor(builtin, workers=2) as executor:
        yield executor


def test_map_ordered(ex: anyexec.Executor) -> None:
    assert list(ex.map(tasks.square, range(50))) == [x * x for x in range(50)]


def test_map_unordered(ex: anyexec.Executor) -> None:
    assert sorted(ex.map(tasks.square, range(50), ordered=False)) == [x * x for x in range(50)]


def test_map_several_iterables_stop_at_shortest(ex: anyexec.Executor) -> None:
    assert list(ex.map(tasks.add, range(10), range(5, 100))) == [x + x + 5 for x in range(10)]


def test_map_empty(ex: anyexec.Executor) -> None:
    assert list(ex.map(tasks.square, [])) == []


def test_map_infinite_generator_read_partially(ex: anyexec.Executor) -> None:
    it = ex.map(tasks.square, itertools.count())
    assert list(itertools.islice(it, 30)) == [x * x for x in range(30)]
    it.close()  # type: ignore[attr-defined]


def test_map_10000_items(ex: anyexec.Executor) -> None:
    assert list(ex.map(tasks.square, range(10_000))) == [x * x for x in range(10_000)]


@pytest.mark.parametrize("chunksize", [1, 7, 1000])
def test_map_fixed_chunksize(ex: anyexec.Executor, chunksize: int) -> None:
    assert list(ex.map(tasks.square, range(100), chunksize=chunksize)) == [
        x * x for x in range(100)
    ]


def test_map_buffersize_none_submits_everything(ex: anyexec.Executor) -> None:
    assert list(ex.map(tasks.square, range(100), buffersize=None)) == [x * x for x in range(100)]


def test_submit_positional_and_keyword(ex: anyexec.Executor) -> None:
    assert ex.submit(tasks.add, 1, 2, z=3).result(timeout=60) == 6
    assert ex.submit(tasks.add, 1, y=5).result(timeout=60) == 6


def test_exception_keeps_type_and_message(ex: anyexec.Executor) -> None:
    with pytest.raises(tasks.TaskError, match="task failed on 3"):
        list(ex.map(tasks.fail_on, range(10)))
    with pytest.raises(tasks.TaskError, match="task failed on 3"):
        ex.submit(tasks.fail_on, 3).result(timeout=60)


def test_results_before_a_failure_are_delivered(ex: anyexec.Executor) -> None:
    it = ex.map(tasks.fail_on, range(10), chunksize=4)
    assert [next(it) for _ in range(3)] == [0, 1, 2]
    with pytest.raises(tasks.TaskError):
        next(it)


def test_coroutine_functions_work_on_every_backend(ex: anyexec.Executor) -> None:
    assert list(ex.map(tasks.async_square, range(20))) == [x * x for x in range(20)]
    assert ex.submit(tasks.async_square, 4).result(timeout=60) == 16


def test_map_timeout(ex: anyexec.Executor) -> None:
    if ex.backend == "serial":
        pytest.skip("serial runs each task inside map(); a timeout can only be seen after it")
    it = ex.map(tasks.sleep_then, [5.0, 5.0], timeout=0.2)
    with pytest.raises(TimeoutError):
        list(it)


def test_submit_after_shutdown_raises(builtin: str) -> None:
    ex = anyexec.Executor(builtin, workers=1)
    ex.submit(tasks.square, 2).result(timeout=60)
    ex.shutdown()
    ex.shutdown()  # idempotent
    with pytest.raises(RuntimeError, match="after shutdown"):
        ex.submit(tasks.square, 2)
    with ex:  # entering again reopens
        assert ex.submit(tasks.square, 3).result(timeout=60) == 9
    assert ex.closed


def test_properties_and_repr(ex: anyexec.Executor, builtin: str) -> None:
    assert ex.backend == builtin
    assert ex.workers == (1 if builtin == "serial" else 2)
    assert f"backend={builtin!r}" in repr(ex)
    assert isinstance(ex, cf.Executor)


def test_nested_calls_default_to_serial(ex: anyexec.Executor) -> None:
    assert set(ex.map(tasks.nested_backend, range(4))) == {"serial"}
    assert ex.submit(tasks.nested_map, 5).result(timeout=60) == [0, 1, 4, 9, 16]


def test_usable_with_run_in_executor(ex: anyexec.Executor) -> None:
    async def main() -> int:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(ex, tasks.square, 7)

    assert asyncio.run(main()) == 49


def test_unordered_yields_in_completion_order() -> None:
    with anyexec.Executor("thread", workers=4) as ex:
        got = list(ex.map(tasks.sleep_then, [0.6, 0.01, 0.3, 0.02], ordered=False, chunksize=1))
    assert sorted(got) == sorted([0.6, 0.01, 0.3, 0.02])
    assert got[-1] == 0.6


def test_closing_the_iterator_cancels_pending_work() -> None:
    with anyexec.Executor("thread", workers=1) as ex:
        started = time.monotonic()
        it = ex.map(tasks.sleep_then, [0.2] * 50, chunksize=1, buffersize=10)
        next(it)
        it.close()  # type: ignore[attr-defined]
    # the 9 queued chunks were cancelled: shutdown waited for at most the running one
    assert time.monotonic() - started < 0.2 * 10


class CountingBackend(ThreadBackend):
    """A thread backend that counts submissions, to see chunking from the outside."""

    def __init__(self) -> None:
        self.submissions = 0
        self.name = "counting"

    def submit_batch(self, executor, calls):  # type: ignore[no-untyped-def]
        self.submissions += len(calls)
        return super().submit_batch(executor, calls)


def test_chunksize_is_honoured_on_threads() -> None:
    backend = CountingBackend()
    with anyexec.Executor(backend, workers=2) as ex:
        assert list(ex.map(tasks.square, range(100), chunksize=10)) == [x * x for x in range(100)]
    assert backend.submissions == 10


def test_auto_chunks_tiny_tasks() -> None:
    backend = CountingBackend()
    with anyexec.Executor(backend, workers=2) as ex:
        list(ex.map(tasks.identity, range(20_000)))
    assert backend.submissions < 200  # far fewer submissions than tasks


def test_unpicklable_function_on_process_is_a_clear_error() -> None:
    with anyexec.Executor("process", workers=1) as ex:
        with pytest.raises(anyexec.UnpicklableError, match="loky"):
            list(ex.map(lambda x: x, range(3)))
        with pytest.raises(anyexec.UnpicklableError, match="function"):
            ex.submit(lambda: 1).result(timeout=60)
        # the pool still works afterwards
        assert ex.submit(tasks.square, 3).result(timeout=60) == 9


def test_unpicklable_exception_reaches_caller(builtin: str) -> None:
    with anyexec.Executor(builtin, workers=1) as ex:
        expected = anyexec.UnpicklableError if builtin == "process" else tasks.UnpicklableTaskError
        with pytest.raises(expected, match="cannot travel 1"):
            list(ex.map(tasks.raise_unpicklable, [1]))
        with pytest.raises(expected, match="cannot travel 2"):
            ex.submit(tasks.raise_unpicklable, 2).result(timeout=60)


def test_traceback_names_the_task_function(builtin: str) -> None:
    import traceback

    with anyexec.Executor(builtin, workers=1) as ex:
        try:
            list(ex.map(tasks.fail_on, [3]))
        except tasks.TaskError as exc:
            text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        else:  # pragma: no cover
            pytest.fail("no exception")
    assert "fail_on" in text


def test_dead_process_worker_gives_workerlost_and_recovers() -> None:
    with anyexec.Executor("process", workers=1) as ex:
        with pytest.raises(anyexec.WorkerLost, match=r"'process'.*exit codes: EXIT\(3\)"):
            ex.submit(tasks.exit_process, 1).result(timeout=60)
        assert ex.submit(tasks.square, 5).result(timeout=60) == 25
