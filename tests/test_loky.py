"""The loky backend (backends/anyexec-loky): cloudpickle, options, worker crashes."""

from __future__ import annotations

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
