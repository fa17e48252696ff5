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
