"""The ``loky`` backend: loky's reusable process pool behind anyexec.

loky pickles with cloudpickle, so lambdas and closures work, and it detects a worker's
death (exit, signal, out-of-memory kill) and fails the affected futures with
``TerminatedWorkerError`` (a ``BrokenProcessPool``), which anyexec reports as
``anyexec.WorkerLost`` naming this backend and the exit codes.
"""

from __future__ import annotations

import concurrent.futures as cf
from collections.abc import Callable
from typing import Any

from loky import get_reusable_executor

from anyexec import Backend, Option, _compat
from anyexec.contract import PendingFutures

__all__ = ["LokyBackend", "LokyExecutor"]


class LokyExecutor(cf.Executor):
    """Submits to loky's process-wide reusable executor, fetched on every submit so that a
    pool that broke (a worker died) or was resized is replaced transparently."""

    def __init__(self, **params: Any) -> None:
        self._params = params
        self._pending = PendingFutures()
        self._closed = False
        self._pool = get_reusable_executor(**params)
        self._killed: Any = None

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> cf.Future[Any]:
        if self._closed:
            raise RuntimeError("cannot schedule new futures after shutdown")
        pool = self._pool
        if _compat.loky_pool_unusable(pool):  # a worker died: loky gives a new pool
            pool = self._pool = get_reusable_executor(**self._params)
        return self._pending.track(pool.submit(fn, *args, **kwargs))

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        self._closed = True
        if cancel_futures:
            self._pending.cancel_all()
        # Leave no worker behind: the reusable pool ends here; the next use starts another.
        # (A pool just killed is left alone: a second shutdown would undo kill_workers.)
        if self._killed is not self._pool:
            self._pool.shutdown(wait=wait)

    def kill(self) -> None:
        """Terminate the workers now; their tasks fail and the next submit starts afresh."""
        self._killed = self._pool
        self._pool.shutdown(wait=False, kill_workers=True)


class LokyBackend(Backend):
    """loky's reusable process pool; lambdas and closures work (cloudpickle)."""

    crosses = "processes"
    timeout_mode = "worker"  # workers run tasks in their main thread: a timer stops them
    options = {
        "timeout": Option((int, float), "Seconds an idle worker waits before exiting (300)."),
        "context": Option(
            str, "Start method.", choices=("loky", "loky_init_main", "spawn", "forkserver")
        ),
        "env": Option(dict, "Environment variables set in each worker.", sensitive=True),
    }

    def kill(self, executor: cf.Executor) -> None:
        assert isinstance(executor, LokyExecutor)
        executor.kill()

    def open(self, workers: int, **options: Any) -> cf.Executor:
        params: dict[str, Any] = {"max_workers": workers, "timeout": options.get("timeout", 300)}
        if "context" in options:
            params["context"] = options["context"]
        if "env" in options:
            params["env"] = {str(k): str(v) for k, v in options["env"].items()}
        return LokyExecutor(**params)
