"""``process``: a ``concurrent.futures.ProcessPoolExecutor`` with a safe start method.

The default start method is ``forkserver`` where it exists (Linux, BSD) and ``spawn``
elsewhere: ``fork`` after threads exist can deadlock the child, and an anyexec program
usually has threads. ``mp_context="fork"`` is allowed for those who know their program is
single-threaded.
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
import sys
from typing import Any

from anyexec._limits import limit_native_threads, threads_per_worker
from anyexec.config import available_cpus
from anyexec.contract import Backend, Option
from anyexec.errors import ConfigError


def default_start_method() -> str:
    return "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"


class ProcessBackend(Backend):
    """A pool of worker processes; functions and arguments must pickle."""

    crosses = "processes"
    interrupts_tasks = True  # workers run tasks in their main thread
    options = {
        "mp_context": Option(
            str,
            "Start method: 'forkserver' (default on Linux), 'spawn' or 'fork'.",
            choices=("forkserver", "spawn", "fork"),
        ),
        "max_tasks_per_child": Option(
            int, "Replace a worker after this many submissions (Python 3.11+)."
        ),
    }

    def kill(self, executor: cf.Executor) -> None:
        """Terminate every worker process; their tasks fail with WorkerLost and the next
        submission starts a fresh pool."""
        assert isinstance(executor, cf.ProcessPoolExecutor)
        processes = list((executor._processes or {}).values())  # type: ignore[attr-defined]
        for proc in processes:
            proc.terminate()
        for proc in processes:
            proc.join(5)
            if proc.is_alive():
                proc.kill()

    def open(self, workers: int, **options: Any) -> cf.Executor:
        method = options.get("mp_context") or default_start_method()
        if method not in multiprocessing.get_all_start_methods():
            raise ConfigError(
                f"option mp_context={method!r} is not available on this platform "
                f"(available: {', '.join(multiprocessing.get_all_start_methods())})"
            )
        kwargs: dict[str, Any] = {
            "mp_context": multiprocessing.get_context(method),
            # BLAS/OpenMP pools held to about cores / workers threads each (loky does too).
            "initializer": limit_native_threads,
            "initargs": (threads_per_worker(workers, available_cpus()),),
        }
        if options.get("max_tasks_per_child") is not None:
            if sys.version_info < (3, 11):
                raise ConfigError("option max_tasks_per_child needs Python 3.11 or newer")
            kwargs["max_tasks_per_child"] = options["max_tasks_per_child"]
        return cf.ProcessPoolExecutor(max_workers=workers, **kwargs)
