"""Task functions for tests and the conformance suite.

They live in an importable module so that every backend -- process pools with spawn or
forkserver, remote dask workers -- can unpickle them by reference.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any


class TaskError(ValueError):
    """Raised on purpose by :func:`fail_on`."""


class UnpicklableTaskError(Exception):
    """An exception that pickles but cannot be rebuilt (its __init__ needs two arguments)."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


def square(x: int) -> int:
    return x * x


def add(x: int, y: int = 0, *, z: int = 0) -> int:
    return x + y + z


def identity(x: Any) -> Any:
    return x


def return_none(x: Any) -> None:
    return None


def fail_on(x: int, bad: int = 3) -> int:
    if x == bad:
        raise TaskError(f"task failed on {x}")
    return x


def raise_unpicklable(x: int) -> int:
    raise UnpicklableTaskError(f"cannot travel {x}", 7)


def sleep_then(x: float, value: Any = None) -> Any:
    time.sleep(x)
    return x if value is None else value


def sleep_for(x: Any, seconds: float = 0.05) -> Any:
    time.sleep(seconds)
    return x


def slow_on(x: int, slow: int = 0, seconds: float = 30.0) -> int:
    if x == slow:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:  # in short sleeps, so a timer can stop it
            time.sleep(0.05)
    return x


async def async_square(x: int) -> int:
    import anyio

    await anyio.sleep(0)
    return x * x


async def async_sleep_on(x: int, slow: int = 1, seconds: float = 30.0) -> int:
    import anyio

    await anyio.sleep(seconds if x == slow else 0)
    return x


def where(x: Any) -> tuple[int, int]:
    """(process id, thread id) of the worker that ran the task."""
    return os.getpid(), threading.get_ident()


def nested_backend(x: int) -> str:
    """The backend a nested ``anyexec.current()`` picks inside a task."""
    import anyexec

    return anyexec.current().backend


def nested_map(x: int) -> list[int]:
    import anyexec

    return list(anyexec.map(square, range(x)))


def array_sum(a: Any) -> float:
    return float(a.sum())


def array_double(a: Any) -> Any:
    return a * 2


def exit_process(x: int, code: int = 3) -> int:
    os._exit(code)
