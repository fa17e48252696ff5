"""Task functions for the outcome and per-worker set-up checks (``anyexec.testing.outcomes``).

Kept apart from the checks so a worker process that unpickles one imports nothing but this
module (no pytest).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

#: What the executor's initializer set in this worker (a thread's or a process's view).
SETUP: dict[str, Any] = {}
_LOCAL = threading.local()


def remember(value: Any) -> None:
    """An initializer: record ``value`` for this worker, per process and per thread."""
    SETUP["value"] = value
    _LOCAL.value = value


def recall(x: int) -> tuple[Any, int]:
    """What this worker's initializer set, seen from a task (thread-local first: thread
    workers share the process-wide dict)."""
    return getattr(_LOCAL, "value", SETUP.get("value")), x


def refuse(*_: Any) -> None:
    """An initializer that fails."""
    raise RuntimeError("the initializer refused")


def scaled(x: int, *, scale: int = 1, offset: int = 0) -> int:
    return x * scale + offset


def leave_on(x: int, bad: int = 3) -> int:
    """Raises SystemExit (a BaseException) on ``bad``."""
    if x == bad:
        raise SystemExit(bad)
    return x


def lock_on(x: int, bad: int = 2) -> Any:
    """Returns an unpicklable result on ``bad``."""
    return threading.Lock() if x == bad else x


def breaks_at(n: int, bad: int) -> Iterator[int]:
    """An input iterable that raises ValueError when it reaches ``bad``."""
    for i in range(n):
        if i == bad:
            raise ValueError(f"the input broke at {i}")
        yield i


def double(x: int) -> int:
    return 2 * x
