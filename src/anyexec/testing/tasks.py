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


# -- tasks that leave evidence: the suite counts runs and meets tasks through files ---------
# Files work across threads, processes and the workers of a cluster on this machine, and
# need nothing but the standard library (a multiprocessing counter would not reach a
# dask worker). The directory is a fresh temporary one per check.


def record(x: Any, directory: str) -> Any:
    """Leave one file per run of ``x`` in ``directory``, and return ``x``: the suite counts
    the files to catch a backend that runs a task twice, or runs a cancelled one."""
    import tempfile

    fd, _ = tempfile.mkstemp(prefix=f"run-{x}-", dir=directory)
    os.close(fd)
    return x


def runs_of(directory: str, x: Any) -> int:
    """How many times :func:`record` ran ``x`` with ``directory`` (called by the caller)."""
    prefix = f"run-{x}-"
    return sum(1 for name in os.listdir(directory) if name.startswith(prefix))


def await_file(path: str, seconds: float) -> bool:
    """Whether ``path`` exists within ``seconds`` (polled; tasks meet through files)."""
    deadline = time.monotonic() + seconds
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def meet(i: int, directory: str, seconds: float) -> bool:
    """Task ``i`` of a pair (0 or 1): announce itself, then wait up to ``seconds`` for the
    other. True only if both ran at the same time; False if the other never came (the two
    ran one after the other: inline in ``submit``, or on a single worker)."""
    open(os.path.join(directory, f"here-{i}"), "w").close()
    return await_file(os.path.join(directory, f"here-{1 - i}"), seconds)


def wait_for_go(x: Any, directory: str, seconds: float) -> str:
    """Announce the start, then wait up to ``seconds`` for the caller's ``go`` file.

    Returns ``"released"`` when the caller released it, ``"never released"`` otherwise: the
    caller writes ``go`` only after ``submit`` returned, so a backend that runs the task
    inside ``submit`` gets ``"never released"``."""
    open(os.path.join(directory, f"started-{x}"), "w").close()
    released = await_file(os.path.join(directory, "go"), seconds)
    return "released" if released else "never released"


def make_lock(x: Any) -> Any:
    """Return something that cannot be pickled (a lock): the result cannot travel back."""
    return threading.Lock()


def exit_first_time(x: int, directory: str, bad: int = 1, code: int = 3) -> int:
    """Kill the worker process the first time item ``bad`` runs; succeed on a re-run."""
    if x == bad:
        try:
            fd = os.open(os.path.join(directory, f"died-{x}"), os.O_CREAT | os.O_EXCL)
        except FileExistsError:
            return x
        os.close(fd)
        os._exit(code)
    return x


# -- for the port of CPython's concurrent.futures tests (tests/test_stdlib_futures.py) -----


def capture(*args: Any, **kwargs: Any) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """Return exactly what the call received (``submit`` must pass ``fn=``/``self=`` on)."""
    return args, kwargs


class Dummy:
    """An object whose lifetime a test watches through a weak reference."""

    def method(self) -> None:
        return None


def make_dummy(x: Any) -> Dummy:
    return Dummy()


class FalseyBoolError(Exception):
    """An exception that is false in a boolean context."""

    def __bool__(self) -> bool:
        return False


class FalseyLenError(Exception):
    """An exception whose len() is 0."""

    def __len__(self) -> int:
        return 0


def raise_type(kind: type[Exception], message: str) -> None:
    raise kind(message)


def sleep_and_print(seconds: float, text: str) -> None:
    """Sleep, then print ``text`` on the caller's stdout (run at interpreter exit by the
    shutdown tests, whose output is read back)."""
    import sys

    time.sleep(seconds)
    print(text)
    sys.stdout.flush()


def raise_timeout_on(x: int, bad: int = 1) -> int:
    """A task whose own TimeoutError must not be mistaken for map's deadline."""
    if x == bad:
        raise TimeoutError(f"the task itself timed out on {x}")
    return x
