"""``thread``: a ``concurrent.futures.ThreadPoolExecutor``. Good for I/O and for code
that releases the GIL (numpy, most compression and hashing); the default backend."""

from __future__ import annotations

import concurrent.futures as cf
from typing import Any

from anyexec import _compat
from anyexec.contract import Backend, Option


class ThreadBackend(Backend):
    """A pool of threads in this process (nothing is copied)."""

    crosses = "threads"
    timeout_mode = "abandon"
    options = {
        "thread_name_prefix": Option(str, "Prefix of the worker threads' names."),
    }

    def open(self, workers: int, **options: Any) -> cf.Executor:
        return cf.ThreadPoolExecutor(
            max_workers=workers, thread_name_prefix=options.get("thread_name_prefix", "anyexec")
        )

    def grow(self, executor: cf.Executor, workers: int) -> None:
        assert isinstance(executor, cf.ThreadPoolExecutor)
        _compat.thread_pool_add_workers(executor, workers)
