"""``process``: a ``concurrent.futures.ProcessPoolExecutor`` with a safe start method.

The default start method is ``forkserver`` where it exists (Linux, BSD) and ``spawn``
elsewhere: ``fork`` after threads exist can deadlock the child, and an anyexec program
usually has threads. ``mp_context="fork"`` is allowed for those who know their program is
single-threaded.
"""

from __future__ import annotations

import concurrent.futures as cf
import concurrent.futures.process  # noqa: F401  (registers its exit hook before anyexec's)
import multiprocessing
import os
import signal
import sys
import time
from multiprocessing import connection as mp_connection
from typing import Any

from anyexec import _compat, _exit
from anyexec._worker.limits import threads_per_worker
from anyexec._worker.processes import ExitCodes, init_worker, note_exit
from anyexec.config import available_cpus
from anyexec.contract import Backend, Option
from anyexec.errors import ConfigError

# The standard process pool's exit hook is registered by now; anyexec's must run before it.
_exit.arm("process")


def describe_exit(code: int) -> str:
    """``EXIT(3)`` or ``SIGKILL(-9)``, as loky writes them."""
    if code < 0:
        try:
            return f"{signal.Signals(-code).name}({code})"
        except ValueError:
            return f"SIGNAL({code})"
    return f"EXIT({code})"


def exit_codes(executor: cf.Executor) -> list[str]:
    """How the workers of a broken pool ended (those not stopped by the pool itself)."""
    ended: dict[int, int] = getattr(_compat.process_pool_context(executor), "ended", {})
    for proc in _compat.pool_processes(executor):
        note_exit(proc, ended)
    return sorted({describe_exit(c) for c in ended.values()})


#: Modules every worker needs to run a task; see :func:`_preload`.
PRELOAD = ("anyexec._worker.tasks", "anyexec._worker.limits", "anyexec._worker.processes")


def _preload(ctx: Any) -> None:
    """Have the forkserver import what each worker needs once, so workers forked from it
    start with it loaded (with the imports made lazy, a pool's create-run-close then
    costs what a raw ProcessPoolExecutor's does, ~0.04 s; docs/performance.md). Only
    takes effect before the forkserver starts; the user's own preload list is kept."""
    current = _compat.forkserver_preload()
    if not set(PRELOAD) <= set(current):
        ctx.set_forkserver_preload(list(dict.fromkeys([*current, *PRELOAD])))


def stop_processes(processes: list[Any]) -> None:
    """Terminate worker processes (SIGTERM), then SIGKILL any still running 5 s later; used
    by ``kill`` of the process and loky backends.

    A process counts as ended once its sentinel is ready, whoever reaps it: the pool's own
    manager thread may collect the exit status first, after which ``is_alive()`` cannot
    tell (``waitpid`` fails with ECHILD and reads as "still running")."""
    for proc in processes:
        proc.terminate()
    deadline = time.monotonic() + 5
    running = {proc.sentinel: proc for proc in processes}
    while running and (left := deadline - time.monotonic()) > 0:
        for ready in mp_connection.wait(list(running), left):
            running.pop(ready)
    for proc in running.values():
        _sigkill(proc)


def _sigkill(proc: Any) -> None:
    """SIGKILL a worker: ``multiprocessing`` processes have ``kill()``; loky's have only
    ``terminate()``, so the signal is sent by pid (an already-ended one is skipped)."""
    if proc.exitcode is not None:
        return
    try:
        os.kill(proc.pid, getattr(signal, "SIGKILL", signal.SIGTERM))
    except ProcessLookupError:
        pass


def default_start_method() -> str:
    return "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"


def _available_start_method(value: str) -> None:
    """``mp_context`` must be a start method this platform has (no fork on Windows)."""
    methods = multiprocessing.get_all_start_methods()
    if value not in methods:
        raise ValueError(f"is not available on this platform (available: {', '.join(methods)})")


def _needs_python_311(value: int) -> None:
    """``max_tasks_per_child`` exists in ``ProcessPoolExecutor`` from Python 3.11 on."""
    if sys.version_info < (3, 11):
        raise ValueError("needs Python 3.11 or newer")


class ProcessBackend(Backend):
    """A pool of worker processes; functions and arguments must pickle."""

    crosses = "processes"
    timeout_mode = "worker"  # workers run tasks in their main thread: a timer stops them
    options = {
        "mp_context": Option(
            str,
            "Start method: 'forkserver' (default on Linux), 'spawn' or 'fork'.",
            choices=("forkserver", "spawn", "fork"),
            check=_available_start_method,
        ),
        "max_tasks_per_child": Option(
            int,
            "Replace a worker after this many submissions (Python 3.11+).",
            minimum=1,
            check=_needs_python_311,
        ),
    }

    def exit_codes(self, executor: cf.Executor | None) -> list[str]:
        return [] if executor is None else exit_codes(executor)

    def kill(self, executor: cf.Executor) -> None:
        """Terminate every worker process; their tasks fail with WorkerLost and the next
        submission starts a fresh pool."""
        assert isinstance(executor, cf.ProcessPoolExecutor)
        _compat.process_pool_forget_cancelled(executor)
        stop_processes(_compat.pool_processes(executor))

    def open(self, workers: int, **options: Any) -> cf.Executor:
        method = options.get("mp_context") or default_start_method()
        if method not in multiprocessing.get_all_start_methods():
            raise ConfigError(
                f"option mp_context={method!r} is not available on this platform "
                f"(available: {', '.join(multiprocessing.get_all_start_methods())})"
            )
        ctx = multiprocessing.get_context(method)
        if method == "forkserver":
            _preload(ctx)
        kwargs: dict[str, Any] = {
            "mp_context": ExitCodes(ctx),
            # BLAS/OpenMP pools held to about cores / workers threads each (loky does too),
            # and each worker exits when this process is gone (killed by a signal).
            "initializer": init_worker,
            "initargs": (threads_per_worker(workers, available_cpus()), os.getpid()),
        }
        if options.get("max_tasks_per_child") is not None:
            if sys.version_info < (3, 11):
                raise ConfigError("option max_tasks_per_child needs Python 3.11 or newer")
            kwargs["max_tasks_per_child"] = options["max_tasks_per_child"]
        return cf.ProcessPoolExecutor(max_workers=workers, **kwargs)
