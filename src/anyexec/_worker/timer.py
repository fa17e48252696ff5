"""A per-call time limit for workers that run tasks in their main thread (a SIGALRM timer)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from anyexec.errors import TaskTimeout

__all__ = ["in_main_thread", "timed"]


def timed(fn: Callable[..., Any], seconds: float) -> Callable[..., Any]:
    """``fn`` stopped after ``seconds`` by a SIGALRM timer: for workers that run tasks in
    their main thread (process pools, serial in the main thread). The task gets a
    TaskTimeout raised where it is, and the worker lives on. Workers that run tasks in
    threads (dask) use :func:`anyexec._worker.watch.run_watched` instead."""
    import signal

    def on_alarm(signum: int, frame: Any) -> None:
        raise TaskTimeout(f"the task ran past its task_timeout of {seconds:g} s and was stopped")

    def timed(*args: Any, **kwargs: Any) -> Any:
        previous = signal.signal(signal.SIGALRM, on_alarm)
        began = time.monotonic()
        earlier = signal.setitimer(signal.ITIMER_REAL, seconds)
        try:
            return fn(*args, **kwargs)
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)
            if earlier[0] > 0:  # someone else's timer was running: give it back
                left = earlier[0] - (time.monotonic() - began)
                signal.setitimer(signal.ITIMER_REAL, max(left, 0.001), earlier[1])

    return timed


def in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()
