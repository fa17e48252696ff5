"""The standard workloads of ``anyexec bench`` and ``anyexec.measure``.

Each task function is a module-level function, so every backend (process pools included)
can run it. ``size`` sets the task's granularity; the defaults aim at a few milliseconds per
task, so a default bench finishes in about a minute on two cores.

=========  ===========================================  =======================
workload   one task                                     default size
=========  ===========================================  =======================
cpu        pure-Python arithmetic loop of ``size`` steps 40,000 steps (~2-4 ms)
numpy      ``a @ a`` on a ``size``×``size`` float matrix, 160 (~1-3 ms)
           BLAS held to one thread (threadpoolctl)
io         ``time.sleep(size)``                           0.01 s
tiny       returns its argument (measures overhead)     -
async      ``await anyio.sleep(size)`` (a coroutine)     0.01 s
=========  ===========================================  =======================
"""

from __future__ import annotations

import importlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from anyexec.errors import ConfigError

__all__ = ["WORKLOADS", "Workload", "get_workload"]


def cpu_task(x: int, size: int = 40_000) -> int:
    """Pure-Python arithmetic: holds the GIL for the whole task."""
    acc = x
    for i in range(size):
        acc = (acc * 1103515245 + i) % 2147483648
    return acc


def numpy_task(x: int, size: int = 160) -> float:
    """GIL-releasing matrix work with BLAS held to one thread, so workers × BLAS threads
    never exceed the cores."""
    import numpy as np
    from threadpoolctl import threadpool_limits

    rng = np.random.default_rng(x)
    a = rng.random((size, size))
    with threadpool_limits(limits=1, user_api="blas"):
        return float((a @ a).trace())


def io_task(x: int, size: float = 0.01) -> int:
    """Sleep-like waiting (stands in for network or disk)."""
    time.sleep(size)
    return x


def tiny_task(x: Any) -> Any:
    """A no-op: what is left is the backend's per-task overhead."""
    return x


async def async_task(x: int, size: float = 0.01) -> int:
    """A coroutine that waits: awaited concurrently on the asyncio backend."""
    import anyio

    await anyio.sleep(size)
    return x


@dataclass(frozen=True)
class Workload:
    """A task function, how many tasks a run has, and the task size it is given."""

    name: str
    func: Callable[..., Any]
    tasks: int
    size: Any = None
    doc: str = ""
    items: tuple[Any, ...] | None = None

    def task(self, size: Any = None) -> Callable[..., Any]:
        size = self.size if size is None else size
        return self.func if size is None else partial(self.func, size=size)

    def inputs(self, tasks: int | None = None) -> list[Any]:
        if self.items is not None:
            return list(self.items)
        return list(range(self.tasks if tasks is None else tasks))


WORKLOADS: dict[str, Workload] = {
    "cpu": Workload("cpu", cpu_task, 64, 40_000, "pure-Python arithmetic (holds the GIL)"),
    "numpy": Workload("numpy", numpy_task, 64, 160, "matrix product, BLAS at one thread"),
    "io": Workload("io", io_task, 64, 0.01, "time.sleep (waiting, no CPU)"),
    "tiny": Workload("tiny", tiny_task, 20_000, None, "no-op: per-task overhead"),
    "async": Workload("async", async_task, 64, 0.01, "coroutine sleep"),
}


def get_workload(spec: str, inputs: str | None = None) -> Workload:
    """A named workload, or ``module:function`` with ``inputs`` (a count, or a JSON file
    holding a list of arguments)."""
    if spec in WORKLOADS:
        return WORKLOADS[spec]
    if ":" not in spec:
        raise ConfigError(
            f"unknown workload {spec!r}; choose from {', '.join(WORKLOADS)} or give module:function"
        )
    module, _, name = spec.partition(":")
    try:
        func = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"workload {spec!r} cannot be imported: {exc}") from None
    if not callable(func):
        raise ConfigError(f"workload {spec!r} is not callable")
    count, items = _user_inputs(spec, inputs)
    return Workload(spec, func, count, None, f"user function {spec}", items)


def _user_inputs(spec: str, inputs: str | None) -> tuple[int, tuple[Any, ...] | None]:
    if inputs is None:
        raise ConfigError(f"workload {spec!r} needs --inputs (a count, or a JSON list file)")
    if inputs.isdigit():
        if int(inputs) < 1:
            raise ConfigError(f"--inputs {inputs!r}: expected a positive count")
        return int(inputs), None
    try:
        data = json.loads(Path(inputs).read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"--inputs {inputs!r}: {exc}") from None
    if not isinstance(data, list) or not data:
        raise ConfigError(f"--inputs {inputs!r}: the JSON file must hold a non-empty list")
    return len(data), tuple(data)
