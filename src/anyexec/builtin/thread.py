"""``thread``: a ``concurrent.futures.ThreadPoolExecutor``. Good for I/O and for code
that releases the GIL (numpy, most compression and hashing); the default backend."""

from __future__ import annotations

import concurrent.futures as cf
from typing import Any

from anyexec.contract import Backend, Option


class ThreadBackend(Backend):
    """A pool of threads in this process (nothing is copied)."""

    crosses = "threads"
    abandons_tasks = True
    options = {
        "thread_name_prefix": Option(str, "Prefix of the worker threads' names."),
    }

    def open(self, workers: int, **options: Any) -> cf.Executor:
        return cf.ThreadPoolExecutor(
            max_workers=workers, thread_name_prefix=options.get("thread_name_prefix", "anyexec")
        )

    def grow(self, executor: cf.Executor, workers: int) -> None:
        # ThreadPoolExecutor starts a thread on submit while it has fewer than _max_workers;
        # raising the cap replaces a thread abandoned to a task past its task_timeout.
        assert isinstance(executor, cf.ThreadPoolExecutor)
        executor._max_workers += workers  # type: ignore[attr-defined]
