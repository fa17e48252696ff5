"""The ``loky`` backend: a loky process pool behind anyexec, one per Executor.

loky pickles with cloudpickle, so lambdas and closures work, and it detects a worker's
death (exit, signal, out-of-memory kill) and fails the affected futures with
``TerminatedWorkerError`` (a ``BrokenProcessPool``), which anyexec reports as
``anyexec.WorkerLost`` naming this backend and the exit codes.

Each ``anyexec.Executor`` owns its pool (``loky.ProcessPoolExecutor``), not loky's
process-wide reusable executor: ``kill_running()``, ``shutdown()`` and a dead worker then
touch only that Executor's tasks, never another one's. The reusable executor saves nothing
here, as anyexec closes a pool with its Executor anyway; a create-run-close cycle costs
the same either way (docs/backends.md).
"""

from __future__ import annotations

import concurrent.futures as cf
import os
import threading
from collections.abc import Callable
from typing import Any

import loky
from loky.backend.context import get_context

from anyexec import Backend, Option, _compat, _exit
from anyexec._worker.processes import watch_parent
from anyexec.builtin.process import stop_processes
from anyexec.contract import PendingFutures

__all__ = ["LokyBackend", "LokyExecutor"]


class LokyExecutor(cf.Executor):
    """One loky pool of this Executor's own; a pool that broke (a worker died) or was
    killed is replaced on the next submit, as the process backend's is."""

    def __init__(self, **params: Any) -> None:
        self._params = params
        self._pending = PendingFutures()
        self._closed = False
        self._lock = threading.Lock()
        self._killed = False
        self._pool = self._new_pool()

    def _new_pool(self) -> Any:
        # Each worker watches this process and exits when it is gone (SIGKILL, SIGTERM).
        return loky.ProcessPoolExecutor(
            initializer=watch_parent, initargs=(os.getpid(),), **self._params
        )

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> cf.Future[Any]:
        if self._closed:
            raise RuntimeError("cannot schedule new futures after shutdown")
        with self._lock:
            if self._killed or _compat.loky_pool_unusable(self._pool):  # a worker died
                self._killed = False
                self._pool.shutdown(wait=False)
                self._pool = self._new_pool()
            pool = self._pool
        fut = self._pending.track(pool.submit(fn, *args, **kwargs))
        _arm_exit_hook()
        return fut

    def processes(self) -> list[Any]:
        """The current pool's worker processes."""
        return _compat.pool_processes(self._pool)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        self._closed = True
        if cancel_futures:
            self._pending.cancel_all()
        self._pool.shutdown(wait=wait)

    def kill(self) -> None:
        """Terminate this pool's workers now: their tasks fail with ``TerminatedWorkerError``
        (``WorkerLost``), and the next submit starts a fresh pool. Other Executors' loky
        pools are not touched."""
        with self._lock:
            self._killed = True  # replaced on the next submit, even before loky noticed
            processes = self.processes()
        stop_processes(processes)


_armed = False


def _arm_exit_hook() -> None:
    """loky registers its interpreter-exit hook when the first pool of the process starts
    (its first submit); anyexec's must be registered after it, so that it runs first
    (``anyexec._exit``). Called after each submit; does something once."""
    global _armed
    if not _armed:
        _armed = True
        _exit.arm("loky")


class LokyBackend(Backend):
    """A loky process pool per Executor; lambdas and closures work (cloudpickle)."""

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
            params["context"] = get_context(options["context"])
        if "env" in options:
            params["env"] = {str(k): str(v) for k, v in options["env"].items()}
        return LokyExecutor(**params)
