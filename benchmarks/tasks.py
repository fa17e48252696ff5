"""Task functions for benchmarks/compare.py (importable by every worker kind)."""

from __future__ import annotations

import time
from typing import Any


def noop(x: Any) -> Any:
    return x


async def anoop(x: Any) -> Any:
    return x


def sleep10ms(x: Any) -> Any:
    time.sleep(0.01)
    return x


def cpu20ms(x: int, steps: int = 200_000) -> int:
    """About 20 ms of pure-Python arithmetic (calibrated by compare.py)."""
    acc = x
    for i in range(steps):
        acc = (acc * 1103515245 + i) % 2147483648
    return acc


def array_sum(a: Any) -> float:
    return float(a.sum())


# -- workloads for `anyexec tune` (tests/test_tune.py, docs/tuning.md) -------------------

_MATRICES: dict[int, Any] = {}


def _matrix(n: int) -> Any:
    """One n×n matrix per process, made once; BLAS held to one thread in this process,
    so a thread pool's workers, not BLAS, are what runs the products in parallel."""
    if n not in _MATRICES:
        import numpy as np
        from threadpoolctl import threadpool_limits

        # Kept for the life of the process: every later product runs on one BLAS thread.
        _MATRICES.setdefault(-1, threadpool_limits(limits=1, user_api="blas"))
        _MATRICES[n] = np.random.default_rng(0).random((n, n))
    return _MATRICES[n]


def matmul(x: int, n: int = 600) -> float:
    """A large matrix product on one BLAS thread (~10 ms): numpy releases the GIL for
    it, so threads scale like processes."""
    a = _matrix(n)
    return float((a @ a)[x % n, (3 * x) % n])


async def asleep10ms(x: Any) -> Any:
    """A coroutine that waits 10 ms (asyncio awaits many at once)."""
    import asyncio

    await asyncio.sleep(0.01)
    return x
