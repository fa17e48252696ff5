"""``anyexec bench``: backends × worker counts × workloads, through one harness.

Everything is measured by :func:`anyexec.measure.measure`; this module only chooses the
grid, shares one serial baseline per workload, and writes tables, JSON, CSV and plots.
"""

from __future__ import annotations

import csv
import io
import json
import os
import platform
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from anyexec import registry
from anyexec.config import available_cpus
from anyexec.errors import ConfigError
from anyexec.measure import Measurement, measure, serial_results
from anyexec.workloads import WORKLOADS, Workload

__all__ = ["BenchResult", "machine_info", "parse_workers_list", "run_bench"]

BENCH_SCHEMA = "anyexec.bench/1"
DEFAULT_WORKLOADS = ("cpu", "io", "tiny")
#: Task sizes (pure-Python steps) swept by --granularity: about 15 µs to 15 ms per task.
GRANULARITY_SIZES = (250, 1_000, 4_000, 16_000, 64_000, 250_000)
_VERSIONED = (
    "anyexec",
    "anyio",
    "anyexec-loky",
    "loky",
    "anyexec-dask",
    "dask",
    "distributed",
    "numpy",
    "threadpoolctl",
    "joblib",
    "tqdm",
)


def parse_workers_list(text: str) -> list[int]:
    """``"1,2,4"`` → ``[1, 2, 4]``; anything else is a ConfigError saying what is wrong."""
    out = []
    for part in text.split(","):
        part = part.strip()
        if part == "auto":
            out.append(available_cpus())
            continue
        if not part.isdigit() or int(part) < 1:
            raise ConfigError(
                f"--workers {text!r}: {part!r} is not a positive integer "
                f"(expected a comma-separated list such as 1,2,4)"
            )
        out.append(int(part))
    return sorted(set(out))


def machine_info() -> dict[str, Any]:
    versions = {}
    for dist in _VERSIONED:
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    try:
        affinity = sorted(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover
        affinity = None
    return {
        "cores": os.cpu_count(),
        "usable_cpus": available_cpus(),
        "affinity": affinity,
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "versions": versions,
    }


@dataclass
class MetgResult:
    """task-bench's METG for one backend: the smallest task granularity with E ≥ 0.5."""

    backend: str
    workers: int
    points: list[tuple[float, float]]  # (seconds per task, efficiency)
    metg: float | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "backend": self.backend,
            "workers": self.workers,
            "points": self.points,
            "metg_seconds": self.metg,
        }


@dataclass
class BenchResult:
    measurements: list[Measurement] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)
    metg: list[MetgResult] = field(default_factory=list)
    machine: dict[str, Any] = field(default_factory=machine_info)

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": BENCH_SCHEMA,
            "machine": self.machine,
            "results": [m.to_dict() for m in self.measurements],
            "errors": self.errors,
            "metg": [m.to_dict() for m in self.metg],
        }

    # -- output -------------------------------------------------------------------------

    def table(self) -> str:
        head = (
            "backend",
            "workload",
            "p",
            "Ts s",
            "Tp s (min-max)",
            "S",
            "E",
            "tasks/s",
            "ovh µs/task",
            "K-F e",
            "start s",
            "ok",
        )
        rows = [head]
        for m in self.measurements:
            kf = m.karp_flatt
            rows.append(
                (
                    m.backend,
                    m.workload,
                    str(m.workers),
                    f"{m.ts:.3f}",
                    f"{m.tp:.3f} ({min(m.parallel_times):.3f}-{max(m.parallel_times):.3f})",
                    f"{m.speedup:.2f}",
                    f"{m.efficiency:.2f}",
                    f"{m.throughput:,.0f}",
                    f"{m.overhead_per_task * 1e6:,.1f}",
                    "-" if kf is None else f"{kf:.2f}",
                    f"{m.startup:.2f}",
                    "yes" if m.results_match else "NO",
                )
            )
        widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
        lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
        lines.insert(1, "  ".join("-" * w for w in widths))
        for err in self.errors:
            lines.append(
                f"{err['backend']} {err['workload']} p={err['workers']}: FAILED {err['error']}"
            )
        for g in self.metg:
            shown = "not reached" if g.metg is None else f"{g.metg * 1e6:,.0f} µs"
            lines.append(f"METG({g.backend}, p={g.workers}) = {shown}")
        return "\n".join(lines)

    def csv(self) -> str:
        """One row per measurement: its identity, then the summary of :meth:`to_dict`."""
        buf = io.StringIO()
        writer = csv.writer(buf)
        head = ["backend", "workload", "workers", "tasks"]
        tail = ["startup", "results_match"]
        for i, m in enumerate(self.measurements):
            data = m.to_dict()
            if i == 0:
                writer.writerow(head + list(data["summary"]) + tail)
            writer.writerow(
                [data[k] for k in head] + list(data["summary"].values()) + [data[k] for k in tail]
            )
        return buf.getvalue()

    def plot(self, path: Path) -> None:
        try:
            import matplotlib

            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
        except ImportError:
            raise ImportError(
                "--plot needs matplotlib. Install it with: pip install 'anyexec[plot]'"
            ) from None
        workloads = sorted({m.workload for m in self.measurements})
        fig, axes = plt.subplots(
            1, max(1, len(workloads)), figsize=(5 * max(1, len(workloads)), 4), squeeze=False
        )
        top = max((m.workers for m in self.measurements), default=1)
        for ax, name in zip(axes[0], workloads):
            ax.plot([1, top], [1, top], "k--", label="ideal")
            for backend in sorted({m.backend for m in self.measurements}):
                pts = sorted(
                    (m.workers, m.speedup)
                    for m in self.measurements
                    if m.workload == name and m.backend == backend
                )
                if pts:
                    ax.plot(*zip(*pts), marker="o", label=backend)
            ax.set_title(f"workload: {name}")
            ax.set_xlabel("workers p")
            ax.set_ylabel("speedup S = Ts/Tp")
            ax.grid(alpha=0.3)
            ax.legend(fontsize="small")
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)


def check_writable(path: Path, flag: str) -> None:
    """Fail before any work if an output file cannot be written."""
    parent = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise ConfigError(f"{flag} {path}: is a directory")
    if parent.exists() and not parent.is_dir():
        raise ConfigError(f"{flag} {path}: not writable, {parent} is a file, not a folder")
    if not parent.is_dir():
        raise ConfigError(f"{flag} {path}: folder {parent} does not exist")
    if not os.access(parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise ConfigError(f"{flag} {path}: not writable")


def default_backends() -> list[str]:
    return [b.name for b in registry.backends() if b.available]


def _metg(points: Sequence[tuple[float, float]]) -> float | None:
    ok = [g for g, e in points if e >= 0.5]
    return min(ok) if ok else None


def run_bench(
    backends: Sequence[str],
    workers: Sequence[int],
    workloads: Sequence[Workload],
    *,
    repeat: int = 3,
    tasks: int | None = None,
    size: Any = None,
    granularity: bool = False,
    on_step: Callable[[str], None] | None = None,
) -> BenchResult:
    """Measure every (backend, workers, workload); one serial baseline per workload."""
    result = BenchResult()
    for wl in workloads:
        fn = wl.task(size)
        inputs = wl.inputs(tasks)
        expected = serial_results(fn, inputs)
        for backend in backends:
            limit = registry.get(backend).max_workers
            counts = sorted({min(p, limit) if limit else p for p in workers})
            for p in counts:
                if on_step:
                    on_step(f"{backend} {wl.name} p={p}")
                try:
                    m = measure(
                        fn,
                        inputs,
                        backend=backend,
                        workers=p,
                        repeat=repeat,
                        workload=wl.name,
                        expected=expected,
                    )
                except Exception as exc:
                    result.errors.append(
                        {
                            "backend": backend,
                            "workload": wl.name,
                            "workers": p,
                            "error": f"{type(exc).__name__}: {exc}",
                        }
                    )
                    continue
                result.measurements.append(m)
    if granularity:
        top = max(workers)
        cpu = WORKLOADS["cpu"]
        for backend in backends:
            if on_step:
                on_step(f"{backend} granularity sweep p={top}")
            points = []
            for steps in GRANULARITY_SIZES:
                fn = cpu.task(steps)
                inputs = cpu.inputs(max(8 * top, 16))
                expected = serial_results(fn, inputs)
                try:
                    m = measure(
                        fn,
                        inputs,
                        backend=backend,
                        workers=top,
                        repeat=repeat,
                        expected=expected,
                    )
                except Exception as exc:
                    result.errors.append(
                        {
                            "backend": backend,
                            "workload": "granularity",
                            "workers": top,
                            "error": f"{type(exc).__name__}: {exc}",
                        }
                    )
                    break
                points.append((m.ts / m.tasks, m.efficiency))
            result.metg.append(MetgResult(backend, top, points, _metg(points)))
    return result


def write_json(result: BenchResult, path: Path) -> None:
    path.write_text(json.dumps(result.to_dict(), indent=2, default=repr))
