"""``anyexec bench``: backends × worker counts × workloads, through one harness.

Everything is measured by :func:`anyexec.measure.measure`; this module only chooses the
grid, shares one serial baseline per workload, and writes what a reader needs: a table per
workload with a legend, one verdict line per workload, JSON, CSV and the speedup plot.
``anyexec bench`` (:mod:`anyexec.cli`) calls :func:`run_bench`, then
:meth:`BenchResult.report`.

One Ts per workload: :func:`~anyexec.measure.measure` alternates a serial run with each
parallel run, so every row of a workload brings ``repeat`` serial runs taken between its
own parallel runs. :func:`run_bench` pools the serial runs of all the rows of a workload
and gives every row the same pool, so Ts (their median) is one figure per workload, taken
across the whole time the workload was measured.
"""

from __future__ import annotations

import csv
import io
import json
import os
import platform
import statistics
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

__all__ = [
    "DEFAULT_PLOT",
    "BenchResult",
    "machine_info",
    "parse_workers_list",
    "run_bench",
]

BENCH_SCHEMA = "anyexec.bench/1"
DEFAULT_WORKLOADS = ("cpu", "io", "tiny")
#: Where ``anyexec bench`` draws its speedup plot unless told otherwise (relative to the
#: working directory), when matplotlib is installed.
DEFAULT_PLOT = Path("bench-results") / "speedup.png"
#: A speedup below this counts as no gain: on a shared machine a core's speed drifts by
#: several percent between two runs of the same work.
GAIN = 1.1
#: Serial runs of one workload varying by more than this (interquartile range over the
#: median) make its verdict say the timings are noisy.
NOISY = 0.1
#: Written under each table; docs/measuring.md has the definitions in full.
LEGEND = """\
Legend (definitions: docs/measuring.md)
  Ts       serial time of all the tasks of a workload, through the serial backend: one per
           workload, the median of the serial runs interleaved with every row's runs
  p        workers;  Tp s: time on p workers, median of --repeat runs (fastest-slowest)
  S        speedup Ts/Tp (ideal: p, at most the number of cores for CPU work)
  E        efficiency S/p (1 is ideal)
  tasks/s  tasks per second on p workers
  ovh      worker time per task beyond the work, (p*Tp - Ts)/tasks; "< noise" when it is
           within the run-to-run scatter of the timings it comes from (negative included)
  start s  seconds to start the pool and its workers, not counted in Tp
  ok       results identical to the serial ones\
"""
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
    """What :func:`run_bench` measured: one Measurement per (backend, p, workload) row,
    the rows that failed, METG per backend, and the machine. ``anyexec bench`` prints
    :meth:`report` and writes :meth:`to_dict` (JSON), :meth:`csv` and :meth:`plot`."""

    measurements: list[Measurement] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)
    metg: list[MetgResult] = field(default_factory=list)
    machine: dict[str, Any] = field(default_factory=machine_info)
    #: A one-line description of each workload, for the table's headings.
    docs: dict[str, str] = field(default_factory=dict)

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
        """One block per workload: a heading with its one Ts, then a row per (backend, p);
        failures and METG follow."""
        head = (
            "backend",
            "p",
            "Tp s (fastest-slowest)",
            "S",
            "E",
            "tasks/s",
            "ovh µs/task",
            "start s",
            "ok",
        )
        lines: list[str] = []
        for name in self.workloads():
            rows = [m for m in self.measurements if m.workload == name]
            first = rows[0]
            lines.append(
                f"{name}: {first.tasks:,} tasks, Ts {first.ts:.3f} s "
                f"(serial, median of {len(first.serial_times)} runs, "
                f"{min(first.serial_times):.3f}-{max(first.serial_times):.3f})"
                + (f" - {self.docs[name]}" if self.docs.get(name) else "")
            )
            cells = [head]
            for m in rows:
                cells.append(
                    (
                        m.backend,
                        str(m.workers),
                        f"{m.tp:.3f} ({min(m.parallel_times):.3f}-{max(m.parallel_times):.3f})",
                        f"{m.speedup:.2f}",
                        f"{m.efficiency:.2f}",
                        f"{m.throughput:,.0f}",
                        _overhead(m),
                        f"{m.startup:.2f}",
                        "yes" if m.results_match else "NO",
                    )
                )
            widths = [max(len(r[i]) for r in cells) for i in range(len(head))]
            block = [
                "  " + "  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in cells
            ]
            block.insert(1, "  " + "  ".join("-" * w for w in widths))
            lines.extend([*block, ""])
        for err in self.errors:
            lines.append(
                f"{err['backend']} {err['workload']} p={err['workers']}: FAILED {err['error']}"
            )
        for g in self.metg:
            shown = "not reached" if g.metg is None else f"{g.metg * 1e6:,.0f} µs"
            lines.append(f"METG({g.backend}, p={g.workers}) = {shown}")
        return "\n".join(lines).rstrip()

    def workloads(self) -> list[str]:
        """The workloads measured, in the order they ran."""
        return list(dict.fromkeys(m.workload for m in self.measurements))

    def verdicts(self) -> list[str]:
        """One line per workload: the fastest backend and its S, or why to stay serial.

        A gain must hold against the faster serial runs too: S is Ts/Tp with Ts the median,
        but a backend only "is fastest" when the lower quartile of the serial runs over its
        Tp still reaches :data:`GAIN`, so a Ts inflated by a few slow serial runs (another
        program busy on the CPUs) does not crown a backend.
        """
        out = []
        for name in self.workloads():
            rows = [m for m in self.measurements if m.workload == name and m.results_match]
            if not rows:
                out.append(f"{name}: no backend returned the serial results; see above")
                continue
            best = max(rows, key=lambda m: (m.speedup, -m.workers))
            if _fast_serial(best.serial_times) / best.tp >= GAIN:
                out.append(
                    f"{name}: {best.backend} is fastest, S {best.speedup:.2f} on "
                    f"{best.workers} worker{'s' if best.workers > 1 else ''} "
                    f"(E {best.efficiency:.2f})"
                )
                continue
            work = best.ts / best.tasks if best.tasks else 0.0
            parallel = [max(m.overhead_per_task, 0.0) for m in rows if m.workers > 1]
            typical = statistics.median(parallel) if parallel else 0.0
            if typical > work:
                why = (
                    f"overhead exceeds the work ({_us(typical)} per task, the median over "
                    f"the backends on more than one worker, against {_us(work)} of work)"
                )
            else:
                why = (
                    f"no backend is clearly faster (best: {best.backend}, "
                    f"S {best.speedup:.2f}; a gain must reach {GAIN:.1f})"
                )
            out.append(f"{name}: stay serial, {why}")
        for i, name in enumerate(self.workloads()):
            rows = [m for m in self.measurements if m.workload == name]
            spread = _noisy(rows[0].serial_times)
            if spread is not None:
                out[i] += (
                    f"; but the serial runs varied by {spread:.0%} (something else was using "
                    "the CPUs?): rerun on a quiet machine before trusting small differences"
                )
        return out

    def _best_speedup(self) -> float:
        return max((m.speedup for m in self.measurements if m.results_match), default=0.0)

    def report(self) -> str:
        """What ``anyexec bench`` prints: the table, the legend, the verdicts, and what the
        run shows about anyexec itself."""
        parts = [self.table(), "", LEGEND]
        verdicts = self.verdicts()
        if verdicts:
            parts += ["", "Verdicts", *[f"  {v}" for v in verdicts]]
        ran = sorted({m.backend for m in self.measurements})
        if len(ran) > 1:
            example = next(
                (m.backend for m in self.measurements if m.speedup == self._best_speedup()),
                ran[0],
            )
            parts += [
                "",
                f"The same call, anyexec.map(task, inputs), ran on {len(ran)} backends "
                f"({', '.join(ran)}), chosen by configuration only: e.g. "
                f"ANYEXEC_BACKEND={example} python your_script.py.",
            ]
        return "\n".join(parts)

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
            ax.set_xticks(sorted({m.workers for m in self.measurements}))
            ax.set_xlabel("workers p")
            ax.set_ylabel("speedup S = Ts/Tp")
            ax.grid(alpha=0.3)
            ax.legend(fontsize="small")
        fig.tight_layout()
        path.parent.mkdir(parents=True, exist_ok=True)
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
    """Every installed backend that loads, except ``serial``: it is the baseline Ts is
    measured on, and a serial row would only compare serial with itself."""
    return [b.name for b in registry.backends() if b.available and b.name != "serial"]


def _us(seconds: float) -> str:
    return f"{seconds * 1e6:,.1f} µs"


def _scatter(times: Sequence[float]) -> float:
    """The typical run-to-run scatter of some timings: their median absolute deviation,
    which one slow run (another program taking a core) does not inflate."""
    mid = statistics.median(times)
    return statistics.median(abs(t - mid) for t in times)


def _fast_serial(times: Sequence[float]) -> float:
    """The lower quartile of the serial runs (their median when there are fewer than 4)."""
    if len(times) < 4:
        return statistics.median(times)
    return statistics.quantiles(times, n=4)[0]


def _noisy(times: Sequence[float]) -> float | None:
    """How much the serial runs of a workload varied (interquartile range over median), if
    more than :data:`NOISY`; None otherwise."""
    if len(times) < 4:
        return None
    q1, _, q3 = statistics.quantiles(times, n=4)
    mid = statistics.median(times)
    spread = (q3 - q1) / mid if mid > 0 else 0.0
    return spread if spread > NOISY else None


def _overhead(m: Measurement) -> str:
    """The overhead per task, or ``< noise`` when it is within the scatter of the timings
    it is computed from (p times the scatter of Tp, plus the scatter of Ts, per task): such
    a value, negative ones included, says nothing beyond "small"."""
    noise = (m.workers * _scatter(m.parallel_times) + _scatter(m.serial_times)) / max(m.tasks, 1)
    if m.overhead_per_task <= noise:
        return "< noise"
    return f"{m.overhead_per_task * 1e6:,.1f}"


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
    """Measure every (backend, workers, workload); one serial baseline per workload.

    Rows that fail are recorded in ``errors`` and the run goes on. ``on_step`` is told
    what is about to run (the command line's progress bar).
    """
    result = BenchResult()
    for wl in workloads:
        fn = wl.task(size)
        inputs = wl.inputs(tasks)
        expected = serial_results(fn, inputs)
        result.docs[wl.name] = wl.doc
        rows: list[Measurement] = []
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
                rows.append(m)
        # One Ts per workload: every row gets the serial runs of all the rows (see the
        # module's docstring), which were interleaved with all of the workload's runs.
        pooled = [t for m in rows for t in m.serial_times]
        for m in rows:
            m.serial_times = list(pooled)
        result.measurements.extend(rows)
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
