"""The map engine's rules, on every installed backend: one outcome per input at its index,
the same behaviour through map and amap, errors of one shape, nothing kept alive."""

from __future__ import annotations

import concurrent.futures as cf
import functools
import gc
import importlib.util
import itertools
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

import anyexec
from anyexec.builtin.thread import ThreadBackend
from anyexec.testing import tasks

ALL = ["serial", "thread", "process", "asyncio"] + [
    name
    for name, dist in (("loky", "anyexec_loky"), ("dask", "anyexec_dask"))
    if importlib.util.find_spec(dist)
]
CROSSING = [b for b in ALL if b in ("process", "loky", "dask")]


@pytest.fixture(scope="module", params=ALL)
def ex(request: pytest.FixtureRequest) -> Iterator[anyexec.Executor]:
    with anyexec.Executor(request.param, workers=2) as executor:
        yield executor


# -- tasks (module level: process workers import them) ------------------------------------


def abort_on(x: int) -> int:
    if x == 3:
        raise SystemExit(3)
    if x == 5:
        raise KeyboardInterrupt
    if x == 6:
        raise GeneratorExit
    return x


def lock_on(x: int) -> Any:
    return threading.Lock() if x == 2 else x


class Box:
    """A result that can be watched for being freed."""

    def __init__(self, x: int) -> None:
        self.x = x


def box(x: int) -> Box:
    return Box(x)


class Touchy:
    """A result that refuses to be compared (as numpy arrays do)."""

    def __init__(self, x: int) -> None:
        self.x = x

    def __eq__(self, other: object) -> bool:
        raise TypeError("the truth value of this object is ambiguous")

    __hash__ = object.__hash__


def touchy(x: int) -> Touchy:
    return Touchy(x)


def failing_input(n: int, bad: int) -> Iterator[int]:
    for i in range(n):
        if i == bad:
            raise ValueError(f"input broke at {i}")
        yield i


SETUP: dict[str, Any] = {}


def remember(key: str, value: Any) -> None:
    SETUP[key] = value


def recall(x: int) -> Any:
    return SETUP.get("key"), x


def refuse(*_: Any) -> None:
    raise RuntimeError("no model for you")


def crash_once_then_recall(x: int, marker: str) -> Any:
    if x == 1 and not os.path.exists(marker):
        open(marker, "w").close()
        os._exit(3)
    return SETUP.get("key"), x


def scaled(x: int, *, scale: int = 1, offset: int = 0) -> int:
    return x * scale + offset


# -- one outcome per input, at its index ---------------------------------------------------


def test_base_exceptions_are_each_tasks_outcome(ex: anyexec.Executor) -> None:
    out = list(ex.map(abort_on, range(8), chunksize=8, return_exceptions=True))
    kinds = [type(o).__name__ for o in out]
    assert kinds == ["int"] * 3 + ["TaskAborted", "int", "TaskAborted", "TaskAborted", "int"], out
    assert isinstance(out[3].__cause__, SystemExit) and out[3].__cause__.args == (3,)
    assert isinstance(out[5].__cause__, KeyboardInterrupt)
    assert isinstance(out[6].__cause__, GeneratorExit)
    got: list[int] = []
    with pytest.raises(anyexec.TaskAborted) as info:
        for value in ex.map(abort_on, range(8), chunksize=2):
            got.append(value)
    assert got == [0, 1, 2] and isinstance(info.value.__cause__, SystemExit)
    # The workers, the event loop and the pool are all still there.
    assert list(ex.map(tasks.square, range(4))) == [0, 1, 4, 9]
    with pytest.raises(anyexec.TaskAborted):
        ex.submit(abort_on, 3).result(timeout=60)
    assert ex.submit(tasks.square, 3).result(timeout=60) == 9


def test_base_exceptions_through_amap(ex: anyexec.Executor) -> None:
    async def collect() -> list[Any]:
        return [v async for v in ex.amap(abort_on, range(8), return_exceptions=True)]

    out = anyio.run(collect)
    assert [type(o).__name__ for o in out].count("TaskAborted") == 3


@pytest.mark.parametrize("backend", CROSSING)
def test_unpicklable_result_fails_only_its_item(backend: str) -> None:
    with anyexec.Executor(backend, workers=2) as ex:
        out = list(ex.map(lock_on, range(6), chunksize=6, return_exceptions=True))
        assert out[:2] == [0, 1] and out[3:] == [3, 4, 5], out
        assert isinstance(out[2], anyexec.UnpicklableError)
        assert "result" in str(out[2]) and "lock" in str(out[2]).lower()
        with pytest.raises(anyexec.UnpicklableError, match="result"):
            ex.submit(threading.Lock).result(timeout=60)


@pytest.mark.parametrize("ordered", [True, False])
def test_results_before_a_failing_input_are_delivered(ex: anyexec.Executor, ordered: bool) -> None:
    got: list[int] = []
    with pytest.raises(ValueError, match="input broke at 500"):
        for value in ex.map(tasks.square, failing_input(1000, 500), chunksize=10, ordered=ordered):
            got.append(value)
    assert sorted(got) == [i * i for i in range(500)]


def test_map_timeout_is_the_builtin_timeout_error(ex: anyexec.Executor) -> None:
    # Each call takes 1 s, so the map cannot finish within its 0.2 s however the machine runs.
    slow = functools.partial(tasks.sleep_for, seconds=1.0)
    it = ex.map(slow, range(8), timeout=0.2, chunksize=1)
    caught = None
    try:
        list(it) if ex.backend != "serial" else [time.sleep(0.3), next(it), next(it)]
    except TimeoutError as exc:  # the builtin, on every Python version
        caught = exc
    assert isinstance(caught, cf.TimeoutError) and isinstance(caught, anyexec.MapTimeout)


def test_amap_abandons_or_stops_tasks_past_task_timeout(ex: anyexec.Executor) -> None:
    if ex.settings.backend.timeout_mode == "none" and ex.backend != "serial":
        pytest.skip("this backend refuses task_timeout on plain functions")
    if ex.backend == "serial":
        pytest.skip("serial runs in the event loop's thread, where no timer is set")

    async def collect() -> list[Any]:
        return [
            v
            async for v in ex.amap(
                tasks.slow_on, range(4), task_timeout=0.5, return_exceptions=True
            )
        ]

    out = anyio.run(collect)
    assert isinstance(out[0], anyexec.TaskTimeout), out
    assert out[1:] == [1, 2, 3]


# -- the standard library's Executor behaviour ----------------------------------------------


def test_results_are_never_compared(ex: anyexec.Executor) -> None:
    assert [t.x for t in ex.map(touchy, range(50))] == list(range(50))
    assert [t.x for t in ex.map(touchy, range(10), ordered=False, return_exceptions=True)]


def test_map_without_iterables_is_empty(ex: anyexec.Executor) -> None:
    assert list(ex.map(str)) == []


def test_the_map_iterator_keeps_no_delivered_result(ex: anyexec.Executor) -> None:
    it = ex.map(box, range(10), chunksize=5)
    first = next(it)
    ref = weakref.ref(first)
    del first
    gc.collect()
    assert ref() is None
    assert [b.x for b in it] == list(range(1, 10))


def test_a_finished_future_lets_go_of_its_call(ex: anyexec.Executor) -> None:
    arg = Box(3)
    ref = weakref.ref(arg)
    fut = ex.submit(tasks.identity, arg)
    assert fut.result(timeout=60).x == 3
    del arg
    gc.disable()
    try:
        time.sleep(0.05)  # the pool lets go of its work item just after setting the result
        if ex.backend in CROSSING:  # the result is a copy: nothing holds the argument
            assert ref() is None
        assert getattr(fut, "_inner", None) is None
    finally:
        gc.enable()


def test_buffersize_none_submits_everything_at_once() -> None:
    done: list[int] = []
    ex = anyexec.Executor("thread", workers=2)
    ex.map(done.append, range(100), buffersize=None)  # never iterated
    ex.shutdown(wait=True)
    assert len(done) == 100


def test_max_workers_is_an_alias() -> None:
    assert anyexec.Executor("thread", max_workers=3).workers == 3
    with pytest.raises(anyexec.ConfigError, match="not both"):
        anyexec.Executor("thread", workers=2, max_workers=3)


# -- contract violations by a backend -----------------------------------------------------


class _Tampering(ThreadBackend):
    """A thread backend whose chunk futures are replaced by ``make(real_future)``."""

    def __init__(self, make: Any) -> None:
        self.make = make

    def submit_batch(self, executor: cf.Executor, calls: Any) -> list[cf.Future[Any]]:
        out = []
        for real in super().submit_batch(executor, calls):
            fake: cf.Future[Any] = cf.Future()
            real.add_done_callback(lambda r, fake=fake: self.make(r, fake))
            out.append(fake)
        return out


def test_a_chunk_failing_as_a_whole_is_shaped_per_item() -> None:
    def time_out(real: cf.Future[Any], fake: cf.Future[Any]) -> None:
        fake.set_exception(TimeoutError("the engine's own per-chunk limit"))

    with anyexec.Executor(_Tampering(time_out), workers=2) as ex:
        out = list(ex.map(tasks.square, range(6), chunksize=3, return_exceptions=True))
        assert len(out) == 6 and all(isinstance(o, TimeoutError) for o in out)

    def cancel(real: cf.Future[Any], fake: cf.Future[Any]) -> None:
        fake.cancel()
        fake.set_running_or_notify_cancel()

    with anyexec.Executor(_Tampering(cancel), workers=2) as ex:
        out = list(ex.map(tasks.square, range(4), chunksize=2, return_exceptions=True))
        assert len(out) == 4 and all(isinstance(o, cf.CancelledError) for o in out)
        with pytest.raises(cf.CancelledError, match="cancelled a chunk"):
            list(ex.map(tasks.square, range(4), chunksize=2))


def test_a_malformed_chunk_result_names_the_backend() -> None:
    def mangle(real: cf.Future[Any], fake: cf.Future[Any]) -> None:
        fake.set_result(None)

    with anyexec.Executor(_Tampering(mangle), workers=2) as ex:
        with pytest.raises(anyexec.BackendError, match="returned NoneType"):
            list(ex.map(tasks.square, range(4)))


def test_a_pickling_error_raised_by_submit_is_shaped() -> None:
    import pickle

    class Eager(ThreadBackend):
        crosses = "processes"

        def submit_batch(self, executor: cf.Executor, calls: Any) -> list[cf.Future[Any]]:
            for call in calls:
                pickle.dumps(call)
            return super().submit_batch(executor, calls)

    with anyexec.Executor(Eager(), workers=2) as ex:
        with pytest.raises(anyexec.UnpicklableError, match="argument 0 of task 1"):
            list(ex.map(tasks.identity, [1, threading.Lock()], chunksize=2))


# -- per-worker set-up and keyword items ---------------------------------------------------


def test_initializer_runs_in_every_worker(ex: anyexec.Executor) -> None:
    with anyexec.Executor(
        ex.backend, workers=2, initializer=remember, initargs=("key", "ready")
    ) as init_ex:
        out = list(init_ex.map(recall, range(20), chunksize=1))
        assert out == [("ready", i) for i in range(20)]
        assert init_ex.submit(recall, 7).result(timeout=60) == ("ready", 7)


def test_a_failing_initializer_is_a_clear_error(ex: anyexec.Executor) -> None:
    with anyexec.Executor(ex.backend, workers=2, initializer=refuse) as init_ex:
        with pytest.raises(anyexec.InitializerError, match="refuse") as info:
            list(init_ex.map(tasks.square, range(4)))
        assert isinstance(info.value.__cause__, RuntimeError)
        with pytest.raises(anyexec.InitializerError):
            init_ex.submit(tasks.square, 2).result(timeout=60)


@pytest.mark.parametrize("backend", [b for b in CROSSING if b != "dask"])
def test_a_replacement_worker_runs_the_initializer(backend: str, tmp_path: Path) -> None:
    marker = str(tmp_path / "crashed")
    with anyexec.Executor(
        backend, workers=2, initializer=remember, initargs=("key", "ready")
    ) as ex:
        out = list(ex.map(crash_once_then_recall, range(6), [marker] * 6, retries=1))
    assert out == [("ready", i) for i in range(6)]


def test_starmap_takes_tuples_and_keyword_items(ex: anyexec.Executor) -> None:
    items = [(1,), anyexec.Args(2, scale=10), anyexec.Args(3, scale=2, offset=1), (4,)]
    assert list(ex.starmap(scaled, items)) == [1, 20, 7, 4]
    unordered = ex.starmap(scaled, [anyexec.Args(i, scale=3) for i in range(20)], ordered=False)
    assert sorted(unordered) == [3 * i for i in range(20)]
    endless = (anyexec.Args(i, offset=1) for i in itertools.count())
    assert list(itertools.islice(ex.starmap(scaled, endless), 50)) == list(range(1, 51))

    async def collect() -> list[int]:
        return [v async for v in ex.astarmap(scaled, [anyexec.Args(i, scale=2) for i in range(5)])]

    assert anyio.run(collect) == [0, 2, 4, 6, 8]


# -- Ctrl-C in the caller still stops a serial map ----------------------------------------


def test_ctrl_c_in_the_caller_interrupts_a_serial_map(tmp_path: Path) -> None:
    script = tmp_path / "serial_map.py"
    script.write_text(
        textwrap.dedent(
            """
            import time, anyexec
            print("started", flush=True)
            list(anyexec.map(time.sleep, [0.5] * 200))
            """
        )
    )
    env = {**os.environ, "ANYEXEC_BACKEND": "serial"}
    proc = subprocess.Popen(
        [sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == b"started"
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode != 0 and b"KeyboardInterrupt" in err, err[-2000:]


def test_initializer_through_using_and_the_config_file(tmp_path: Path) -> None:
    with anyexec.using("thread", workers=2, initializer=remember, initargs=("key", "using")):
        assert list(anyexec.map(recall, range(3))) == [("using", i) for i in range(3)]
    (tmp_path / "work" / "anyexec.toml").write_text(
        'backend = "thread"\ninitializer = "test_engine:remember"\ninitargs = ["key", "file"]\n'
    )
    anyexec.config.clear_cache()
    assert list(anyexec.starmap(recall, [(1,), (2,)])) == [("file", 1), ("file", 2)]
    (tmp_path / "work" / "anyexec.toml").write_text('initializer = "no_such_module:f"\n')
    anyexec.config.clear_cache()
    with pytest.raises(anyexec.ConfigError, match="cannot import"):
        anyexec.current()


def test_module_level_starmap_and_astarmap() -> None:
    with anyexec.using("thread", workers=2):
        assert list(anyexec.starmap(scaled, [anyexec.Args(1, scale=5)])) == [5]

        async def collect() -> list[int]:
            return [v async for v in anyexec.astarmap(scaled, [(2,), anyexec.Args(3, offset=1)])]

        assert anyio.run(collect) == [2, 4]
