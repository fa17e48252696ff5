"""Keep process workers from oversubscribing the CPUs with native thread pools.

Each of p worker processes would otherwise start one BLAS/OpenMP thread per core, so p
workers run p × cores threads. As loky does, every worker is held to about cores / p
threads: through the environment variables the libraries read when they load, and through
threadpoolctl for any that a preloaded module already started.
"""

from __future__ import annotations

import os
import sys

__all__ = ["THREAD_VARS", "limit_native_threads", "threads_per_worker"]

THREAD_VARS = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "BLIS_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "NUMEXPR_NUM_THREADS",
)


def threads_per_worker(workers: int, cpus: int) -> int:
    return max(1, cpus // max(1, workers))


def limit_native_threads(n: int) -> None:
    """Worker initializer: at most ``n`` native threads per pool, unless the user set one."""
    for var in THREAD_VARS:
        os.environ.setdefault(var, str(n))
    if "numpy" in sys.modules:  # already loaded: tell the running pools too
        try:
            from threadpoolctl import threadpool_limits

            threadpool_limits(limits=n)
        except ImportError:
            pass
