"""``serial``: every call runs at once in the caller's thread. The baseline for measurement
and conformance, and the default for calls nested inside a worker."""

from __future__ import annotations

import concurrent.futures as cf
from collections.abc import Callable
from typing import Any

from anyexec.contract import Backend


class SerialExecutor(cf.Executor):
    """Runs each submitted call before ``submit`` returns; the future is already done."""

    def __init__(self) -> None:
        self._shutdown = False

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> cf.Future[Any]:
        if self._shutdown:
            raise RuntimeError("cannot schedule new futures after shutdown")
        fut: cf.Future[Any] = cf.Future()
        fut.set_running_or_notify_cancel()
        try:
            result = fn(*args, **kwargs)
        except BaseException as exc:
            fut.set_exception(exc)
            if not isinstance(exc, Exception):
                raise  # KeyboardInterrupt and SystemExit belong to the caller
        else:
            fut.set_result(result)
        return fut

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        self._shutdown = True


class SerialBackend(Backend):
    """One call at a time in the caller's thread (the baseline)."""

    crosses = "nothing"
    max_workers = 1

    def open(self, workers: int, **options: Any) -> cf.Executor:
        return SerialExecutor()

    def kill(self, executor: cf.Executor) -> None:
        """Nothing runs outside the caller: there is nothing to stop."""
