"""The loky backend (backends/anyexec-loky): cloudpickle, options, worker crashes."""

from __future__ import annotations

import os

import pytest

pytest.importorskip("anyexec_loky")

import anyexec
from anyexec.testing import tasks


def read_env(name: str) -> str | None:
    import os

    return os.environ.get(name)


def segfault(x: int) -> int:
    import ctypes

    ctypes.string_at(0)  # dereference NULL: SIGSEGV in the worker
    return x


@pytest.fixture
def ex():
    with anyexec.Executor("loky", workers=2) as executor:
        yield executor


def test_lambdas_and_closures(ex: anyexec.Executor) -> None:
    offset = 10
    assert list(ex.map(lambda x: x + offset, range(5))) == [10, 11, 12, 13, 14]
    assert ex.submit(lambda: offset * 2).result(timeout=60) == 20


def test_options_env_and_timeout() -> None:
    with anyexec.Executor("loky", workers=1, env={"ANYEXEC_TEST_VAR": "42"}, timeout=30) as ex:
        assert ex.submit(read_env, "ANYEXEC_TEST_VAR").result(timeout=60) == "42"
        assert ex.options == {"env": {"ANYEXEC_TEST_VAR": "42"}, "timeout": 30}


def test_option_context() -> None:
    with anyexec.Executor("loky", workers=1, context="spawn") as ex:
        assert ex.submit(tasks.square, 6).result(timeout=60) == 36


def test_unknown_option() -> None:
    with pytest.raises(
        anyexec.ConfigError,
        match=r"backend 'loky' does not take option 'nope'.*context, env, timeout",
    ):
        anyexec.Executor("loky", nope=1)


@pytest.mark.parametrize(
    ("task", "code"), [(tasks.exit_process, r"EXIT\(3\)"), (segfault, "SIGSEGV")]
)
def test_worker_crash_is_a_clear_error_and_the_executor_recovers(
    ex: anyexec.Executor, task: object, code: str
) -> None:
    with pytest.raises(anyexec.WorkerLost, match=rf"'loky'(.|\n)*{code}"):
        ex.submit(task, 1).result(timeout=60)  # type: ignore[arg-type]
    assert ex.submit(tasks.square, 3).result(timeout=60) == 9
    with pytest.raises(anyexec.WorkerLost, match="'loky'"):
        list(ex.map(task, range(4)))  # type: ignore[arg-type]
    assert list(ex.map(tasks.square, range(5))) == [0, 1, 4, 9, 16]


def _running(fut: object, timeout: float = 60) -> None:
    import time

    deadline = time.monotonic() + timeout
    while not fut.running() and time.monotonic() < deadline:  # type: ignore[attr-defined]
        time.sleep(0.02)


def test_each_executor_owns_its_pool() -> None:
    """kill_running and shutdown of one loky Executor never touch another's tasks."""
    a = anyexec.Executor("loky", workers=1)
    b = anyexec.Executor("loky", workers=1)
    try:
        pid_a = a.submit(os.getpid).result(timeout=60)
        pid_b = b.submit(os.getpid).result(timeout=60)
        assert pid_a != pid_b
        slow = a.submit(tasks.sleep_then, 1.0, "a survived")
        doomed = b.submit(tasks.sleep_then, 60)
        _running(slow)
        _running(doomed)
        b.kill_running()
        with pytest.raises(anyexec.WorkerLost, match="'loky'"):
            doomed.result(timeout=60)
        assert slow.result(timeout=60) == "a survived"
        assert a.submit(os.getpid).result(timeout=60) == pid_a  # a's worker untouched
        assert b.submit(tasks.square, 3).result(timeout=60) == 9  # b starts afresh
        long = a.submit(tasks.sleep_then, 60)
        _running(long)
        b.shutdown(wait=True)  # returns without waiting for a's task
        assert not long.done()
    finally:
        a.abort()
        b.abort()
