"""``anyexec tune``: measure the user's own function and pick backend, workers and chunk size.

Called by :func:`anyexec.tune` and by the ``anyexec tune`` command (:func:`run_cli`). The
search, in order (``docs/tuning.md``):

1. **Serial calibration.** The sample runs through the ``serial`` backend: its results are
   the reference every candidate must reproduce, and it gives the task time and the share
   of it spent on the CPU (``time.process_time``). Work that mostly waits (CPU well below
   wall time) is given worker counts up to 8× the CPUs; other work up to the CPUs.
2. **Probe and screen.** Backends are tried cheapest start-up first. Each backend's first
   pool runs no-op tasks to measure its own per-task cost; a backend whose cost exceeds the
   task time cannot win and is dropped. Then every chunk size that could matter is timed
   once on that pool. Worker counts go from the largest down and stop when fewer workers
   stop helping. One pool at a time: each is shut down before the next one starts, and
   start-up is timed on its own, outside the runs.
3. **Re-measure the leaders** the way :func:`anyexec.measure.measure` does (serial and
   parallel runs alternate, and a serial run closes the series), as many times as the rest
   of the budget allows, stopping early when the machine slows down. Each parallel run's
   reference is the faster of the serial runs on either side of it.
4. **Decide.** The highest speedup wins; within 5% of it, or within the noise the serial
   runs showed, the simpler choice wins (chunk size ``"auto"``, the cheaper backend,
   fewer workers). Below a speedup of 1.1 the answer
   is ``serial``, and the verdict says why.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import pickle
import sys
import threading
import time
import types
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from anyexec import config, registry
from anyexec._tune_tasks import AsyncStar, Star, anoop, noop
from anyexec._worker.args import Args
from anyexec._worker.loops import is_async as _is_async
from anyexec.config import available_cpus
from anyexec.errors import AnyexecError, ConfigError
from anyexec.executor import Executor
from anyexec.measure import Measurement, _run, _same

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

__all__ = [
    "SCHEMA",
    "Candidate",
    "Probe",
    "TuneResult",
    "TuneTable",
    "profile_file",
    "run_cli",
    "tune",
    "worker_counts",
    "write_profile",
]

#: Version of the JSON form of a TuneResult; bump on any incompatible change.
SCHEMA = "anyexec.tune/1"
#: A backend must beat serial by this factor to be recommended.
CLEAR_MARGIN = 1.1
#: Speedups within this fraction of the best count as a tie: the simpler choice wins.
TIE = 0.05
#: Chunk size "auto" is kept unless a fixed size is faster by more than this fraction: a
#: profile can set backend and workers, but a fixed chunk size means changing the code.
AUTO_TIE = 0.10
#: Serial CPU time below this share of wall time means the work mostly waits.
WAITING_RATIO = 0.5
#: Below this share of a core for a CPU loop, the verdict warns that the machine is busy.
BUSY_SHARE = 0.7
#: Worker counts for waiting work go up to this many times the CPUs.
WAITING_FACTOR = 8
#: Share of the budget serial calibration may take (up to three passes over the sample).
CALIBRATION_SHARE = 0.1
#: Share of the budget one serial pass over the sample may take: a longer sample is cut
#: (to at least 8 tasks per CPU), so that every backend gets its turn and the leaders can
#: alternate several times.
SAMPLE_SHARE = 1 / 30
#: Seconds a serial run must take before its time per item sizes the sample.
GROWN_RUN = 0.02
#: Share of the budget after which screening stops, leaving the rest to the leaders.
SCREEN_SHARE = 0.6
#: Leaders re-measured at most, and at most per backend; their screening Tp must be
#: within this factor of the best.
LEADERS, LEADERS_PER_BACKEND, LEADER_WINDOW = 4, 2, 1.3
#: Most alternating repeats per leader.
MAX_REPEAT = 7
#: Most inputs a sample may hold (an endless iterator fails instead of hanging).
MAX_INPUTS = 1_000_000
#: Preference among near-ties: what is cheaper to run comes first.
PREFERENCE = ("thread", "asyncio", "process", "loky", "dask")
#: Start-up seconds per worker guessed before a backend has been started once.
_STARTUP_GUESS = {"nothing": 0.0, "threads": 0.01, "processes": 0.15, "cluster": 0.6}
_PROBE_TASKS, _PROBE_TASKS_ONE = 2000, 50


# -- result types ----------------------------------------------------------------------


@dataclass
class Probe:
    """A backend's own cost per task, from no-op tasks on its first pool.

    ``per_task`` is wall seconds per no-op task with adaptive chunks, ``per_call`` with
    one task per submission. With p workers the efficiency of a task of t seconds is about
    t / (t + p·per_task), so the METG (the smallest task with efficiency 0.5) is about
    p·per_task.
    """

    backend: str
    workers: int
    startup: float
    per_task: float
    per_call: float

    def metg(self, workers: int) -> float:
        return workers * self.per_task

    def to_dict(self) -> dict[str, Any]:
        return {
            "backend": self.backend,
            "workers": self.workers,
            "startup": self.startup,
            "per_task": self.per_task,
            "per_call": self.per_call,
            "metg": self.metg(self.workers),
        }


@dataclass
class Candidate:
    """One (backend, workers, chunksize) and what happened to it.

    ``status`` is ``"baseline"`` (serial), ``"screened"`` (timed once), ``"re-measured"``
    (alternating runs, :attr:`measurement` holds them), ``"disqualified"`` (results differ
    from serial's), ``"failed"`` (raised), ``"dropped"`` (cannot win, not run) or
    ``"skipped"`` (cannot run ``fn``, or no budget left). Rows read like mappings too:
    ``row["speedup"]``.
    """

    backend: str
    workers: int
    chunksize: int | str = "auto"
    status: str = "screened"
    note: str = ""
    ts: float | None = None
    times: list[float] = field(default_factory=list)
    startup: float | None = None
    measurement: Measurement | None = None
    options: dict[str, Any] = field(default_factory=dict)
    #: ``ts`` is the faster of two serial runs taken just before and just after this
    #: row's run (a second look at a row that fell behind), not the fastest serial run
    #: of the whole search.
    paired: bool = False
    #: Every serial run of this row's re-measurement, in order; their spread is how
    #: noisy the machine was while it was measured.
    serial_runs: list[float] = field(default_factory=list)

    @property
    def tp(self) -> float | None:
        """The median of the alternating runs once re-measured, else the fastest
        screening run."""
        if self.measurement is not None:
            return self.measurement.tp
        return min(self.times) if self.times else None

    @property
    def speedup(self) -> float | None:
        if self.measurement is not None:
            return self.measurement.speedup
        tp = self.tp
        if tp is None or self.ts is None:
            return None
        return self.ts / tp if tp > 0 else float("inf")

    @property
    def efficiency(self) -> float | None:
        s = self.speedup
        return None if s is None else s / self.workers

    def round_speedups(self) -> list[float]:
        """Serial over parallel time of each alternating round (one paired figure per
        round), or the single speedup of a screened row."""
        m = self.measurement
        if m is not None:
            return [ts / tp for ts, tp in zip(m.serial_times, m.parallel_times) if tp > 0]
        s = self.speedup
        return [] if s is None else [s]

    @property
    def valid(self) -> bool:
        """Measured, and its results equal serial's."""
        return self.status in ("screened", "re-measured") and self.tp is not None

    def __getitem__(self, key: str) -> Any:
        return getattr(self, key)

    def to_dict(self) -> dict[str, Any]:
        return {
            "backend": self.backend,
            "workers": self.workers,
            "chunksize": self.chunksize,
            "status": self.status,
            "note": self.note,
            "ts": self.ts,
            "ts_paired": self.paired,
            "ts_runs": self.serial_runs,
            "tp": self.tp,
            "times": self.times,
            "speedup": self.speedup,
            "efficiency": self.efficiency,
            "startup": self.startup,
            "options": {k: repr(v) for k, v in self.options.items()},
            "measurement": None if self.measurement is None else self.measurement.to_dict(),
        }


class TuneTable(list):  # type: ignore[type-arg]
    """Every candidate, fastest first (rows without a time last); ``str()`` is the table
    ``anyexec tune`` prints."""

    def __str__(self) -> str:
        head = ("backend", "p", "chunk", "Tp s", "S", "E", "start s", "runs", "status")
        rows = [head]
        for c in self:
            tp, s, e = c.tp, c.speedup, c.efficiency
            runs = len(c.measurement.parallel_times) if c.measurement else len(c.times)
            rows.append(
                (
                    c.backend,
                    str(c.workers),
                    str(c.chunksize),
                    "-" if tp is None else f"{tp:.4f}",
                    "-" if s is None else f"{s:.2f}",
                    "-" if e is None else f"{e:.2f}",
                    "-" if c.startup is None else f"{c.startup:.2f}",
                    str(runs),
                    c.status + (f": {c.note}" if c.note else ""),
                )
            )
        widths = [max(len(r[i]) for r in rows) for i in range(len(head) - 1)]
        lines = [
            "  ".join([*(v.ljust(w) for v, w in zip(r, widths)), r[-1]]).rstrip() for r in rows
        ]
        lines.insert(1, "  ".join("-" * w for w in [*widths, len("status")]))
        return "\n".join(lines)


@dataclass
class TuneResult:
    """What :func:`tune` recommends, and everything it measured to get there.

    ``backend``, ``workers``, ``chunksize`` and ``options`` are the recommendation;
    ``speedup`` and ``efficiency`` its figures against serial (1.0 for ``serial``);
    ``table`` every candidate; ``verdict`` one line saying what won and why.
    """

    backend: str
    workers: int
    chunksize: int | str
    options: dict[str, Any]
    speedup: float
    efficiency: float
    table: TuneTable
    verdict: str
    task_time: float
    serial_time: float
    tasks: int
    sampled: int
    cpu_ratio: float
    waiting: bool
    probes: list[Probe]
    budget: float
    elapsed: float

    def to_config(self, profile: str = "tuned", *, pyproject: bool = True) -> str:
        """The TOML text of a profile holding the recommendation: ``[tool.anyexec.profiles.
        NAME]`` for ``pyproject.toml``, ``[profiles.NAME]`` for ``anyexec.toml``.

        ``ANYEXEC_PROFILE=NAME`` then selects it. A fixed chunk size is not a
        configuration setting (it is an argument of ``map``), so it is written as a
        comment.
        """
        _check_profile_name(profile)
        table = ("tool.anyexec." if pyproject else "") + f"profiles.{profile}"
        lines = [
            f"[{table}]",
            f"# anyexec tune: {self.verdict}",
            f"backend = {_toml_value(self.backend)}",
            f"workers = {_toml_value(self.workers)}",
        ]
        if self.chunksize != "auto":
            lines.append(
                f"# chunksize {self.chunksize} measured best; chunk size is an argument of "
                f"map: map(..., chunksize={self.chunksize})"
            )
        if self.options:
            lines += ["", f"[{table}.{self.backend}]"]
            lines += [f"{k} = {_toml_value(v)}" for k, v in sorted(self.options.items())]
        return "\n".join(lines) + "\n"

    def to_dict(self) -> dict[str, Any]:
        from anyexec.bench import machine_info

        return {
            "schema": SCHEMA,
            "machine": machine_info(),
            "recommendation": {
                "backend": self.backend,
                "workers": self.workers,
                "chunksize": self.chunksize,
                "options": {k: repr(v) for k, v in self.options.items()},
                "speedup": self.speedup,
                "efficiency": self.efficiency,
            },
            "verdict": self.verdict,
            "calibration": {
                "task_time": self.task_time,
                "serial_time": self.serial_time,
                "tasks": self.tasks,
                "sampled": self.sampled,
                "cpu_ratio": self.cpu_ratio,
                "waiting": self.waiting,
            },
            "probes": [p.to_dict() for p in self.probes],
            "candidates": [c.to_dict() for c in self.table],
            "budget": self.budget,
            "elapsed": self.elapsed,
        }

    def to_json(self, **kwargs: Any) -> str:
        return json.dumps(self.to_dict(), default=repr, **kwargs)

    def __str__(self) -> str:
        return f"{self.table}\n\n{self.verdict}"


# -- the search ------------------------------------------------------------------------


def worker_counts(cpus: int, waiting: bool, tasks: int) -> list[int]:
    """Worker counts worth trying: 2, 4, 8 … up to the CPUs (and the CPU count itself),
    or up to ``WAITING_FACTOR``× the CPUs for waiting work; never more than the tasks.
    One worker cannot beat serial, so it is tried only when it is the only count."""
    top = max(1, min(cpus * (WAITING_FACTOR if waiting else 1), tasks))
    counts = {2**i for i in range(1, top.bit_length()) if 2**i <= top}
    counts |= {min(cpus, top), top}
    counts.discard(1)
    return sorted(counts) or [1]


def _items(inputs: Iterable[Any]) -> list[Any]:
    if isinstance(inputs, (str, bytes)):
        raise ConfigError("inputs must be an iterable of items or argument tuples, not a string")
    try:
        items = list(itertools.islice(iter(inputs), MAX_INPUTS + 1))
    except TypeError:
        raise ConfigError(
            f"inputs must be a finite iterable of items or argument tuples, got "
            f"{type(inputs).__name__}"
        ) from None
    if not items:
        raise ConfigError("inputs is empty: give a sample of real inputs to measure")
    if len(items) > MAX_INPUTS:
        raise ConfigError(
            f"inputs holds more than {MAX_INPUTS:,} items (or never ends); pass a sample"
        )
    return items


def _as_calls(fn: Callable[..., Any], items: list[Any]) -> tuple[Callable[..., Any], list[Any]]:
    """The rule for ``inputs``: a tuple is an argument tuple, ``fn(*item)``, and an
    :class:`anyexec.Args` carries keyword arguments too, as ``Executor.starmap`` takes
    them; anything else is one argument, ``fn(item)``, as ``anyexec.map(fn, inputs)``
    passes it."""
    if not any(isinstance(x, (tuple, Args)) for x in items):
        return fn, items
    star = AsyncStar(fn) if _is_async(fn) else Star(fn)
    return star, [x if isinstance(x, (tuple, Args)) else (x,) for x in items]


def _pickles(obj: Any) -> str | None:
    try:
        pickle.dumps(obj)
        return None
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"


def _cloudpickles(obj: Any) -> bool:
    try:
        import cloudpickle

        cloudpickle.dumps(obj)
        return True
    except Exception:
        return False


def _spread(runs: list[float]) -> float:
    """How far apart runs of the same work are: slowest over fastest, less one."""
    return max(runs) / min(runs) - 1 if len(runs) > 1 and min(runs) > 0 else 0.0


def _clearly_beats(a: Candidate, b: Candidate) -> bool:
    """Whether ``a``'s speedup is above ``b``'s by more than the noise: by more than
    ``TIE``, and by more than the spread of the serial runs taken while either was
    re-measured, and, where both were re-measured, with ``a``'s lower quartile of rounds
    above ``b``'s median and ``a``'s median above ``b``'s upper quartile. On a busy
    machine runs of the same work spread, and a difference within the spread is a tie,
    which the simpler choice wins (with one or two rounds, the serial runs are the only
    measure of the noise there is); quartiles (nearest rank) rather than the extremes,
    so one disturbed round does not make a tie of a clear difference."""
    sa, sb = a.speedup or 0.0, b.speedup or 0.0
    if sa * (1 - TIE) <= sb:
        return False
    if sa <= sb * (1 + max(_spread(a.serial_runs), _spread(b.serial_runs))):
        return False
    if a.measurement is None or b.measurement is None:
        return True
    ra, rb = sorted(a.round_speedups()), sorted(b.round_speedups())
    if not ra or not rb:
        return True
    return ra[len(ra) // 4] > sb and sa > rb[-1 - len(rb) // 4]


def _cpu_share(seconds: float = 0.03) -> float:
    """The share of wall time a pure-Python loop gets on the CPU now (1.0 on an idle core,
    less while other programs compete for it)."""
    w0, c0 = time.perf_counter(), time.process_time()
    while time.perf_counter() - w0 < seconds:
        sum(range(1000))
    wall, cpu = time.perf_counter() - w0, time.process_time() - c0
    return min(1.0, max(0.05, cpu / wall)) if wall > 0 else 1.0


def _fmt_s(seconds: float) -> str:
    if seconds >= 1:
        return f"{seconds:.2f} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.1f} ms"
    return f"{seconds * 1e6:.1f} µs"


class _Progress:
    """A bar over the budget on stderr (tqdm where installed, else one line per step)."""

    def __init__(self, budget: float, enabled: bool, start: float) -> None:
        self.budget, self.enabled, self.start = budget, enabled, start
        self.bar: Any = None
        if enabled:
            try:
                from tqdm.auto import tqdm

                self.bar = tqdm(
                    total=round(budget, 1),
                    unit="s",
                    desc="anyexec tune",
                    file=sys.stderr,
                    bar_format="{desc}: {percentage:3.0f}%|{bar}| {n:.0f}/{total:.0f} s{postfix}",
                )
            except ImportError:
                pass
        self.done = threading.Event()
        self.ticker: threading.Thread | None = None
        if self.bar is not None:
            # Long runs (a leader's alternating repeats) would freeze the bar between steps.
            self.ticker = threading.Thread(target=self._tick, name="anyexec-tune", daemon=True)
            self.ticker.start()

    def _tick(self) -> None:
        while not self.done.wait(0.5):
            self.bar.n = round(min(time.perf_counter() - self.start, self.budget), 1)
            self.bar.refresh()

    def step(self, what: str) -> None:
        if not self.enabled:
            return
        elapsed = time.perf_counter() - self.start
        if self.bar is None:
            print(f"[{elapsed:5.1f}/{self.budget:.0f} s] {what}", file=sys.stderr, flush=True)
            return
        self.bar.n = round(min(elapsed, self.budget), 1)
        self.bar.set_postfix_str(what)

    def close(self) -> None:
        self.done.set()
        if self.ticker is not None:
            self.ticker.join(5)
        if self.bar is not None:
            self.step("done")
            self.bar.close()


class _Search:
    """The state of one :func:`tune` call; see the module docstring for the steps."""

    def __init__(
        self,
        fn: Callable[..., Any],
        items: list[Any],
        budget: float,
        backends: list[str],
        workers: list[int] | None,
        chunksizes: list[int | str] | None,
        progress: bool,
    ) -> None:
        self.user_fn = fn
        self.fn, self.items = _as_calls(fn, items)
        self.tasks = len(items)
        self.budget = budget
        self.start = time.perf_counter()
        self.deadline = self.start + budget
        self.backend_names = backends
        self.user_workers = workers
        self.user_chunks = chunksizes
        self.progress = _Progress(budget, progress, self.start)
        self.is_async = _is_async(fn)
        self.cpus = available_cpus()
        self.rows: list[Candidate] = []
        self.probes: dict[str, Probe] = {}
        self.startups: dict[str, tuple[int, float]] = {}
        self.notes: list[str] = []
        # Set by calibrate():
        self.expected: list[Any] = []
        self.ts = self.task_time = self.cpu_ratio = 0.0
        self.serial_times: list[float] = []
        self.waiting = False
        self.share = 1.0  # what a CPU loop gets now: start-ups take longer on a busy machine

    # -- budget ------------------------------------------------------------------------

    def left(self, until: float | None = None) -> float:
        return (self.deadline if until is None else until) - time.perf_counter()

    def startup_guess(self, name: str, workers: int) -> float:
        """Seconds to start (and later shut down) a pool: scaled from this backend's last
        start, else a generous guess by what crosses into its workers and how busy the
        machine is."""
        seen = self.startups.get(name)
        if seen is not None:
            return 1.3 * seen[1] * max(1.0, workers / seen[0])
        crosses = registry.get(name).crosses
        return 2 * max(0.05, _STARTUP_GUESS.get(crosses, 0.5) * workers) / self.share

    # -- 1. serial calibration ---------------------------------------------------------

    def calibrate(self) -> None:
        self.progress.step("serial calibration")
        with Executor("serial") as ex:
            try:
                first, _ = _run(ex, self.fn, self.items[:1], "auto")
            except Exception as exc:
                raise AnyexecError(
                    f"fn failed on the first input in a serial run, so there is nothing to "
                    f"tune: {type(exc).__name__}: {exc} (a tuple in inputs is unpacked into "
                    f"arguments, anything else is passed as the one argument)"
                ) from exc
            limit = CALIBRATION_SHARE * self.budget
            per_item = self.time_per_item(ex, first)
            keep = max(8 * self.cpus, int(SAMPLE_SHARE * self.budget / max(per_item, 1e-9)))
            if keep < self.tasks:  # the first call may have paid for imports: once more
                first = min(first, _run(ex, self.fn, self.items[:1], "auto")[0])
                per_item = min(per_item, first)
                keep = max(8 * self.cpus, int(SAMPLE_SHARE * self.budget / max(per_item, 1e-9)))
            if keep < self.tasks:
                self.notes.append(f"sampled {keep} of {self.tasks} inputs to fit the budget")
                self.items = self.items[:keep]
            # Up to three runs within the calibration share; the fastest counts, since a
            # busy machine only ever adds time.
            wall: list[float] = []
            cpu: list[float] = []
            while len(wall) < 3 and (not wall or sum(wall) + min(wall) <= limit):
                c0 = time.process_time()
                t, out = _run(ex, self.fn, self.items, "auto")
                cpu.append(time.process_time() - c0)
                wall.append(t)
                self.expected = out
        best = min(range(len(wall)), key=wall.__getitem__)
        self.ts = wall[best]
        self.serial_times = list(wall)
        self.task_time = self.ts / len(self.items)
        # CPU time over wall time, relative to what a pure-CPU loop gets right now: on a
        # busy machine both are low, and only work that waits is low relative to the loop.
        self.cpu_ratio = (cpu[best] / self.ts if self.ts > 0 else 1.0) / _cpu_share()
        self.waiting = self.cpu_ratio < WAITING_RATIO
        self.share = _cpu_share()
        self.rows.append(
            Candidate("serial", 1, "auto", "baseline", "the reference", self.ts, [self.ts])
        )

    def time_per_item(self, ex: Executor, first: float) -> float:
        """Seconds per item, for sizing the sample. A map of one short task times mostly
        the map's own fixed cost, so the run grows fourfold until it takes
        ``GROWN_RUN`` seconds or covers every input; each run is cheap next to the
        calibration that follows."""
        n, t = 1, first
        while t < GROWN_RUN and n < self.tasks:
            n = min(self.tasks, 4 * n)
            t, _ = _run(ex, self.fn, self.items[:n], "auto")
        return t / n

    # -- 2. probe and screen -----------------------------------------------------------

    def counts(self, name: str) -> list[int]:
        counts = self.user_workers or worker_counts(self.cpus, self.waiting, len(self.items))
        limit = registry.get(name).max_workers
        return sorted({min(p, limit) if limit else p for p in counts}, reverse=True)

    def chunk_sizes(self, workers: int, probe: Probe | None) -> list[tuple[int | str, str]]:
        """(chunk size, reason not to run it, or "") for one pool."""
        if self.user_chunks is not None:
            return [(c, "") for c in self.user_chunks]
        n = len(self.items)
        balanced = max(1, math.ceil(n / (4 * workers)))
        # What "auto" settles on: about 20 ms a chunk, at least four chunks per worker.
        auto = max(1, min(balanced, round(0.02 / max(self.task_time, 1e-9))))
        out: list[tuple[int | str, str]] = [("auto", "")]
        for size in sorted({1, balanced}):
            if size == auto:
                continue
            if size == 1 and probe is not None and self.task_time < probe.per_call:
                out.append(
                    (
                        1,
                        f"one task per submission costs {_fmt_s(probe.per_call)}, more than "
                        f"the task ({_fmt_s(self.task_time)})",
                    )
                )
                continue
            out.append((size, ""))
        return out

    def skip_reason(self, name: str) -> str:
        backend = registry.get(name)
        if backend.crosses not in ("processes", "cluster"):
            return ""
        for what, obj in (("fn", self.user_fn), ("the first input", self.items[0])):
            problem = _pickles(obj)
            if problem is None:
                continue
            from anyexec.builtin.process import ProcessBackend

            if isinstance(backend, ProcessBackend) or not _cloudpickles(obj):
                return (
                    f"{what} does not pickle ({problem}); a closure or lambda cannot reach "
                    f"process workers"
                )
        return ""

    def screen(self) -> None:
        screen_end = self.start + SCREEN_SHARE * self.budget
        for name in self.order():
            reason = self.skip_reason(name)
            if reason:
                for p in self.counts(name):
                    self.rows.append(Candidate(name, p, "auto", "skipped", reason))
                continue
            # From the most workers down, until fewer workers are clearly slower (on a tie
            # fewer workers are preferred, so the search goes on).
            previous: float | None = None  # the speedup of the count before
            counts = self.counts(name)
            for i, p in enumerate(counts):
                try:  # a count the configuration refuses (a ceiling on workers per CPU)
                    config.resolve(name, p)
                except ConfigError as exc:
                    self.rows.append(Candidate(name, p, "auto", "skipped", str(exc)))
                    continue
                best = self.screen_pool(name, p, screen_end)
                if best is None:
                    break
                behind = self.far_behind(best, f"{p} workers")
                if behind:
                    for q in counts[i + 1 :]:
                        self.rows.append(Candidate(name, q, "auto", "dropped", behind))
                    break
                if previous is not None and best * (1 + TIE) < previous:
                    for q in counts[i + 1 :]:
                        why = f"{p} workers were slower than {counts[i - 1]}"
                        self.rows.append(Candidate(name, q, "auto", "skipped", why))
                    break
                previous = best

    def far_behind(self, speedup: float | None, what: str) -> str:
        """Why a pool whose best speedup was ``speedup`` is not worth more runs (other
        chunk sizes, fewer workers), or "" if it is: it must beat serial clearly and be
        within reach of the best candidate so far, since its first run was its
        best-placed one ("auto" chunks, the most workers)."""
        if speedup is None:
            return f"{what} did not run"
        if speedup < CLEAR_MARGIN:
            return f"{what} did not beat serial by {CLEAR_MARGIN:.1f}×"
        best = max(self.speedups(), default=speedup)
        if speedup * LEADER_WINDOW < best:
            return f"{what} was {best / speedup:.1f}× slower than the best so far"
        return ""

    def speedups(self) -> list[float]:
        """The speedup of every parallel candidate measured so far."""
        found = (r.speedup for r in self.rows if r.valid and r.backend != "serial")
        return [s for s in found if s is not None]

    def order(self) -> list[str]:
        rank = {n: i for i, n in enumerate(PREFERENCE)}
        if self.is_async:
            rank["asyncio"] = -1
        return sorted(
            self.backend_names,
            key=lambda n: (self.startup_guess(n, 2), rank.get(n, len(rank)), n),
        )

    def screen_pool(self, name: str, workers: int, until: float) -> float | None:
        """Time every chunk size once on one pool of ``name``; the best speedup, or None
        when nothing ran (dropped, failed, out of budget)."""
        # Start-up and shutdown, a warm-up and one run at least.
        guess = self.startup_guess(name, workers) + 2 * self.ts
        # Until something parallel has been measured, screening may eat into the share
        # kept for the leaders.
        if not any(r.valid and r.backend != "serial" for r in self.rows):
            until = self.start + 0.9 * self.budget
        if self.left(until) < guess:
            why = (
                f"would not fit the budget left (start-up, a warm-up and a run: about "
                f"{guess:.1f} s here, {max(0.0, self.left(until)):.1f} s left for screening)"
            )
            self.rows.append(Candidate(name, workers, "auto", "skipped", why))
            return None
        self.progress.step(f"{name} × {workers}: start")
        t0 = time.perf_counter()
        ex = Executor(name, workers)
        best: float | None = None
        probe: Probe | None = None
        startup = 0.0
        try:
            try:
                ex.start()
                startup = time.perf_counter() - t0
                self.startups.setdefault(name, (workers, startup))
                probe = self.probes.get(name)
                if probe is None:
                    probe = self.probe(ex, name, workers, startup)
                    if self.task_time < probe.per_task:
                        self.rows.append(
                            Candidate(
                                name,
                                workers,
                                "auto",
                                "dropped",
                                f"its own cost per task ({_fmt_s(probe.per_task)}) exceeds "
                                f"the task ({_fmt_s(self.task_time)})",
                                startup=startup,
                            )
                        )
                        return None
                _run(ex, self.fn, self.items[: max(1, min(len(self.items), 2 * workers))], "auto")
            except Exception as exc:
                self.rows.append(
                    Candidate(name, workers, "auto", "failed", f"{type(exc).__name__}: {exc}")
                )
                return None
            for chunk, why_not in self.chunk_sizes(workers, probe):
                row = Candidate(name, workers, chunk, ts=self.ts, startup=startup)
                self.rows.append(row)
                if why_not:
                    row.status, row.note = "dropped", why_not
                    continue
                behind = self.far_behind(best, 'chunk size "auto"') if chunk != "auto" else ""
                if behind:
                    row.status, row.note = "dropped", behind
                    continue
                known = [r.tp for r in self.rows if r.backend == name and r.valid]
                estimate = min((t for t in known if t is not None), default=self.ts)
                if self.left(until) < estimate:
                    row.status, row.note = "skipped", "no budget left for screening"
                    continue
                self.progress.step(f"{name} × {workers}, chunksize {chunk}")
                try:
                    t, got = _run(ex, self.fn, self.items, chunk)
                    if chunk == "auto" and self.far_behind(self.ts / max(t, 1e-9), ""):
                        t = self.second_look(ex, row, t, until)
                except Exception as exc:
                    row.status, row.note = "failed", f"{type(exc).__name__}: {exc}"
                    continue
                row.times.append(t)
                mismatch = _same(self.expected, got)
                if mismatch is not None:
                    row.status, row.note = "disqualified", f"results differ: {mismatch}"
                    continue
                s = row.speedup or 0.0
                best = s if best is None else max(best, s)
        finally:
            ex.shutdown(wait=True)  # before the next pool starts, outside every timed run
        return best

    def second_look(self, ex: Executor, row: Candidate, first: float, until: float) -> float:
        """A pool's first run decides whether it is explored further, and a burst of load
        from other programs must not decide that alone. A first run that falls behind is
        run once more between two serial runs, and that trio replaces it: the faster
        serial run over the new run is the row's speedup, whether or not it is better
        than the first figure (choosing the better of two noisy figures would favour
        exactly the rows that were measured twice). Returns the Tp to record for ``row``
        and sets its ``ts``."""
        if self.left(until) < 2 * first + 2 * self.ts:
            return first
        with Executor("serial") as baseline:
            before, _ = _run(baseline, self.fn, self.items, "auto")
            again, _ = _run(ex, self.fn, self.items, "auto")
            after, _ = _run(baseline, self.fn, self.items, "auto")
        self.serial_times += [before, after]
        row.ts, row.paired = min(before, after), True
        return again

    def probe(self, ex: Executor, name: str, workers: int, startup: float) -> Probe:
        self.progress.step(f"{name} × {workers}: per-task cost")
        task = anoop if self.is_async else noop
        _run(ex, task, range(200), "auto")  # warm-up
        t_auto, _ = _run(ex, task, range(_PROBE_TASKS), "auto")
        t_one, _ = _run(ex, task, range(_PROBE_TASKS_ONE), 1)
        probe = Probe(name, workers, startup, t_auto / _PROBE_TASKS, t_one / _PROBE_TASKS_ONE)
        self.probes[name] = probe
        return probe

    # -- 3. re-measure the leaders -------------------------------------------------------

    def remeasure(self) -> None:
        ranked = sorted(
            (r for r in self.rows if r.valid and r.backend != "serial"),
            key=lambda r: -(r.speedup or 0.0),
        )
        if not ranked:
            return
        top = ranked[0].speedup or 0.0
        near = [r for r in ranked if (r.speedup or 0.0) * LEADER_WINDOW >= top]
        # Each backend's best first, so every backend that is close gets an honest figure
        # (threads included: whether they are within reach of processes is worth knowing),
        # then each backend's runner-up.
        leaders: list[Candidate] = []
        for rank in range(LEADERS_PER_BACKEND):
            for r in near:
                mine = [x for x in near if x.backend == r.backend]
                if mine.index(r) == rank and len(leaders) < LEADERS:
                    leaders.append(r)
        # Runs on a busy machine take longer than their fastest screening time: plan with
        # a fifth more, and keep a margin.
        margin = 0.03 * self.budget
        while leaders:
            fixed = sum(
                self.startup_guess(r.backend, r.workers) + (r.tp or 0) + self.ts for r in leaders
            )
            per_round = 1.2 * sum(self.ts + (r.tp or 0) for r in leaders)
            repeat = int((self.left() - margin - fixed) / per_round) if per_round > 0 else 0
            if repeat >= 1:
                break
            leaders.pop()
        if not leaders:
            self.notes.append("no budget left to re-measure the leaders")
            return
        repeat = min(repeat, MAX_REPEAT)
        costs = [
            self.startup_guess(r.backend, r.workers)
            + (1 + repeat) * (r.tp or 0)
            + (1 + repeat) * self.ts
            for r in leaders
        ]
        for i, r in enumerate(leaders):
            self.progress.step(f"re-measure {r.backend} × {r.workers}, chunksize {r.chunksize}")
            # Each leader's share of what is left, so a machine that slows down midway
            # costs repeats, not the budget.
            until = time.perf_counter() + (self.left() - margin) * costs[i] / sum(costs[i:])
            try:
                m = self.alternate(r, repeat, until)
            except Exception as exc:
                r.status, r.note = "failed", f"re-measuring: {type(exc).__name__}: {exc}"
                continue
            r.measurement = m
            r.ts, r.startup = m.ts, m.startup
            if not m.results_match:
                r.status, r.note = "disqualified", f"results differ: {m.mismatch}"
            else:
                r.status = "re-measured"

    def alternate(self, r: Candidate, repeat: int, until: float) -> Measurement:
        """:func:`anyexec.measure.measure`'s method (pool started and warmed outside the
        clock, then one serial and one parallel run in turn, and a last serial run), with a
        deadline: no new round starts once it would end after ``until``. At least one
        round. Each round's serial time is the faster of the serial runs around its
        parallel run."""
        chunk = r.chunksize
        t0 = time.perf_counter()
        ex = Executor(r.backend, r.workers)
        try:
            ex.start()
            startup = time.perf_counter() - t0
            _run(ex, self.fn, self.items[: max(1, min(len(self.items), 2 * r.workers))], chunk)
            runs: list[float] = []  # serial runs, one before each parallel run and one after all
            tp_times: list[float] = []
            got: list[Any] = []
            with Executor("serial") as baseline:
                runs.append(_run(baseline, self.fn, self.items, chunk)[0])
                for _ in range(repeat):
                    t, got = _run(ex, self.fn, self.items, chunk)
                    tp_times.append(t)
                    runs.append(_run(baseline, self.fn, self.items, chunk)[0])
                    if time.perf_counter() + runs[-1] + t > until:
                        break
        finally:
            ex.shutdown(wait=True)
        self.serial_times += runs
        r.serial_runs = runs
        # Each parallel run sits between two serial runs, and the faster of the two is its
        # reference: other work (a pool that has just started and is still settling, another
        # program) can only slow a serial run down, and one slowed reference alone would
        # lift a round's speedup.
        ts_times = [min(a, b) for a, b in itertools.pairwise(runs)]
        mismatch = _same(self.expected, got)
        return Measurement(
            backend=ex.backend,
            workers=ex.workers,
            workload=str(getattr(self.user_fn, "__name__", repr(self.user_fn))),
            tasks=len(self.items),
            serial_times=ts_times,
            parallel_times=tp_times,
            startup=startup,
            results_match=mismatch is None,
            mismatch=mismatch,
            chunksize=chunk,
        )

    # -- 4. decide ---------------------------------------------------------------------

    def decide(self) -> TuneResult:
        # A screened row is one run, compared with the fastest serial run seen (the
        # calibration's and the leaders'): a busy machine only ever adds time to either.
        ts = min(self.serial_times)
        for r in self.rows:
            if r.measurement is None and r.ts is not None and not r.paired:
                r.ts = ts
            if r.backend == "serial":
                r.times = [ts]
        rows = [r for r in self.rows if r.backend != "serial"]
        pool = [r for r in rows if r.status == "re-measured"] or [r for r in rows if r.valid]
        rank = {n: i for i, n in enumerate(PREFERENCE)}
        if self.is_async:
            rank["asyncio"] = -1
        chosen: Candidate | None = None
        if pool:
            top = max(pool, key=lambda r: r.speedup or 0.0)
            near = [r for r in pool if not _clearly_beats(top, r)]
            chosen = min(
                near,
                key=lambda r: (
                    r.chunksize != "auto",
                    rank.get(r.backend, len(rank)),
                    r.workers,
                    -(r.speedup or 0.0),
                ),
            )
            fixed = chosen
            auto = [
                r
                for r in pool
                if (r.backend, r.workers, r.chunksize) == (fixed.backend, fixed.workers, "auto")
                and (r.speedup or 0.0) >= (fixed.speedup or 0.0) * (1 - AUTO_TIE)
            ]
            if fixed.chunksize != "auto" and auto:
                chosen = auto[0]
                gain = (fixed.speedup or 0.0) / (chosen.speedup or 1.0) - 1
                self.notes.append(
                    f"chunksize {fixed.chunksize} measured {gain:.0%} faster: "
                    f"map(..., chunksize={fixed.chunksize})"
                )
        notes = self.explain(rows, chosen)
        chunk: int | str
        if chosen is None or (chosen.speedup or 0.0) < CLEAR_MARGIN:
            head = "serial: " + self.why_serial(rows, chosen)
            backend, workers, chunk, s = "serial", 1, "auto", 1.0
        else:
            backend, workers, chunk = chosen.backend, chosen.workers, chosen.chunksize
            s = chosen.speedup or 1.0
            head = f"{backend} × {workers}, chunksize {chunk}: S {s:.2f} (E {s / workers:.2f})"
        verdict = "; ".join([head, *notes])
        table = TuneTable(
            sorted(self.rows, key=lambda r: (r.tp is None, r.tp or 0.0, r.backend, r.workers))
        )
        return TuneResult(
            backend=backend,
            workers=workers,
            chunksize=chunk,
            options={},
            speedup=s,
            efficiency=s / workers,
            table=table,
            verdict=verdict,
            task_time=self.task_time,
            serial_time=self.ts,
            tasks=self.tasks,
            sampled=len(self.items),
            cpu_ratio=self.cpu_ratio,
            waiting=self.waiting,
            probes=list(self.probes.values()),
            budget=self.budget,
            elapsed=time.perf_counter() - self.start,
        )

    def why_serial(self, rows: list[Candidate], chosen: Candidate | None) -> str:
        metgs = [
            (p.metg(min(self.cpus, max(self.counts(p.backend)))), p.backend)
            for p in self.probes.values()
        ]
        t = _fmt_s(self.task_time)
        if metgs and self.task_time < min(metgs)[0]:
            metg, who = min(metgs)
            return (
                f"tiny tasks ({t} each) are below the METG of every backend "
                f"(lowest: {who} ≈ {_fmt_s(metg)}): stay serial"
            )
        if chosen is None:
            if any(r.status == "disqualified" for r in rows):
                return "every backend that ran gave results unlike serial's"
            return "no backend could be measured within the budget"
        return (
            f"nothing beats serial by {CLEAR_MARGIN:.1f}× (best: {chosen.backend} × "
            f"{chosen.workers}, S {chosen.speedup or 0.0:.2f})"
        )

    def explain(self, rows: list[Candidate], chosen: Candidate | None) -> list[str]:
        notes: list[str] = []
        threads = [r.speedup or 0.0 for r in rows if r.backend == "thread" and r.valid]
        others = [r.speedup or 0.0 for r in rows if r.backend != "thread" and r.valid]
        # Blame the GIL only where something else did run in parallel.
        if threads and max(threads) < CLEAR_MARGIN <= max(others, default=0.0):
            notes.append("threads gain nothing (GIL)")
        if self.share < BUSY_SHARE:
            notes.append(
                f"busy machine: a CPU loop got {self.share:.0%} of a core, so speedups are "
                f"low and noisy (tune again when it is quiet)"
            )
        if self.waiting:
            notes.append(
                f"waiting work (CPU {self.cpu_ratio:.0%} of wall): up to "
                f"{max(worker_counts(self.cpus, True, len(self.items)))} workers tried"
            )
        for status in ("dropped", "disqualified", "failed", "skipped"):
            names = sorted(
                {r.backend for r in rows if r.status == status}
                - {r.backend for r in rows if r.valid}
            )
            if names and not (status == "dropped" and chosen is None):
                notes.append(f"{status}: {', '.join(names)}")
        return notes + self.notes


def tune(
    fn: Callable[..., Any],
    inputs: Iterable[Any],
    *,
    budget: float = 60.0,
    backends: Sequence[str] | None = None,
    workers: int | Sequence[int] | None = None,
    chunksize: int | str | Sequence[int | str] | None = None,
    progress: bool = False,
) -> TuneResult:
    """Find the backend, worker count and chunk size that run ``fn`` fastest here.

    ``inputs`` is a sample of real inputs: a finite iterable whose items are argument
    tuples (``fn(*item)``) or single arguments (``fn(item)``, as ``anyexec.map`` passes
    them); to pass a tuple as one argument, wrap it: ``((t,) for t in ...)``. ``budget``
    is wall seconds for the whole search (it ends within about 10% of it). ``backends``
    defaults to every installed backend that loads; ``workers`` and ``chunksize`` narrow
    the search to the given values. ``progress=True`` shows a bar over the budget.

    Called by the ``anyexec tune`` command; see ``docs/tuning.md`` for what it measures
    and how it decides.
    """
    if isinstance(budget, bool) or not isinstance(budget, (int, float)) or not budget > 0:
        raise ConfigError(f"budget={budget!r}: must be a positive number of seconds")
    if not callable(fn):
        raise ConfigError(f"fn={fn!r} is not callable")
    names = _backend_names(backends)
    counts = _counts(workers)
    chunks = _chunks(chunksize)
    search = _Search(fn, _items(inputs), float(budget), names, counts, chunks, progress)
    try:
        search.calibrate()
        search.screen()
        search.remeasure()
        return search.decide()
    finally:
        search.progress.close()


def _backend_names(backends: Sequence[str] | None) -> list[str]:
    if backends is None:
        return [b.name for b in registry.backends() if b.available and b.name != "serial"]
    if isinstance(backends, str):
        backends = [b.strip() for b in backends.split(",") if b.strip()]
    names = []
    for name in backends:
        registry.get(name)  # unknown or unavailable: fail now, with the fix
        if name != "serial" and name not in names:
            names.append(name)
    if not names:
        raise ConfigError("backends: name at least one backend besides serial (the baseline)")
    return names


def _counts(workers: int | Sequence[int] | None) -> list[int] | None:
    if workers is None:
        return None
    values = [workers] if isinstance(workers, int) else list(workers)
    for p in values:
        if isinstance(p, bool) or not isinstance(p, int) or p < 1:
            raise ConfigError(f"workers={workers!r}: each must be a positive integer")
    if not values:
        raise ConfigError("workers: give at least one worker count, or None to search")
    return sorted(set(values))


def _chunks(chunksize: Any) -> list[int | str] | None:
    if chunksize is None:
        return None
    values = [chunksize] if isinstance(chunksize, (int, str)) else list(chunksize)
    for c in values:
        ok = c == "auto" or (isinstance(c, int) and not isinstance(c, bool) and c >= 1)
        if not ok:
            raise ConfigError(f"chunksize={chunksize!r}: each must be a positive int or 'auto'")
    if not values:
        raise ConfigError("chunksize: give at least one chunk size, or None to search")
    return list(dict.fromkeys(values))


# -- writing a profile -----------------------------------------------------------------


def _check_profile_name(name: str) -> None:
    if not name or not all(ch.isascii() and (ch.isalnum() or ch in "-_") for ch in name):
        raise ConfigError(
            f"profile name {name!r}: use letters, digits, '-' and '_' only "
            f"(it becomes a TOML key and the value of ANYEXEC_PROFILE)"
        )


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a valid TOML basic string
    raise ConfigError(f"cannot write {value!r} ({type(value).__name__}) to a config file")


def profile_file(start: Path | None = None) -> Path:
    """Where ``--write`` puts a profile: from ``start`` (the working directory) upward,
    the first folder's ``anyexec.toml`` or else its ``pyproject.toml`` (the order in which
    :func:`anyexec.config.find_config_file` reads them); with neither anywhere, a new
    ``anyexec.toml`` in ``start``."""
    start = (start or Path.cwd()).resolve()
    for folder in (start, *start.parents):
        for name in ("anyexec.toml", "pyproject.toml"):
            if (folder / name).is_file():
                return folder / name
    return start / "anyexec.toml"


def _split_key(text: str) -> list[str] | None:
    """A TOML dotted key as its parts (quotes removed), or None if it is not one."""
    parts, buf, quote, i = [], "", "", 0
    text = text.strip()
    while i < len(text):
        ch = text[i]
        if quote:
            if ch == quote:
                quote = ""
            elif ch == "\\" and quote == '"' and i + 1 < len(text):
                i += 1
                buf += text[i]
            else:
                buf += ch
        elif ch in "\"'":
            quote = ch
        elif ch == ".":
            parts.append(buf.strip())
            buf = ""
        else:
            buf += ch
        i += 1
    if quote:
        return None
    parts.append(buf.strip())
    return parts


def _header(line: str) -> list[str] | None:
    """The key of a ``[table]`` or ``[[array]]`` header line, else None."""
    text = line.strip()
    if not text.startswith("["):
        return None
    body = text.split("#", 1)[0].strip() if "#" in text and not text.endswith("]") else text
    if body.startswith("[[") and body.endswith("]]"):
        return _split_key(body[2:-2])
    if body.endswith("]"):
        return _split_key(body[1:-1])
    return None


def _replace_table(text: str, key: list[str], block: str, nl: str) -> str:
    """``text`` with the table ``key`` (and its sub-tables) replaced by ``block``, or with
    ``block`` appended; every other byte stays as it was."""
    lines = text.splitlines(keepends=True)
    out: list[str] = []
    inside = placed = False
    held: list[str] = []  # blank and comment lines: they go with whatever follows them
    for line in lines:
        parts = _header(line)
        if parts is not None:
            ours = parts[: len(key)] == key
            if inside and not ours:
                out.extend(held)
                held = []
            inside = ours
            if ours:
                held = []
                if not placed:
                    out.append(block)
                    placed = True
                continue
        if inside:
            if line.strip() == "" or line.lstrip().startswith("#"):
                held.append(line)
            else:
                held = []
            continue
        out.append(line)
    out.extend(held)
    if placed:
        return "".join(out)
    if text and not text.endswith(("\n", "\r")):
        text += nl
    return text + (nl if text.strip() else "") + block


def write_profile(result: TuneResult, profile: str, path: Path | None = None) -> Path:
    """Write ``result`` as profile ``profile`` into ``path`` (default :func:`profile_file`),
    keeping every other byte of the file; ``ANYEXEC_PROFILE=profile`` then selects it.

    The new text is parsed back before it is written: if the file would not read back as
    before plus this profile (say, profiles already defined as an inline table), nothing
    is written and the error shows the table to add by hand.
    """
    from anyexec import config

    _check_profile_name(profile)
    path = path or profile_file()
    pyproject = path.name == "pyproject.toml"
    raw = path.read_bytes() if path.exists() else b""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text ({exc}); nothing written") from None
    nl = "\r\n" if "\r\n" in text else "\n"
    block = result.to_config(profile, pyproject=pyproject)
    key = (["tool", "anyexec"] if pyproject else []) + ["profiles", profile]
    new = _replace_table(text, key, block.replace("\n", nl), nl)
    try:
        before = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc}); nothing written") from None
    wanted = tomllib.loads(block)
    try:
        after = tomllib.loads(new)
    except tomllib.TOMLDecodeError as exc:
        after = {"<invalid>": str(exc)}
    expect = before
    target, wanted_table = expect, wanted
    for part in key[:-1]:
        target = target.setdefault(part, {}) if isinstance(target, dict) else {}
        wanted_table = wanted_table[part]
    if isinstance(target, dict):
        target[key[-1]] = wanted_table[key[-1]]
    if after != expect:
        raise ConfigError(
            f"{path}: adding profile {profile!r} would change other settings or not parse "
            f"(are profiles written as an inline table there?); nothing written. "
            f"Add this by hand:\n{block}"
        )
    path.write_bytes(new.encode("utf-8"))
    config.clear_cache()
    return path


# -- the command ---------------------------------------------------------------------


def run_cli(args: Any) -> int:
    """``anyexec tune``: called by :mod:`anyexec.cli` with its parsed arguments."""
    from anyexec.bench import check_writable, parse_workers_list
    from anyexec.workloads import WORKLOADS, get_workload

    if args.budget <= 0:
        raise ConfigError(f"--budget {args.budget}: must be a positive number of seconds")
    if args.json is not None:
        check_writable(args.json, "--json")
    if args.write is not None:
        _check_profile_name(args.write)
    # As `python -m` would: the working directory's modules are importable, here and in
    # the worker processes started from here.
    here = os.getcwd()
    if here not in sys.path and "" not in sys.path:
        sys.path.insert(0, here)
        os.environ["PYTHONPATH"] = os.pathsep.join(
            p for p in (here, os.environ.get("PYTHONPATH", "")) if p
        )
    if args.target in WORKLOADS:
        wl = WORKLOADS[args.target]
        if args.inputs is not None and not (args.inputs.isdigit() and int(args.inputs) > 0):
            raise ConfigError(
                f"--inputs {args.inputs!r}: the built-in workload {args.target!r} takes a "
                f"task count (its inputs are 0..N-1)"
            )
        fn, inputs = wl.task(), wl.inputs(int(args.inputs) if args.inputs else None)
    else:
        wl = get_workload(args.target, args.inputs)
        fn = wl.func
        # JSON has no tuples: a list in the file is the argument list of one call.
        inputs = (
            [tuple(x) if isinstance(x, list) else x for x in wl.items]
            if wl.items is not None
            else wl.inputs()
        )
    chunks: list[int | str] | None = None
    if args.chunksize:
        chunks = []
        for part in args.chunksize.split(","):
            part = part.strip()
            if part != "auto" and not part.isdigit():
                raise ConfigError(
                    f"--chunksize {args.chunksize!r}: {part!r} is neither 'auto' nor a "
                    f"positive integer (expected a comma-separated list such as auto,1,8)"
                )
            chunks.append(part if part == "auto" else int(part))
    result = tune(
        fn,
        inputs,
        budget=args.budget,
        backends=args.backend.split(",") if args.backend else None,
        workers=parse_workers_list(args.workers) if args.workers else None,
        chunksize=chunks,
        progress=not args.quiet,
    )
    print(result.table)
    print()
    print(result.verdict)
    if args.json is not None:
        args.json.write_text(result.to_json(indent=2))
        print(f"wrote {args.json}")
    if args.write is not None:
        path = write_profile(result, args.write)
        print(f"wrote profile {args.write!r} to {path}; use it with ANYEXEC_PROFILE={args.write}")
    return 0


class _CallableModule(types.ModuleType):
    """Importing this module sets the package attribute ``anyexec.tune`` to the module,
    over the lazily exported function of the same name; so the module calls it too, and
    ``anyexec.tune(fn, inputs)`` works whichever was imported first."""

    def __call__(self, fn: Callable[..., Any], inputs: Iterable[Any], **kwargs: Any) -> TuneResult:
        return tune(fn, inputs, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
