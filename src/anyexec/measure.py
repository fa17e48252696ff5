"""Measuring what parallelism buys, the same way on every backend.

Definitions (``docs/measuring.md``), with Ts the serial time and Tp the time on p workers
for N tasks:

- speedup S = Ts / Tp; efficiency E = S / p; throughput N / Tp;
- overhead per task (p·Tp − Ts) / N: the time the p workers spent beyond the work;
- Karp–Flatt serial fraction e = (1/S − 1/p) / (1 − 1/p), for p > 1.

Ts runs through the ``serial`` backend on the same ``map`` code path as Tp, so both pay the
same chunking costs, and serial and parallel runs alternate. The pool is started and
warmed (one pass over a few inputs) before the clock starts; its start-up time is
reported on its own. Each time is the median of ``repeat`` runs; min and max are kept.
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from anyexec.executor import Executor

__all__ = [
    "SCHEMA",
    "Measurement",
    "efficiency",
    "karp_flatt",
    "measure",
    "overhead_per_task",
    "serial_results",
    "speedup",
]

#: Version of the JSON form of a Measurement; bump on any incompatible change.
SCHEMA = "anyexec.measurement/1"


def speedup(ts: float, tp: float) -> float:
    return ts / tp if tp > 0 else float("inf")


def efficiency(s: float, p: int) -> float:
    return s / p


def overhead_per_task(ts: float, tp: float, p: int, n: int) -> float:
    return (p * tp - ts) / n if n else 0.0


def karp_flatt(s: float, p: int) -> float | None:
    """The experimentally determined serial fraction; undefined for p = 1."""
    if p <= 1 or s <= 0:
        return None
    return (1 / s - 1 / p) / (1 - 1 / p)


@dataclass
class Measurement:
    """Timings of one (backend, workers, workload) and what follows from them."""

    backend: str
    workers: int
    workload: str
    tasks: int
    serial_times: list[float]
    parallel_times: list[float]
    startup: float
    results_match: bool = True
    mismatch: str | None = None
    chunksize: int | str = "auto"
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def ts(self) -> float:
        return statistics.median(self.serial_times)

    @property
    def tp(self) -> float:
        return statistics.median(self.parallel_times)

    @property
    def speedup(self) -> float:
        return speedup(self.ts, self.tp)

    @property
    def efficiency(self) -> float:
        return efficiency(self.speedup, self.workers)

    @property
    def throughput(self) -> float:
        return self.tasks / self.tp if self.tp > 0 else float("inf")

    @property
    def overhead_per_task(self) -> float:
        return overhead_per_task(self.ts, self.tp, self.workers, self.tasks)

    @property
    def karp_flatt(self) -> float | None:
        return karp_flatt(self.speedup, self.workers)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["options"] = {k: repr(v) for k, v in self.options.items()}
        data["schema"] = SCHEMA
        data["summary"] = {
            "ts_median": self.ts,
            "ts_min": min(self.serial_times),
            "ts_max": max(self.serial_times),
            "tp_median": self.tp,
            "tp_min": min(self.parallel_times),
            "tp_max": max(self.parallel_times),
            "speedup": self.speedup,
            "efficiency": self.efficiency,
            "throughput": self.throughput,
            "overhead_per_task": self.overhead_per_task,
            "karp_flatt": self.karp_flatt,
        }
        return data

    def to_json(self, **kwargs: Any) -> str:
        return json.dumps(self.to_dict(), **kwargs)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Measurement:
        if data.get("schema") != SCHEMA:
            raise ValueError(f"not a {SCHEMA} record: schema={data.get('schema')!r}")
        fields = {k: v for k, v in data.items() if k not in ("schema", "summary")}
        return cls(**fields)


def _run(
    ex: Executor, fn: Callable[..., Any], inputs: Sequence[Any], chunksize: Any
) -> tuple[float, list[Any]]:
    start = time.perf_counter()
    out = list(ex.map(fn, inputs, chunksize=chunksize))
    return time.perf_counter() - start, out


def _same(a: list[Any], b: list[Any]) -> str | None:
    if len(a) != len(b):
        return f"{len(b)} results, expected {len(a)}"
    for i, (x, y) in enumerate(zip(a, b)):
        try:
            equal = bool(x == y)
        except ValueError:  # arrays compare elementwise
            import numpy as np

            equal = bool(np.array_equal(x, y))
        if not equal:
            return f"result {i} differs: {y!r} != serial {x!r}"
    return None


def serial_results(
    fn: Callable[..., Any], inputs: Sequence[Any], *, chunksize: Any = "auto"
) -> list[Any]:
    """The reference results: one untimed run through the ``serial`` backend."""
    with Executor("serial") as ex:
        return _run(ex, fn, inputs, chunksize)[1]


def measure(
    fn: Callable[..., Any],
    inputs: Sequence[Any],
    *,
    backend: Any,
    workers: int,
    repeat: int = 5,
    chunksize: int | str = "auto",
    options: Mapping[str, Any] | None = None,
    workload: str | None = None,
    expected: list[Any] | None = None,
) -> Measurement:
    """Time ``fn`` over ``inputs`` serially and on ``backend`` with ``workers`` workers.

    Ts and Tp are measured in alternation, one serial run then one parallel run,
    ``repeat`` times. ``expected`` passes the serial results from :func:`serial_results`
    (the bench computes them once per workload). Results are compared with the serial
    ones; a difference is reported in ``results_match``/``mismatch``, never hidden.
    """
    inputs = list(inputs)
    if repeat < 1:
        raise ValueError(f"repeat must be at least 1, got {repeat}")
    if expected is None:
        expected = serial_results(fn, inputs, chunksize=chunksize)
    start = time.perf_counter()
    ex = Executor(backend, workers, **dict(options or {}))
    try:
        ex.start()
        startup = time.perf_counter() - start
        _run(ex, fn, inputs[: max(1, min(len(inputs), 2 * workers))], chunksize)  # warm-up
        ts_times: list[float] = []
        tp_times: list[float] = []
        got: list[Any] = []
        with Executor("serial") as baseline:
            # Serial and parallel runs alternate, so a core whose speed drifts (shared
            # machines, turbo clocks) slows both alike and S stays honest.
            for _ in range(repeat):
                ts_times.append(_run(baseline, fn, inputs, chunksize)[0])
                t, got = _run(ex, fn, inputs, chunksize)
                tp_times.append(t)
    finally:
        ex.shutdown(wait=True)
    mismatch = _same(expected, got)
    return Measurement(
        backend=ex.backend,
        workers=ex.workers,
        workload=workload or str(getattr(fn, "__name__", repr(fn))),
        tasks=len(inputs),
        serial_times=ts_times,
        parallel_times=tp_times,
        startup=startup,
        results_match=mismatch is None,
        mismatch=mismatch,
        chunksize=chunksize,
        options=dict(options or {}),
    )
