"""``task_timeout`` for plain functions that run in a worker *thread* (dask's workers).

A timer signal can only interrupt a process's main thread, which is how process and loky
workers stop a task (``anyexec._worker.timer.timed``). A dask worker runs tasks in threads of its
own pool, so there the calls of a chunk run one after another in a helper thread while the
worker's thread watches the clock. When a call runs past its limit, its outcome becomes a
:class:`~anyexec.errors.TaskTimeout`, the helper is abandoned (it runs on, detached; whatever
it returns is discarded) and a fresh helper carries on with the next call. The chunk then
returns normally, so every other call's result is delivered.

An abandoned thread cannot be killed from Python; :func:`abandoned` tells the backend that
some still run, so it can restart the worker process once that loses nothing (the dask
backend does, see ``anyexec_dask``).
"""

from __future__ import annotations

import contextvars
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from anyexec._worker.failures import Failure, aborted
from anyexec.errors import TaskTimeout

__all__ = ["abandoned", "count_also", "run_watched"]

_ABANDONED: set[threading.Thread] = set()
_ABANDONED_LOCK = threading.Lock()
#: Other counts of abandoned calls still running (the thread and asyncio pools').
_COUNTERS: list[Callable[[], int]] = []


def count_also(counter: Callable[[], int]) -> None:
    """Have :func:`abandoned` add ``counter()``: a pool that abandons calls in threads of
    its own (the thread and asyncio backends) registers its count here."""
    _COUNTERS.append(counter)


def abandoned() -> int:
    """How many abandoned threads of this process are still running: the helpers here and
    the calls the thread and asyncio pools abandoned. Cheap when there are none (the dask
    backend asks after every task)."""
    extra = sum(counter() for counter in _COUNTERS) if _COUNTERS else 0
    if not _ABANDONED:
        return extra
    with _ABANDONED_LOCK:
        for thread in [t for t in _ABANDONED if not t.is_alive()]:
            _ABANDONED.discard(thread)
        return len(_ABANDONED) + extra


class _Helper:
    """Runs ``fn`` over ``items[start:]`` in its own daemon thread, writing into ``out``."""

    def __init__(
        self,
        fn: Callable[..., Any],
        items: Sequence[tuple[Any, ...]],
        start: int,
        out: list[Any],
        crossing: bool,
        cond: threading.Condition,
    ) -> None:
        self.fn, self.items, self.out, self.crossing, self.cond = fn, items, out, crossing, cond
        self.index = start
        self.began = time.monotonic()
        self.finished = False
        self.abandoned = False
        self.failed = False
        context = contextvars.copy_context()  # IN_WORKER and friends, as the caller set them
        self.thread = threading.Thread(
            target=context.run, args=(self._run, start), name="anyexec-task", daemon=True
        )
        self.thread.start()

    def _run(self, start: int) -> None:
        cond, fn, out = self.cond, self.fn, self.out
        for i in range(start, len(self.items)):
            with cond:
                if self.abandoned:
                    return
                self.index, self.began = i, time.monotonic()
            try:
                outcome = fn(*self.items[i])
            except Exception as exc:
                outcome = Failure.capture(exc, self.crossing)
                self.failed = True
            except BaseException as exc:  # SystemExit and the like: this task's outcome
                outcome = Failure.capture(aborted(exc), self.crossing)
                self.failed = True
            with cond:
                if self.abandoned:
                    return
                out[i] = outcome
        with cond:
            self.finished = True
            cond.notify()


def run_watched(
    fn: Callable[..., Any], items: Sequence[tuple[Any, ...]], seconds: float, crossing: bool
) -> tuple[list[Any], bool]:
    """``fn(*args)`` for each item, each call limited to ``seconds``: the outcomes in input
    order (a :class:`~anyexec._worker.failures.Failure` where a call raised or ran too long) and
    whether any failed."""
    out: list[Any] = [None] * len(items)
    cond = threading.Condition()
    failed = False
    start = 0
    while start < len(items):
        helper = _Helper(fn, items, start, out, crossing, cond)
        with cond:
            while not helper.finished:
                left = helper.began + seconds - time.monotonic()
                if left > 0:
                    cond.wait(left)
                    continue
                helper.abandoned = True
                with _ABANDONED_LOCK:
                    _ABANDONED.add(helper.thread)
                out[helper.index] = Failure.capture(
                    TaskTimeout(
                        f"the task ran past its task_timeout of {seconds:g} s; its worker "
                        f"thread cannot be interrupted, so it was abandoned (it runs on "
                        f"detached, its result discarded)"
                    ),
                    crossing,
                )
                failed = True
                start = helper.index + 1
                break
            else:
                failed = failed or helper.failed
                start = len(items)
    return out, failed
